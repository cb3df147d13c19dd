"""/describe in the engine process: a captioning model turns a stored image into four prompts in
Midjourney's form, a descriptive sentence and the image's shape: `a lighthouse on a cliff at dusk
--ar 3:2`.

The captioner (`[engine] captioner`: a hub id, a local directory, or builtin:tiny-captioner) is
loaded once, on the first describe job. Each prompt is sampled with its own seed (seed, seed+1,
…, as the images of a grid are), so a job's prompts are reproducible and differ from each
other; a caption that cleans up to nothing, or repeats an earlier one, is drawn again from a
seed further on.
"""

from __future__ import annotations

import logging
import math
import re
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import snapshot_download
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from engine.config import BUILTIN_PREFIX, EngineConfig
from engine.generate import CancelFn, GenerationError, JobCancelledError, ProgressFn
from engine.jobs import GRID_SIZE, Job, JobKind, JobResult
from engine.loader import (
    ModelLoadError,
    error_gist,
    looks_like_path,
    out_of_memory,
    resolve_device,
    resolve_dtype,
)
from engine.prompt import PromptError, parse_prompt
from engine.prompt.request import MAX_ASPECT, SEED_MAX
from engine.storage import InputStore
from engine.tiny_captioner import ensure_tiny_captioner

logger = logging.getLogger(__name__)

MAX_TERM = 16  # --ar terms stay this small: 1366×768 is 16:9, not 683:384
MAX_PROMPT_CHARS = 300  # of the sentence; Midjourney's own describe prompts are about this long
MAX_NEW_TOKENS = 40
DRAWS_PER_PROMPT = 8  # tries for each of the four prompts before the job gives up
# Sampling, not beam search: four draws of one image should read differently.
SAMPLING: dict[str, Any] = {"do_sample": True, "top_p": 0.9, "repetition_penalty": 1.2}
# Words BLIP is known to invent (from captions of its training data) and phrases that make a
# caption a statement rather than a prompt.
_JUNK_WORDS = re.compile(r"\b(?:arafed|araffes?|arafly)\b", re.IGNORECASE)
_LEAD_IN = re.compile(r"^(?:there (?:is|are)|this is|it is|an? image of)\s+", re.IGNORECASE)
# Prompt syntax that must not reach /imagine from a caption: parameters (--, — and – before a
# word), multi-prompt weights (::), permutations ({…}), --sref brackets, links (image prompts).
_LINK = re.compile(r"\S*://\S*")
_DASHES = re.compile(r"(?:-{2,}|[—–]|(?<!\S)-(?!\S))")  # a lone "-" too
_SYNTAX = re.compile(r"(?::{2,}|[{}<>\[\]\\|])")
_SPACES = re.compile(r"\s+")
_EDGES = " ,.;:-_'\"`!?"


class CaptionerLoadError(ModelLoadError):
    """The captioner could not be loaded; the message says which and what to do."""


@dataclass(frozen=True)
class Captioner:
    model: Any  # a transformers image-to-text model; its types are dynamic
    processor: Any
    device: str
    dtype: torch.dtype
    source: str  # as a result may name it: a hub id, builtin:…, or "local"


def aspect_ratio(width: int, height: int) -> tuple[int, int]:
    """The image's shape as `--ar` takes it: whole numbers, reduced (1200×800 → 3:2). When the
    exact ratio needs big numbers, the nearest one with terms up to 16 (1366×768 → 16:9); past
    8:1 it is 8:1, the widest --ar allows."""
    if width <= 0 or height <= 0:
        raise ValueError(f"not an image size: {width}×{height}")
    target = math.log(width / height)
    candidates = [
        (w, h)
        for w in range(1, MAX_TERM + 1)
        for h in range(1, MAX_TERM + 1)
        if 1 / MAX_ASPECT <= w / h <= MAX_ASPECT
    ]
    # The closest shape (on a log scale, so portrait and landscape are alike); the smallest
    # numbers among equals, which is the reduced form (4:3 before 8:6).
    return min(candidates, key=lambda wh: (abs(math.log(wh[0] / wh[1]) - target), sum(wh)))


