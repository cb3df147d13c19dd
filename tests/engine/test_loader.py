"""Loading a preset's pipeline: built-in, local directory, hub id, and every way that fails."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from PIL import Image

from engine.config import DEFAULT_PRESETS, EngineConfig, ModelPreset
from engine.generate import Generator
from engine.jobs import imagine_job
from engine.loader import (
    ModelLoadError,
    load_pipeline,
    model_revision,
    public_source,
    resolve_device,
    resolve_dtype,
)
from engine.prompt import parse_prompt
from engine.storage import read_metadata
from engine.tiny import ensure_tiny

QUIET = (lambda step, total, preview: None, lambda: False)  # no progress, never cancelled

TINY = DEFAULT_PRESETS["tiny"]
TINY_XL = DEFAULT_PRESETS["tiny-xl"]


@pytest.fixture
def config(tmp_path: Path) -> EngineConfig:
    return EngineConfig(storage=tmp_path, device="cpu")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both tiny models, built once for the module; tests use them as local directories."""
    folder = tmp_path_factory.mktemp("models")
    ensure_tiny("tiny", folder)
    ensure_tiny("tiny-xl", folder)
    return folder


def local(name: str, source: Path, family: str = "sd", **changes: object) -> ModelPreset:
    return replace(TINY, name=name, source=str(source), family=family, **changes)  # type: ignore[arg-type]


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # huggingface_hub reads HF_HUB_OFFLINE at import time, so set the constant as well.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.mark.parametrize(
    ("preset", "cls"),
    [(TINY, StableDiffusionPipeline), (TINY_XL, StableDiffusionXLPipeline)],
    ids=["tiny", "tiny-xl"],
)
def test_builtin_presets_load(preset: ModelPreset, cls: type, config: EngineConfig) -> None:
    pipe = load_pipeline(preset, config)
    assert type(pipe) is cls
    assert pipe.device.type == "cpu" and pipe.unet.dtype == torch.float32
    assert pipe._progress_bar_config == {"disable": True}
    assert (
        config.models_dir / preset.source.removeprefix("builtin:") / "model_index.json"
    ).is_file()


def test_local_directory_loads(models: Path, config: EngineConfig) -> None:
    pipe = load_pipeline(local("mine", models / "tiny-xl", family="sdxl"), config)
    assert type(pipe) is StableDiffusionXLPipeline


def test_missing_variant_falls_back_to_the_default_weights(
    models: Path, config: EngineConfig
) -> None:
    pipe = load_pipeline(local("mine", models / "tiny", variant="fp16"), config)
    assert type(pipe) is StableDiffusionPipeline


def test_vae_override_is_used(models: Path, config: EngineConfig) -> None:
    preset = local("mine", models / "tiny", vae=str(models / "tiny-xl" / "vae"))
    pipe = load_pipeline(preset, config)
    assert Path(pipe.vae.config._name_or_path) == models / "tiny-xl" / "vae"


@pytest.mark.usefixtures("offline")
def test_unreachable_hub_id_names_the_preset_and_suggests_tiny(
    config: EngineConfig, caplog: pytest.LogCaptureFixture
) -> None:
    preset = replace(DEFAULT_PRESETS["sdxl"], source="imagine-bot-tests/no-such-model", vae=None)
    with pytest.raises(ModelLoadError) as caught:
        load_pipeline(preset, config)
    message = str(caught.value)
    assert message.startswith("could not load model preset 'sdxl' from imagine-bot-tests/no-such")
    assert "[models.sdxl]" in message and "--v tiny" in message and "--model tiny" in message
    assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)


@pytest.mark.usefixtures("offline")
def test_unreachable_hub_vae_is_a_load_error(models: Path, config: EngineConfig) -> None:
    preset = local("mine", models / "tiny", vae="imagine-bot-tests/no-such-vae")
    with pytest.raises(ModelLoadError, match="'mine'"):
        load_pipeline(preset, config)


def test_missing_local_directory(tmp_path: Path, config: EngineConfig) -> None:
    preset = local("mine", tmp_path / "nowhere")
    with pytest.raises(ModelLoadError, match=r"'mine' from local: .*model_index\.json"):
        load_pipeline(preset, config)


