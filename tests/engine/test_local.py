"""`imagine-bot local`: the whole path a user takes without Discord, through the engine process."""

from __future__ import annotations

import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.cli import main
from engine.prompt.parser import BLEND_IMAGE_WEIGHT
from engine.storage import read_metadata


def write_config(tmp_path: Path, models_dir: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[engine]\nmodel = "tiny"\ncache_dir = "{models_dir}"\n[storage]\npath = "data"\n'
    )
    return config


def test_local_writes_the_grid_and_four_images_and_is_reproducible(
    tmp_path: Path, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, models_dir)
    prompt = "a red fox --ar 3:2 --seed 42"

    assert main(["local", prompt, "--out", str(tmp_path / "fox.png"), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert (
        main(["local", prompt, "--out", str(tmp_path / "again.png"), "--config", str(config)]) == 0
    )

    for seed, n in zip(range(42, 46), range(1, 5), strict=True):
        assert f"seed {seed}  {tmp_path / f'fox_{n}.png'}" in out
        assert read_metadata(tmp_path / f"fox_{n}.png")["seed"] == seed
    with Image.open(tmp_path / "fox.png") as grid, Image.open(tmp_path / "again.png") as again:
        assert grid.size == (336, 224)  # 2 × 2 of the tiny preset's 3:2, 168×112
        assert np.array_equal(np.asarray(grid), np.asarray(again))
    assert (tmp_path / "data" / "images").is_dir()  # storage is relative to the config file


def test_local_rejects_an_invalid_prompt_with_status_2(
    tmp_path: Path, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, models_dir)

    status = main(["local", "a fox --chaos 250", "--config", str(config)])

    assert status == 2
    assert "--chaos must be a whole number from 0 to 100, got 250" in capsys.readouterr().err
    assert not (tmp_path / "grid.png").exists()


def test_local_rejects_an_unknown_model_with_status_2(
    tmp_path: Path, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        ["local", "a fox", "--model", "nope", "--config", str(write_config(tmp_path, models_dir))]
    )

    assert status == 2
    assert "unknown model 'nope'; the presets are:" in capsys.readouterr().err


def test_a_bad_config_file_names_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[engine]\nmodle = "tiny"\n')

    assert main(["local", "a fox", "--config", str(config)]) == 2
    assert "engine.modle" in capsys.readouterr().err


def test_local_runs_a_pasted_gallery_prompt_and_says_what_it_changed(
    tmp_path: Path, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, models_dir)
    config.write_text(config.read_text() + '[versions]\n"6.1" = "tiny-xl"\n')
    prompt = (
        "ethereal forest spirit, volumetric fog —ar 16:9 --v 6.1 --style raw --s 250 --q .5 "
        "--seed 9 --video"
    )

    status = main(["local", prompt, "--out", str(tmp_path / "spirit.png"), "--config", str(config)])

    assert status == 0
    captured = capsys.readouterr()
    assert "note: `--v 6.1` is a Midjourney model; here it ran on tiny-xl\n" in captured.err
    assert "note: video is not available on this server: `--video` ignored" in captured.err
    assert "model tiny-xl" in captured.out
    meta = read_metadata(tmp_path / "spirit_1.png")
    assert (meta["model"], meta["seed"], meta["stylize"]) == ("tiny-xl", 9, 0)  # raw: no style
    with Image.open(tmp_path / "spirit.png") as grid:
        assert grid.width > grid.height


def test_local_refuses_storage_it_cannot_write_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("")
    config = tmp_path / "config.toml"
    config.write_text('[engine]\nmodel = "tiny"\n[storage]\npath = "a-file/data"\n')

    assert main(["local", "a fox", "--config", str(config)]) == 2
    assert "Storage: the storage" in capsys.readouterr().err


def test_local_takes_image_prompt_files(
    tmp_path: Path, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, models_dir)
    picture = tmp_path / "start.png"
    Image.new("RGBA", (200, 120), (20, 120, 200, 255)).save(picture)
    args = ["local", "a lake --iw 2 --seed 3", "--config", str(config), "--image", str(picture)]

    assert main([*args, "--out", str(tmp_path / "lake.png")]) == 0
    assert "weighs image prompts" not in capsys.readouterr().err  # the file is one
    meta = read_metadata(tmp_path / "lake_1.png")
    assert len(meta["image_prompts"]) == 1 and meta["image_weight"] == 2.0
    assert meta["image_prompt_mode"] == "adapter"  # the tiny preset's IP-Adapter
    kept = tmp_path / "data" / "inputs" / f"{meta['image_prompts'][0]}.png"
    with Image.open(kept) as image:
        assert (image.mode, image.size) == ("RGB", (200, 120))  # kept as the bot keeps them

    missing = ["local", "a lake", "--config", str(config), "--image", str(tmp_path / "no.png")]
    capsys.readouterr()
    assert main(missing) == 2
    err = capsys.readouterr().err
    assert "Image: could not read" in err and "no.png" in err, err


def test_local_blends_two_image_files_without_text(
    tmp_path: Path, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two images and no text are a blend, however the images are given; one is not enough."""
    config = write_config(tmp_path, models_dir)
    files = []
    for name, color in (("a.png", (200, 20, 20)), ("b.png", (20, 20, 200))):
        Image.new("RGB", (64, 64), color).save(tmp_path / name)
        files += ["--image", str(tmp_path / name)]
    args = ["local", "--ar 2:3 --seed 4", "--config", str(config), *files]

    assert main([*args, "--out", str(tmp_path / "mix.png")]) == 0
    meta = read_metadata(tmp_path / "mix_1.png")
    assert len(set(meta["image_prompts"])) == 2 and meta["image_weight"] == BLEND_IMAGE_WEIGHT
    assert "weighs image prompts" not in capsys.readouterr().err

    assert main([*args[:4], *files[:2], "--out", str(tmp_path / "one.png")]) == 2
    assert "an image prompt needs text too" in capsys.readouterr().err


@pytest.fixture
def picture_url() -> Iterator[str]:
    """A PNG served on 127.0.0.1 (from a thread: `main` runs its own event loop)."""
    out = io.BytesIO()
    Image.new("RGB", (90, 60), (200, 30, 30)).save(out, format="PNG")
    body = out.getvalue()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/red.png"
    finally:
        server.shutdown()
        server.server_close()


def test_local_fetches_image_links_as_the_bot_does(
    tmp_path: Path, models_dir: Path, picture_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, models_dir)
    lan = config.read_text() + '[images]\nallowed_networks = ["127.0.0.1/32"]\n'
    config.write_text(lan)
    prompt = f"{picture_url} a red lake --sref {picture_url}::2 --seed 3"
    args = ["local", prompt, "--config", str(config), "--image", picture_url]

    assert main([*args, "--out", str(tmp_path / "lake.png")]) == 0
    meta = read_metadata(tmp_path / "lake_1.png")
    [digest] = set(meta["image_prompts"])  # the --image URL and the link: the same picture
    assert len(meta["image_prompts"]) == 2
    assert meta["style_refs"] == [digest] and meta["style_ref_weights"] == [2.0]
    with Image.open(tmp_path / "data" / "inputs" / f"{digest}.png") as kept:
        assert kept.size == (90, 60)


def test_local_refuses_a_link_the_bot_would_refuse(
    tmp_path: Path, models_dir: Path, picture_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, models_dir)  # no allowed_networks: 127.0.0.1 is refused

    assert main(["local", f"{picture_url} a lake", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"Image: Could not use the image <{picture_url}>" in err, err
    assert "loopback" in err or "private" in err, err


def write_picture(path: Path, size: tuple[int, int]) -> Path:
    rng = np.random.default_rng(5)
    small = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    Image.fromarray(small).resize(size, Image.Resampling.BICUBIC).save(path)
    return path


def test_local_pans_an_image_file_and_keeps_its_pixels(
    tmp_path: Path, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, models_dir)
    picture = write_picture(tmp_path / "photo.png", (128, 128))
    out = tmp_path / "panned.png"
    args = ["local", "a lake --seed 11", "--config", str(config), "--from", str(picture)]

    assert main([*args, "--pan", "right", "--out", str(out)]) == 0

    assert "seed 11  " in capsys.readouterr().out
    with Image.open(out) as grid:
        assert grid.size == (384, 256)  # 2 × 192×128
    meta = read_metadata(tmp_path / "panned_2.png")
    assert meta["kind"] == "edit" and meta["seed"] == 12
    assert meta["edit"]["direction"] == "right" and meta["edit"]["box"] == [0, 0, 128, 128]
    with Image.open(tmp_path / "panned_1.png") as image, Image.open(picture) as source:
        kept = np.asarray(image.convert("RGB"))[:, :124]  # the seam band is redrawn
        assert np.array_equal(kept, np.asarray(source.convert("RGB"))[:, :124])


def test_local_zoom_out_takes_the_prompts_aspect_ratio(
    tmp_path: Path, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, models_dir)
    picture = write_picture(tmp_path / "photo.png", (128, 128))
    args = ["local", "a lake --ar 16:9", "--config", str(config), "--from", str(picture)]

    assert main([*args, "--zoom-out", "2", "--out", str(tmp_path / "z.png")]) == 0

    meta = read_metadata(tmp_path / "z_1.png")
    assert (meta["width"], meta["height"]) == (168, 96)
    assert (meta["edit"]["zoom"], meta["edit"]["aspect"]) == (2.0, "16:9")


def test_local_make_square_and_region(
    tmp_path: Path, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, models_dir)
    picture = write_picture(tmp_path / "photo.jpg", (160, 96))
    mask = tmp_path / "mask.png"
    drawn = Image.new("RGB", (160, 96))
    drawn.paste((255, 255, 255), (20, 20, 60, 60))
    drawn.save(mask)
    base = ["local", "a lake", "--config", str(config), "--from", str(picture)]

    assert main([*base, "--make-square", "--out", str(tmp_path / "sq.png")]) == 0
    assert main([*base, "--region", str(mask), "--out", str(tmp_path / "re.png")]) == 0

    assert read_metadata(tmp_path / "sq_1.png")["width"] == 160
    assert read_metadata(tmp_path / "sq_1.png")["height"] == 160
    region = read_metadata(tmp_path / "re_3.png")["edit"]
    assert region["tool"] == "region" and (tmp_path / "data" / "inputs").is_dir()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--pan", "left"], "--pan edits an image: give it with --from IMAGE"),
        (["--from", "PICTURE"], "--from takes exactly one of"),
        (["--from", "PICTURE", "--pan", "left", "--make-square"], "(got --pan and --make-square)"),
        (["--from", "PICTURE", "--zoom-out", "3"], "--zoom-out must be a number from 1 to 2"),
        (["--from", "PICTURE", "--zoom-out", "wide"], "--zoom-out must be a number from 1 to 2"),
        (["--from", "PICTURE", "--pan", "sideways"], "--pan must be one of left, right, up"),
        (["--from", "PICTURE", "--make-square"], "Image: the image is already square"),
        (["--from", "MISSING", "--make-square"], "Image: could not read"),
        (["--from", "PICTURE", "--region", "WIDE"], "Image: the mask is 160×96 but"),
        (["--from", "PICTURE", "--region", "BLACK"], "Image: the mask is empty"),
        (["--from", "PICTURE", "--region", "CONFIG"], "Image: could not read"),
    ],
)
def test_local_refuses_bad_edit_flags_in_one_line_with_status_2(
    tmp_path: Path,
    models_dir: Path,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    message: str,
) -> None:
    config = write_config(tmp_path, models_dir)
    files = {
        "PICTURE": str(write_picture(tmp_path / "square.png", (128, 128))),
        "MISSING": str(tmp_path / "nothing.png"),
        "BLACK": str(tmp_path / "black.png"),
        "CONFIG": str(config),
        "WIDE": str(write_picture(tmp_path / "wide.png", (160, 96))),  # a mask of another shape
    }
    Image.new("L", (128, 128)).save(files["BLACK"])
    args = [files.get(flag, flag) for flag in flags]

    assert main(["local", "a lake", "--config", str(config), *args]) == 2

    err = capsys.readouterr().err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "grid.png").exists()
