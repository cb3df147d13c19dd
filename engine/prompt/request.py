"""The typed result of parsing an /imagine prompt, and the one error type the parser raises.

Pure Python (no torch): the Discord front-end imports this.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Ranges shared by the parser, the engine and the README.
SEED_MAX = 4_294_967_295
QUALITY_VALUES = (0.25, 0.5, 1.0, 2.0, 4.0)  # Midjourney's old list (.25 … 2) and V7's (1, 2, 4)
MAX_ASPECT = 8  # --ar from 1:8 to 8:1
VERSION_MIN, VERSION_MAX = 1.0, 8.1  # Midjourney's model versions (--v 1 … --v 8.1)
NAMED_STYLES = ("cute", "expressive", "scenic", "original")  # niji's --style values
SAMPLERS = (
    "euler",
    "euler_a",
    "dpmpp_2m",
    "dpmpp_2m_karras",
    "dpmpp_sde",
    "heun",
    "lms",
    "ddim",
    "unipc",
    "lcm",
)
SPEEDS = ("fast", "relax", "turbo")
LORA_WEIGHT = 2.0  # --lora NAME:W from -2 to 2 (negative: a "slider" LoRA turned the other way)
MAX_LORAS = 4  # per prompt

_VERSION = re.compile(r"0*([0-9]{1,3})(?:\.([0-9]{1,3}))?")


def normalize_version(text: str) -> str | None:
    """A Midjourney version as `--v` and `[versions]` spell it ("6.1", "7", "5.2"), or None when
    `text` is not one. "7.0" and "07" are "7"."""
    match = _VERSION.fullmatch(text.strip())
    if not match:
        return None
    whole, fraction = match[1], (match[2] or "").rstrip("0")
    version = f"{int(whole)}.{fraction}" if fraction else str(int(whole))
    return version if VERSION_MIN <= float(version) <= VERSION_MAX else None


class PromptError(ValueError):
    """An invalid prompt. `message` is safe to show a user as it is.

    `title` follows Midjourney's wording: "Invalid parameter" for a bad flag or value,
    "Invalid prompt" for a problem with the text itself.
    """

    def __init__(self, message: str, *, flag: str | None = None, title: str | None = None):
        super().__init__(message)
        self.message = message
        self.flag = flag
        self.title = title or ("Invalid parameter" if flag else "Invalid prompt")
        self.problems: tuple[PromptError, ...] = (self,)  # every problem found, in prompt order

    @classmethod
    def combined(cls, problems: list[PromptError]) -> PromptError:
        """One error that reports every problem of a prompt at once, one line each."""
        if len(problems) == 1:
            return problems[0]
        titles = {p.title for p in problems}
        error = cls(
            "\n".join(f"• {p.message}" for p in problems),
            flag=problems[0].flag,
            title=titles.pop() if len(titles) == 1 else "Invalid prompt",
        )
        error.problems = tuple(problems)
        return error


@dataclass(frozen=True)
class LoraUse:
    """One `--lora NAME[:WEIGHT]` of a prompt: the [loras.NAME] of config.toml, at `weight`
    (None: the LoRA's own default) with its trigger words; both filled in at intake, so that a
    stored job draws the same after its config changed."""

    name: str
    weight: float | None = None
    trigger: str = ""


@dataclass(frozen=True)
class PromptPart:
    """One piece of a multi-prompt: `a::2 b::-0.5` gives ("a", 2.0) and ("b", -0.5)."""

    text: str
    weight: float = 1.0


@dataclass(frozen=True)
class ImagineRequest:
    """Everything one /imagine prompt asks for, after permutations are expanded.

    `None` means "not given": the model preset's default applies (steps, cfg, sampler, model).
    """

    prompt: str  # the text as the user wrote it, parameters removed, whitespace folded
    parts: tuple[PromptPart, ...] = ()  # multi-prompt parts; one part of weight 1 for plain text
    negative: tuple[str, ...] = ()  # from --no, split on commas
    image_urls: tuple[str, ...] = ()
    # The image prompts as fetched (sha256 of each PNG under storage/inputs), set by the bot:
    # the engine reads these, never the URLs.
    image_inputs: tuple[str, ...] = ()
    aspect: tuple[int, int] = (1, 1)
    seed: int | None = None
    chaos: int = 0
    stylize: int = 100
    quality: float = 1.0
    stop: int = 100
    tile: bool = False
    weird: int = 0
    repeat: int = 1
    image_weight: float = 1.0  # --iw
    model: str | None = None  # --v / --version NAME; --niji gives "niji"
    version: str | None = None  # --v 6.1: a Midjourney version, mapped to a preset by config
    style_raw: bool = False  # --style raw / --raw
    style: str | None = None  # --style cute…: a named style of the preset (NAMED_STYLES)
    experimental: int = 0  # --exp 0–100
    draft: bool = False  # --draft
    hd: bool = False  # --hd
    zoom: float | None = None  # --zoom 1–2: Custom Zoom's factor (ignored, with a note, elsewhere)
    personalize: tuple[str, ...] | None = None  # --p codes; () is your own profile; None: no --p
    personal_styles: tuple[str, ...] = ()  # the profile texts --p stands for (filled at intake)
    # References (--sref, --oref / --cref) as written (URLs, each maybe with ::weight; --sref
    # codes) and their weights; the fetched images are in style_inputs / object_inputs.
    style_refs: tuple[str, ...] = ()
    style_ref_weight: int = 100  # --sw
    style_ref_version: int | None = None  # --sv
    object_refs: tuple[str, ...] = ()
    object_ref_weight: int = 100  # --ow
    character_weight: int | None = None  # --cw
    # The reference images as fetched (sha256 under storage/inputs, like image_inputs), set by
    # the bot; each style image's ::weight (1 if none) in style_input_weights.
    style_inputs: tuple[str, ...] = ()
    style_input_weights: tuple[float, ...] = ()
    object_inputs: tuple[str, ...] = ()
    steps: int | None = None
    cfg: float | None = None
    sampler: str | None = None
    speed: str | None = None  # --fast / --relax / --turbo: accepted, no effect on one GPU
    loras: tuple[LoraUse, ...] = ()  # --lora NAME[:WEIGHT] …
    raw: str = field(default="", compare=False)  # the full prompt text, parameters included
    # What was mapped, rounded or ignored, in words for the user (`--q 3` ran as `--q 4`, …).
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def stored_images(self) -> tuple[str, ...]:
        """The digests of every image the job reads from storage/inputs."""
        return (*self.image_inputs, *self.style_inputs, *self.object_inputs)

    @property
    def positive_parts(self) -> tuple[PromptPart, ...]:
        return tuple(p for p in self.parts if p.weight > 0)

    @property
    def negative_parts(self) -> tuple[PromptPart, ...]:
        return tuple(p for p in self.parts if p.weight < 0)
