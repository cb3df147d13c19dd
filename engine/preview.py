"""Cheap previews of latents while a job runs: TAESD where the preset names one, else a linear
latent→RGB projection (no network, ~free). Previews are small JPEGs of the grid as it is now.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from engine.grid import make_grid

logger = logging.getLogger(__name__)

PREVIEW_SIDE = 192  # pixels per image in a preview grid, at most

# Least-squares fits of the SD / SDXL VAE latent space to RGB (as used by ComfyUI and A1111).
_FACTORS = {
    "sd": (
        [[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350],
         [-0.2829, 0.1762, 0.2721], [-0.2120, -0.2616, -0.7177]],
        [0.0, 0.0, 0.0],
    ),
    "sdxl": (
        [[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068],
         [0.1076, 0.1111, -0.0362], [-0.3165, -0.2492, -0.2188]],
        [0.1084, -0.0175, -0.0011],
    ),
}  # fmt: skip


class PreviewDecoder:
    """Latents (B, 4, h, w) → one JPEG of all B images side by side in a grid.

    Everything up to the last step runs on the latents' device, small: TAESD decodes latents
    shrunk so that its output is just over PREVIEW_SIDE (not the full image: at SDXL's 1024²
    that is a 25th of the work), the projection works at the latents' own resolution, and only
    the final uint8 thumbnails are copied to the CPU."""

    def __init__(self, family: str, taesd: torch.nn.Module | None = None):
        factors, bias = _FACTORS.get(family, _FACTORS["sd"])
        self.factors = torch.tensor(factors)
        self.bias = torch.tensor(bias)
        self.taesd = taesd

    @torch.no_grad()
    def images(self, latents: torch.Tensor) -> list[Image.Image]:
        height, width = latents.shape[-2:]
        if self.taesd is not None:
            taesd: Any = self.taesd  # an AutoencoderTiny; torch.nn.Module types no device/dtype
            small = _shrink(latents.to(taesd.device, taesd.dtype), PREVIEW_SIDE / LATENT_SCALE)
            rgb = taesd.decode(small).sample.float()
            height, width = height * LATENT_SCALE, width * LATENT_SCALE  # the image's own
        else:
            factors = self.factors.to(latents.device)
            rgb = torch.einsum("bchw,cr->brhw", latents.float(), factors)
            rgb = rgb + self.bias.to(latents.device)[:, None, None]
        height, width = _fit(height, width, PREVIEW_SIDE)
        if (height, width) != tuple(rgb.shape[-2:]):
            rgb = F.interpolate(rgb, size=(height, width), mode="bilinear", antialias=True)
        pixels = ((rgb.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1)
        return [Image.fromarray(array) for array in pixels.cpu().numpy()]

    def jpeg(self, latents: torch.Tensor) -> bytes:
        buffer = io.BytesIO()
        make_grid(self.images(latents)).save(buffer, format="JPEG", quality=70)
        return buffer.getvalue()


LATENT_SCALE = 8  # image pixels per latent pixel, for SD's, SDXL's and TAESD's VAEs


def _fit(height: int, width: int, side: float) -> tuple[int, int]:
    """(height, width) scaled down to fit within side × side (never up)."""
    scale = min(1.0, side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _shrink(latents: torch.Tensor, side: float) -> torch.Tensor:
    """`latents` averaged down by a whole factor to no less than `side` on the longer side."""
    height, width = latents.shape[-2:]
    factor = max(1, int(max(height, width) // side))
    if factor == 1:
        return latents
    size = (max(1, round(height / factor)), max(1, round(width / factor)))
    return F.interpolate(latents, size=size, mode="area")


def load_taesd(
    source: str, cache_dir: Path, device: str | torch.device, dtype: torch.dtype
) -> torch.nn.Module | None:
    """TAESD from the hub or a directory; None (and a warning) when it cannot be had."""
    from diffusers import AutoencoderTiny

    try:
        model = AutoencoderTiny.from_pretrained(source, cache_dir=cache_dir, dtype=dtype)
    except (OSError, ValueError) as error:
        logger.warning(
            "preview model %s unavailable, using the latent projection: %s", source, error
        )
        return None
    return model.to(device).eval()
