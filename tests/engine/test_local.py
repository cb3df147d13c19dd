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
