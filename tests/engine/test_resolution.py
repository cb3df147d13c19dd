"""Aspect ratio → pixel size: 8-px sides, about base² pixels, within 2% of W:H."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
from dataclasses import replace

import pytest

import engine.resolution
from engine.config import DEFAULT_PRESETS, RANDOM_SDXL_PRESET, ModelPreset
from engine.prompt.request import MAX_ASPECT
from engine.resolution import (
    RATIO_TOLERANCE,
    SDXL_BUCKETS,
    STEP,
    fit_pixels,
    image_size,
    supported_aspects,
    within_pixels,
)

SDXL = DEFAULT_PRESETS["sdxl"]
TINY = DEFAULT_PRESETS["tiny"]
TINY_XL = DEFAULT_PRESETS["tiny-xl"]
SD15 = replace(TINY, name="sd15", base_resolution=512)
SD2 = replace(TINY, name="sd2", base_resolution=768)
SD1024 = replace(TINY, name="sd-1024", base_resolution=1024)
TURBO = DEFAULT_PRESETS["sdxl-turbo"]  # sdxl at base 512: the buckets scaled down
# Every preset an install has, the bench's sdxl-random, and SD at the full-size bases.
PRESETS = [*DEFAULT_PRESETS.values(), RANDOM_SDXL_PRESET, SD15, SD2, SD1024]
SEVEN = [SDXL, TURBO, SD15, SD2, SD1024, TINY, TINY_XL]  # one of each family and base
TOLERANCE = 0.02  # what the issue asks: within 2% of W:H (in log terms)


def ids(presets: list[ModelPreset]) -> list[str]:
    return [f"{p.name}-{p.family}-{p.base_resolution}" for p in presets]


def orientation(width: int, height: int) -> int:
    return (width > height) - (width < height)


def within(aspect: tuple[int, int], limit: int) -> bool:
    width, height = aspect
    return width <= limit * height and height <= limit * width


def reduced(width: int, height: int) -> tuple[int, int]:
    divisor = math.gcd(width, height)
    return width // divisor, height // divisor


# Every whole ratio W:H with 1 ≤ W, H ≤ 40 that the parser accepts (1:8 … 8:1), in lowest terms.
RATIOS = sorted({reduced(w, h) for w in range(1, 41) for h in range(1, 41) if within((w, h), 8)})


def log_error(size: tuple[int, int], aspect: tuple[int, int] | float) -> float:
    want = aspect[0] / aspect[1] if isinstance(aspect, tuple) else aspect
    return abs(math.log(size[0] / size[1]) - math.log(want))


def pixel_bounds(base: int) -> tuple[float, float]:
    """The pixel count / base² the docstring states: ÷ 1.15 … × 1.15 from base 192 up."""
    if base >= 192:
        return 1 / 1.15, 1.15
    return (0.8, 2.0) if base == 128 else (0.6, 8.0)  # measured 0.812 … 1.977; 0.609 … 7.906


def check_valid(size: tuple[int, int], aspect: tuple[int, int], preset: ModelPreset) -> None:
    """8-px sides, the orientation of `aspect`, within 2% of it, the pixel bounds."""
    width, height = size
    where = f"{aspect} on {preset.name} ({preset.family}-{preset.base_resolution}): {size}"
    assert width % 8 == 0 and height % 8 == 0 and min(width, height) >= 8, where
    assert orientation(width, height) == orientation(*aspect), where
    assert log_error(size, aspect) <= TOLERANCE, where
    low, high = pixel_bounds(preset.base_resolution)
    assert low <= width * height / preset.base_resolution**2 <= high, where


def test_the_constants() -> None:
    assert (STEP, RATIO_TOLERANCE) == (8, TOLERANCE)
    assert MAX_ASPECT == 8
    assert engine.resolution.MAX_ASPECT is MAX_ASPECT  # imported, not a copy
    assert len(RATIOS) == 861 and (8, 1) in RATIOS and (1, 8) in RATIOS and (9, 1) not in RATIOS


def test_every_preset_is_checked() -> None:
    assert {p.base_resolution for p in PRESETS} == {128, 512, 768, 1024}
    assert {"tiny", "tiny-xl", "sdxl", "sdxl-turbo", "sdxl-random"} <= {p.name for p in PRESETS}


@pytest.mark.parametrize("preset", PRESETS, ids=ids(PRESETS))
def test_every_ratio_up_to_8_to_1_comes_within_2_percent(preset: ModelPreset) -> None:
    for aspect in RATIOS:
        check_valid(image_size(aspect, preset), aspect, preset)


@pytest.mark.parametrize("preset", [SD15, SD2, SD1024], ids=ids([SD15, SD2, SD1024]))
def test_the_8_px_grid_is_much_closer_on_full_size_bases(preset: ModelPreset) -> None:
    # Measured worst: 0.0046 at 512 (25:26), 0.0033 at 768, 0.0018 at 1024.
    bound = {512: 0.005, 768: 0.0035, 1024: 0.002}[preset.base_resolution]
    assert max(log_error(image_size(a, preset), a) for a in RATIOS) < bound


@pytest.mark.parametrize("preset", SEVEN, ids=ids(SEVEN))
def test_square_is_base_by_base(preset: ModelPreset) -> None:
    assert image_size((1, 1), preset) == (preset.base_resolution,) * 2
    assert image_size((3, 3), preset) == (preset.base_resolution,) * 2


@pytest.mark.parametrize("preset", SEVEN, ids=ids(SEVEN))
def test_portrait_mirrors_landscape(preset: ModelPreset) -> None:
    for w, h in RATIOS:
        assert image_size((h, w), preset) == image_size((w, h), preset)[::-1]


@pytest.mark.parametrize("preset", SEVEN, ids=ids(SEVEN))
def test_an_unreduced_ratio_gives_the_same_size(preset: ModelPreset) -> None:
    for w, h in supported_aspects():
        assert image_size((w * 7, h * 7), preset) == image_size((w, h), preset)


# --- SDXL's buckets ----------------------------------------------------------------------------


def closest_bucket(aspect: tuple[int, int], base: int) -> tuple[int, int]:
    """The bucket scaled to `base`, with the orientation of `aspect`, closest to it in ratio."""
    scale = base / 1024
    buckets = {(round(w * scale / 8) * 8, round(h * scale / 8) * 8) for w, h in SDXL_BUCKETS}
    fitting = [b for b in buckets if orientation(*b) == orientation(*aspect)]
    return min(fitting, key=lambda b: (log_error(b, aspect), abs(b[0] * b[1] - base**2)))


SDXL_PRESETS = [p for p in PRESETS if p.family == "sdxl"]


@pytest.mark.parametrize("preset", SDXL_PRESETS, ids=ids(SDXL_PRESETS))
def test_sdxl_keeps_its_bucket_where_one_is_within_2_percent(preset: ModelPreset) -> None:
    kept = 0
    for aspect in RATIOS:
        bucket = closest_bucket(aspect, preset.base_resolution)
        size = image_size(aspect, preset)
        if log_error(bucket, aspect) <= TOLERANCE:
            assert size == bucket, aspect
            kept += 1
        else:  # the 8-px size, much closer than any bucket
            assert log_error(size, aspect) < log_error(bucket, aspect), aspect
    assert kept == 417  # of 861: the buckets cover the common ratios, up to 4:1


@pytest.mark.parametrize(
    ("aspect", "size"),
    [
        ((16, 9), (1344, 768)),  # 1.75, 1.6% off: the bucket is kept
        ((9, 16), (768, 1344)),
        ((7, 4), (1344, 768)),
        ((2, 1), (1408, 704)),
        ((3, 1), (1728, 576)),
        ((4, 1), (2048, 512)),
        ((4, 3), (1184, 888)),  # the nearest bucket, 1152×896, is 3.6% off
        ((3, 2), (1248, 832)),  # 1216×832 is 2.6% off
        ((21, 9), (1568, 672)),  # 1536×640 is 2.8% off
    ],
)
def test_sdxl_sizes(aspect: tuple[int, int], size: tuple[int, int]) -> None:
    assert image_size(aspect, SDXL) == size
    assert image_size(aspect, RANDOM_SDXL_PRESET) == size


def test_sdxl_buckets_are_about_one_megapixel_and_scale_exactly_to_the_tiny_base() -> None:
    for width, height in SDXL_BUCKETS:
        assert width % 64 == 0 and height % 64 == 0
        assert abs(width * height / 1024**2 - 1) <= 0.15
    assert image_size((16, 9), TINY_XL) == (168, 96)  # 1344×768 ÷ 8, as the issue says
    assert image_size((16, 9), TURBO) == (672, 384)


# --- the tables ---------------------------------------------------------------------------------

# The supported aspects (landscape; portrait mirrors) under this rule.
SIZES = {
    "sdxl-1024": {
        (1, 1): (1024, 1024), (4, 3): (1184, 888), (3, 2): (1248, 832), (16, 9): (1344, 768),
        (21, 9): (1568, 672), (2, 1): (1408, 704), (3, 1): (1728, 576), (5, 4): (1160, 928),
        (7, 4): (1344, 768),
    },
    "sdxl-512": {
        (1, 1): (512, 512), (4, 3): (576, 432), (3, 2): (624, 416), (16, 9): (672, 384),
        (21, 9): (784, 336), (2, 1): (704, 352), (3, 1): (864, 288), (5, 4): (560, 448),
        (7, 4): (672, 384),
    },
    "sd-512": {
        (1, 1): (512, 512), (4, 3): (576, 432), (3, 2): (624, 416), (16, 9): (640, 360),
        (21, 9): (784, 336), (2, 1): (720, 360), (3, 1): (888, 296), (5, 4): (560, 448),
        (7, 4): (672, 384),
    },
    "sd-768": {
        (1, 1): (768, 768), (4, 3): (896, 672), (3, 2): (936, 624), (16, 9): (1024, 576),
        (21, 9): (1176, 504), (2, 1): (1088, 544), (3, 1): (1320, 440), (5, 4): (840, 672),
        (7, 4): (1008, 576),
    },
    "sd-1024": {
        (1, 1): (1024, 1024), (4, 3): (1184, 888), (3, 2): (1248, 832), (16, 9): (1408, 792),
        (21, 9): (1568, 672), (2, 1): (1456, 728), (3, 1): (1776, 592), (5, 4): (1160, 928),
        (7, 4): (1344, 768),
    },
    "sd-128": {
        (1, 1): (128, 128), (4, 3): (152, 112), (3, 2): (168, 112), (16, 9): (168, 96),
        (21, 9): (208, 88), (2, 1): (176, 88), (3, 1): (216, 72), (5, 4): (152, 120),
        (7, 4): (168, 96),
    },
    "sdxl-128": {
        (1, 1): (128, 128), (4, 3): (152, 112), (3, 2): (168, 112), (16, 9): (168, 96),
        (21, 9): (208, 88), (2, 1): (176, 88), (3, 1): (216, 72), (5, 4): (152, 120),
        (7, 4): (168, 96),
    },
}  # fmt: skip


@pytest.mark.parametrize("preset", SEVEN, ids=ids(SEVEN))
def test_supported_aspects_give_these_sizes(preset: ModelPreset) -> None:
    table = SIZES[f"{preset.family}-{preset.base_resolution}"]
    landscape = [a for a in supported_aspects() if a[0] >= a[1]]
    assert {a: image_size(a, preset) for a in landscape} == table


def test_every_ratio_gives_the_pinned_size() -> None:
    # The whole table (W, H ≤ 40 as written, not reduced, within 8:1) on the seven presets, as
    # this rule gave it when it was written: any change to the rule shows here.
    lines = [
        f"{p.family}-{p.base_resolution} {w}:{h} {image_size((w, h), p)}"
        for p in SEVEN
        for w in range(1, 41)
        for h in range(1, 41)
        if within((w, h), 8)
    ]
    assert len(lines) == 7 * 1440
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    assert digest == "5718a7fde75fd9797135086d4d98a1d19845110c68c24b1078628027feda4a9e"


EXTREMES = [
    (SDXL, (4, 1), (2048, 512)),  # SDXL's most extreme bucket
    (SDXL, (8, 1), (2880, 360)),
    (SDXL, (1, 8), (360, 2880)),
    (SDXL, (5, 1), (2280, 456)),
    (SDXL, (7, 1), (2688, 384)),
    (TURBO, (4, 1), (1024, 256)),
    (TURBO, (8, 1), (1472, 184)),
    (TURBO, (1, 8), (184, 1472)),
    (SD15, (4, 1), (1024, 256)),
    (SD15, (8, 1), (1472, 184)),
    (SD2, (8, 1), (2176, 272)),
    (TINY, (4, 1), (256, 64)),
    (TINY, (8, 1), (384, 48)),
    (TINY, (1, 8), (48, 384)),
    (TINY, (40, 39), (184, 176)),  # the most the tiny window grows: × 1.977
    (TINY, (7, 6), (152, 128)),
    (TINY_XL, (4, 1), (256, 64)),
    (TINY_XL, (8, 1), (384, 48)),
    (TINY_XL, (1, 8), (48, 384)),
]


@pytest.mark.parametrize(
    ("preset", "aspect", "size"),
    EXTREMES,
    ids=[f"{p.family}-{p.base_resolution}-{a[0]}:{a[1]}" for p, a, _ in EXTREMES],
)
def test_extreme_ratios_give_the_documented_sizes(
    preset: ModelPreset, aspect: tuple[int, int], size: tuple[int, int]
) -> None:
    assert image_size(aspect, preset) == size
    if 4 in aspect or 8 in aspect or aspect == (40, 39):
        assert f"{size[0]}×{size[1]}" in (engine.resolution.__doc__ or "")  # the docstring


@pytest.mark.parametrize("preset", SEVEN, ids=ids(SEVEN))
def test_ratios_past_8_to_1_get_the_8_to_1_size(preset: ModelPreset) -> None:
    assert image_size((100, 1), preset) == image_size((8, 1), preset)
    assert image_size((1, 9), preset) == image_size((1, 8), preset)


@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_every_base_a_config_may_set_comes_within_2_percent(family: str) -> None:
    # Multiples of 64 up to 2048, the ratios with W, H ≤ 8 (all 861 below 256).
    small = sorted({reduced(w, h) for w in range(1, 9) for h in range(1, 9)})
    for base in range(64, 2049, 64):
        preset = replace(TINY, family=family, base_resolution=base)
        for aspect in RATIOS if base < 256 else small:
            check_valid(image_size(aspect, preset), aspect, preset)


@pytest.mark.parametrize("aspect", [(0, 1), (1, 0), (-4, 3)])
def test_refuses_non_positive_ratios(aspect: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="positive"):
        image_size(aspect, SDXL)


def test_refuses_a_base_off_the_grid() -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        image_size((1, 1), replace(TINY, base_resolution=100))


def test_supported_aspects_are_the_common_ratios() -> None:
    aspects = supported_aspects()
    assert len(set(aspects)) == len(aspects) == 16
    assert {(1, 1), (16, 9), (9, 16), (21, 9), (7, 4)} <= set(aspects)


def test_imports_no_torch() -> None:
    # The Discord front-end sizes images without loading torch.
    code = "import sys, engine.resolution; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --- fitting a size to a pixel budget -----------------------------------------------------------

BUDGETS = [65_536, 100_000, 300_000, 1_000_000, 5_000_000]  # [limits] max_pixels is at least 2¹⁶


@pytest.mark.parametrize("budget", BUDGETS)
def test_fit_pixels_keeps_the_ratio_within_2_percent_and_the_budget(budget: int) -> None:
    # Measured worst: 0.0163 (36:5 in 65 536 pixels → 680×96); never below budget ÷ 1.15.
    for aspect in RATIOS:
        width, height = fit_pixels(aspect, budget)
        where = f"{aspect} in {budget}: {width}×{height}"
        assert width % 8 == 0 and height % 8 == 0, where
        assert orientation(width, height) == orientation(*aspect), where
        assert budget / 1.15 <= width * height <= budget, where
        assert log_error((width, height), aspect) < 0.0165, where


def test_fit_pixels_takes_a_ratio_or_a_size() -> None:
    assert (
        fit_pixels(16 / 9, 300_000)
        == fit_pixels((1600, 900), 300_000)
        == fit_pixels((16, 9), 300_000)
    )
    assert fit_pixels((1, 1), 1024**2) == (1024, 1024)
    assert fit_pixels((1, 1), 1024**2 - 1) == (1016, 1016)


def test_fit_pixels_keeps_a_canvas_past_8_to_1() -> None:
    # A canvas panned again and again is not clamped to the parser's range.
    width, height = fit_pixels((4800, 400), 1_000_000)
    assert log_error((width, height), 12.0) <= TOLERANCE and width * height <= 1_000_000


@pytest.mark.parametrize("preset", SEVEN, ids=ids(SEVEN))
def test_within_pixels_keeps_the_shape_of_every_size(preset: ModelPreset) -> None:
    for aspect in RATIOS:
        size = image_size(aspect, preset)
        assert within_pixels(size, size[0] * size[1]) == size  # fits: unchanged
        budget = size[0] * size[1] // 2 + 1000
        if budget < 65_536:
            continue
        width, height = within_pixels(size, budget)
        assert width % 8 == 0 and height % 8 == 0
        assert budget / 1.15 <= width * height <= budget
        assert log_error((width, height), size) <= TOLERANCE, (size, budget)


def test_within_pixels_of_an_odd_canvas() -> None:
    # A zoomed canvas of any size (here not on the 8-px grid) scaled into a budget.
    for size in [(2017, 1133), (3000, 1000), (1536 * 2, 864 * 2), (777, 3333)]:
        width, height = within_pixels(size, 1_000_000)
        assert width % 8 == 0 and height % 8 == 0 and width * height <= 1_000_000
        assert log_error((width, height), size) <= 0.005, size
