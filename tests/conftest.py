"""Shared fixtures. The tiny engine is started once per test session: its process takes ~10 s to
import torch and build the tiny model, a job ~1 s after that.

Tests that use it run in the session's event loop (`pytest.mark.asyncio(loop_scope="session")`),
since an EngineClient belongs to the loop that started it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio

from engine.client import EngineClient
from engine.config import DEFAULT_PRESETS, TINY_CAPTIONER, EngineConfig, LoraPreset, ModelPreset

TINY_STEPS = 4


def tiny_engine_config(storage: Path) -> EngineConfig:
    """The built-in tiny model at 128², few steps, a preview every other step, the tiny captioner
    for /describe, a LoRA (`--lora ink`); plus a preset that cannot load (for failed-job tests)."""
    presets = dict(DEFAULT_PRESETS)
    presets["tiny"] = replace(presets["tiny"], steps=TINY_STEPS)
    presets["broken"] = ModelPreset(
        name="broken",
        source=str(storage / "no-such-model"),
        family="sd",
        base_resolution=128,
        steps=2,
        guidance=5.0,
        sampler="euler",
    )
    return EngineConfig(
        model="tiny",
        device="cpu",
        storage=storage,
        preload=True,
        preview_every=2,
        preview_interval_s=0.0,  # every 2nd step, however fast: tests count previews
        job_timeout_s=120.0,
        presets=presets,
        captioner=TINY_CAPTIONER,  # never the hub's: nothing is downloaded in tests
        loras={
            "ink": LoraPreset(
                "ink", "builtin:tiny-lora", weight=0.8, trigger="ink wash", family="sd"
            )
        },
    )


@contextmanager
def single_threaded_children() -> Iterator[None]:
    """Processes started inside inherit OMP_NUM_THREADS=1. The tiny model gains nothing from
    threads, and on a busy 2-core machine torch's threads thrash: measured, a tiny job took
    0.6 to 6 s with 2 threads next to another busy process, 0.12 s with 1."""
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = before


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def tiny_engine(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EngineClient]:
    engine = EngineClient(tiny_engine_config(tmp_path_factory.mktemp("engine")))
    with single_threaded_children():
        await engine.start()  # spawns the engine process now, with the environment above
    try:
        yield engine
    finally:
        await engine.close()
