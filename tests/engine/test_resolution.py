"""Aspect ratio → pixel size."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
from dataclasses import replace

import pytest

import engine.resolution
from engine.config import DEFAULT_PRESETS, ModelPreset
from engine.prompt.request import MAX_ASPECT
from engine.resolution import SDXL_BUCKETS, image_size, supported_aspects

SDXL = DEFAULT_PRESETS["sdxl"]
TINY = DEFAULT_PRESETS["tiny"]
TINY_XL = DEFAULT_PRESETS["tiny-xl"]
SD15 = replace(TINY, name="sd15", base_resolution=512)
SD2 = replace(TINY, name="sd2", base_resolution=768)
TURBO = DEFAULT_PRESETS["sdxl-turbo"]  # sdxl at base 512: the buckets scaled down
FULL_SIZE = [SDXL, TURBO, SD15, SD2, replace(TINY, name="sd-1024", base_resolution=1024)]
ALL = [*FULL_SIZE, TINY, TINY_XL]


def ids(presets: list[ModelPreset]) -> list[str]:
    return [f"{p.family}-{p.base_resolution}" for p in presets]


def orientation(width: int, height: int) -> int:
    return (width > height) - (width < height)


@pytest.mark.parametrize("preset", ALL, ids=ids(ALL))
@pytest.mark.parametrize("aspect", supported_aspects())
def test_sides_are_multiples_of_64_with_the_right_orientation(
    preset: ModelPreset, aspect: tuple[int, int]
) -> None:
    width, height = image_size(aspect, preset)
    assert width % 64 == 0 and height % 64 == 0
    assert min(width, height) >= 64
    assert orientation(width, height) == orientation(*aspect)


@pytest.mark.parametrize("preset", FULL_SIZE, ids=ids(FULL_SIZE))
@pytest.mark.parametrize("aspect", supported_aspects())
def test_full_size_models_keep_the_pixel_count_and_ratio(
    preset: ModelPreset, aspect: tuple[int, int]
) -> None:
    width, height = image_size(aspect, preset)
    assert abs(width * height / preset.base_resolution**2 - 1) <= 0.15
    assert abs(math.log(width / height) - math.log(aspect[0] / aspect[1])) < 0.15


@pytest.mark.parametrize("preset", ALL, ids=ids(ALL))
def test_square_is_base_by_base(preset: ModelPreset) -> None:
    assert image_size((1, 1), preset) == (preset.base_resolution,) * 2
    assert image_size((3, 3), preset) == (preset.base_resolution,) * 2


@pytest.mark.parametrize(
    ("aspect", "size"),
    [
        ((16, 9), (1344, 768)),
        ((9, 16), (768, 1344)),
        ((4, 3), (1152, 896)),
        ((3, 2), (1216, 832)),
        ((21, 9), (1536, 640)),
        ((3, 1), (1728, 576)),
        ((7, 4), (1344, 768)),
    ],
)
def test_sdxl_uses_its_training_buckets(aspect: tuple[int, int], size: tuple[int, int]) -> None:
    assert image_size(aspect, SDXL) == size


def test_sdxl_picks_only_buckets() -> None:
    for aspect in [*supported_aspects(), (17, 5), (100, 1), (1, 100)]:
        assert image_size(aspect, SDXL) in SDXL_BUCKETS


def test_sdxl_buckets_are_about_one_megapixel() -> None:
    for width, height in SDXL_BUCKETS:
        assert width % 64 == 0 and height % 64 == 0
        assert abs(width * height / 1024**2 - 1) <= 0.15


@pytest.mark.parametrize("preset", ALL, ids=ids(ALL))
def test_portrait_mirrors_landscape(preset: ModelPreset) -> None:
    for w, h in supported_aspects():
        assert image_size((h, w), preset) == image_size((w, h), preset)[::-1]


@pytest.mark.parametrize("preset", [TINY, TINY_XL], ids=ids([TINY, TINY_XL]))
def test_tiny_sizes_stay_small(preset: ModelPreset) -> None:
    for aspect in supported_aspects():
        width, height = image_size(aspect, preset)
        assert 0.5 <= width * height / 128**2 <= 1.5


@pytest.mark.parametrize("aspect", [(0, 1), (1, 0), (-4, 3)])
def test_refuses_non_positive_ratios(aspect: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="positive"):
        image_size(aspect, SDXL)


def test_supported_aspects_are_the_common_ratios() -> None:
    aspects = supported_aspects()
    assert len(set(aspects)) == len(aspects) == 16
    assert {(1, 1), (16, 9), (9, 16), (21, 9), (7, 4)} <= set(aspects)


def test_imports_no_torch() -> None:
    # The Discord front-end sizes images without loading torch.
    code = "import sys, engine.resolution; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --- --ar up to 8:1 -----------------------------------------------------------------------------


def within(aspect: tuple[int, int], limit: int) -> bool:
    width, height = aspect
    return width <= limit * height and height <= limit * width


def reduced(width: int, height: int) -> tuple[int, int]:
    divisor = math.gcd(width, height)
    return width // divisor, height // divisor


# Every whole ratio W:H with 1 ≤ W, H ≤ 40 that the parser accepts (1:8 … 8:1), in lowest terms.
RATIOS = sorted({reduced(w, h) for w in range(1, 41) for h in range(1, 41) if within((w, h), 8)})


def log_error(size: tuple[int, int], aspect: tuple[int, int]) -> float:
    return abs(math.log(size[0] / size[1]) - math.log(aspect[0] / aspect[1]))


def extremeness(aspect: tuple[int, int]) -> float:
    return max(aspect) / min(aspect)


def check_valid(size: tuple[int, int], aspect: tuple[int, int], preset: ModelPreset) -> None:
    """Sides on the 64 grid, the orientation of `aspect`, the pixel budget (see the docstring)."""
    width, height = size
    where = f"{aspect} on {preset.family}-{preset.base_resolution}: {size}"
    assert width % 64 == 0 and height % 64 == 0, where
    assert min(width, height) >= 64, where
    assert orientation(width, height) == orientation(*aspect), where
    growth = width * height / preset.base_resolution**2
    if preset.base_resolution >= 512:  # full size: ±15%, never past base² × 1.15
        assert abs(growth - 1) <= 0.15, where
    elif preset.base_resolution >= 128:  # the coarse grid: the window widens to ×2 at most
        assert 0.5 <= growth <= 2.0, where
    else:  # base 64: one 8:1 size exists, 512×64
        assert 1 <= growth <= 8.0, where


def test_the_parser_limit_is_8_to_1() -> None:
    assert MAX_ASPECT == 8
    assert engine.resolution.MAX_ASPECT is MAX_ASPECT  # imported, not a copy
    assert len(RATIOS) > 800 and (8, 1) in RATIOS and (1, 8) in RATIOS and (9, 1) not in RATIOS


# What image_size gave for the supported aspects before --ar went past 3:1 (computed from that
# code): the extension must not move any of them.
SIZES_BEFORE_8_TO_1 = {
    "sdxl-1024": {
        (1, 1): (1024, 1024), (4, 3): (1152, 896), (3, 4): (896, 1152), (3, 2): (1216, 832),
        (2, 3): (832, 1216), (16, 9): (1344, 768), (9, 16): (768, 1344), (21, 9): (1536, 640),
        (9, 21): (640, 1536), (2, 1): (1408, 704), (1, 2): (704, 1408), (3, 1): (1728, 576),
        (1, 3): (576, 1728), (5, 4): (1152, 896), (4, 5): (896, 1152), (7, 4): (1344, 768),
    },
    "sdxl-512": {
        (1, 1): (512, 512), (4, 3): (576, 448), (3, 4): (448, 576), (3, 2): (640, 448),
        (2, 3): (448, 640), (16, 9): (704, 384), (9, 16): (384, 704), (21, 9): (768, 320),
        (9, 21): (320, 768), (2, 1): (768, 384), (1, 2): (384, 768), (3, 1): (896, 320),
        (1, 3): (320, 896), (5, 4): (576, 448), (4, 5): (448, 576), (7, 4): (704, 384),
    },
    "sd-512": {
        (1, 1): (512, 512), (4, 3): (576, 448), (3, 4): (448, 576), (3, 2): (640, 448),
        (2, 3): (448, 640), (16, 9): (704, 384), (9, 16): (384, 704), (21, 9): (768, 320),
        (9, 21): (320, 768), (2, 1): (768, 384), (1, 2): (384, 768), (3, 1): (896, 320),
        (1, 3): (320, 896), (5, 4): (576, 448), (4, 5): (448, 576), (7, 4): (704, 384),
    },
    "sd-768": {
        (1, 1): (768, 768), (4, 3): (896, 704), (3, 4): (704, 896), (3, 2): (960, 640),
        (2, 3): (640, 960), (16, 9): (1024, 576), (9, 16): (576, 1024), (21, 9): (1216, 512),
        (9, 21): (512, 1216), (2, 1): (1152, 576), (1, 2): (576, 1152), (3, 1): (1344, 448),
        (1, 3): (448, 1344), (5, 4): (896, 704), (4, 5): (704, 896), (7, 4): (1024, 576),
    },
    "sd-1024": {
        (1, 1): (1024, 1024), (4, 3): (1216, 896), (3, 4): (896, 1216), (3, 2): (1280, 832),
        (2, 3): (832, 1280), (16, 9): (1344, 768), (9, 16): (768, 1344), (21, 9): (1600, 704),
        (9, 21): (704, 1600), (2, 1): (1408, 704), (1, 2): (704, 1408), (3, 1): (1728, 576),
        (1, 3): (576, 1728), (5, 4): (1152, 896), (4, 5): (896, 1152), (7, 4): (1344, 768),
    },
    "sd-128": {
        (1, 1): (128, 128), (4, 3): (192, 128), (3, 4): (128, 192), (3, 2): (192, 128),
        (2, 3): (128, 192), (16, 9): (192, 128), (9, 16): (128, 192), (21, 9): (192, 64),
        (9, 21): (64, 192), (2, 1): (192, 128), (1, 2): (128, 192), (3, 1): (192, 64),
        (1, 3): (64, 192), (5, 4): (192, 128), (4, 5): (128, 192), (7, 4): (192, 128),
    },
    "sdxl-128": {
        (1, 1): (128, 128), (4, 3): (192, 128), (3, 4): (128, 192), (3, 2): (192, 128),
        (2, 3): (128, 192), (16, 9): (192, 128), (9, 16): (128, 192), (21, 9): (192, 64),
        (9, 21): (64, 192), (2, 1): (192, 128), (1, 2): (128, 192), (3, 1): (192, 64),
        (1, 3): (64, 192), (5, 4): (192, 128), (4, 5): (128, 192), (7, 4): (192, 128),
    },
}  # fmt: skip


@pytest.mark.parametrize("preset", ALL, ids=ids(ALL))
def test_supported_aspects_keep_their_sizes(preset: ModelPreset) -> None:
    key = f"{preset.family}-{preset.base_resolution}"
    assert {a: image_size(a, preset) for a in supported_aspects()} == SIZES_BEFORE_8_TO_1[key]


def test_every_ratio_within_3_to_1_keeps_its_size() -> None:
    # The same for every W:H (1 ≤ W, H ≤ 40, as written, not reduced) within 3:1 on these seven
    # presets: the digest of the table the code before the change printed.
    lines = [
        f"{p.family}-{p.base_resolution} {w}:{h} {image_size((w, h), p)}"
        for p in ALL
        for w in range(1, 41)
        for h in range(1, 41)
        if within((w, h), 3)
    ]
    assert len(lines) == 7 * 1106
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    assert digest == "7ba62d0c288437f954f903dd060903f639f863c9d284521ca88a1b72ab90b72a"


@pytest.mark.parametrize("preset", ALL, ids=ids(ALL))
def test_every_ratio_up_to_8_to_1_gives_a_valid_size(preset: ModelPreset) -> None:
    for aspect in RATIOS:
        check_valid(image_size(aspect, preset), aspect, preset)


@pytest.mark.parametrize("preset", FULL_SIZE, ids=ids(FULL_SIZE))
def test_full_size_ratio_error_stays_small_up_to_8_to_1(preset: ModelPreset) -> None:
    # Measured worst: 0.143 up to 4:1 (13:4 on sdxl-turbo), 0.170 past it (16:3 at base 512,
    # where no size within ±15% lies between 4.5:1 and 6.33:1).
    for aspect in RATIOS:
        bound = 0.15 if extremeness(aspect) <= 4 else 0.18
        assert log_error(image_size(aspect, preset), aspect) < bound, aspect


@pytest.mark.parametrize("preset", [TINY, TINY_XL], ids=ids([TINY, TINY_XL]))
def test_tiny_ratio_error_stays_small_past_3_to_1(preset: ModelPreset) -> None:
    # Within 3:1 the 128 grid is coarse (up to 0.38 off, as before); past it the sizes 64 tall are
    # at most 0.141 off (38:11 → 192×64) and exact at every k:1.
    for aspect in RATIOS:
        if extremeness(aspect) > 3:
            assert log_error(image_size(aspect, preset), aspect) < 0.15, aspect


EXTREMES = [
    (SDXL, (4, 1), (2048, 512)),  # SDXL's most extreme bucket
    (SDXL, (8, 1), (3072, 384)),
    (SDXL, (1, 8), (384, 3072)),
    (SDXL, (5, 1), (2240, 448)),
    (SDXL, (6, 1), (2688, 448)),
    (SDXL, (7, 1), (2688, 384)),
    (TURBO, (4, 1), (1024, 256)),
    (TURBO, (8, 1), (1536, 192)),
    (TURBO, (1, 8), (192, 1536)),
    (SD15, (4, 1), (1024, 256)),
    (SD15, (8, 1), (1536, 192)),
    (SD15, (1, 8), (192, 1536)),
    (TINY, (4, 1), (256, 64)),
    (TINY, (8, 1), (512, 64)),  # 2 × 128² pixels: the most the tiny window grows
    (TINY, (1, 8), (64, 512)),
    (TINY, (7, 1), (448, 64)),
    (TINY_XL, (4, 1), (256, 64)),
    (TINY_XL, (8, 1), (512, 64)),
    (TINY_XL, (1, 8), (64, 512)),
    (TINY_XL, (5, 1), (320, 64)),
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
    assert image_size((aspect[0] * 3, aspect[1] * 3), preset) == size  # not reduced: the same
    if 4 in aspect or 8 in aspect:
        assert f"{size[0]}×{size[1]}" in (engine.resolution.__doc__ or "")  # the docstring table


@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_every_base_gives_valid_sizes_up_to_8_to_1(family: str) -> None:
    # Every base a config may set (multiples of 64) up to 2048, the ratios with W, H ≤ 8.
    aspects = sorted({reduced(w, h) for w in range(1, 9) for h in range(1, 9)})
    for base in range(64, 2049, 64):
        preset = replace(TINY, family=family, base_resolution=base)
        for aspect in aspects:
            check_valid(image_size(aspect, preset), aspect, preset)
        # 8:1 comes within 0.15: exact on every base but 320 and 640 (7:1) and 832 (7.6:1).
        assert log_error(image_size((8, 1), preset), (8, 1)) < 0.15, base
