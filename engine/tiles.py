"""Upscale tiles: overlapping boxes that cover an enlarged image, and blending them back.

Each tile is redrawn by img2img at the preset's base size, so a 2× upscale never runs the UNet
on the whole enlarged image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

TILE_OVERLAP = 8  # 1/8 of a tile's side overlaps its neighbour, blended linearly


def tile_boxes(size: tuple[int, int], tile: int) -> list[tuple[int, int, int, int]]:
    """Overlapping tile×tile boxes covering an image (one box per axis when it fits)."""

    def starts(length: int) -> list[int]:
        if length <= tile:
            return [0]
        stride = tile - tile // TILE_OVERLAP
        positions = list(range(0, length - tile, stride))
        return [*positions, length - tile]

    width, height = size
    tw, th = min(tile, width), min(tile, height)
    return [(x, y, x + tw, y + th) for y in starts(height) for x in starts(width)]


def blend_tiles(
    size: tuple[int, int], boxes: Sequence[tuple[int, int, int, int]], tiles: Sequence[Image.Image]
) -> Image.Image:
    """Average overlapping tiles with weights that fall off linearly towards each tile's edge."""
    width, height = size
    total = np.zeros((height, width, 3), np.float64)
    weight = np.zeros((height, width, 1), np.float64)
    for (x0, y0, x1, y1), tile in zip(boxes, tiles, strict=True):
        w, h = x1 - x0, y1 - y0
        ramp_x = np.minimum(np.arange(w) + 1, np.arange(w)[::-1] + 1).astype(np.float64)
        ramp_y = np.minimum(np.arange(h) + 1, np.arange(h)[::-1] + 1).astype(np.float64)
        mask = np.minimum.outer(ramp_y, ramp_x)[..., None]
        total[y0:y1, x0:x1] += np.asarray(tile.convert("RGB"), np.float64) * mask
        weight[y0:y1, x0:x1] += mask
    return Image.fromarray(np.clip(total / weight, 0, 255).round().astype(np.uint8))
