"""Storage: retention (prune), a full disk while saving, and the start-up check."""

from __future__ import annotations

import errno
import io
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from engine.config import ConfigError, parse_engine_config
from engine.storage import (
    DISK_FULL,
    MIN_FREE_BYTES,
    ImageStore,
    InputStore,
    StorageError,
    check_storage,
    encode_png,
    prune,
    prune_inputs,
)

DAY = 86400.0
NOW = 1_800_000_000.0


def job_folder(images: Path, n: int, age_days: float, size: int = 1000) -> str:
    job_id = f"{n:032x}"
    folder = images / job_id
    folder.mkdir(parents=True)
    for name in ("0.png", "grid.png"):
        file = folder / name
        file.write_bytes(b"x" * size)
        os.utime(file, (NOW - age_days * DAY,) * 2)
    return job_id


def test_prune_deletes_folders_older_than_keep_days(tmp_path: Path) -> None:
    old, recent = job_folder(tmp_path, 1, 40), job_folder(tmp_path, 2, 5)

    removed = prune(tmp_path, keep_days=30, max_bytes=0, now=NOW)

    assert removed == [old]
    assert not (tmp_path / old).exists() and (tmp_path / recent).exists()


def test_prune_deletes_the_oldest_until_under_max_bytes(tmp_path: Path) -> None:
    ids = [job_folder(tmp_path, n, age, size=1000) for n, age in ((1, 3), (2, 2), (3, 1))]

    removed = prune(tmp_path, keep_days=0, max_bytes=4500, now=NOW)  # 6000 bytes in all

    assert removed == [ids[0]]  # 4000 left
    assert [p.name for p in sorted(tmp_path.iterdir())] == ids[1:]


def test_prune_never_deletes_a_protected_source(tmp_path: Path) -> None:
    source, other = job_folder(tmp_path, 1, 40), job_folder(tmp_path, 2, 40)

    assert prune(tmp_path, keep_days=1, max_bytes=0, protect={source}, now=NOW) == [other]
    assert (tmp_path / source).exists()


def test_prune_without_limits_or_images_deletes_nothing(tmp_path: Path) -> None:
    job_folder(tmp_path, 1, 400)
    (tmp_path / "not-a-job").mkdir()
    assert prune(tmp_path, keep_days=0, max_bytes=0, now=NOW) == []
    assert prune(tmp_path / "missing", keep_days=1, max_bytes=1, now=NOW) == []
    assert (tmp_path / "not-a-job").exists()


def test_a_full_disk_while_saving_leaves_nothing_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ImageStore(tmp_path)
    path = store.image_path("a" * 32, 0)

    def full(self: Path, data: bytes) -> int:
        with open(self, "wb") as file:
            file.write(data[:11])  # what a real write gets to before ENOSPC
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(StorageError) as info:
        store.save(Image.new("RGB", (8, 8)), path, {"prompt": "x"})

    assert info.value.strerror == DISK_FULL
    assert list(path.parent.iterdir()) == []  # no half-written file


def test_check_storage_accepts_a_writable_directory_and_makes_it(tmp_path: Path) -> None:
    check_storage(tmp_path / "new" / "data")
    assert (tmp_path / "new" / "data").is_dir()
    assert list((tmp_path / "new" / "data").iterdir()) == []  # the probe is gone


def test_check_storage_names_a_path_that_cannot_be_a_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StorageError, match=r"the storage .*file/data is not writable"):
        check_storage(blocker / "data")


def test_check_storage_refuses_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "engine.storage.shutil.disk_usage", lambda path: SimpleNamespace(free=MIN_FREE_BYTES - 1)
    )
    with pytest.raises(StorageError, match=r"is full .*MB free; at least 64 MB are needed"):
        check_storage(tmp_path)


def png_of(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), color).save(out, format="PNG")
    return out.getvalue()


def test_image_prompts_are_kept_by_content_and_pruned_after_keep_days_without_use(
    tmp_path: Path,
) -> None:
    store = InputStore(tmp_path / "inputs")
    old, used, queued = (store.put(png_of(c)) for c in ((1, 1, 1), (2, 2, 2), (3, 3, 3)))
    assert store.put(png_of((1, 1, 1))) == old  # the same content: one file
    for digest in (old, used, queued):
        os.utime(store.path(digest), (time.time() - 40 * DAY,) * 2)
    store.load(used)  # a job read it just now: its age starts again

    removed = prune_inputs(store.root, keep_days=30, protect={queued}, now=time.time())

    assert removed == 1
    assert not store.path(old).exists()
    assert store.path(used).exists() and store.path(queued).exists()
    assert prune_inputs(store.root, keep_days=0) == 0  # 0: kept for ever
    with pytest.raises(ValueError):
        store.path("../../etc/passwd")


