"""Load a model preset's pipeline: a hub id, a local diffusers directory, or a built-in tiny model.

Every failure becomes a `ModelLoadError` whose message names the preset and says what to do; the
traceback goes to the log.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

# Imported from their modules: the top-level `diffusers` names are lazy and opaque to mypy.
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.pipelines.auto_pipeline import AutoPipelineForInpainting
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import (
    StableDiffusionXLPipeline,
)
from huggingface_hub import snapshot_download

from engine.config import (
    BUILTIN_PREFIX,
    RANDOM_SDXL,
    EngineConfig,
    ModelPreset,
    looks_like_path,
)
from engine.random_sdxl import build_random_sdxl
from engine.speed import tune
from engine.tiny import ensure_tiny

logger = logging.getLogger(__name__)

_PIPELINES: dict[str, type[DiffusionPipeline]] = {
    "sd": StableDiffusionPipeline,
    "sdxl": StableDiffusionXLPipeline,
}
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
# The hub cache keeps each download under models--org--name/snapshots/<commit>/.
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")  # "org/name"
_SNAPSHOT = re.compile(
    r"models--(?P<org>[^/\\]+?)--(?P<name>[^/\\]+)[/\\]snapshots[/\\](?P<sha>[0-9a-f]+)"
)


T = TypeVar("T")


class ModelLoadError(RuntimeError):
    """A preset's model could not be loaded; the message names the preset and what to do."""


