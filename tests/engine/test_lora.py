"""LoRAs ([loras.NAME], `--lora NAME[:WEIGHT]`): the config, the intake, and drawing with them on
the tiny pipelines (a LoRA built offline: builtin:tiny-lora / builtin:tiny-xl-lora)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from engine.batching import batch_key
from engine.config import (
    ConfigError,
    EngineConfig,
    LoraPreset,
    ModelPreset,
    SpeedConfig,
    parse_engine_config,
)
from engine.generate import GenerationError, Generator
from engine.intake import Preferences, prompt_jobs, read_blend, read_prompt
from engine.jobs import JobResult
from engine.loader import ModelLoadError, load_pipeline
from engine.prompt import PromptError, parse_prompt
from engine.prompt.request import LoraUse
from engine.speed import tune
from engine.storage import read_metadata
from tests.engine.conftest import FAMILIES, run

LORAS = {
    "ink": LoraPreset("ink", "builtin:tiny-lora", weight=0.8, trigger="ink wash", family="sd"),
    "inkxl": LoraPreset("inkxl", "builtin:tiny-xl-lora", family="sdxl"),
}


@pytest.fixture
def config(engine_config: EngineConfig) -> EngineConfig:
    return replace(engine_config, loras=LORAS)


def draw(generator: Generator, prompt: str, model: str = "tiny") -> JobResult:
    (job,) = prompt_jobs(read_prompt(prompt, generator.config), "tester", 1)
    return run(generator, replace(job, model=model))


def pixels(result: JobResult) -> np.ndarray:
    assert result.grid is not None
    with Image.open(result.grid) as grid:
        return np.asarray(grid.convert("RGB"), dtype=np.float64)


def test_lora_tables_are_read_and_checked() -> None:
    config = parse_engine_config(
        {
            "loras": {
                "Pixel": {
                    "source": "nerijs/pixel-art-xl",
                    "weight_name": "pixel-art-xl.safetensors",
                    "weight": 0.7,
                    "trigger": "pixel  art",
                    "family": "sdxl",
                }
            }
        }
    )
    assert config.loras == {
        "pixel": LoraPreset(
            "pixel", "nerijs/pixel-art-xl", "pixel-art-xl.safetensors", 0.7, "pixel art", "sdxl"
        )
    }
    bad = [
        ({"x": {}}, "loras.x.source is required"),
        ({"x.y": {"source": "a/b"}}, "a LoRA's name is what --lora takes"),
        ({"x": {"source": "a/b", "weight": 3}}, "loras.x.weight must be from -2 to 2"),
        ({"x": {"source": "a/b", "family": "flux"}}, "loras.x.family"),
        ({"x": {"source": "a/b", "scale": 1}}, "unknown key loras.x.scale"),
        ({"x": {"source": "/no/such/x.safetensors"}}, "loras.x.source: there is no file or"),
    ]
    for tables, message in bad:
        with pytest.raises(ConfigError, match=message):
            parse_engine_config({"loras": tables})


def test_the_flag_takes_names_with_weights() -> None:
    request = parse_prompt("a cat --lora Ink:0.5 other::-1 --ar 2:3")
    assert request.loras == (LoraUse("ink", 0.5), LoraUse("other", -1.0))
    for bad in ("--lora", "--lora ink:3", "--lora ink ink", "--lora a b c d e", "--lora a.b"):
        with pytest.raises(PromptError, match="--lora") as error:
            parse_prompt(f"a cat {bad}")
        assert error.value.title == "Invalid parameter"


def test_the_intake_fills_weights_and_triggers_and_names_what_it_cannot_use(
    config: EngineConfig,
) -> None:
    [prompt] = read_prompt("a cat --lora ink inkxl:0.5", config).prompts
    assert prompt.model == "tiny"
    assert prompt.request.loras == (LoraUse("ink", 0.8, "ink wash"),)  # SD: inkxl left out
    assert "`--lora inkxl` is for SDXL models and **tiny** is not one" in prompt.request.notes[0]
    [given] = read_prompt("a cat --lora ink:0.3", config).prompts
    assert given.request.loras == (LoraUse("ink", 0.3, "ink wash"),)

    with pytest.raises(PromptError, match=r"no LoRA called `nope` here; the LoRAs are: `ink`"):
        read_prompt("a cat --lora nope", config)
    with pytest.raises(PromptError, match="this server has none"):
        read_prompt("a cat --lora ink", replace(config, loras={}))


def test_jobs_with_other_loras_are_not_drawn_together(config: EngineConfig) -> None:
    def key(prompt: str) -> object:
        (job,) = prompt_jobs(read_prompt(prompt, config), "tester", 1)
        return batch_key(job, config)

    assert key("a cat --lora ink") == key("a dog --lora ink")
    assert key("a cat --lora ink") != key("a cat --lora ink:0.5") != key("a cat")


@pytest.mark.parametrize("model", FAMILIES)
def test_a_lora_changes_the_picture_and_switches_off_for_the_next_job(
    config: EngineConfig, model: str
) -> None:
    generator = Generator(replace(config, model=model))
    lora = "ink" if model == "tiny" else "inkxl"
    plain = pixels(draw(generator, "a harbour --seed 5 --steps 2", model))

    with_lora = draw(generator, f"a harbour --seed 5 --steps 2 --lora {lora}", model)
    after = pixels(draw(generator, "a harbour --seed 5 --steps 2", model))
    at_zero = pixels(draw(generator, f"a harbour --seed 5 --steps 2 --lora {lora}:0", model))
    again = pixels(draw(generator, f"a harbour --seed 5 --steps 2 --lora {lora}", model))

    assert np.abs(pixels(with_lora) - plain).mean() > 1.0
    assert np.array_equal(after, plain)  # off again, and no embedding kept from the LoRA's run
    assert np.abs(at_zero - plain).max() <= 1.0  # weight 0: the model as it is (rounding)
    assert np.array_equal(again, pixels(with_lora))
    # the text encoders' LoRA too: drawn first in a new engine, nothing kept from before
    fresh = draw(Generator(generator.config), f"a harbour --seed 5 --steps 2 --lora {lora}", model)
    assert np.array_equal(pixels(fresh), pixels(with_lora))
    meta = read_metadata(with_lora.images[0])
    expected = 0.8 if model == "tiny" else 1.0
    assert meta["loras"] == [{"name": lora, "weight": expected}]
    if model == "tiny":
        assert meta["prompt"].startswith("a harbour, ink wash")  # its trigger words


def test_the_trigger_words_are_encoded(config: EngineConfig) -> None:
    """The trigger words are part of what the text encoder reads: the same LoRA without them
    draws something else."""
    generator = Generator(config)
    worded = pixels(draw(generator, "a harbour --seed 5 --steps 2 --lora ink"))
    silent = replace(config, loras={"ink": replace(LORAS["ink"], trigger="")})
    bare = pixels(draw(Generator(silent), "a harbour --seed 5 --steps 2 --lora ink"))
    assert np.abs(worded - bare).mean() > 0.5


def test_a_lora_that_cannot_load_fails_the_job_with_its_name(
    config: EngineConfig, tmp_path: Path
) -> None:
    broken = LoraPreset("broken", str(tmp_path / "missing.safetensors"))
    generator = Generator(replace(config, loras={**LORAS, "broken": broken}))
    (job,) = prompt_jobs(read_prompt("a cat --lora broken", generator.config), "tester", 1)
    with pytest.raises((ModelLoadError, GenerationError), match="could not load the LoRA `broken`"):
        run(generator, job)
    assert not generator.is_loaded(job)

    # an SD LoRA on SDXL, its family not said: the message says what to set
    unsure = replace(generator.config, loras={"ink": replace(LORAS["ink"], family=None)})
    (job,) = prompt_jobs(read_prompt("a cat --lora ink --v tiny-xl", unsure), "tester", 1)
    with pytest.raises(ModelLoadError, match=r"into tiny-xl: .*Say which in \[loras.ink\] family"):
        run(Generator(unsure), job)


def test_a_lora_on_fused_qkv_projections_draws_as_on_unfused_ones(config: EngineConfig) -> None:
    """fuse_qkv replaces the projections a LoRA patches: they are unfused before it loads."""

    def fused(preset: ModelPreset, config: EngineConfig) -> Any:
        pipe = load_pipeline(preset, config)
        tune(pipe, SpeedConfig(channels_last=False, fuse_qkv=True), config.models_dir, force=True)
        return pipe

    prompt = "a harbour --seed 5 --steps 2 --lora ink"
    expected = pixels(draw(Generator(config), prompt))
    assert np.abs(pixels(draw(Generator(config, loader=fused), prompt)) - expected).max() <= 1.0


def test_a_users_own_loras_apply_to_prompts_and_blends_without_their_own(
    config: EngineConfig,
) -> None:
    prefs = Preferences(loras=("ink", "inkxl", "gone"))  # "gone": left the config since
    [plain] = read_prompt("a cat", config, prefs).prompts
    assert plain.request.loras == (LoraUse("ink", 0.8, "ink wash"),)  # the SD one, on tiny
    assert plain.request.notes == ()  # nothing to say: the prompt named none
    [typed] = read_prompt("a cat --lora ink:0.2", config, prefs).prompts
    assert typed.request.loras == (LoraUse("ink", 0.2, "ink wash"),)
    links = ["https://x.com/a.png", "https://x.com/b.png"]
    [blend] = read_blend(links, (2, 3), config, prefs).prompts
    assert blend.request.loras == (LoraUse("ink", 0.8, "ink wash"),)


def test_past_max_loaded_loras_the_least_recently_used_is_unloaded(config: EngineConfig) -> None:
    loras = {"ink": LORAS["ink"], "ink2": replace(LORAS["ink"], name="ink2", trigger="")}
    generator = Generator(replace(config, loras=loras, max_loaded_loras=1))
    plain = pixels(draw(generator, "a harbour --seed 5 --steps 2"))
    first = pixels(draw(generator, "a harbour --seed 5 --steps 2 --lora ink"))

    draw(generator, "a harbour --seed 5 --steps 2 --lora ink2")

    pipe = generator.model("tiny").pipe
    assert pipe.get_list_adapters() == {"unet": ["ink2"], "text_encoder": ["ink2"]}
    (again,) = prompt_jobs(read_prompt("a harbour --lora ink", generator.config), "tester", 1)
    assert not generator.is_loaded(again)  # loaded again when it runs, and draws as before
    assert np.array_equal(pixels(draw(generator, "a harbour --seed 5 --steps 2 --lora ink")), first)
    draw(generator, "a harbour --seed 5 --steps 2 --lora ink ink2")  # a job's own all stay
    assert sorted(pipe.get_list_adapters()["unet"]) == ["ink", "ink2"]
    assert np.array_equal(pixels(draw(generator, "a harbour --seed 5 --steps 2")), plain)
