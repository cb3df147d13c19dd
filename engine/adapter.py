"""Image prompts, style references (--sref) and object references (--oref) through a preset's
IP-Adapter (diffusers' `load_ip_adapter`).

The adapter is loaded once into three slots that share its weights: image prompts, style, object.
Each slot gets one embedding, the weighted mean of its images' CLIP embeddings, and its own scale:
- image prompts: every block, scale `--iw / 2` (so `--iw 1`, the default, is 0.5; `--iw 2` is 1);
- style: the style block alone (InstantStyle: the middle attention of the first up block with
  attentions, `up_blocks.0.attentions.1` on SDXL), so the reference's subject stays out; scale
  `2·sw / (sw + 100)` (`--sw 100`, the default, is 1; 1000 is 1.82; 0 is off);
- object: every block, scale `2·ow / (ow + 100)` (`--ow 100` is 1); `--cw N` counts as `--ow N`.
A slot a job leaves empty has scale 0, which diffusers skips, so a job without images draws
exactly what it would without the adapter.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers.models.embeddings import ImageProjection
from huggingface_hub import snapshot_download
from PIL import Image
from safetensors import safe_open
from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

from engine.config import BUILTIN_PREFIX, EngineConfig, IPAdapterFiles, ModelPreset
from engine.loader import ModelLoadError, error_gist
from engine.prompt.request import ImagineRequest
from engine.storage import InputStore
from engine.tiny import ensure_tiny_adapter

logger = logging.getLogger(__name__)

SLOTS = ("image", "style", "object")
Scale = float | dict[str, Any]


@dataclass(frozen=True)
class Adapter:
    """A preset's IP-Adapter as loaded into its pipeline."""

    blank: torch.Tensor  # a zero embedding (1, …) for the slots a job leaves empty
    style_block: int  # the up block holding the style attention
    attentions: int  # how many attentions that block has (the style one is the second)


@dataclass(frozen=True)
class References:
    """One job's embedding (1, …) and adapter scale for each slot."""

    embeds: tuple[torch.Tensor, ...]
    scales: tuple[Scale, ...]

    def apply(self, pipe: Any, count: int, guidance: bool) -> dict[str, Any]:
        """Set the slots' scales on `pipe`'s UNet; the pipeline call's argument for `count`
        images (with classifier-free guidance: a zero embedding for the negative half)."""
        pipe.set_ip_adapter_scale(list(self.scales))
        embeds = []
        for embed in self.embeds:
            positive = embed.unsqueeze(1).expand(count, *embed.shape)  # (count, 1 image, …)
            if guidance:
                positive = torch.cat([torch.zeros_like(positive), positive])
            embeds.append(positive)
        return {"ip_adapter_image_embeds": embeds}


def uses_references(request: ImagineRequest) -> bool:
    return bool(request.stored_images)


def reference_scale(weight: float) -> float:
    """--sw / --ow (100 by default) → adapter scale: 1 at 100, approaching 2."""
    return 2 * weight / (weight + 100)


def load_adapter(pipe: Any, preset: ModelPreset, config: EngineConfig) -> Adapter:
    """Load `preset`'s adapter and image encoder into `pipe`; ModelLoadError if it cannot."""
    files = preset.ip_adapter
    assert files is not None
    try:
        folder = _folder(files, config)
        encoder = CLIPVisionModelWithProjection.from_pretrained(
            folder / files.image_encoder, dtype=pipe.dtype
        ).to(pipe.device)
        size = encoder.config.image_size
        processor = CLIPImageProcessor(size=size, crop_size=size)
        pipe.register_modules(image_encoder=encoder, feature_extractor=processor)
        weights = _state_dict(folder / files.weights)
        pipe.load_ip_adapter(weights, subfolder="", weight_name="", image_encoder_folder=None)
        _share_across_slots(pipe.unet)
        blank = torch.zeros_like(_encode(pipe, [Image.new("RGB", (size, size))]))
    except Exception as exc:
        logger.exception("could not load the IP-Adapter of model preset %r", preset.name)
        raise ModelLoadError(
            f"could not load the image adapter of model preset {preset.name!r} "
            f"({files.source}): {error_gist(exc)}. Check ip_adapter, "
            f"ip_adapter_weights and image_encoder in [models.{preset.name}], or set "
            'ip_adapter = "" to run image prompts as img2img'
        ) from exc
    block, attentions = _style_block(pipe.unet)
    logger.info("loaded the IP-Adapter of model preset %r", preset.name)
    return Adapter(blank, block, attentions)


