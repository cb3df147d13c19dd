"""Edit jobs (Zoom Out, Pan, Make Square, Vary (Region)): from a source image and a `jobs.Edit`
to the canvas and mask the pipeline inpaints, and from its images back to the results.

The pipeline call itself is the shared one of engine.generate (`Batch.masks` makes it an
inpainting call, through `AutoPipelineForInpainting.from_pipe`, or the preset's dedicated
inpainting model). The geometry and the masks are engine.canvas's.

    work = prepare(job.edit, source, mask_png, preset, limits)  # GenerationError if impossible
    canvas, mask = work.drawn_inputs()  # at work.layout.drawn: what the pipeline is given
    images = [work.finish(image) for image in generated]  # the kept pixels pasted back
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from PIL import Image

from engine import canvas
from engine.canvas import Layout
from engine.config import JobLimits, ModelPreset
from engine.jobs import Edit, Tool
from engine.storage import InputStore

logger = logging.getLogger(__name__)

MASK_GONE = "the mask of this job is no longer in storage"


@dataclass(frozen=True)
class EditWork:
    """One edit's inputs at the result's size: the canvas (source in its box) and the mask."""

    layout: Layout
    canvas: Image.Image
    mask: Image.Image  # L, 255 = redraw

    def drawn_inputs(self) -> tuple[Image.Image, Image.Image]:
        """The canvas and mask at the size diffusion runs at."""
        drawn = self.layout.drawn
        if drawn == self.layout.size:
            return self.canvas, self.mask
        # Bilinear, not nearest: a thin seam band survives the shrinking (the pipeline binarizes).
        return (
            self.canvas.resize(drawn, Image.Resampling.LANCZOS),
            self.mask.resize(drawn, Image.Resampling.BILINEAR),
        )

    def finish(self, generated: Image.Image) -> Image.Image:
        """A generated image at the result's size with the kept pixels pasted back."""
        return canvas.paste_back(generated, self.canvas, self.mask, self.layout)


def prepare(
    edit: Edit,
    source: Image.Image,
    mask_png: bytes | None,
    preset: ModelPreset,
    limits: JobLimits,
) -> EditWork:
    """The canvas and mask of `edit` on `source`; CanvasError (a user-safe message) when the
    edit cannot be made (engine.generate turns it into a GenerationError)."""
    lay = canvas.layout(edit, source.size, preset, limits)
    if edit.tool is Tool.REGION:
        assert mask_png is not None  # Edit guarantees a region has a mask
        mask = canvas.read_mask(mask_png, source.size)
    else:
        mask = canvas.outpaint_mask(lay)
    image = canvas.canvas_image(source, lay)
    logger.info(
        "%s of a %d×%d image: %d×%d, drawn at %d×%d",
        edit.tool.value,
        *source.size,
        *lay.size,
        *lay.drawn,
    )
    return EditWork(lay, image, mask)


def mask_png(inputs: InputStore, digest: str) -> bytes:
    """The PNG bytes of a region's mask in the input store; FileNotFoundError when it is gone."""
    path = inputs.path(digest)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(MASK_GONE) from None


def metadata(edit: Edit, lay: Layout) -> dict[str, Any]:
    """The PNG metadata's "edit" entry: what was done, and where the source sits."""
    return {
        "tool": edit.tool.value,
        "zoom": edit.zoom if edit.tool is Tool.ZOOM else None,
        "aspect": None if edit.aspect is None else f"{edit.aspect[0]}:{edit.aspect[1]}",
        "direction": None if edit.direction is None else edit.direction.value,
        "mask": edit.mask,
        "box": list(lay.box),
        "drawn": list(lay.drawn),
    }