def test_directory_without_a_model(tmp_path: Path, config: EngineConfig) -> None:
    with pytest.raises(ModelLoadError, match=r"model_index\.json"):
        load_pipeline(local("mine", tmp_path), config)


@pytest.mark.parametrize(("kind", "family"), [("tiny-xl", "sd"), ("tiny", "sdxl")])
def test_wrong_family_fails(kind: str, family: str, models: Path, config: EngineConfig) -> None:
    with pytest.raises(ModelLoadError, match=f"family = '{family}'"):
        load_pipeline(local("mine", models / kind, family=family), config)


def test_unknown_builtin_fails(config: EngineConfig) -> None:
    with pytest.raises(ModelLoadError, match="'huge'"):
        load_pipeline(replace(TINY, name="huge", source="builtin:huge"), config)


def test_model_revision_identifies_the_weights(models: Path, config: EngineConfig) -> None:
    sd = load_pipeline(local("a", models / "tiny"), config)
    again = load_pipeline(TINY, config)  # an identical build elsewhere
    xl = load_pipeline(local("b", models / "tiny-xl", family="sdxl"), config)
    assert model_revision(sd).startswith("sha256:")
    assert model_revision(sd) == model_revision(again) != model_revision(xl)


def test_model_revision_of_a_hub_snapshot(models: Path, config: EngineConfig) -> None:
    pipe = load_pipeline(local("a", models / "tiny"), config)
    sha = "71153311d3dbb46851df1931d3ca6e939de83304"
    snapshot = f"/cache/hub/models--stabilityai--sdxl-turbo/snapshots/{sha}"
    pipe.register_to_config(_name_or_path=snapshot)
    assert model_revision(pipe) == "stabilityai/sdxl-turbo@71153311d3db"


def test_resolve_device() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and torch.backends.mps.is_available():
        expected = "mps"
    assert resolve_device("auto") == expected
    assert resolve_device("cpu") == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_resolve_device_refuses_a_missing_gpu() -> None:
    with pytest.raises(ValueError, match="CUDA"):
        resolve_device("cuda")


def test_resolve_dtype() -> None:
    assert resolve_dtype("auto", "cuda") == torch.bfloat16
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("auto", "mps") == torch.float32
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    with pytest.raises(ValueError, match="float16"):
        resolve_dtype("int8", "cpu")


def test_out_of_memory_while_loading_says_so_not_check_the_network(
    config: EngineConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    def too_big(*args: object) -> None:
        try:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 40 MiB")
        except torch.cuda.OutOfMemoryError as error:  # wrapped, as diffusers does for some loads
            raise RuntimeError("Error(s) in loading state_dict") from error

    monkeypatch.setattr("engine.loader._load", too_big)
    with pytest.raises(ModelLoadError) as info:
        load_pipeline(DEFAULT_PRESETS["tiny"], config)
    message = str(info.value)
    assert "does not fit in the GPU's memory" in message and "max_loaded_models" in message
    assert "network" not in message


def test_a_local_model_is_named_by_its_preset_in_the_png_metadata(
    models: Path, config: EngineConfig
) -> None:
    mine = local("mine", models / "tiny")
    generator = Generator(replace(config, presets={**config.presets, "mine": mine}))
    result = generator.run(imagine_job(parse_prompt("a fox --seed 1"), model="mine"), *QUIET)

    assert result.grid is not None
    with Image.open(result.grid) as grid:
        texts = " ".join(str(value) for value in grid.info.values())
    meta = read_metadata(result.grid)
    assert (meta["model"], meta["model_source"]) == ("mine", "local")
    assert meta["model_revision"].startswith("sha256:")
    assert str(models) not in texts  # no server path anywhere in the file


def test_public_sources() -> None:
    assert public_source(DEFAULT_PRESETS["sdxl"]) == "stabilityai/stable-diffusion-xl-base-1.0"
    assert public_source(TINY) == "builtin:tiny"
    assert public_source(local("mine", Path("/models/mine"))) == "local"