def references(
    pipe: Any, adapter: Adapter, request: ImagineRequest, inputs: InputStore
) -> References:
    """The embeddings and scales of `request`'s image prompts and references."""
    slots = (
        (request.image_inputs, [1.0] * len(request.image_inputs), request.image_weight / 2),
        (request.style_inputs, request.style_input_weights, _style_scale(request, adapter)),
        (request.object_inputs, [1.0] * len(request.object_inputs), _object_scale(request)),
    )
    embeds: list[torch.Tensor] = []
    scales: list[Scale] = []
    for digests, weights, scale in slots:
        if not digests or not scale:
            embeds.append(adapter.blank)
            scales.append(0.0)
            continue
        images = [inputs.load(digest) for digest in digests]
        embeds.append(_mean(_encode(pipe, images), weights))
        scales.append(scale)
    return References(tuple(embeds), tuple(scales))


def _style_scale(request: ImagineRequest, adapter: Adapter) -> Scale:
    scale = reference_scale(request.style_ref_weight)
    if not scale:
        return 0.0
    per_attention = [0.0] * adapter.attentions
    per_attention[min(1, adapter.attentions - 1)] = scale
    return {"up": {f"block_{adapter.style_block}": per_attention}}


def object_weight(request: ImagineRequest) -> int:
    """--ow, or --cw (0–100, from V6's --cref) where given: it counts as --ow."""
    if request.character_weight is not None:
        return max(1, request.character_weight)
    return request.object_ref_weight


def _object_scale(request: ImagineRequest) -> float:
    return reference_scale(object_weight(request))


def _encode(pipe: Any, images: Sequence[Image.Image]) -> torch.Tensor:
    """CLIP image embeddings (N, …): pooled for a plain adapter, hidden states for a "plus" one."""
    hidden = not isinstance(pipe.unet.encoder_hid_proj.image_projection_layers[0], ImageProjection)
    with torch.inference_mode():
        embeds, _ = pipe.encode_image(list(images), pipe.device, 1, output_hidden_states=hidden)
    return embeds


def _mean(embeds: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    w = torch.tensor(list(weights), dtype=embeds.dtype, device=embeds.device)
    w = w.view(-1, *([1] * (embeds.ndim - 1)))
    return (embeds * w).sum(0, keepdim=True) / w.sum()


def _share_across_slots(unet: Any) -> None:
    """Turn the one loaded adapter into len(SLOTS) that share its weights (each with a scale)."""
    for processor in unet.attn_processors.values():
        if hasattr(processor, "to_k_ip"):
            processor.to_k_ip = torch.nn.ModuleList([processor.to_k_ip[0]] * len(SLOTS))
            processor.to_v_ip = torch.nn.ModuleList([processor.to_v_ip[0]] * len(SLOTS))
            processor.scale = processor.scale[:1] * len(SLOTS)
            processor.num_tokens = processor.num_tokens[:1] * len(SLOTS)
    layers = unet.encoder_hid_proj.image_projection_layers
    unet.encoder_hid_proj.image_projection_layers = torch.nn.ModuleList([layers[0]] * len(SLOTS))


def _style_block(unet: Any) -> tuple[int, int]:
    """The first up block with attentions, and how many it has."""
    for index, block in enumerate(unet.up_blocks):
        if getattr(block, "attentions", None):
            return index, len(block.attentions)
    raise ModelLoadError("the model's UNet has no up block with attention layers")


def _folder(files: IPAdapterFiles, config: EngineConfig) -> Path:
    """The adapter's directory: built (tiny), local, or the needed files from the hub."""
    if files.source.startswith(BUILTIN_PREFIX):
        return ensure_tiny_adapter(files.source.removeprefix(BUILTIN_PREFIX), config.models_dir)
    path = Path(files.source).expanduser()
    if path.is_dir():
        return path
    wanted = [files.weights, f"{files.image_encoder.rstrip('/')}/*"]
    cache = config.models_dir / "hub"
    return Path(snapshot_download(files.source, allow_patterns=wanted, cache_dir=cache))


def _state_dict(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    """An adapter file in the published layout ("image_proj.…", "ip_adapter.…")."""
    state: dict[str, dict[str, torch.Tensor]] = {"image_proj": {}, "ip_adapter": {}}
    with safe_open(str(path), framework="pt", device="cpu") as weights:
        for key in weights.keys():  # noqa: SIM118 (safe_open is not a dict)
            part, _, name = key.partition(".")
            if part in state:
                state[part][name] = weights.get_tensor(key)
    return state
