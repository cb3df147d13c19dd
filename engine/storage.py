"""Where finished images live: `<storage>/images/<job id>/<index>.png` and `grid.png`.

Every PNG carries its full generation parameters as text chunks ("parameters" in the widespread
A1111 style for other tools, "imagine-bot" as JSON for ours). Pure Python (Pillow, no torch).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import shutil
import time
import uuid
import zlib
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps
from PIL.PngImagePlugin import PngInfo

METADATA_KEY = "imagine-bot"
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
MIN_FREE_BYTES = 64 * 1024 * 1024  # below this at start-up the disk counts as full
DISK_FULL = (
    "the server's disk is full: the images could not be saved "
    "(its owner can free space, or set [storage] max_gb)"
)
_FULL = (errno.ENOSPC, errno.EDQUOT)


# The two ways to write PNGs ([storage] png), both lossless with the same text chunks; a job's
# Done waits for its files, so this is on the way to every grid (docs/benchmarks.md):
# - "fast": fpng, about 10× less CPU time than Pillow (a 1024² grid: 5–8 against 80–130 ms;
#   2048²: 23–51 against 265 ms), files about a quarter larger;
# - "compact": Pillow with zlib's Huffman-only strategy (PNG's row filters already take what
#   LZ77 would find in a diffusion picture): the size of Pillow's default (within 0.1%) in half
#   its time or less.
PNG_OPTIONS: dict[str, Any] = {"format": "PNG", "compress_type": zlib.Z_HUFFMAN_ONLY}
_IHDR_END = 8 + 4 + 4 + 13 + 4  # the signature, then IHDR (length, type, 13 bytes, CRC)


class StorageError(OSError):
    """Storage that cannot take images (full, or not writable); the message says which."""


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """`write` to a temporary file beside `path`, then rename it there: a crash never leaves half
    a file, and a full disk leaves nothing behind and raises StorageError(DISK_FULL)."""
    tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if error.errno in _FULL:
            raise StorageError(error.errno, DISK_FULL) from error
        raise
    return path


def encode_png(image: Image.Image, texts: Mapping[str, str], encoder: str = "fast") -> bytes:
    """`image` as a PNG (RGB, or RGBA when it has alpha) with `texts` as text chunks, by
    `encoder` ("fast" or "compact": above)."""
    if image.mode not in ("RGB", "RGBA"):
        alpha = "A" in image.getbands() or "transparency" in image.info
        image = image.convert("RGBA" if alpha else "RGB")
    if encoder == "compact":
        info = PngInfo()
        for key, value in texts.items():
            info.add_text(key, value)
        out = io.BytesIO()
        image.save(out, pnginfo=info, **PNG_OPTIONS)
        return out.getvalue()
    import fpng  # here, not at the top: it sets itself up (CPU detection) on import

    png = fpng.from_bytes(image.tobytes(), image.width, image.height, len(image.mode))
    if png[12:16] != b"IHDR":
        raise ValueError("fpng wrote an unexpected PNG (no IHDR first)")
    chunks = b"".join(_text_chunk(key, value) for key, value in texts.items())
    return png[:_IHDR_END] + chunks + png[_IHDR_END:]


def _text_chunk(key: str, value: str) -> bytes:
    """A tEXt chunk (Latin-1 text), else an uncompressed iTXt one (UTF-8): as Pillow writes them."""
    try:
        kind, data = b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1")
    except UnicodeEncodeError:  # flag, method, language and translated keyword: all empty
        kind, data = b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8")
    body = kind + data
    return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")


class ImageStore:
    def __init__(self, root: Path, png: str = "fast"):
        self.root = root
        self.png = png  # the encoder ([storage] png)

    def job_dir(self, job_id: str) -> Path:
        if not _JOB_ID.match(
            job_id
        ):  # job ids reach here from button custom_ids: never trust a path
            raise ValueError(f"not a job id: {job_id!r}")
        return self.root / job_id

    def image_path(self, job_id: str, index: int) -> Path:
        return self.job_dir(job_id) / f"{index}.png"

    def grid_path(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "grid.png"

    def save(self, image: Image.Image, path: Path, metadata: Mapping[str, Any]) -> Path:
        """Write atomically (temp file + rename) so a crash never leaves half an image; a full
        disk leaves nothing behind and raises StorageError(DISK_FULL)."""
        texts = {
            "parameters": a1111_parameters(metadata),
            METADATA_KEY: json.dumps(dict(metadata), sort_keys=True),
        }
        png = encode_png(image, texts, self.png)
        return write_atomically(path, lambda tmp: tmp.write_bytes(png))

    def load(self, job_id: str, index: int) -> Image.Image:
        path = self.image_path(job_id, index)
        if not path.exists():
            raise FileNotFoundError(f"image {index + 1} of job {job_id} is not in storage")
        with Image.open(path) as image:
            return image.convert("RGB")


_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def upright_rgb(image: Image.Image) -> Image.Image:
    """`image` as an image prompt is kept: its EXIF rotation applied, transparency flattened
    onto white, RGB."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    return image.convert("RGB")


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class InputStore:
    """Images users gave (image prompts), by the sha256 of their PNG: fetched once by the bot,
    read by the engine for every job that uses them (🔄, V, a resumed job) without a fetch."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, digest: str) -> Path:
        if not _DIGEST.match(digest):  # digests reach here from stored jobs: never trust a path
            raise ValueError(f"not an image digest: {digest!r}")
        return self.root / f"{digest}.png"

    def put(self, png: bytes) -> str:
        """Keep `png` (atomically; once per content); its digest."""
        digest = hashlib.sha256(png).hexdigest()
        path = self.path(digest)
        if path.exists():
            _touch(path)
            return digest
        write_atomically(path, lambda tmp: tmp.write_bytes(png))
        return digest

    def load(self, digest: str) -> Image.Image:
        path = self.path(digest)
        if not path.exists():
            raise FileNotFoundError("an image prompt of this job is no longer in storage")
        _touch(path)  # in use: retention counts an image prompt's age from its last use
        with Image.open(path) as image:
            return image.convert("RGB")


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.utime(path)


def prune_inputs(
    inputs: Path, *, keep_days: float, protect: Collection[str] = (), now: float | None = None
) -> int:
    """Delete the image prompts not used for `keep_days` (0: keep them), but those named in
    `protect` (of jobs still to run); how many were deleted."""
    if keep_days <= 0 or not inputs.is_dir():
        return 0
    now = time.time() if now is None else now
    removed = 0
    for path in inputs.glob("*.png"):
        if path.stem in protect or not _DIGEST.match(path.stem):
            continue
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime > keep_days * 86400:
                path.unlink()
                removed += 1
    return removed


def check_storage(root: Path) -> None:
    """At start-up: the storage directory exists (or can be made), takes a file, and its disk is
    not full. StorageError names the directory and the problem."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-test-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as error:
        if error.errno in _FULL:
            raise StorageError(error.errno, f"the disk of the storage {root} is full") from error
        raise StorageError(
            error.errno, f"the storage {root} is not writable: {error.strerror or error}"
        ) from error
    free = shutil.disk_usage(root).free
    if free < MIN_FREE_BYTES:
        raise StorageError(
            errno.ENOSPC,
            f"the disk of the storage {root} is full ({free // (1024 * 1024)} MB free; "
            f"at least {MIN_FREE_BYTES // (1024 * 1024)} MB are needed)",
        )


