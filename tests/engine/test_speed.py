"""The CUDA speed switches (engine/speed.py): read from [engine], applied on a GPU only, and
changing a picture by floating-point rounding at most (checked on the CPU with `force`)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import FusedAttnProcessor2_0

from engine.config import ConfigError, EngineConfig, ModelPreset, SpeedConfig, parse_engine_config
from engine.generate import Generator
from engine.loader import load_pipeline, preset_dtype, resolve_dtype
from engine.speed import CACHE_FOLDER, tune


def tiny_pipe(models_dir: Path, device: str = "cpu") -> object:
    config = EngineConfig(model="tiny", device=device, cache_dir=models_dir)
    return load_pipeline(config.preset("tiny"), config)


def draw(pipe: object) -> np.ndarray:
    generator = torch.Generator("cpu").manual_seed(3)
    out = pipe(  # type: ignore[operator]
        "a lighthouse", num_inference_steps=4, height=64, width=64, generator=generator,
        output_type="np",
    )  # fmt: skip
    return np.asarray(out.images)


def test_the_switches_are_read_from_the_engine_table() -> None:
    config = parse_engine_config(
        {"engine": {"tf32": False, "channels_last": False, "fuse_qkv": True, "compile": "regional"}}
    )
    assert config.speed == SpeedConfig(
        tf32=False, channels_last=False, fuse_qkv=True, compile="regional"
    )
    assert parse_engine_config({}).speed == SpeedConfig()  # tf32, channels_last; no fuse, compile
    with pytest.raises(ConfigError, match=r"engine\.compile"):
        parse_engine_config({"engine": {"compile": "max"}})
    assert SpeedConfig().warm_up == ((1, 1), (16, 9), (9, 16), (3, 2), (2, 3))
    warm_up = parse_engine_config({"engine": {"warm_up": ["4:3", "8:6", "1:1"]}}).speed.warm_up
    assert warm_up == ((4, 3), (1, 1))  # as --ar reads them, each once
    assert parse_engine_config({"engine": {"warm_up": []}}).speed.warm_up == ()
    for wrong in ("3:2.5", "9:1", 3):
        with pytest.raises(ConfigError, match=r"engine\.warm_up holds .*from 1:8 to 8:1"):
            parse_engine_config({"engine": {"warm_up": [wrong]}})


def test_auto_precision_is_bfloat16_on_cuda_and_float32_on_the_cpu() -> None:
    assert resolve_dtype("auto", "cuda") is torch.bfloat16
    assert resolve_dtype("auto", "cuda:1") is torch.bfloat16
    assert resolve_dtype("auto", "cpu") is torch.float32
    assert resolve_dtype("float16", "cuda") is torch.float16


def test_nothing_is_applied_on_the_cpu(models_dir: Path) -> None:
    pipe = tiny_pipe(models_dir)
    assert tune(pipe, SpeedConfig(fuse_qkv=True, compile="regional"), models_dir) == []
    assert not any(
        isinstance(p, FusedAttnProcessor2_0)
        for p in pipe.unet.attn_processors.values()  # type: ignore[attr-defined]
    )


def test_channels_last_and_fused_qkv_change_the_picture_by_rounding_only(
    models_dir: Path,
) -> None:
    pipe = tiny_pipe(models_dir)
    before = draw(pipe)

    applied = tune(pipe, SpeedConfig(channels_last=True, fuse_qkv=True), models_dir, force=True)

    assert applied == ["channels_last", "fuse_qkv"]
    unet = pipe.unet  # type: ignore[attr-defined]
    assert all(isinstance(p, FusedAttnProcessor2_0) for p in unet.attn_processors.values())
    conv = unet.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    after = draw(pipe)
    assert np.abs(after - before).max() < 1e-4


def test_regional_compilation_wraps_the_repeated_blocks_and_caches_under_the_models_dir(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    pipe = tiny_pipe(models_dir)

    applied = tune(
        pipe, SpeedConfig(channels_last=False, compile="regional"), models_dir, force=True
    )

    assert applied == ["compile:regional"]
    blocks = [
        m
        for m in pipe.unet.modules()  # type: ignore[attr-defined]
        if type(m).__name__ == "BasicTransformerBlock"
    ]
    assert blocks and all(b._compiled_call_impl is not None for b in blocks)
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(models_dir / CACHE_FOLDER)


@pytest.mark.gpu
def test_on_cuda_the_defaults_are_applied_at_load(models_dir: Path) -> None:
    pipe = tiny_pipe(models_dir, "cuda")
    assert pipe.dtype is torch.bfloat16  # type: ignore[attr-defined]
    assert torch.backends.cuda.matmul.allow_tf32
    conv = pipe.unet.conv_in.weight  # type: ignore[attr-defined]
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert np.isfinite(draw(pipe)).all()


def test_a_compiled_unet_is_warmed_up_at_the_configured_ratios_in_one_step(
    tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    speed = SpeedConfig(channels_last=False, compile="regional", warm_up=((1, 1), (16, 9)))
    config = EngineConfig(
        model="tiny", device="cpu", storage=tmp_path / "data", cache_dir=models_dir, speed=speed
    )

    def compiling(preset: ModelPreset, config: EngineConfig) -> Any:
        pipe = load_pipeline(preset, config)
        tune(pipe, config.speed, config.models_dir, force=True)  # as on CUDA
        return pipe

    plain, compiled = Generator(config), Generator(config, loader=compiling)
    assert plain.warm_ups("tiny") == compiled.warm_ups("tiny") == []  # nothing loaded yet
    plain.model("tiny"), compiled.model("tiny")

    assert plain.warm_ups("tiny") == []  # nothing compiled (what the CPU always is): no warm-up
    warm_ups = compiled.warm_ups("tiny")
    assert [(job.request.aspect, job.request.steps) for job in warm_ups] == [
        ((1, 1), 1),
        ((16, 9), 1),
    ]
    # each is a grid as a job at that ratio draws it, its UNet called with the jobs' batch:
    # 4 images, twice (guided). (Drawn on the plain pipeline: compiling takes ~20 s on a CPU.)
    shapes: list[tuple[int, ...]] = []
    unet = plain.model("tiny").pipe.unet
    unet.register_forward_pre_hook(lambda _m, args: shapes.append(tuple(args[0].shape)))
    drawing = plain.draw(warm_ups[1], lambda *_: None, lambda: False)
    assert [image.size for image in drawing.images] == [(168, 96)] * 4
    assert shapes == [(8, 4, 12, 21)]
    assert not (tmp_path / "data" / "images").exists()  # drawn, never saved


def test_a_preset_may_name_its_own_precision_for_cuda(models_dir: Path) -> None:
    config = parse_engine_config({"models": {"tiny": {"dtype": "float16"}}})
    preset = config.preset("tiny")
    assert preset.dtype == "float16" and config.preset("sdxl").dtype is None
    assert preset_dtype(preset, config, "cuda:0") == "float16"
    assert preset_dtype(preset, config, "cpu") == "auto"  # [engine] dtype there
    assert preset_dtype(config.preset("sdxl"), config, "cuda") == "auto"
    for wrong in ("auto", "half"):
        with pytest.raises(ConfigError, match=r"models\.tiny\.dtype must be one of float16"):
            parse_engine_config({"models": {"tiny": {"dtype": wrong}}})
    # on the CPU the preset's half precision is not used: the tiny model loads in float32
    cpu = replace(config, device="cpu", cache_dir=models_dir)
    assert load_pipeline(preset, cpu).dtype is torch.float32


@pytest.mark.gpu
def test_on_cuda_a_presets_precision_wins(models_dir: Path) -> None:
    config = parse_engine_config({"models": {"tiny": {"dtype": "float16"}}})
    cuda = replace(config, device="cuda", cache_dir=models_dir)
    pipe = load_pipeline(cuda.preset("tiny"), cuda)
    assert pipe.dtype is torch.float16
    assert np.isfinite(draw(pipe)).all()