def clean_caption(text: str, limit: int = MAX_PROMPT_CHARS) -> str:
    """A caption as the text of a prompt: no control characters, no prompt syntax (which
    /imagine would read as parameters, weights, permutations or image links), none of BLIP's
    invented words, one space between words, at most `limit` characters (cut at a word), no
    stray punctuation at its ends. "" when no word is left."""
    text = "".join(ch for ch in text if _printable(ch))
    for pattern in (_LINK, _DASHES, _SYNTAX, _JUNK_WORDS):
        text = pattern.sub(" ", text)
    text = _SPACES.sub(" ", text).strip(_EDGES)
    text = _LEAD_IN.sub("", text)
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)  # "dusk , soft" → "dusk, soft"
    if len(text) > limit:
        text = text[: limit + 1].rsplit(" ", 1)[0]
    text = text.strip(_EDGES)
    return text if any(ch.isalpha() for ch in text) else ""


def _printable(ch: str) -> bool:
    """Not a control, format or unassigned character, nor the mark of undecodable bytes."""
    return unicodedata.category(ch)[0] != "C" and ch != "\N{REPLACEMENT CHARACTER}"


def midjourney_prompt(caption: str, aspect: tuple[int, int]) -> str:
    return f"{caption} --ar {aspect[0]}:{aspect[1]}"


