"""The 2×2 grid Midjourney users know: image 1 top left, 2 top right, 3 bottom left, 4 bottom
right."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image


def make_grid(images: Sequence[Image.Image], columns: int = 2) -> Image.Image:
    if not images:
        raise ValueError("a grid needs at least one image")
    width, height = images[0].size
    if any(im.size != (width, height) for im in images):
        raise ValueError("grid images must all have the same size")
    rows = -(-len(images) // columns)
    grid = Image.new("RGB", (width * min(columns, len(images)), height * rows))
    for i, image in enumerate(images):
        grid.paste(image, ((i % columns) * width, (i // columns) * height))
    return grid
