"""The CUDA speed switches (`[engine] tf32`, `channels_last`, `fuse_qkv`, `compile`), applied once
to a pipeline when it is loaded on a GPU. None changes a picture beyond floating-point rounding;
each can be turned off. Nothing is applied on a CPU: the tiny models gain nothing from them, and
the images there stay bit-identical to earlier runs.

What each does, and why its default is what it is (no GPU has measured them for this project
yet: `scripts/gpu-check` runs the benchmark with them on, and its figures should set these):

- tf32 (on): TF32 tensor cores for the float32 matmuls and convolutions that remain (the VAE when
  it upcasts, the schedulers' maths); free on Ampere and later.
- channels_last (on): the UNet's and VAE's convolutions in NHWC, what cuDNN's fastest kernels
  want (diffusers' own speed guide).
- fuse_qkv (off): one matmul for Q, K and V in every attention block. It keeps the unfused weights
  too (more GPU memory: about a tenth of the UNet's), and a preset's IP-Adapter, once loaded,
  replaces the fused attention processors: off until measured.
- compile (off): `regional` compiles the UNet's repeated transformer blocks with torch.compile
  (seconds, not the minutes a whole-UNet compile takes); the compiled code is cached under the
  models directory (`compile-cache`), so a restart reuses it. The first call at each new size
  compiles (a few seconds per aspect ratio): `warm_up` ratios (1:1, 16:9, 9:16, 3:2, 2:3 by
  default) are compiled by the engine process right after start-up, one at a time and only
  while no job waits (engine/worker.py), so the first job at those sizes does not wait for it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from engine.config import SpeedConfig

logger = logging.getLogger(__name__)

CACHE_FOLDER = "compile-cache"  # under the models directory


def tune(pipe: Any, speed: SpeedConfig, models_dir: Path, *, force: bool = False) -> list[str]:
    """Apply the switches to `pipe` (on CUDA; anywhere with `force`, for tests); the names of
    those applied."""
    if pipe.device.type != "cuda" and not force:
        return []
    applied = []
    if speed.tf32 and pipe.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        applied.append("tf32")
    if speed.channels_last:
        for model in (pipe.unet, pipe.vae):
            model.to(memory_format=torch.channels_last)
        applied.append("channels_last")
    if speed.fuse_qkv:
        pipe.unet.fuse_qkv_projections()
        pipe.vae.fuse_qkv_projections()
        applied.append("fuse_qkv")
    if speed.compile == "regional":
        # Inductor reads its cache folder from the environment when it first compiles.
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(models_dir / CACHE_FOLDER))
        pipe.unet.compile_repeated_blocks(fullgraph=True)
        applied.append("compile:regional")
    logger.info("speed switches on: %s", ", ".join(applied) or "none")
    return applied


def compiled(pipe: Any) -> bool:
    """Whether some of the pipeline's UNet is compiled (by `tune`): its first call at each new
    shape compiles, which warming up does ahead of the jobs."""
    return any(
        getattr(module, "_compiled_call_impl", None) is not None for module in pipe.unet.modules()
    )
