"""The geometry of Midjourney's image tools, and their canvases, masks and paste-back.

Pure Python + Pillow (no torch): the bot imports `layout` to refuse an impossible edit before
it queues it. Sizes are (width, height); a box is (x0, y0, x1, y1) in the result's pixels.

The rules (`layout`), for a source of sw×sh pixels:

- ZOOM (Zoom Out 2x / 1.5x / Custom Zoom, factor z from 1 to 2): the canvas has the shape W:H of
  `edit.aspect`, or the source's when None. In source pixels it is the smallest rectangle of that
  shape holding sw·z × sh·z, the source in its middle. The result has about sw·sh pixels in that
  shape: its sides are multiples of 8 whose ratio is within 2% of W:H (the pixel count nearest
  sw·sh among those, which on a 128² image can be 16% off; where no multiple of 8 comes within
  2%, the nearest ratio), at most max_pixels. The source is scaled by the factor that maps the
  canvas's binding side (the one the zoomed source fills) onto the result's, cut to the result,
  and centred. Zoom Out 2x of 1024² → 1024², the source at 512² in the middle (256, 256, 768,
  768); zoom 1 with --ar 16:9 on 1024² → 1368×768, the square shrunk to 768² at full height (on
  128²: 168×96, the square 96²).
  A zoom that adds nothing (zoom 1 in the source's own shape) is refused.
- PAN (⬅️ ➡️ ⬆️ ⬇️): the canvas grows on that side by half the image's side along it, rounded to
  a multiple of 8 (1024² panned right → 1536×1024); the source stays at full size at its place
  (the box is its exact pixels). Refused when the canvas would pass 8:1 (MAX_ASPECT) either way.
  Each pan multiplies the ratio along it by 1.5, so at the default max_pixels (5 M) pans the
  same way from 1024² stop after five (6160×808, 7.6:1: the sixth is refused), from 1344×768
  (16:9) after three (4536×768, 5.9:1), from 768×1344 sideways after six (5704×872, 6.5:1).
- SQUARE (Make Square): a long side L × short side → L × L, the source at full size, centred on
  the short axis. Refused for a square image.
- REGION (Vary (Region)): the result is the source's size; the box is the whole image; the
  user's mask (white = redraw) says what is redrawn.
- PAN and SQUARE over max_pixels ([limits]): the whole canvas is scaled down to its shape under
  max_pixels (`resolution.within_pixels`: sides multiples of 8, the ratio within 2%) — the
  source with it (then the kept pixels are the source's resized, as for ZOOM).
- `drawn`, the size diffusion runs at: the result's size (its sides rounded to multiples of 8)
  while it has at most OUTPAINT_BUDGET × base_resolution² pixels (1.5: one pan of a square is
  drawn at full size), else the result's shape at that budget (`resolution.fit_pixels`); within
  max_pixels too. A result larger than `drawn` is drawn at `drawn`, enlarged (Lanczos), and the
  kept pixels are pasted back at full size.

Masks are L images, white (255) = redraw. For outpainting (ZOOM, PAN, SQUARE): white outside the
box, and a band of `seam_width` px (SEAM at full size, less on small images) just inside each
box edge that borders new area, so the seam itself is redrawn. Paste-back composites the canvas
over the generated image through an alpha that is 255 wherever the mask is black (those pixels
equal the canvas's, bit for bit) and ramps down to 0 over `seam_width` px into the white area; it
is 0 outside the box (no stretched fill is ever kept).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter, UnidentifiedImageError

from engine.config import JobLimits, ModelPreset
from engine.jobs import Direction, Edit, Tool
from engine.prompt.request import MAX_ASPECT
from engine.resolution import STEP as SIDE_STEP
from engine.resolution import fit_pixels, within_pixels

OUTPAINT_BUDGET = 1.5  # × base_resolution² pixels drawn at most: one pan of a square at full size
SEAM = 8  # px of the kept image redrawn and feathered along a new edge, at full size (1024²)
RATIO_TOLERANCE = 0.02  # a zoomed canvas's ratio is within 2% of the one asked
_FILL_BLUR = 16  # the new area starts as the edges stretched out, blurred by 1/16 of the side

Box = tuple[int, int, int, int]


class CanvasError(ValueError):
    """An edit that cannot be made; the message, safe to show a user, says what is possible."""


@dataclass(frozen=True)
class Layout:
    """Where an edit's source goes: `size` of the result, the source resized into `box`, the
    diffusion run at `drawn` (multiples of 8)."""

    size: tuple[int, int]
    box: Box
    drawn: tuple[int, int]


def layout(edit: Edit, source: tuple[int, int], preset: ModelPreset, limits: JobLimits) -> Layout:
    """The result size, source box and drawn size of `edit` on a source of `source` pixels (the
    rules: the module docstring). CanvasError for an edit that cannot be made."""
    width, height = source
    if width < 1 or height < 1:
        raise CanvasError("the image is empty")
    if edit.tool is Tool.ZOOM:
        size, box = _zoom(edit, source, limits)
    elif edit.tool is Tool.PAN:
        assert edit.direction is not None
        size, box = _fit(*_pan(edit.direction, source), limits)
    elif edit.tool is Tool.SQUARE:
        size, box = _fit(*_square(source), limits)
    else:
        size, box = source, (0, 0, width, height)
    if edit.tool is not Tool.REGION and box == (0, 0, *size):
        raise CanvasError(
            "this zoom adds nothing around the image: zoom out by more than 1, "
            "or give another aspect ratio (--ar)"
        )
    return Layout(size, box, drawn_size(size, preset, limits))


def drawn_size(size: tuple[int, int], preset: ModelPreset, limits: JobLimits) -> tuple[int, int]:
    """What a result of `size` is drawn at: itself (sides to multiples of 8) within the budget,
    else its shape at OUTPAINT_BUDGET × base² pixels; within max_pixels."""
    width, height = size
    budget = min(OUTPAINT_BUDGET * preset.base_resolution**2, limits.max_pixels)
    if width * height <= budget:
        return _round8(width), _round8(height)
    return fit_pixels(size, int(budget))


def _zoom(edit: Edit, source: tuple[int, int], limits: JobLimits) -> tuple[tuple[int, int], Box]:
    width, height = source
    aspect_w, aspect_h = edit.aspect or source
    if aspect_w <= 0 or aspect_h <= 0:
        raise CanvasError(f"the aspect ratio {aspect_w}:{aspect_h} needs two positive numbers")
    ratio = aspect_w / aspect_h
    if not 1 / MAX_ASPECT <= ratio <= MAX_ASPECT:
        raise CanvasError(f"the aspect ratio can be from 1:{MAX_ASPECT} to {MAX_ASPECT}:1")
    # The canvas in source pixels: the smallest of the shape holding the zoomed source.
    canvas_w = max(width * edit.zoom, height * edit.zoom * ratio)
    canvas_h = canvas_w / ratio
    size = _shaped(min(width * height, limits.max_pixels), ratio, limits.max_pixels)
    # Scaled as the side that set the canvas's size: the source spans the result's full height
    # (or width) when only the shape changes, though rounding moved the ratio by up to 2%.
    by_width = width * edit.zoom >= height * edit.zoom * ratio
    scale = size[0] / canvas_w if by_width else size[1] / canvas_h
    kept = (min(size[0], round(width * scale)), min(size[1], round(height * scale)))
    return size, _centred(size, kept)


def _shaped(pixels: float, ratio: float, cap: int) -> tuple[int, int]:
    """Sides, multiples of 8, of about `pixels` pixels (at most `cap`) with a ratio within 2% of
    `ratio`: the nearest pixel count among those (on small images that can be ±16%)."""
    ideal_h = math.sqrt(pixels / ratio)
    candidates = []
    for height in range(SIDE_STEP, _round8(ideal_h * 2) + 1, SIDE_STEP):
        width = _round8(height * ratio)
        if width * height <= cap or height <= SIDE_STEP:
            candidates.append((width, height))
    fitting = [s for s in candidates if abs(s[0] / s[1] / ratio - 1) <= RATIO_TOLERANCE]
    if fitting:
        return min(fitting, key=lambda s: abs(s[0] * s[1] - pixels))
    return min(candidates, key=lambda s: (abs(math.log(s[0] / s[1] / ratio)), -s[0] * s[1]))


def _pan(direction: Direction, source: tuple[int, int]) -> tuple[tuple[int, int], Box]:
    width, height = source
    if direction in (Direction.LEFT, Direction.RIGHT):
        grow = _round8(width / 2)
        size = (width + grow, height)
        box = (grow, 0, grow + width, height) if direction is Direction.LEFT else (0, 0, *source)
        if size[0] > MAX_ASPECT * size[1]:
            raise CanvasError(
                f"can't pan further {direction.value}: the image would be wider than "
                f"{MAX_ASPECT}:1 (pan up or down, or zoom out, instead)"
            )
    else:
        grow = _round8(height / 2)
        size = (width, height + grow)
        box = (0, grow, width, grow + height) if direction is Direction.UP else (0, 0, *source)
        if size[1] > MAX_ASPECT * size[0]:
            raise CanvasError(
                f"can't pan further {direction.value}: the image would be taller than "
                f"1:{MAX_ASPECT} (pan left or right, or zoom out, instead)"
            )
    return size, box


def _square(source: tuple[int, int]) -> tuple[tuple[int, int], Box]:
    width, height = source
    if width == height:
        raise CanvasError(
            "the image is already square: Make Square works on portrait and landscape images"
        )
    side = max(width, height)
    return (side, side), _centred((side, side), source)


def _fit(size: tuple[int, int], box: Box, limits: JobLimits) -> tuple[tuple[int, int], Box]:
    """`size` and `box`, the whole canvas scaled down when it has more than max_pixels."""
    fitted = within_pixels(size, limits.max_pixels)
    if fitted == size:
        return size, box
    sx, sy = fitted[0] / size[0], fitted[1] / size[1]
    x0, y0, x1, y1 = box
    return fitted, (round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y1 * sy))


def _centred(size: tuple[int, int], kept: tuple[int, int]) -> Box:
    x0, y0 = (size[0] - kept[0]) // 2, (size[1] - kept[1]) // 2
    return x0, y0, x0 + kept[0], y0 + kept[1]


def _round8(value: float) -> int:
    return max(SIDE_STEP, math.floor(value / SIDE_STEP + 0.5) * SIDE_STEP)


# The canvas, the masks and the paste-back.


def seam_width(size: tuple[int, int]) -> int:
    """The seam band's width: SEAM px, less on images under 256 px a side (1 px per 32)."""
    return max(1, min(SEAM, min(size) // 32))


def canvas_image(source: Image.Image, lay: Layout) -> Image.Image:
    """The source resized into the box, the new area its edges stretched outwards and blurred
    (a start that is not a hard border; the pipeline redraws it whole at strength 1)."""
    x0, y0, x1, y1 = lay.box
    kept = kept_pixels(source, lay)
    placed = np.asarray(kept)
    width, height = lay.size
    cols = np.clip(np.arange(width) - x0, 0, x1 - x0 - 1)
    rows = np.clip(np.arange(height) - y0, 0, y1 - y0 - 1)
    stretched = Image.fromarray(placed[rows][:, cols])
    # Blurred at an eighth of the size (the same look, 64× less work), then enlarged back.
    small = stretched.resize((max(1, width // 8), max(1, height // 8)), Image.Resampling.BOX)
    radius = max(1, min(small.size) // _FILL_BLUR)
    canvas = small.filter(ImageFilter.GaussianBlur(radius)).resize(
        lay.size, Image.Resampling.BILINEAR
    )
    canvas.paste(kept, (x0, y0))
    return canvas


def kept_pixels(source: Image.Image, lay: Layout) -> Image.Image:
    """The source as it sits in the box: itself, or resized (Lanczos) when the box differs."""
    x0, y0, x1, y1 = lay.box
    rgb = source.convert("RGB")
    if rgb.size == (x1 - x0, y1 - y0):
        return rgb
    return rgb.resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS)


def outpaint_mask(lay: Layout) -> Image.Image:
    """White outside the box and in a seam band inside each box edge that borders new area."""
    x0, y0, x1, y1 = lay.box
    width, height = lay.size
    seam = seam_width(lay.size)
    mask = Image.new("L", lay.size, 255)
    inner = (
        x0 + seam if x0 > 0 else 0,
        y0 + seam if y0 > 0 else 0,
        x1 - seam if x1 < width else width,
        y1 - seam if y1 < height else height,
    )
    if inner[0] < inner[2] and inner[1] < inner[3]:
        mask.paste(0, inner)
    return mask


def read_mask(data: bytes, size: tuple[int, int]) -> Image.Image:
    """A Vary (Region) mask as an L image of `size` (the source's): 255 where the PNG is not
    black (any channel above 0), else 0. A mask of another size but the same shape is resized
    (nearest). CanvasError when it is not an image, of another shape, or all black."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            rgb = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise CanvasError(
            "the mask is not an image: it must be a PNG of the image's size, "
            "white where to redraw and black where to keep"
        ) from error
    mask = Image.fromarray(np.where(rgb.max(axis=2) > 0, 255, 0).astype(np.uint8))
    if mask.size != size:
        if abs(mask.width * size[1] - mask.height * size[0]) > 0.01 * mask.height * size[0]:
            raise CanvasError(
                f"the mask is {mask.width}×{mask.height} but the image is {size[0]}×{size[1]}: "
                "draw it at the image's size (or the same shape)"
            )
        mask = mask.resize(size, Image.Resampling.NEAREST)
    if mask.getbbox() is None:
        raise CanvasError("the mask is empty (all black): paint the area to redraw in white")
    return mask


def keep_alpha(mask: Image.Image, box: Box) -> Image.Image:
    """How much of the canvas each result pixel keeps: 255 where `mask` is black, ramping down
    to 0 over `seam_width` px into the white area (Chebyshev distance), 0 outside `box`."""
    seam = seam_width(mask.size)
    reach = np.asarray(mask) < 128  # the kept area, grown by a pixel each round
    count = np.zeros(reach.shape, np.int32)
    for _ in range(seam):
        count += reach
        reach = _grow(reach)
    alpha = np.zeros_like(count)  # integer steps: exactly 255 at distance 0
    x0, y0, x1, y1 = box
    alpha[y0:y1, x0:x1] = (255 * count[y0:y1, x0:x1]) // seam
    return Image.fromarray(alpha.astype(np.uint8))


def _grow(area: np.ndarray) -> np.ndarray:
    """`area` (bool) grown by one pixel in all 8 directions (a 3×3 dilation)."""
    wide = area.copy()
    wide[:, 1:] |= area[:, :-1]
    wide[:, :-1] |= area[:, 1:]
    grown = wide.copy()
    grown[1:] |= wide[:-1]
    grown[:-1] |= wide[1:]
    return grown


def paste_back(
    generated: Image.Image, canvas: Image.Image, mask: Image.Image, lay: Layout
) -> Image.Image:
    """The generated image (enlarged to the result's size when drawn smaller) with the canvas's
    kept pixels composited over it through `keep_alpha`."""
    full = generated.convert("RGB")
    if full.size != lay.size:
        full = full.resize(lay.size, Image.Resampling.LANCZOS)
    return Image.composite(canvas, full, keep_alpha(mask, lay.box))
