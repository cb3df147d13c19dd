"""Image files for Discord uploads: results shrunk to the upload limit, previews named by type.

The functions here do CPU work (Pillow encoding); callers run them with `asyncio.to_thread`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import discord
from PIL import Image

JPEG_QUALITY = 92  # high enough that a re-encoded grid looks like the PNG
DOWNSCALE_STEP = 0.8  # each try past the first shrinks both sides by this
MIN_SIDE = 64
MIN_UPLOAD = 8 * 1024  # a refused upload is not shrunk below this: something else is wrong


@dataclass(frozen=True)
class Upload:
    """Bytes ready to attach. A fresh `discord.File` is built per request, since a request that
    failed has already read (and closed) the previous one."""

    data: bytes
    filename: str

    def file(self) -> discord.File:
        return discord.File(io.BytesIO(self.data), filename=self.filename)


def fit_image(path: Path, limit: int, stem: str) -> Upload:
    """The PNG at `path` as it is when it fits `limit` bytes; else a high-quality JPEG, then
    smaller ones until one fits."""
    return fit_bytes(path.read_bytes(), limit, stem)


def shrunk(upload: Upload) -> Upload | None:
    """`upload` re-encoded to half its size, for a Discord that refused it as too large (413:
    the upload limit was guessed, e.g. after a restart); None when it is small already."""
    limit = len(upload.data) // 2
    if limit < MIN_UPLOAD:
        return None
    return fit_bytes(upload.data, limit, upload.filename.rsplit(".", 1)[0])


def fit_bytes(data: bytes, limit: int, stem: str) -> Upload:
    """`data` (an image file) as it is when it fits `limit` bytes and is a PNG; else a
    high-quality JPEG, then smaller ones until one fits."""
    if len(data) <= limit and data.startswith(b"\x89PNG"):
        return Upload(data, f"{stem}.png")
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
    scale = 1.0
    while True:
        size = (max(MIN_SIDE, round(rgb.width * scale)), max(MIN_SIDE, round(rgb.height * scale)))
        resized = rgb if scale == 1.0 else rgb.resize(size, Image.Resampling.LANCZOS)
        out = io.BytesIO()
        resized.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
        if out.tell() <= limit or min(size) <= MIN_SIDE:
            return Upload(out.getvalue(), f"{stem}.jpg")
        scale *= DOWNSCALE_STEP


def preview_upload(data: bytes) -> Upload:
    """A progress preview as the engine sent it, named for its format."""
    if data.startswith(b"\x89PNG"):
        return Upload(data, "preview.png")
    if data[8:12] == b"WEBP":
        return Upload(data, "preview.webp")
    return Upload(data, "preview.jpg")
