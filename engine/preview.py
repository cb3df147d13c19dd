"""Cheap previews of latents while a job runs: TAESD where the preset names one, else a linear
latent→RGB projection (no network, ~free). Previews are small JPEGs of the grid as it is now.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import torch
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
    """Latents (B, 4, h, w) → one JPEG of all B images side by side in a grid."""

    def __init__(self, family: str, taesd: torch.nn.Module | None = None):
        factors, bias = _FACTORS.get(family, _FACTORS["sd"])
        self.factors = torch.tensor(factors)
        self.bias = torch.tensor(bias)
        self.taesd = taesd

    @torch.no_grad()
    def images(self, latents: torch.Tensor) -> list[Image.Image]:
        if self.taesd is not None:
            taesd: Any = self.taesd  # an AutoencoderTiny; torch.nn.Module types no device/dtype
            decoded = taesd.decode(latents.to(taesd.device, taesd.dtype)).sample
            rgb = decoded.float().clamp(-1, 1).permute(0, 2, 3, 1)
        else:
            x = latents.float().cpu().permute(0, 2, 3, 1)
            rgb = (x @ self.factors + self.bias).clamp(-1, 1)
        pixels = ((rgb + 1) * 127.5).round().byte().cpu().numpy()
        out = []
        for array in pixels:
            image = Image.fromarray(array)
            image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
            out.append(image)
        return out

    def jpeg(self, latents: torch.Tensor) -> bytes:
        buffer = io.BytesIO()
        make_grid(self.images(latents)).save(buffer, format="JPEG", quality=70)
        return buffer.getvalue()


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
