"""The image tools' geometry, masks and paste-back (engine.canvas: pure Python, no model)."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from engine import canvas
from engine.canvas import CanvasError, Layout, layout
from engine.config import DEFAULT_PRESETS, JobLimits
from engine.jobs import Direction, Edit, Tool

SDXL, TINY = DEFAULT_PRESETS["sdxl"], DEFAULT_PRESETS["tiny"]
LIMITS = JobLimits()


def pan(direction: Direction) -> Edit:
    return Edit(Tool.PAN, direction=direction)


def noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def ratio_error(size: tuple[int, int], aspect: tuple[int, int]) -> float:
    return abs(size[0] / size[1] / (aspect[0] / aspect[1]) - 1)


def test_zoom_out_2x_of_a_square_keeps_the_size_and_halves_the_image() -> None:
    lay = layout(Edit(Tool.ZOOM, 2.0), (1024, 1024), SDXL, LIMITS)

    assert lay == Layout((1024, 1024), (256, 256, 768, 768), (1024, 1024))


def test_zoom_out_1_5x_centres_the_image_at_two_thirds() -> None:
    lay = layout(Edit(Tool.ZOOM, 1.5), (1024, 1024), SDXL, LIMITS)

    x0, y0, x1, y1 = lay.box
    assert lay.size == (1024, 1024)
    assert (x1 - x0, y1 - y0) == (683, 683)  # 1024 / 1.5
    assert x0 == 1024 - x1 - 1 and y0 == 1024 - y1 - 1  # centred (683 is odd)


def test_zoom_1_with_another_aspect_only_extends_the_canvas_to_that_shape() -> None:
    lay = layout(Edit(Tool.ZOOM, 1.0, aspect=(16, 9)), (1024, 1024), SDXL, LIMITS)

    assert lay.size == (1368, 768)
    assert lay.box == (300, 0, 1068, 768)  # the square slightly shrunk, full height, centred
    assert abs(lay.size[0] * lay.size[1] / 1024**2 - 1) < 0.01  # the source's pixel count
    tiny = layout(Edit(Tool.ZOOM, 1.0, aspect=(16, 9)), (128, 128), TINY, LIMITS)
    assert tiny == Layout((168, 96), (36, 0, 132, 96), (168, 96))


@pytest.mark.parametrize("aspect", [(16, 9), (9, 16), (3, 2), (2, 3), (4, 5), (21, 9), (1, 1)])
@pytest.mark.parametrize("zoom", [1.0, 1.5, 2.0])
@pytest.mark.parametrize("source", [(1024, 1024), (1344, 768), (832, 1216), (128, 128)])
def test_a_zoom_has_the_asked_shape_the_source_pixel_count_and_the_source_centred_inside(
    aspect: tuple[int, int], zoom: float, source: tuple[int, int]
) -> None:
    edit = Edit(Tool.ZOOM, zoom, aspect=aspect)
    preset = TINY if source == (128, 128) else SDXL
    try:
        lay = layout(edit, source, preset, LIMITS)
    except CanvasError:
        assert zoom == 1.0 and ratio_error(source, aspect) < 0.02  # nothing to add
        return
    (width, height), (x0, y0, x1, y1) = lay.size, lay.box
    assert width % 8 == 0 and height % 8 == 0
    assert ratio_error(lay.size, aspect) <= 0.02
    off = 0.17 if source == (128, 128) else 0.05  # the 8-px grid is coarse on tiny images
    assert abs(width * height / (source[0] * source[1]) - 1) < off
    assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    assert abs(x0 - (width - x1)) <= 1 and abs(y0 - (height - y1)) <= 1  # centred
    assert ratio_error((x1 - x0, y1 - y0), source) < 0.03  # the source's own shape
    # the source is 1/zoom of the canvas along the side it fills
    assert max((x1 - x0) / width, (y1 - y0) / height) == pytest.approx(1 / zoom, abs=0.02)


def test_a_zoom_that_adds_nothing_is_refused() -> None:
    with pytest.raises(CanvasError, match="adds nothing"):
        layout(Edit(Tool.ZOOM, 1.0), (1024, 1024), SDXL, LIMITS)


@pytest.mark.parametrize(
    ("direction", "size", "box"),
    [
        (Direction.RIGHT, (1536, 1024), (0, 0, 1024, 1024)),
        (Direction.LEFT, (1536, 1024), (512, 0, 1536, 1024)),
        (Direction.DOWN, (1024, 1536), (0, 0, 1024, 1024)),
        (Direction.UP, (1024, 1536), (0, 512, 1024, 1536)),
    ],
)
def test_a_pan_grows_the_canvas_by_half_on_that_side_and_keeps_the_image_unscaled(
    direction: Direction, size: tuple[int, int], box: tuple[int, int, int, int]
) -> None:
    lay = layout(pan(direction), (1024, 1024), SDXL, LIMITS)

    assert (lay.size, lay.box) == (size, box)
    assert lay.drawn == size  # 1.5 × 1024²: drawn at full size (OUTPAINT_BUDGET)


def test_a_pan_rounds_the_growth_to_a_multiple_of_8() -> None:
    lay = layout(pan(Direction.RIGHT), (200, 120), TINY, LIMITS)

    assert lay.size == (304, 120) and lay.box == (0, 0, 200, 120)  # 100 → 104


def test_panning_one_way_stops_before_8_to_1() -> None:
    size, pans = (1024, 1024), 0
    with pytest.raises(CanvasError, match=r"can't pan further right: .* wider than 8:1"):
        while True:
            lay = layout(pan(Direction.RIGHT), size, SDXL, LIMITS)
            assert lay.size[0] <= 8 * lay.size[1]
            size, pans = lay.size, pans + 1
    assert pans == 5  # 1.5⁵ ≈ 7.6:1, as the module docstring says
    with pytest.raises(CanvasError, match=r"can't pan further up: .* taller than 1:8"):
        layout(pan(Direction.UP), (128, 900), TINY, LIMITS)


def test_a_pan_past_max_pixels_scales_the_whole_canvas_down() -> None:
    limits = JobLimits(max_pixels=1_000_000)

    lay = layout(pan(Direction.LEFT), (1024, 1024), SDXL, limits)

    width, height = lay.size
    assert width * height <= 1_000_000 and width % 8 == 0 and height % 8 == 0
    assert ratio_error(lay.size, (3, 2)) < 0.02
    x0, y0, x1, y1 = lay.box  # the source scaled with the canvas, still on the right
    assert (x1, y0, y1) == (width, 0, height) and x1 - x0 == pytest.approx(width / 1.5, abs=2)


def test_make_square_keeps_the_long_side_and_centres_the_image() -> None:
    lay = layout(Edit(Tool.SQUARE), (1344, 768), SDXL, LIMITS)

    assert lay.size == (1344, 1344) and lay.box == (0, 288, 1344, 1056)
    assert lay.drawn == (1248, 1248)  # past 1.5 × 1024²: drawn smaller, then enlarged
    portrait = layout(Edit(Tool.SQUARE), (96, 160), TINY, LIMITS)
    assert portrait.size == (160, 160) and portrait.box == (32, 0, 128, 160)


def test_make_square_of_a_square_is_refused() -> None:
    with pytest.raises(CanvasError, match="already square"):
        layout(Edit(Tool.SQUARE), (1024, 1024), SDXL, LIMITS)


def test_make_square_past_max_pixels_is_scaled_down() -> None:
    lay = layout(Edit(Tool.SQUARE), (3456, 1024), SDXL, LIMITS)

    assert lay.size[0] == lay.size[1] and lay.size[0] ** 2 <= LIMITS.max_pixels


def test_vary_region_keeps_the_size_and_the_whole_image_in_the_box() -> None:
    lay = layout(Edit(Tool.REGION, mask="0" * 64), (1344, 768), SDXL, LIMITS)

    assert lay.size == (1344, 768) and lay.box == (0, 0, 1344, 768)
    assert lay.drawn == (1344, 768)


def test_a_result_past_the_budget_is_drawn_at_that_budget_in_its_shape() -> None:
    assert canvas.drawn_size((2304, 1024), SDXL, LIMITS) == (1872, 832)  # 2.25:1 exactly
    width, height = canvas.drawn_size((2304, 1024), SDXL, LIMITS)
    assert width * height <= canvas.OUTPAINT_BUDGET * 1024**2
    assert canvas.drawn_size((200, 120), TINY, LIMITS) == (200, 120)
    assert canvas.drawn_size((203, 117), TINY, LIMITS) == (200, 120)  # multiples of 8


def test_the_canvas_module_does_not_import_torch() -> None:
    code = "import sys, engine.canvas; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_outpaint_mask_is_white_outside_the_box_and_on_a_seam_band_along_new_edges() -> None:
    lay = layout(pan(Direction.RIGHT), (1024, 1024), SDXL, LIMITS)

    mask = np.asarray(canvas.outpaint_mask(lay))

    assert canvas.seam_width(lay.size) == canvas.SEAM == 8
    assert (mask[:, 1024:] == 255).all()  # the new area
    assert (mask[:, 1016:1024] == 255).all()  # the seam band inside the box
    assert (mask[:, :1016] == 0).all()  # the box's other edges are the canvas's: no band


def test_the_seam_band_is_narrower_on_small_images() -> None:
    lay = layout(Edit(Tool.ZOOM, 2.0), (128, 128), TINY, LIMITS)

    mask = np.asarray(canvas.outpaint_mask(lay))

    assert lay.box == (32, 32, 96, 96) and canvas.seam_width(lay.size) == 4
    assert (mask[36:92, 36:92] == 0).all() and mask[35, 50] == 255 and mask[50, 92] == 255


def test_paste_back_keeps_the_source_exactly_and_feathers_the_seam() -> None:
    source = noise((1024, 1024))
    lay = layout(pan(Direction.RIGHT), source.size, SDXL, LIMITS)
    image, mask = canvas.canvas_image(source, lay), canvas.outpaint_mask(lay)
    generated = Image.new("RGB", lay.drawn, (0, 0, 0))

    out = np.asarray(canvas.paste_back(generated, image, mask, lay)).astype(int)

    src = np.asarray(source).astype(int)
    assert np.array_equal(out[:, :1016], src[:, :1016])  # bit for bit where the mask is black
    assert (out[:, 1024:] == 0).all()  # no stretched fill is kept
    alpha = np.asarray(canvas.keep_alpha(mask, lay.box))[0]
    assert list(alpha[1014:1026]) == [255, 255, 223, 191, 159, 127, 95, 63, 31, 0, 0, 0]
    assert np.allclose(out[:, 1017], src[:, 1017] * 191 / 255, atol=1)  # source over black


def test_paste_back_of_a_zoom_keeps_the_resized_source() -> None:
    source = noise((128, 128), seed=1)
    lay = layout(Edit(Tool.ZOOM, 2.0), source.size, TINY, LIMITS)
    image, mask = canvas.canvas_image(source, lay), canvas.outpaint_mask(lay)

    out = np.asarray(canvas.paste_back(noise(lay.drawn, 2), image, mask, lay))

    kept = np.asarray(source.resize((64, 64), Image.Resampling.LANCZOS))
    assert np.array_equal(out[36:92, 36:92], kept[4:60, 4:60])


def test_paste_back_enlarges_an_image_drawn_smaller() -> None:
    source = noise((1344, 768))
    lay = layout(Edit(Tool.SQUARE), source.size, SDXL, LIMITS)
    image, mask = canvas.canvas_image(source, lay), canvas.outpaint_mask(lay)

    out = canvas.paste_back(Image.new("RGB", lay.drawn), image, mask, lay)

    assert out.size == (1344, 1344)
    assert np.array_equal(np.asarray(out)[296:1048], np.asarray(source)[8:760])


def test_a_region_mask_of_any_mode_is_white_wherever_it_is_not_black() -> None:
    drawn = Image.new("RGBA", (64, 40), (0, 0, 0, 255))
    drawn.paste((200, 0, 0, 255), (10, 10, 30, 20))  # a red stroke counts as white

    mask = canvas.read_mask(png(drawn), (64, 40))

    assert mask.mode == "L" and mask.getbbox() == (10, 10, 30, 20)
    assert set(np.unique(np.asarray(mask))) == {0, 255}
    half = canvas.read_mask(png(drawn.resize((32, 20), Image.Resampling.NEAREST)), (64, 40))
    assert half.size == (64, 40) and half.getbbox() == (10, 10, 30, 20)  # same shape: resized


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (png(Image.new("L", (64, 40), 0)), "the mask is empty"),
        (b"not a png", "the mask is not an image"),
        (png(Image.new("L", (40, 40), 255)), "the mask is 40×40 but the image is 64×40"),
    ],
)
def test_a_bad_region_mask_is_refused_with_what_works(data: bytes, message: str) -> None:
    with pytest.raises(CanvasError, match=message):
        canvas.read_mask(data, (64, 40))


def test_paste_back_of_a_region_keeps_everything_outside_the_mask() -> None:
    source = noise((128, 96), seed=3)
    lay = layout(Edit(Tool.REGION, mask="0" * 64), source.size, TINY, LIMITS)
    drawn = Image.new("L", source.size, 0)
    drawn.paste(255, (40, 30, 90, 70))
    mask = canvas.read_mask(png(drawn), source.size)

    out = np.asarray(canvas.paste_back(noise(source.size, 4), source, mask, lay))

    outside = np.asarray(mask) == 0
    assert np.array_equal(out[outside], np.asarray(source)[outside])
    assert not np.array_equal(out[50, 65], np.asarray(source)[50, 65])  # the region's middle