def resolve_device(name: str) -> str:
    """`auto` → the best device present; an explicit device must exist (ValueError otherwise)."""
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if torch.backends.mps.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("engine.device is cuda, but torch sees no CUDA GPU (a CPU-only torch?)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("engine.device is mps, but torch.backends.mps is not available")
    return name


def preset_dtype(preset: ModelPreset, config: EngineConfig, device: str) -> str:
    """The precision `preset` loads in: its own on CUDA when it names one, else [engine] dtype
    (half precision on a CPU is slow or unsupported, whatever a preset says)."""
    if preset.dtype is not None and device.startswith("cuda"):
        return preset.dtype
    return config.dtype


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """`auto` → bfloat16 on CUDA (float16's speed without its overflows: SDXL's VAE stays in
    range), float32 elsewhere (CPU half precision is slow or unsupported)."""
    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if name not in _DTYPES:
        raise ValueError(f"unknown dtype {name!r}; the choices are: auto, {', '.join(_DTYPES)}")
    return _DTYPES[name]


def load_pipeline(preset: ModelPreset, config: EngineConfig) -> DiffusionPipeline:
    """The preset's text-to-image pipeline on the configured device, progress bar off."""
    try:
        device = resolve_device(config.device)
        dtype = resolve_dtype(preset_dtype(preset, config, device), device)
        pipe: DiffusionPipeline
        if preset.source == RANDOM_SDXL:  # built in memory on the device, nothing on disk
            pipe = build_random_sdxl(device, dtype)
        else:
            pipe = _load(preset, config, dtype)
            _check_family(pipe, preset)
            pipe = pipe.to(device)
        tune(pipe, config.speed, config.models_dir)
    except Exception as exc:
        # Loading fails in many ways: files missing or unreachable (OSError: the hub's errors,
        # offline mode), bad or mismatched files (ValueError, RuntimeError from torch), network
        # errors of the HTTP client mid-download, a missing optional package. All mean the same to
        # the caller: this preset cannot be used now, and why.
        logger.exception("could not load model preset %r from %s", preset.name, preset.source)
        raise ModelLoadError(_message(preset, exc)) from exc
    pipe.set_progress_bar_config(disable=True)
    # SDXL's own VAE overflows in float16. Diffusers 0.42 handles it: with `vae.config.force_upcast`
    # (True in SDXL's VAE config, False in the fp16-fix VAE) the pipelines move the VAE to float32
    # around each encode/decode and back. Nothing to do here: previews use TAESD or a linear
    # projection and never call this VAE themselves.
    logger.info(
        "loaded model preset %r from %s on %s (%s)", preset.name, preset.source, device, dtype
    )
    return pipe


# What a dedicated inpainting model takes from its base pipeline instead of loading its own.
_SHARED = ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2")


def load_inpaint(preset: ModelPreset, base: DiffusionPipeline, config: EngineConfig) -> Any:
    """The preset's dedicated inpainting pipeline (`inpaint`: a hub id or a local directory),
    sharing `base`'s VAE, text encoders and tokenizers (so only its UNet is new in memory), on
    `base`'s device. ModelLoadError names the preset and the key."""
    assert preset.inpaint is not None
    source = preset.inpaint
    shared = {name: getattr(base, name) for name in _SHARED if getattr(base, name, None)}
    try:
        path = Path(source).expanduser()
        local = path.exists() or looks_like_path(source)
        if local and not (path / "model_index.json").is_file():
            raise FileNotFoundError(f"no diffusers model (model_index.json) in {path}")
        pipe = _with_variant_fallback(
            preset,
            lambda variant: AutoPipelineForInpainting.from_pretrained(
                path if local else source,
                variant=variant,
                dtype=base.dtype,
                cache_dir=config.models_dir / "hub",
                use_safetensors=True,
                **shared,
            ),
        )
        _check_family(pipe, preset)
        pipe = pipe.to(base.device)
    except Exception as exc:  # as for the base model: any failure means "not usable now"
        logger.exception("could not load the inpainting model of preset %r", preset.name)
        raise ModelLoadError(
            f"could not load the inpainting model of preset {preset.name!r}: {error_gist(exc)}. "
            f"Check models.{preset.name}.inpaint, or remove it to inpaint with the base model"
        ) from exc
    pipe.set_progress_bar_config(disable=True)
    logger.info("loaded the inpainting model of preset %r", preset.name)
    return pipe


def public_source(preset: ModelPreset) -> str:
    """Where a preset's weights come from, as a PNG's metadata may say it: a hub id or a
    built-in model as written, a local folder only as "local" (the preset names it; the path
    of a folder on the server is nobody's business)."""
    if preset.is_builtin or (_HUB_ID.match(preset.source) and not Path(preset.source).exists()):
        return preset.source
    return "local"


def model_revision(pipe: DiffusionPipeline) -> str:
    """A short id of the weights for the PNG metadata: "org/name@commit" or "sha256:…"."""
    source = str(pipe.name_or_path or "")
    match = _SNAPSHOT.search(source)
    if match:
        return f"{match['org']}/{match['name']}@{match['sha'][:12]}"
    folder = Path(source)
    if (folder / "model_index.json").is_file():
        return "sha256:" + _fingerprint(folder)[:12]
    return "unknown" if not source or Path(source).is_absolute() else source


def _load(preset: ModelPreset, config: EngineConfig, dtype: torch.dtype) -> DiffusionPipeline:
    cls = _PIPELINES[preset.family]
    extra: dict[str, Any] = {}
    if preset.vae:
        try:
            extra["vae"] = _load_vae(preset.vae, config, dtype)
        except Exception as exc:  # say that it is the VAE override that failed
            raise RuntimeError(f"its VAE {preset.vae}: {error_gist(exc)}") from exc
    folder = _local_folder(preset, config)
    if folder is None:  # a hub id: download (or find in the cache) the snapshot first
        folder = _with_variant_fallback(
            preset,
            lambda variant: Path(
                cls.download(
                    preset.source,
                    revision=preset.revision,
                    variant=variant,
                    cache_dir=config.models_dir / "hub",
                    use_safetensors=True,  # never unpickle downloaded weights
                    **extra,  # components given here (the VAE) are not downloaded
                )
            ),
        )
    return _with_variant_fallback(
        preset,
        lambda variant: cls.from_pretrained(folder, variant=variant, dtype=dtype, **extra),
    )


def _local_folder(preset: ModelPreset, config: EngineConfig) -> Path | None:
    """The model's directory for a built-in or local preset; None for a hub id."""
    if preset.is_builtin:
        return ensure_tiny(preset.source.removeprefix(BUILTIN_PREFIX), config.models_dir)
    path = Path(preset.source).expanduser()
    if path.exists() or looks_like_path(preset.source):
        if not (path / "model_index.json").is_file():
            raise FileNotFoundError(f"no diffusers model (model_index.json) in {path}")
        return path
    return None


def _load_vae(source: str, config: EngineConfig, dtype: torch.dtype) -> AutoencoderKL:
    path = Path(source).expanduser()
    if looks_like_path(source) and not path.is_dir():
        raise FileNotFoundError(f"no such directory {path}")
    if not path.exists():
        # Fetched like the pipelines (a snapshot, then a local load): diffusers' own hub path for a
        # single model makes huggingface_hub warn about a deprecated argument on every load.
        path = Path(
            snapshot_download(
                source,
                cache_dir=config.models_dir / "hub",
                allow_patterns=["config.json", "diffusion_pytorch_model*.safetensors*"],
            )
        )
    vae: AutoencoderKL = AutoencoderKL.from_pretrained(path, dtype=dtype)
    return vae


def _with_variant_fallback(preset: ModelPreset, load: Callable[[str | None], T]) -> T:
    """`load(preset.variant)`, or `load(None)` when the model has no files of that variant."""
    if preset.variant is None:
        return load(None)
    try:
        return load(preset.variant)
    except ValueError as exc:
        if "variant" not in str(exc):
            raise
        logger.info("%s has no %r weights; loading the default ones", preset.source, preset.variant)
        return load(None)


def _check_family(pipe: DiffusionPipeline, preset: ModelPreset) -> None:
    # Diffusers loads an SDXL folder into StableDiffusionPipeline (and the other way round) without
    # complaint, then fails at the first image: check the UNet's SDXL conditioning instead.
    is_xl = getattr(pipe.unet.config, "addition_embed_type", None) == "text_time"
    if is_xl != (preset.family == "sdxl"):
        actual = "sdxl" if is_xl else "sd"
        raise ValueError(f"it is an {actual} model but the preset says family = {preset.family!r}")


def _message(preset: ModelPreset, exc: BaseException) -> str:
    if out_of_memory(exc):  # the model does not fit: the network and the path are fine
        return (
            f"model preset {preset.name!r} does not fit in the GPU's memory (out of memory while "
            "loading it). Lower [engine] max_loaded_models, use a smaller preset, or set "
            '[engine] dtype = "float16"'
        )
    return (
        f"could not load model preset {preset.name!r} from {public_source(preset)}: "
        f"{error_gist(exc)}. "
        f"Check the network or the path in [models.{preset.name}], "
        "or try the tiny preset (--v tiny, or --model tiny locally)"
    )


def out_of_memory(exc: BaseException) -> bool:
    """An out-of-memory anywhere in the chain of causes (diffusers wraps some load errors)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, torch.cuda.OutOfMemoryError | MemoryError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def error_gist(exc: BaseException, limit: int = 200) -> str:
    """The gist of an error: its first line, cut to its first sentence when long."""
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if len(reason) > limit:
        reason = reason.split(". ")[0]
    if len(reason) > limit:
        reason = reason[: limit - 3] + "..."
    return reason.rstrip(".")


def _fingerprint(folder: Path) -> str:
    """sha256 of model_index.json and the UNet's weight file names and sizes (cheap, no reads)."""
    digest = hashlib.sha256((folder / "model_index.json").read_bytes())
    unet = folder / "unet"
    if unet.is_dir():
        for weights in sorted(unet.glob("*.safetensors")) + sorted(unet.glob("*.bin")):
            digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return digest.hexdigest()
