"""Aspect ratio (--ar W:H) → image size in pixels. Pure Python.

Sizes keep about base_resolution² pixels (what the model was trained on) with both sides multiples
of 64, the ratio as close to W:H as that allows. SDXL was trained on a fixed list of ~1 MP buckets,
so for that family we pick from the list (scaled when a preset's base is not 1024).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from engine.config import ModelPreset

STEP = 64  # both sides are multiples of this (the VAE needs 8; UNet down-sampling prefers 64)
AREA_TOLERANCE = 0.15  # ± share of base² pixels; widened only where the 64 grid is too coarse

# SDXL's training buckets (width, height), landscape and square; portrait ones are these swapped.
_SDXL_BUCKETS_LANDSCAPE = (
    (1024, 1024), (1024, 960), (1088, 960), (1088, 896), (1152, 896), (1152, 832), (1216, 832),
    (1280, 768), (1344, 768), (1344, 704), (1408, 704), (1472, 704), (1536, 640), (1600, 640),
    (1664, 576), (1728, 576), (1792, 576), (1856, 512), (1920, 512), (1984, 512), (2048, 512),
)  # fmt: skip
SDXL_BUCKETS: tuple[tuple[int, int], ...] = tuple(
    sorted({*_SDXL_BUCKETS_LANDSCAPE, *((h, w) for w, h in _SDXL_BUCKETS_LANDSCAPE)})
)
SDXL_BUCKET_BASE = 1024

_SUPPORTED_ASPECTS = (
    (1, 1), (4, 3), (3, 4), (3, 2), (2, 3), (16, 9), (9, 16), (21, 9), (9, 21),
    (2, 1), (1, 2), (3, 1), (1, 3), (5, 4), (4, 5), (7, 4),
)  # fmt: skip


def supported_aspects() -> tuple[tuple[int, int], ...]:
    """The common ratios (W, H): what the README lists and what the tests go through."""
    return _SUPPORTED_ASPECTS


def image_size(aspect: tuple[int, int], preset: ModelPreset) -> tuple[int, int]:
    """(width, height) for `aspect` (W, H) on `preset`'s model."""
    width, height = aspect
    if width <= 0 or height <= 0:
        raise ValueError(f"an aspect ratio needs two positive numbers, got {width}:{height}")
    base = preset.base_resolution
    if base < STEP or base % STEP:
        raise ValueError(f"base_resolution must be a multiple of {STEP}, got {base}")
    if preset.family == "sdxl":
        return _closest(aspect, _sdxl_buckets(base), base)
    return _closest(aspect, _grid_sizes(base), base)


def _sdxl_buckets(base: int) -> list[tuple[int, int]]:
    if base == SDXL_BUCKET_BASE:
        return list(SDXL_BUCKETS)
    scale = base / SDXL_BUCKET_BASE
    return sorted({(_round_to_step(w * scale), _round_to_step(h * scale)) for w, h in SDXL_BUCKETS})


def _grid_sizes(base: int) -> list[tuple[int, int]]:
    """Every size on the 64 grid near base² pixels, both orientations.

    The window is ±15% where the grid allows; for tiny bases (128) it holds only the square and
    the extremes, so it widens until there is a choice (a square and two sizes per orientation).
    """
    area = base * base
    sizes: list[tuple[int, int]] = []
    for factor in (1 + AREA_TOLERANCE, 1.5, 2.0, 4.0):
        landscape = [
            (w, h)
            for w in range(base, int(area * factor / STEP) + 1, STEP)
            for h in (_floor_to_step(area / w), _floor_to_step(area / w) + STEP)
            if h <= w and area / factor <= w * h <= area * factor
        ]
        sizes = sorted({*landscape, *((h, w) for w, h in landscape)})
        if len(sizes) >= 5:
            break
    return sizes


def _closest(
    aspect: tuple[int, int], sizes: Iterable[tuple[int, int]], base: int
) -> tuple[int, int]:
    """The size with the right orientation whose ratio is closest to `aspect` in log terms.

    Ties go to the pixel count nearest base², then to the larger size.
    """
    want = math.log(aspect[0] / aspect[1])
    orientation = _sign(aspect[0] - aspect[1])
    fitting = [(w, h) for w, h in sizes if _sign(w - h) == orientation]
    if not fitting:  # only possible for odd bases or lists; fall back to the square
        return base, base

    def key(size: tuple[int, int]) -> tuple[float, float, int]:
        w, h = size
        return (
            round(abs(math.log(w / h) - want), 9),
            round(abs(math.log(w * h / base**2)), 9),
            -w * h,
        )

    return min(fitting, key=key)


def _round_to_step(value: float) -> int:
    return max(STEP, math.floor(value / STEP + 0.5) * STEP)


def _floor_to_step(value: float) -> int:
    return max(STEP, math.floor(value / STEP) * STEP)


def _sign(value: int) -> int:
    return (value > 0) - (value < 0)
