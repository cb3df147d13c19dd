"""`imagine-bot bench`: the tables it prints (figures are never asserted as time limits)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.cli import main
from engine.bench import bench_table, cold_start_table, grid_tflop, overhead_table, peak_share
from engine.storage import read_metadata
from tests.engine.test_local import write_config


def test_bench_vs_diffusers_times_both_paths_in_one_run(
    tmp_path: Path, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, models_dir)
    args = ["bench", "--vs-diffusers", "--size", "64", "--steps", "2", "--repeats", "1"]

    assert main([*args, "--json", "--config", str(config)]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert (figures["size"], figures["steps"], figures["jobs"]) == (64, 2, 8)
    for path in ("grid", "burst"):
        direct, engine = figures[f"direct_{path}_s"], figures[f"engine_{path}_s"]
        assert direct > 0 and engine > 0
        assert figures[f"{path}_overhead"] == pytest.approx(engine / direct)
    assert figures["style_cost"] == pytest.approx(
        figures["engine_styled_grid_s"] / figures["engine_grid_s"] - 1
    )
    # the engine saved every grid it was timed on: warm-up, one, one styled, the burst of 8;
    # like for like, --style raw but for the styled one, and each grid a prompt of its own
    grids = [read_metadata(path) for path in (tmp_path / "data" / "images").glob("*/grid.png")]
    assert len(grids) == 1 + 1 + 1 + 8
    assert len({grid["raw_prompt"] for grid in grids}) == len(grids)
    assert sum(grid["stylize"] == 0 for grid in grids) == len(grids) - 1
    table = overhead_table(figures, "tiny")  # what the command prints without --json
    assert "engine vs diffusers: model tiny at 64², 2 steps" in table
    [burst] = [line for line in table.splitlines() if "grids back to back" in line]
    assert f"{figures['burst_overhead']:.2f}" in burst
    assert f"engine {2 / figures['engine_grid_s']:.2f}" in table  # UNet steps per second
    assert f"{figures['engine_styled_grid_s']:.3f} s a grid, {figures['style_cost']:+.1%}" in table


def test_the_share_of_peak_counts_sdxls_unet_with_cfg_and_the_vae() -> None:
    assert grid_tflop(30) == pytest.approx(30 * 4 * 2 * 6.76 + 4 * 10.47)
    assert peak_share(3.0, 30, "NVIDIA H200") == pytest.approx(grid_tflop(30) / 3.0 / 790)
    assert peak_share(3.0, 30, "CPU") is None  # no peak known: not shown
    figures = {"device": "NVIDIA H200", "size": 1024, "steps": 30, "jobs": 8,
               "direct_grid_s": 4.0, "engine_grid_s": 3.0, "grid_overhead": 0.75,
               "engine_styled_grid_s": 3.1, "style_cost": 0.03, "direct_burst_s": 32.0,
               "engine_burst_s": 24.0, "burst_overhead": 0.75}  # fmt: skip
    assert "share of" not in overhead_table(figures, "tiny")  # not SDXL's work
    table = overhead_table(figures, "sdxl-random")
    share = grid_tflop(30) / 3.0 / 790
    assert f"share of NVIDIA H200's bf16 peak, engine: {share:.0%}" in table


def test_bench_cold_start_launches_the_engine_twice_to_the_first_grid(
    tmp_path: Path, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, models_dir)

    args = ["bench", "--cold-start", "--model", "tiny", "--config", str(config)]
    assert main([*args, "--json"]) == 0

    figures = json.loads(capsys.readouterr().out)
    assert (figures["model"], figures["device"], len(figures["runs"])) == ("tiny", "CPU", 2)
    for run in figures["runs"]:
        assert 0 < run["started_s"] <= run["first_grid_s"]
    lines = cold_start_table(figures["runs"], "tiny").splitlines()  # what it prints without
    assert lines[0].startswith("cold start: model tiny on ")
    runs = [line.split() for line in lines[2:]]
    assert [run[0] for run in runs] == ["1", "2"]
    for run in runs:
        started, grid = float(run[-2]), float(run[-1])
        assert 0 < started <= grid
    assert len(list((tmp_path / "data" / "images").iterdir())) == 2  # one grid each run


def test_bench_batching_times_batched_and_one_at_a_time_in_one_run(
    tmp_path: Path, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, models_dir)
    args = ["bench", "--batching", "--size", "64", "--steps", "2", "--repeats", "1"]

    assert main([*args, "--json", "--config", str(config)]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert (figures["size"], figures["jobs"], figures["batch_pixels"]) == (64, 8, 1024 * 1024)
    assert figures["alone_s"] > 0 and figures["batched_s"] > 0
    assert figures["speedup"] == pytest.approx(figures["alone_s"] / figures["batched_s"])
    # both engines drew every burst: warm-up and one round, 8 grids each
    assert len(list((tmp_path / "data" / "images").iterdir())) == 2 * (8 + 8)
    assert main([*args, "--config", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("batching: 8 grids from 8 users, model tiny at 64²")
    assert lines[-1].startswith("throughput gained: ")


def test_bench_times_the_engines_paths_and_what_previews_cost(
    tmp_path: Path, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, models_dir)

    assert main(["bench", "--repeats", "1", "--json", "--config", str(config)]) == 0

    figures = json.loads(capsys.readouterr().out)
    assert [row["path"] for row in figures["rows"]][:2] == [
        "grid of 4 (one batch)",
        "grid of 4, previews every 2 steps",
    ]
    assert figures["preview"]["kind"] == "latent projection" and figures["preview"]["shown"] >= 1
    lines = bench_table(figures).splitlines()  # what it prints without --json
    assert lines[0].startswith("model tiny on CPU") and lines[1].split() == [
        "path",
        "seconds",
        "ratio",
    ]
    rows = {line[:40].strip(): line[40:].split() for line in lines[2:-1]}
    assert len(rows) == 11 and rows["grid of 4 (one batch)"][1] == "1.00"
    assert "grid of 4, --lora (rank 16, attention)" in rows
    grids = [read_metadata(path) for path in (tmp_path / "data" / "images").glob("*/grid.png")]
    assert [{"name": "bench", "weight": 1.0}] in [grid["loras"] for grid in grids]
    assert all(float(seconds) > 0 for seconds, _ in rows.values())
    # previews: the latent projection (no TAESD in the tiny preset), at most 1 per 2 s as the
    # bot's default edit interval; its share is of the first row's time
    preview = lines[-1]
    assert preview.startswith("previews: ") and "(latent projection)" in preview
    assert "a grid as configured (≤ 1 per 2 s)" in preview and preview.endswith(
        "of the grid's time"
    )


def test_bench_load_prints_its_figures_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "--load", "--users", "2", "--jobs", "2", "--rounds", "1", "--json"]
    assert main(args) == 0

    figures = json.loads(capsys.readouterr().out)
    assert (figures["sent"], figures["acked"], figures["unacked"]) == (4, 4, 0)
    assert figures["delivered"] == figures["accepted"] == 4
    assert 0 < figures["ack_p50_ms"] <= figures["ack_max_ms"] < 3000
    assert 0 < figures["upload_p50_s"] <= figures["upload_max_s"]
    assert [set(rss) for rss in figures["rss_mb"]] == [{"bot", "fake_discord", "engine"}] * 2