def prune(
    images: Path,
    *,
    keep_days: float,
    max_bytes: int,
    protect: Collection[str] = (),
    now: float | None = None,
) -> list[str]:
    """Delete whole job folders, oldest first: every one older than `keep_days` (0: no age
    limit), then more while all of them take more than `max_bytes` (0: no size limit). Folders
    named in `protect` (the sources of jobs still to run) stay. The job ids removed."""
    now = time.time() if now is None else now
    folders = []
    for folder in images.iterdir() if images.is_dir() else ():
        if not (folder.is_dir() and _JOB_ID.match(folder.name)):
            continue
        files = [f.stat() for f in folder.iterdir() if f.is_file()]
        newest = max((f.st_mtime for f in files), default=folder.stat().st_mtime)
        folders.append((newest, sum(f.st_size for f in files), folder))
    folders.sort()  # oldest first
    total = sum(size for _, size, _ in folders)
    removed: list[str] = []
    for newest, size, folder in folders:
        too_old = keep_days > 0 and now - newest > keep_days * 86400
        too_much = max_bytes > 0 and total > max_bytes
        if not (too_old or too_much) or folder.name in protect:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        total -= size
        removed.append(folder.name)
    return removed


def read_metadata(path: Path) -> dict[str, Any]:
    with Image.open(path) as image:
        text = image.info.get(METADATA_KEY)
    return json.loads(text) if text else {}


def a1111_parameters(meta: Mapping[str, Any]) -> str:
    """The "parameters" text other tools (A1111, ComfyUI readers, civitai) understand."""
    lines = [str(meta.get("prompt", ""))]
    if meta.get("negative_prompt"):
        lines.append(f"Negative prompt: {meta['negative_prompt']}")
    hires = meta.get("hd_steps")  # --hd: A1111 counts the second ("hires") pass on its own
    steps = meta.get("steps")
    fields = {
        "Steps": steps - hires if isinstance(steps, int) and isinstance(hires, int) else steps,
        "Sampler": meta.get("sampler"),
        "CFG scale": meta.get("guidance"),
        "Seed": meta.get("seed"),
        "Size": f"{meta.get('width')}x{meta.get('height')}",
        "Model": meta.get("model"),
        "Model hash": meta.get("model_revision"),
        "Denoising strength": meta.get("strength") or meta.get("hd_strength"),
        "Hires steps": hires,
    }
    lines.append(", ".join(f"{k}: {v}" for k, v in fields.items() if v is not None))
    return "\n".join(lines)
