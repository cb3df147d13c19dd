"""`imagine-bot bench`: the tables it prints (figures are never asserted as time limits)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.cli import main
from engine.bench import overhead_table
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
    # the engine saved every grid it was timed on: warm-up, one, and the burst of 8
    assert len(list((tmp_path / "data" / "images").iterdir())) == 1 + 1 + 8
    table = overhead_table(figures, "tiny")  # what the command prints without --json
    assert "engine vs diffusers: model tiny at 64², 2 steps" in table
    assert f"{figures['burst_overhead']:.2f}" in table.splitlines()[-1]