class Describer:
    """Holds the captioner (loaded on the first describe job) and runs describe jobs."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.inputs = InputStore(config.inputs_dir)
        self._captioner: Captioner | None = None

    @property
    def loaded(self) -> bool:
        return self._captioner is not None

    def load(self) -> Captioner:
        if self._captioner is None:
            started = time.monotonic()
            self._captioner = load_captioner(self.config)
            logger.info("loaded the captioner in %.1f s", time.monotonic() - started)
        return self._captioner

    def run(self, job: Job, progress: ProgressFn, cancelled: CancelFn) -> JobResult:
        # 1. check the job; read its image from storage
        if job.kind is not JobKind.DESCRIBE or len(job.request.image_inputs) != 1:
            raise GenerationError("a describe job needs exactly one stored image")
        started = time.monotonic()
        try:
            image = self.inputs.load(job.request.image_inputs[0])
        except FileNotFoundError:  # retention deleted it (a 🔄 long after), or someone did
            raise FileNotFoundError("the image to describe is no longer in storage") from None
        aspect = aspect_ratio(*image.size)
        captioner = self.load()
        # 2. the image as the captioner sees it (resized and normalized by its processor)
        pixels = _pixels(captioner, image)
        # 3. one prompt per seed; a draw that is empty or repeats one is made again further on
        prompts: list[str] = []
        seeds: list[int] = []
        for slot, seed in enumerate(job.seeds):
            prompt, used = self._draw(captioner, pixels, seed, aspect, prompts, cancelled)
            prompts.append(prompt)
            seeds.append(used)
            progress(slot + 1, len(job.seeds), None)
        return JobResult(
            job_id=job.id,
            images=(),
            grid=None,
            seeds=tuple(seeds),
            width=image.width,
            height=image.height,
            model=captioner.source,
            steps=0,
            elapsed_s=time.monotonic() - started,
            prompts=tuple(prompts),
        )

    def _draw(
        self,
        captioner: Captioner,
        pixels: torch.Tensor,
        seed: int,
        aspect: tuple[int, int],
        taken: list[str],
        cancelled: CancelFn,
    ) -> tuple[str, int]:
        """A new usable prompt and the seed that gave it. Tries seed, seed+4, seed+8, …: the
        four slots (seed+0 … seed+3) never share a seed."""
        for attempt in range(DRAWS_PER_PROMPT):
            if cancelled():
                raise JobCancelledError
            used = (seed + attempt * GRID_SIZE) % (SEED_MAX + 1)
            caption = clean_caption(_caption(captioner, pixels, used))
            prompt = midjourney_prompt(caption, aspect)
            if caption and prompt not in taken and _parses(prompt):
                return prompt, used
            logger.debug("describe: draw %d (seed %d) is not usable: %r", attempt, used, caption)
        raise GenerationError(
            "the captioner could not find four different descriptions of this image "
            f"({DRAWS_PER_PROMPT} tries each); try again, or another image"
        )


def _pixels(captioner: Captioner, image: Image.Image) -> torch.Tensor:
    inputs = captioner.processor(images=image, return_tensors="pt")
    pixels: torch.Tensor = inputs["pixel_values"]
    return pixels.to(captioner.device, captioner.dtype)


def _caption(captioner: Captioner, pixels: torch.Tensor, seed: int) -> str:
    torch.manual_seed(seed)  # the engine runs one job at a time: the global generator is ours
    with torch.inference_mode():
        ids = captioner.model.generate(
            pixel_values=pixels, max_new_tokens=MAX_NEW_TOKENS, **SAMPLING
        )
    return str(captioner.processor.decode(ids[0], skip_special_tokens=True))


def _parses(prompt: str) -> bool:
    """Whether /imagine reads `prompt` without a complaint (the cleaning should see to it)."""
    try:
        parse_prompt(prompt)
    except PromptError:
        return False
    return True


# --- loading -----------------------------------------------------------------------------------


def load_captioner(config: EngineConfig) -> Captioner:
    """The configured captioner on the engine's device; CaptionerLoadError says why not."""
    source = config.captioner
    try:
        device = resolve_device(config.device)
        dtype = resolve_dtype(config.dtype, device)
        folder = _folder(source, config)
        processor = AutoProcessor.from_pretrained(folder)
        model: Any = AutoModelForImageTextToText.from_pretrained(folder, dtype=dtype)
        model = model.to(device).eval()
    except Exception as exc:
        # As for diffusion models (engine/loader.py): missing or unreachable files, bad files,
        # network errors mid-download, a model that does not fit all mean "not usable now".
        logger.exception("could not load the captioner %s", source)
        raise CaptionerLoadError(_message(source, exc)) from exc
    logger.info("loaded the captioner %s on %s (%s)", public_source(source), device, dtype)
    return Captioner(model, processor, device, dtype, public_source(source))


def _folder(source: str, config: EngineConfig) -> Path:
    if source.startswith(BUILTIN_PREFIX):
        return ensure_tiny_captioner(config.models_dir)
    path = Path(source).expanduser()
    if path.exists() or looks_like_path(source):
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"no transformers model (config.json) in {path}")
        return path
    # A hub id: the snapshot first (safetensors only: never unpickle downloaded weights).
    return Path(
        snapshot_download(
            source,
            cache_dir=config.models_dir / "hub",
            allow_patterns=["*.json", "*.txt", "*.model", "*.safetensors"],
        )
    )


def public_source(source: str) -> str:
    """The captioner as a result may name it: a hub id or a built-in as written, a local folder
    as "local" (its path on the server is nobody's business)."""
    if source.startswith(BUILTIN_PREFIX) or not (
        Path(source).expanduser().exists() or looks_like_path(source)
    ):
        return source
    return "local"


def _message(source: str, exc: BaseException) -> str:
    shown = public_source(source)
    if out_of_memory(exc):
        return (
            f"the captioner {shown} does not fit in the GPU's memory (out of memory while "
            "loading it); set a smaller [engine] captioner"
        )
    return (
        f"could not load the captioner {shown}: {error_gist(exc)}. Check the network or "
        "[engine] captioner (a hub id, a local directory, or builtin:tiny-captioner)"
    )
