"""Aspect ratio → pixel size."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace

import pytest

from engine.config import DEFAULT_PRESETS, ModelPreset
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
