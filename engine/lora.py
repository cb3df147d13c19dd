"""LoRAs: small weight patches listed as [loras.NAME] in config.toml and picked per prompt with
`--lora NAME[:WEIGHT] …`.

Each is loaded into a preset's pipeline once, the first time a job there asks for it (diffusers'
`load_lora_weights`, on peft; safetensors only), and stays loaded with the pipeline; past
`[engine] max_loaded_loras` the least recently used is deleted (`delete_adapters`). Before every
job the pipeline's active set is made the job's (`set_adapters` with its weights) or switched
off (`disable_lora`): a job without `--lora` draws exactly what it drew before any was loaded.
Variations, upscales and edits of a job reuse its LoRAs (they share the UNet and the request).

A LoRA patches the attention projections, so fused QKV projections (`[engine] fuse_qkv`) are
undone on a pipeline before its first LoRA loads; with `compile`, the first job with each new
set of LoRAs compiles again.
"""

from __future__ import annotations

import logging
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import snapshot_download

from engine.config import (
    BUILTIN_PREFIX,
    FAMILY_NAMES,
    EngineConfig,
    LoraPreset,
    ModelPreset,
    looks_like_path,
)
from engine.loader import ModelLoadError, error_gist
from engine.prompt.request import LoraUse
from engine.tiny import LORA_FILE, ensure_tiny_lora

logger = logging.getLogger(__name__)


class Loras:
    """The LoRAs loaded into one pipeline, and which of them are on."""

    def __init__(self, pipe: Any, preset: ModelPreset) -> None:
        self._pipe = pipe
        self._preset = preset
        self._loaded: OrderedDict[str, None] = OrderedDict()  # least recently used first
        self._active: tuple[tuple[str, float], ...] = ()
        self._enabled = True

    def missing(self, uses: Sequence[LoraUse]) -> bool:
        """Whether some of `uses` still have to be loaded."""
        return any(use.name not in self._loaded for use in uses)

    def load(self, uses: Sequence[LoraUse], config: EngineConfig) -> None:
        """Load those of `uses` not loaded yet, past `[engine] max_loaded_loras` deleting the
        least recently used others first; ModelLoadError names one that cannot be loaded."""
        wanted = {use.name for use in uses}
        for use in uses:
            if use.name in self._loaded:
                self._loaded.move_to_end(use.name)
                continue
            self._make_room(config.max_loaded_loras, wanted)
            lora = config.loras.get(use.name)
            if lora is None:  # a stored job whose LoRA left the config since
                raise ModelLoadError(
                    f"the LoRA `{use.name}` is no longer configured here ([loras.{use.name}])"
                )
            self._unfuse()
            try:
                folder, weight_name = _files(lora, config)
                with warnings.catch_warnings():  # several adapters in one model are the point
                    warnings.filterwarnings("ignore", "Already found a `peft_config`")
                    self._pipe.load_lora_weights(
                        str(folder),
                        weight_name=weight_name,
                        adapter_name=lora.name,
                        use_safetensors=True,
                    )
            except Exception as exc:
                logger.exception("could not load the LoRA %r", lora.name)
                hint = (
                    f"is it for another model family than {FAMILY_NAMES[self._preset.family]}? "
                    f"Say which in [loras.{lora.name}] family"
                    if lora.family is None
                    else f"Check [loras.{lora.name}] (source, weight_name)"
                )
                raise ModelLoadError(
                    f"could not load the LoRA `{lora.name}` ({lora.source}) into "
                    f"{self._preset.name}: {error_gist(exc)}. {hint}"
                ) from exc
            self._loaded[lora.name] = None
            self._active = ()  # load_lora_weights turns the new one on: set it again
            logger.info("loaded the LoRA %r", lora.name)

    def use(self, uses: Sequence[LoraUse]) -> bool:
        """Make `uses` (loaded) the active set, at their weights; True when that changed what
        the text encoders give (their embeddings must be encoded again)."""
        wanted = tuple((use.name, use.weight if use.weight is not None else 1.0) for use in uses)
        if not self._loaded or (wanted == self._active and self._enabled == bool(wanted)):
            return False
        if wanted:
            if not self._enabled:
                self._pipe.enable_lora()
            names, weights = zip(*wanted, strict=True)
            self._pipe.set_adapters(list(names), adapter_weights=list(weights))
        else:
            self._pipe.disable_lora()
        self._active, self._enabled = wanted, bool(wanted)
        return True

    def _make_room(self, most: int, wanted: set[str]) -> None:
        others = [name for name in self._loaded if name not in wanted]
        while others and len(self._loaded) >= most:
            name = others.pop(0)
            self._pipe.delete_adapters([name])
            del self._loaded[name]
            self._active = ()  # set again before the next job
            logger.info("unloaded the LoRA %r to make room", name)

    def _unfuse(self) -> None:
        unet = self._pipe.unet
        if getattr(unet, "original_attn_processors", None) is not None:
            logger.info("undoing fused QKV projections: a LoRA patches the unfused ones")
            unet.unfuse_qkv_projections()


def _files(lora: LoraPreset, config: EngineConfig) -> tuple[Path, str | None]:
    """The LoRA's folder and weights file: built (tiny), local, or fetched from the hub."""
    if lora.source.startswith(BUILTIN_PREFIX):
        kind = lora.source.removeprefix(BUILTIN_PREFIX).removesuffix("-lora")
        return ensure_tiny_lora(kind, config.models_dir), LORA_FILE
    path = Path(lora.source).expanduser()
    if path.is_file():
        return path.parent, path.name
    if path.is_dir() or looks_like_path(lora.source):
        return path, lora.weight_name
    patterns = [lora.weight_name] if lora.weight_name else ["*.safetensors"]
    cache = config.models_dir / "hub"
    folder = snapshot_download(lora.source, allow_patterns=patterns, cache_dir=cache)
    return Path(folder), lora.weight_name
