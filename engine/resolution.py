"""Aspect ratio (--ar W:H) → image size in pixels. Pure Python.

Sizes keep about base_resolution² pixels (what the model was trained on) with both sides multiples
of 64, the ratio as close to W:H as that allows. SDXL was trained on a fixed list of ~1 MP buckets,
so for that family we pick from the list (scaled when a preset's base is not 1024).

The rule, for a ratio W:H from 1:MAX_ASPECT to MAX_ASPECT:1 (the parser's range, 1:8 … 8:1):

1. The candidates are the family's list: SDXL's buckets (out to 4:1, 2048×512 at base 1024), or
   for SD every 64-grid size within ±15% of base² (`_grid_sizes`; for tiny bases it widens, see
   there). Call the list's most extreme ratio up to MAX_ASPECT:1 its reach R.
2. Past R the list is extended with the 64-grid sizes whose ratio lies in (R, MAX_ASPECT] and whose
   pixel count is within ±15% of base² (`_extreme_sizes`). Where that window does not come within
   RATIO_TOLERANCE (log) of MAX_ASPECT:1 (the grid is too coarse: bases below 512) it widens to
   ×1.5, ×2, ×4, ×8 pixels (both ways) until it does.
3. The answer is the candidate with the right orientation whose ratio is closest in log terms;
   ties go to the pixel count nearest base², then to the larger size.

The extension only holds ratios beyond R, so any ratio up to R gets exactly the size it got
before the extension existed. R is at least 3:1 on every base from 128 up (4:1 on SDXL at 1024
and 512, 6:1 on SD at 128), so nothing within 3:1 moved; only SDXL at base 64 has R = 2:1.

Pixel budget: for bases of 512 and up nothing widens, every size stays within ±15% of base²
(never above base² × 1.15). At base 128 the pixel count grows at most ×2 (8:1 is 512×64 =
2 × 128²; 7:1 is 448×64, ×1.75; the old grid already allowed ×1.5) and shrinks at most to
×0.75; bases 192–448 stay within ×0.5 … ×2; base 64 grows up to ×8. Ratios outside 1:8 … 8:1
(the parser refuses them) get the list's answer, as before (SDXL: its 4:1 bucket).

Measured over every W:H with 1 ≤ W, H ≤ 40 within 1:8 … 8:1 (the tests check these bounds): on
the full-size presets (bases 512, 768, 1024) |log(size ratio / W:H)| < 0.15 up to 4:1 (worst
0.143, 13:4 on sdxl-turbo) and < 0.18 from 4:1 to 8:1 (worst 0.170, 16:3 at base 512, between
4.5:1 and 6.33:1 no size fits ±15%); at base 1024 under 0.08 throughout.

The extremes (landscape; portrait is the mirror):

    preset              4:1           8:1           1:8           8:1 pixels / base²
    sdxl (1024)         2048×512      3072×384      384×3072      1.125
    sdxl-turbo (512)    1024×256      1536×192      192×1536      1.125
    sd at 512           1024×256      1536×192      192×1536      1.125
    tiny, tiny-xl (128) 256×64        512×64        64×512        2.0
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

from engine.config import ModelPreset
from engine.prompt.request import MAX_ASPECT

STEP = 64  # both sides are multiples of this (the VAE needs 8; UNet down-sampling prefers 64)
AREA_TOLERANCE = 0.15  # ± share of base² pixels; widened only where the 64 grid is too coarse
# How near (log distance) the extension must come to MAX_ASPECT:1 before its window stops widening.
RATIO_TOLERANCE = 0.15
_WIDENING = (1 + AREA_TOLERANCE, 1.5, 2.0, 4.0, 8.0)  # pixel-count factors, tried in turn

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
    """(width, height) for `aspect` (W, H) on `preset`'s model (the rule: the module docstring)."""
    width, height = aspect
    if width <= 0 or height <= 0:
        raise ValueError(f"an aspect ratio needs two positive numbers, got {width}:{height}")
    base = preset.base_resolution
    if base < STEP or base % STEP:
        raise ValueError(f"base_resolution must be a multiple of {STEP}, got {base}")
    in_range = width <= MAX_ASPECT * height and height <= MAX_ASPECT * width
    return _closest(aspect, _candidates(preset.family, base, in_range), base)


@functools.cache
def _candidates(family: str, base: int, extended: bool) -> tuple[tuple[int, int], ...]:
    """The family's list, plus the extension out to MAX_ASPECT:1 when `extended`."""
    sizes = _sdxl_buckets(base) if family == "sdxl" else _grid_sizes(base)
    if extended:
        sizes += _extreme_sizes(base, sizes)
    return tuple(sizes)


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


def _extreme_sizes(base: int, sizes: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The 64-grid sizes that carry `sizes` from their reach out to MAX_ASPECT:1, both orientations.

    The reach is the most extreme landscape ratio in `sizes` up to MAX_ASPECT:1; the sizes added
    lie strictly beyond it, so nothing the list covers changes. Their pixel count is within ±15%
    of base², widened (×1.5, ×2, ×4, ×8) until they come within RATIO_TOLERANCE of MAX_ASPECT:1.
    """
    reach_w, reach_h = max(
        ((w, h) for w, h in sizes if h <= w <= MAX_ASPECT * h),
        key=lambda size: size[0] / size[1],
        default=(1, 1),
    )
    area = base * base
    landscape: list[tuple[int, int]] = []
    for factor in _WIDENING:
        landscape = [
            (w, h)
            for h in range(STEP, math.isqrt(int(area * factor)) + 1, STEP)
            for w in range(h, MAX_ASPECT * h + 1, STEP)
            if w * reach_h > reach_w * h and area / factor <= w * h <= area * factor
        ]
        top = max((w / h for w, h in landscape), default=reach_w / reach_h)
        if math.log(MAX_ASPECT / top) <= RATIO_TOLERANCE:
            break
    return sorted({*landscape, *((h, w) for w, h in landscape)})


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


def within_pixels(size: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    """`size`, or, when it has more than `max_pixels` pixels ([limits] max_pixels), the largest
    size of its shape under that (both sides multiples of STEP, at least STEP)."""
    width, height = size
    if width * height <= max_pixels:
        return size
    scale = math.sqrt(max_pixels / (width * height))
    return max(STEP, _floor_to_step(width * scale)), max(STEP, _floor_to_step(height * scale))


def _round_to_step(value: float) -> int:
    return max(STEP, math.floor(value / STEP + 0.5) * STEP)


def _floor_to_step(value: float) -> int:
    return max(STEP, math.floor(value / STEP) * STEP)


def _sign(value: int) -> int:
    return (value > 0) - (value < 0)
