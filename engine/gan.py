"""An optional GAN upscaler (Real-ESRGAN and friends) through spandrel, for the first 2× of an
upscale. Needs the `gan` extra (spandrel, which needs torchvision) and `[engine] upscaler`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

logger = logging.getLogger(__name__)

Upscaler = Callable[[Image.Image], Image.Image]


def load_gan(path: Path, device: str | torch.device) -> Upscaler | None:
    """The upscaler in `path`, or None (with a warning saying why) to fall back to Lanczos."""
    try:
        from spandrel import ImageModelDescriptor, ModelLoader
    except ImportError:
        logger.warning(
            "[engine] upscaler is set but spandrel is not installed "
            "(pip install 'imagine-bot[gan]'); upscaling with Lanczos"
        )
        return None
    try:
        model = ModelLoader(device=torch.device(device)).load_from_file(path)
    except Exception:
        logger.exception("could not load the upscaler %s; upscaling with Lanczos", path)
        return None
    if not isinstance(model, ImageModelDescriptor):
        logger.warning("%s is not an image-to-image model; upscaling with Lanczos", path)
        return None
    model.eval()

    @torch.inference_mode()
    def upscale(image: Image.Image) -> Image.Image:
        pixels = torch.from_numpy(np.asarray(image.convert("RGB"), np.float32) / 255)
        out = model(pixels.permute(2, 0, 1)[None].to(model.device))
        array = out[0].clamp(0, 1).permute(1, 2, 0).mul(255).round().byte().cpu().numpy()
        return Image.fromarray(array)

    return upscale