def _idat_zlib_level(png: bytes) -> int:
    """FLEVEL of the first IDAT's zlib header: 0 is what zlib writes for the fastest modes
    (Huffman-only among them), 2 for its default level."""
    start = png.index(b"IDAT") + 4
    return png[start + 1] >> 6


def _picture() -> np.ndarray:
    """A picture like a diffusion model's: smooth colour fields with fine grain."""
    rng = np.random.default_rng(0)
    low = Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8))
    smooth = np.asarray(low.resize((256, 256), Image.Resampling.BICUBIC)).astype(np.int16)
    return np.clip(smooth + rng.normal(0, 4, smooth.shape), 0, 255).astype(np.uint8)


def test_fast_pngs_are_at_most_a_third_larger_than_the_default() -> None:
    image = Image.fromarray(_picture())
    default = io.BytesIO()
    image.save(default, format="PNG")
    assert len(encode_png(image, {}, "fast")) <= len(default.getvalue()) * 1.33  # here: 1.14


def test_compact_pngs_are_lossless_huffman_only_and_no_bigger_than_the_default(
    tmp_path: Path,
) -> None:
    pixels = _picture()
    image = Image.fromarray(pixels)
    store = ImageStore(tmp_path, png="compact")
    path = store.save(image, store.image_path("a" * 32, 0), {"seed": 7})
    saved = path.read_bytes()
    default = io.BytesIO()
    image.save(default, format="PNG")
    assert _idat_zlib_level(saved) == 0 and _idat_zlib_level(default.getvalue()) == 2
    assert len(saved) <= len(default.getvalue()) * 1.01
    with Image.open(path) as back:
        assert np.array_equal(np.asarray(back.convert("RGB")), pixels)
        assert "imagine-bot" in back.text


@pytest.mark.parametrize("encoder", ["fast", "compact"])
def test_both_png_encoders_are_lossless_and_keep_the_parameters(
    tmp_path: Path, encoder: str
) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    pixels[:, :32] = pixels[:, :1]  # flat runs too, as in a picture
    store = ImageStore(tmp_path, png=encoder)
    metadata = {"prompt": "a lighthouse ü 灯台", "seed": 7, "steps": 20, "negative_prompt": ""}

    path = store.save(Image.fromarray(pixels), store.image_path("b" * 32, 0), metadata)

    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        assert np.array_equal(np.asarray(image), pixels)
        assert json.loads(image.info["imagine-bot"]) == metadata
        assert image.info["parameters"].startswith("a lighthouse ü 灯台\n")
    assert list(path.parent.iterdir()) == [path]


def test_the_fast_encoder_writes_text_chunks_as_pillow_does() -> None:
    image = Image.new("RGBA", (5, 3), (10, 20, 30, 40))
    texts = {"latin": "café", "unicode": "灯台"}

    fast, compact = encode_png(image, texts, "fast"), encode_png(image, texts, "compact")

    for png in (fast, compact):
        with Image.open(io.BytesIO(png)) as decoded:
            assert decoded.mode == "RGBA" and decoded.getpixel((4, 2)) == (10, 20, 30, 40)
            assert {key: decoded.info[key] for key in texts} == texts
    grey = Image.new("LA", (2, 2), (100, 50))  # other modes: as RGB, or RGBA with their alpha
    with Image.open(io.BytesIO(encode_png(grey, {}, "fast"))) as decoded:
        assert decoded.mode == "RGBA" and decoded.getpixel((0, 0)) == (100, 100, 100, 50)
    # the same chunks, byte for byte: tEXt for Latin-1, iTXt for the rest
    assert b"tEXtlatin\x00caf\xe9" in fast and b"tEXtlatin\x00caf\xe9" in compact
    assert "iTXtunicode\x00\x00\x00\x00\x00灯台".encode() in fast
    assert "iTXtunicode\x00\x00\x00\x00\x00灯台".encode() in compact


def test_storage_png_is_read_from_the_config() -> None:
    assert parse_engine_config({}).png == "fast"
    assert parse_engine_config({"storage": {"png": "compact"}}).png == "compact"
    with pytest.raises(ConfigError, match=r"storage\.png must be one of fast, compact"):
        parse_engine_config({"storage": {"png": "webp"}})
