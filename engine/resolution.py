"""Aspect ratio (--ar W:H) → image size in pixels. Pure Python.

Sizes have about base_resolution² pixels (what the model was trained on), both sides multiples of
STEP = 8 (the VAE's factor: diffusers' SD and SDXL pipelines take any such size, the UNet sizing
its upsamplers to the skip connections when a latent side does not halve evenly), and the ratio
as close to W:H as that allows. SDXL was trained on a fixed list of ~1 MP buckets: for that family
a bucket (scaled when the base is not 1024) wins wherever one is close enough.

The rule, for a ratio W:H (clamped to the parser's 1:MAX_ASPECT … MAX_ASPECT:1, 1:8 … 8:1):

1. SDXL: the bucket with the orientation of W:H whose ratio is closest in log terms, if it is
   within RATIO_TOLERANCE (|log(w/h ÷ W/H)| ≤ 0.02, i.e. 2%). 16:9 and 7:4 → 1344×768.
2. Otherwise the 8-px size with the orientation of W:H and base² ÷ 1.15 … × 1.15 pixels whose
   ratio is closest in log terms; ties go to the pixel count nearest base², then the larger.
3. Where that is more than 2% off (only on bases below 192: near-square ratios such as 40:39 need
   a side step of 8 px on a side of 170 px or more), the 8-px size within 2% whose pixel count is
   nearest base², from the narrowest window (×1.5, ×2, ×4, ×8 both ways) that holds one.

`fit_pixels` is the same rule for a pixel budget (at most the budget, down to budget ÷ 1.15,
ties to more pixels); `within_pixels` ([limits] max_pixels) and --hd use it, and so can any code
scaling a canvas while keeping its shape.

Measured over every W:H with 1 ≤ W, H ≤ 40 within 1:8 … 8:1 (861 ratios; the tests check these):

    preset (base)                 worst |log error|          pixels / base²
    sdxl, niji, sdxl-random (1024)  0.0199 (19:37, bucket)    0.870 … 1.147
      its 8-px sizes only           0.0018 (36:37)
    sdxl-turbo (512)                0.0199 (19:37, bucket)    0.870 … 1.147
      its 8-px sizes only           0.0046 (25:26)
    sd at 512 / 768 / 1024          0.0046 / 0.0033 / 0.0018  0.870 … 1.149
    tiny, tiny-xl (128)             0.0199 (38:37)            0.812 … 1.977 (40:39 → 184×176)

At base 128, 72 of the 861 ratios (36 and their mirrors) leave ÷ 1.15 … × 1.15, an 8-px step
being 6% of a side near 128 (7:6 → 152×128, ×1.19; 25:14 → 160×88, ×0.86); every base from 192
to 2048 stays within ÷ 1.15 … × 1.15, and base 64 (the least a config may set) within ×0.61 … ×7.9.
fit_pixels on budgets from 2¹⁶ to 5 M pixels: worst 0.0163 (36:5 in 65 536 → 680×96), never
below budget ÷ 1.15. Ratios past 8:1 (the parser refuses them; a variation of an odd source may
ask) get the 8:1 size.

The common and extreme sizes (landscape; portrait is the mirror):

    preset              16:9        4:3         4:1         8:1         1:8         8:1 px/base²
    sdxl (1024)         1344×768    1184×888    2048×512    2880×360    360×2880    0.989
    sdxl-turbo (512)    672×384     576×432     1024×256    1472×184    184×1472    1.033
    sd at 512           640×360     576×432     1024×256    1472×184    184×1472    1.033
    sd at 768           1024×576    896×672     1536×384    2176×272    272×2176    1.003
    tiny, tiny-xl (128) 168×96      152×112     256×64      384×48      48×384      1.125
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

from engine.config import ModelPreset
from engine.prompt.request import MAX_ASPECT

# Sides are multiples of the VAE's factor: diffusers' SD and SDXL pipelines take any such size
# (the UNet upsamples to its skip connections' sizes when a latent side is odd).
STEP = 8
AREA_TOLERANCE = 0.15  # pixels within base² ÷ 1.15 … × 1.15; widened only where that is too coarse
RATIO_TOLERANCE = 0.02  # |log(size ratio / W:H)| a size should stay within (2%)
_WIDENING = (1 + AREA_TOLERANCE, 1.5, 2.0, 4.0, 8.0)  # pixel-count factors, tried in turn
_MAX_LOG = math.log(MAX_ASPECT)

Size = tuple[int, int]

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


def image_size(aspect: tuple[int, int], preset: ModelPreset) -> Size:
    """(width, height) for `aspect` (W, H) on `preset`'s model (the rule: the module docstring)."""
    width, height = aspect
    if width <= 0 or height <= 0:
        raise ValueError(f"an aspect ratio needs two positive numbers, got {width}:{height}")
    base = preset.base_resolution
    if base < STEP or base % STEP:
        raise ValueError(f"base_resolution must be a multiple of {STEP}, got {base}")
    divisor = math.gcd(width, height)
    return _image_size(preset.family, base, width // divisor, height // divisor)


@functools.cache
def _image_size(family: str, base: int, width: int, height: int) -> Size:
    # Past the parser's 1:MAX_ASPECT … MAX_ASPECT:1 (a variation of an odd source) the extreme.
    want = max(-_MAX_LOG, min(_MAX_LOG, math.log(width / height)))
    if family == "sdxl":
        bucket = _best(want, _sdxl_buckets(base), base * base)
        if bucket is not None and _error(bucket, want) <= RATIO_TOLERANCE:
            return bucket
    area = base * base
    return _fit(want, area, [(area / factor, area * factor) for factor in _WIDENING])


def fit_pixels(shape: Size | float, pixels: int) -> Size:
    """The size with sides multiples of STEP, at most `pixels` pixels, closest in ratio to `shape`
    (a size or width / height): for scaling any canvas to a pixel budget.

    Within 2% of the ratio on budgets from 2¹⁶ pixels and ratios up to MAX_ASPECT:1 (see the
    module docstring); the pixels stay within `pixels` ÷ 1.15 … `pixels`, the window widening
    downwards only where a tiny budget leaves no size within RATIO_TOLERANCE. Ties: more pixels.
    """
    ratio = shape[0] / shape[1] if isinstance(shape, tuple) else shape
    if ratio <= 0 or pixels <= 0:
        raise ValueError(f"fit_pixels needs a positive shape and budget, got {shape}, {pixels}")
    return _fit(math.log(ratio), pixels, [(pixels / factor, pixels) for factor in _WIDENING])


def within_pixels(size: Size, max_pixels: int) -> Size:
    """`size`, or, when it has more than `max_pixels` pixels ([limits] max_pixels), the size of
    its shape under that (`fit_pixels`: sides multiples of STEP, the ratio kept within 2%)."""
    width, height = size
    return size if width * height <= max_pixels else fit_pixels(size, max_pixels)


def _fit(want: float, target: int, windows: list[tuple[float, float]]) -> Size:
    """The size for `want` (a log ratio) near `target` pixels: the closest ratio in the first
    window (`_best`); where that is more than RATIO_TOLERANCE off, the size within it whose pixel
    count is nearest `target`, from the first of the wider windows that holds one."""
    low, high = windows[0]
    found = _best(want, _grid(want, low, high), target)
    if found is not None and _error(found, want) <= RATIO_TOLERANCE:
        return found
    for low, high in windows[1:]:
        close = _nearest_pixels(want, _grid(want, low, high, RATIO_TOLERANCE), target)
        if close is not None:
            return close
        found = _best(want, _grid(want, low, high), target) or found
    if found is None:  # a budget too small for any size of this shape: sides of at least STEP
        ratio = math.exp(want)
        found = _floor_to_step(math.sqrt(target * ratio)), _floor_to_step(math.sqrt(target / ratio))
    return found


def _grid(want: float, low: float, high: float, band: float = 0.0) -> list[Size]:
    """The STEP-grid sizes with `low` … `high` pixels that could be closest to `want`: for each
    height (width, for portrait) the widths just below and above it, and those within `band` (log)
    of it, clamped to the window."""
    if want < 0:
        return [(h, w) for w, h in _grid(-want, low, high, band)]
    if want == 0:
        first = math.ceil(math.sqrt(low) / STEP) * STEP
        return [(s, s) for s in range(max(STEP, first), math.isqrt(int(high)) + 1, STEP)]
    sizes = []
    for h in range(STEP, math.isqrt(int(high)) + 1, STEP):
        least = max(h + STEP, math.ceil(low / h / STEP) * STEP)  # landscape: wider than tall
        most = math.floor(high / h / STEP) * STEP
        if least <= most:
            first = _floor_to_step(h * math.exp(want - band))
            last = _floor_to_step(h * math.exp(want + band)) + STEP
            sizes += [(min(max(w, least), most), h) for w in range(first, last + 1, STEP)]
    return sizes


def _best(want: float, sizes: Iterable[Size], target: int) -> Size | None:
    """The size with the orientation of `want` whose ratio is closest to it in log terms.

    Ties go to the pixel count nearest `target`, then to the larger size.
    """
    orientation = _sign(want)
    fitting = [(w, h) for w, h in sizes if _sign(w - h) == orientation]

    def key(size: Size) -> tuple[float, float, int]:
        w, h = size
        return round(_error(size, want), 9), round(abs(math.log(w * h / target)), 9), -w * h

    return min(fitting, key=key, default=None)


def _nearest_pixels(want: float, sizes: Iterable[Size], target: int) -> Size | None:
    """Of `sizes` within RATIO_TOLERANCE of `want`, the one whose pixel count is nearest `target`
    (in log terms; ties: the closer ratio, then the larger size)."""

    def key(size: Size) -> tuple[float, float, int]:
        w, h = size
        return round(abs(math.log(w * h / target)), 9), _error(size, want), -w * h

    close = [s for s in sizes if _error(s, want) <= RATIO_TOLERANCE]
    return min(close, key=key, default=None)


def _error(size: Size, want: float) -> float:
    return abs(math.log(size[0] / size[1]) - want)


@functools.cache
def _sdxl_buckets(base: int) -> tuple[Size, ...]:
    if base == SDXL_BUCKET_BASE:
        return SDXL_BUCKETS
    scale = base / SDXL_BUCKET_BASE
    return tuple(
        sorted({(_round_to_step(w * scale), _round_to_step(h * scale)) for w, h in SDXL_BUCKETS})
    )


def _round_to_step(value: float) -> int:
    return max(STEP, math.floor(value / STEP + 0.5) * STEP)


def _floor_to_step(value: float) -> int:
    return max(STEP, math.floor(value / STEP) * STEP)


def _sign(value: float) -> int:
    return (value > 0) - (value < 0)
