"""Sampler names → fresh diffusers schedulers that run on the tiny pipeline."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    LCMScheduler,
    LMSDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.utils import is_scipy_available

from engine.prompt.request import SAMPLERS
from engine.samplers import make_scheduler
from engine.tiny import ensure_tiny

CLASSES = {
    "euler": EulerDiscreteScheduler,
    "euler_a": EulerAncestralDiscreteScheduler,
    "dpmpp_2m": DPMSolverMultistepScheduler,
    "dpmpp_2m_karras": DPMSolverMultistepScheduler,
    "dpmpp_sde": DPMSolverMultistepScheduler,
    "heun": HeunDiscreteScheduler,
    "lms": LMSDiscreteScheduler,
    "ddim": DDIMScheduler,
    "unipc": UniPCMultistepScheduler,
    "lcm": LCMScheduler,
}
RUNNABLE = list(SAMPLERS)  # scipy is a dependency, so lms runs on a default install too


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    # Tiny models are fastest single-threaded, and torch's thread pool slows down ~10-100x when
    # another process holds the CPU cores (parallel test runs on a 2-core machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pipe(tmp_path_factory: pytest.TempPathFactory) -> DiffusionPipeline:
    folder = ensure_tiny("tiny", tmp_path_factory.mktemp("models"))
    pipe = DiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_every_request_sampler_has_a_scheduler() -> None:
    assert set(CLASSES) == set(SAMPLERS)


@pytest.mark.parametrize("name", RUNNABLE)
def test_builds_the_named_scheduler(name: str, pipe: DiffusionPipeline) -> None:
    assert type(make_scheduler(name, pipe.scheduler.config)) is CLASSES[name]


@pytest.mark.parametrize("name", RUNNABLE)
def test_runs_two_steps_of_the_tiny_pipeline(name: str, pipe: DiffusionPipeline) -> None:
    # A pipeline of the same (shared) components with its own scheduler, as the engine does.
    run = type(pipe)(
        **{**pipe.components, "scheduler": make_scheduler(name, pipe.scheduler.config)}
    )
    run.set_progress_bar_config(disable=True)
    images = run(
        "a cat",
        height=64,
        width=64,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images
    assert images.shape == (1, 64, 64, 3)
    assert np.isfinite(images).all()


def test_each_call_gives_a_new_scheduler(pipe: DiffusionPipeline) -> None:
    config = pipe.scheduler.config
    assert make_scheduler("euler", config) is not make_scheduler("euler", config)
    assert make_scheduler("euler", config) is not pipe.scheduler


def test_karras_and_sde_variants(pipe: DiffusionPipeline) -> None:
    config = pipe.scheduler.config
    assert not make_scheduler("dpmpp_2m", config).config.use_karras_sigmas
    assert make_scheduler("dpmpp_2m_karras", config).config.use_karras_sigmas
    assert make_scheduler("dpmpp_sde", config).config.algorithm_type == "sde-dpmsolver++"
    assert make_scheduler("dpmpp_2m", config).config.algorithm_type == "dpmsolver++"


def test_keeps_the_model_noise_schedule(pipe: DiffusionPipeline) -> None:
    scheduler = make_scheduler("ddim", pipe.scheduler.config)
    assert scheduler.config.beta_schedule == "scaled_linear"
    assert scheduler.config.beta_end == pipe.scheduler.config.beta_end
    assert scheduler.config.clip_sample is False  # latents are not clipped to [-1, 1]


def test_foreign_config_keys_are_dropped_quietly(
    pipe: DiffusionPipeline, caplog: pytest.LogCaptureFixture
) -> None:
    config = {**pipe.scheduler.config, "interpolation_type": "linear", "skip_prk_steps": True}
    with caplog.at_level(logging.WARNING):
        make_scheduler("lcm", config)
        make_scheduler("ddim", config)
    assert not caplog.records


def test_unknown_sampler_names_the_choices(pipe: DiffusionPipeline) -> None:
    with pytest.raises(ValueError, match="dpmpp_2m_karras"):
        make_scheduler("k_euler", pipe.scheduler.config)


def test_scipy_is_installed_so_every_documented_sampler_runs() -> None:
    assert is_scipy_available()


def test_lms_without_scipy_says_what_to_install(
    pipe: DiffusionPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("engine.samplers.is_scipy_available", lambda: False)
    with pytest.raises(ImportError, match="pip install scipy"):
        make_scheduler("lms", pipe.scheduler.config)
