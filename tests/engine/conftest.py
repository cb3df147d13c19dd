"""Engine fixtures: real diffusers pipelines built offline from the tiny presets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from engine.config import EngineConfig
from engine.generate import Generator
from engine.jobs import Job, JobResult, imagine_job
from engine.prompt import parse_prompt

FAMILIES = ("tiny", "tiny-xl")


@pytest.fixture(autouse=True)
def _skip_gpu_tests_without_cuda(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("gpu") and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built-in tiny models, built once per test session."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def engine_config(request: pytest.FixtureRequest, tmp_path: Path, models_dir: Path) -> EngineConfig:
    """Every test that generates runs on the CPU, and again on CUDA where there is a GPU."""
    return EngineConfig(
        model="tiny",
        device=request.param,
        storage=tmp_path / "data",
        cache_dir=models_dir,
        preview_every=2,
        preview_interval_s=0.0,  # every 2nd step, however fast: tests count previews
    )


@pytest.fixture
def generator(engine_config: EngineConfig) -> Iterator[Generator]:
    yield Generator(engine_config)


class Recorder:
    """Collects progress calls; `cancel_at` makes `cancelled()` true from that step on."""

    def __init__(self, cancel_at: int | None = None):
        self.steps: list[tuple[int, int, bytes | None]] = []
        self.cancel_at = cancel_at

    def progress(self, step: int, total: int, preview: bytes | None) -> None:
        self.steps.append((step, total, preview))

    def cancelled(self) -> bool:
        return (
            self.cancel_at is not None and bool(self.steps) and self.steps[-1][0] >= self.cancel_at
        )


def run(generator: Generator, job: Job) -> JobResult:
    recorder = Recorder()
    return generator.run(job, recorder.progress, recorder.cancelled)


def imagine(generator: Generator, prompt: str, model: str = "tiny") -> JobResult:
    return run(generator, imagine_job(parse_prompt(prompt), model=model))
