"""Image prompts, --sref and --oref through the tiny presets' IP-Adapter (built offline)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from engine.adapter import SLOTS, reference_scale
from engine.config import ConfigError, EngineConfig, IPAdapterFiles, parse_engine_config
from engine.generate import Generator
from engine.jobs import Job, JobResult, Strength, imagine_job, upscale_job, vary_job
from engine.loader import ModelLoadError
from engine.prompt import parse_prompt
from engine.storage import read_metadata
from tests.engine.conftest import FAMILIES, imagine, run
from tests.engine.test_generate import distance, with_preset


def stored(generator: Generator, model: str = "tiny") -> tuple[str, str]:
    """Two pictures the tiny model drew, kept as image inputs (their digests)."""
    first = imagine(generator, "a blue lake at night --seed 11", model).images[0]
    second = imagine(generator, "a green hill --seed 5", model).images[0]
    return generator.inputs.put(first.read_bytes()), generator.inputs.put(second.read_bytes())


def draw(generator: Generator, prompt: str, model: str = "tiny", **refs: object) -> JobResult:
    request = replace(parse_prompt(prompt), **refs)  # type: ignore[arg-type]
    return run(generator, imagine_job(request, model=model))


@pytest.mark.parametrize("model", FAMILIES)
def test_an_image_prompt_steers_the_adapter_more_with_a_higher_iw(
    generator: Generator, model: str
) -> None:
    lake, _ = stored(generator, model)
    plain = draw(generator, "a red fox --seed 3", model)

    off = draw(generator, "a red fox --seed 3 --iw 0", model, image_inputs=(lake,))
    weak = draw(generator, "a red fox --seed 3 --iw 0.5", model, image_inputs=(lake,))
    strong = draw(generator, "a red fox --seed 3 --iw 3", model, image_inputs=(lake,))

    assert distance(off.grid, plain.grid) == 0.0  # --iw 0: the adapter's scale is 0
    assert 0 < distance(weak.grid, plain.grid) < distance(strong.grid, plain.grid)
    meta = read_metadata(strong.images[0])
    assert meta["image_prompt_mode"] == "adapter" and meta["image_prompts"] == [lake]
    assert meta["strength"] is None  # drawn from noise, not img2img from the picture
    assert strong.steps == 8


def test_a_job_without_images_draws_the_same_once_the_adapter_is_loaded(
    generator: Generator,
) -> None:
    before = imagine(generator, "a red fox --seed 3")
    lake, _ = stored(generator)
    draw(generator, "a red fox --seed 3", image_inputs=(lake,))  # loads the adapter

    assert distance(imagine(generator, "a red fox --seed 3").grid, before.grid) == 0.0


def test_the_same_seed_and_references_give_the_same_grid(generator: Generator) -> None:
    lake, hill = stored(generator)
    refs = {"image_inputs": (lake,), "style_inputs": (hill,), "style_input_weights": (1.0,)}
    first = draw(generator, "a red fox --seed 9", **refs)
    again = draw(generator, "a red fox --seed 9", **refs)
    assert distance(first.grid, again.grid) == 0.0


def test_a_style_reference_acts_on_the_style_block_alone(generator: Generator) -> None:
    lake, _ = stored(generator)
    plain = draw(generator, "a red fox --seed 3")
    styled = draw(generator, "a red fox --seed 3", style_inputs=(lake,), style_input_weights=(1.0,))
    assert distance(styled.grid, plain.grid) > 0

    unet = generator.model("tiny").pipe.unet
    style = SLOTS.index("style")
    scaled = {
        name.removesuffix(".processor")
        for name, processor in unet.attn_processors.items()
        if hasattr(processor, "scale") and processor.scale[style] != 0
    }
    # the tiny UNet's first up block has 2 attentions: the style one is the second
    assert scaled == {"up_blocks.0.attentions.1.transformer_blocks.0.attn2"}
    assert [p.scale[style] for p in unet.attn_processors.values() if hasattr(p, "scale")].count(
        1.0
    ) == 1  # --sw 100 is scale 1
    meta = read_metadata(styled.images[0])
    assert meta["style_refs"] == [lake] and meta["style_weight"] == 100


def test_sw_scales_the_style_and_zero_turns_it_off(generator: Generator) -> None:
    lake, _ = stored(generator)
    refs = {"style_inputs": (lake,), "style_input_weights": (1.0,)}
    plain = draw(generator, "a red fox --seed 3")
    off = draw(generator, "a red fox --seed 3 --sw 0", **refs)
    weak = draw(generator, "a red fox --seed 3 --sw 20", **refs)
    strong = draw(generator, "a red fox --seed 3 --sw 1000", **refs)

    assert distance(off.grid, plain.grid) == 0.0
    assert 0 < distance(weak.grid, plain.grid) < distance(strong.grid, plain.grid)
    assert reference_scale(100) == 1.0 and reference_scale(0) == 0.0
    assert reference_scale(1000) == pytest.approx(20 / 11)


def test_style_weights_in_the_url_change_the_mix(generator: Generator) -> None:
    lake, hill = stored(generator)
    refs = {"style_inputs": (lake, hill)}
    even = draw(generator, "a red fox --seed 3", **refs, style_input_weights=(1.0, 1.0))
    lake_heavy = draw(generator, "a red fox --seed 3", **refs, style_input_weights=(5.0, 1.0))
    just_lake = draw(
        generator, "a red fox --seed 3", style_inputs=(lake,), style_input_weights=(1.0,)
    )

    assert distance(lake_heavy.grid, just_lake.grid) < distance(even.grid, just_lake.grid)
    assert read_metadata(lake_heavy.images[0])["style_ref_weights"] == [5.0, 1.0]


def test_an_object_reference_uses_every_block_and_cw_counts_as_ow(
    generator: Generator,
) -> None:
    lake, _ = stored(generator)
    plain = draw(generator, "a red fox --seed 3")
    kept = draw(generator, "a red fox --seed 3 --ow 400", object_inputs=(lake,))
    as_cref = draw(generator, "a red fox --seed 3 --cw 50", object_inputs=(lake,))
    as_oref = draw(generator, "a red fox --seed 3 --ow 50", object_inputs=(lake,))
    default = draw(generator, "a red fox --seed 3", object_inputs=(lake,))

    assert distance(kept.grid, plain.grid) > distance(default.grid, plain.grid) > 0
    assert distance(as_cref.grid, as_oref.grid) == 0.0  # --cw 50 is --ow 50
    assert distance(as_cref.grid, default.grid) > 0
    unet = generator.model("tiny").pipe.unet
    slot = SLOTS.index("object")
    scales = [p.scale[slot] for p in unet.attn_processors.values() if hasattr(p, "scale")]
    assert len(scales) > 1 and set(scales) == {1.0}
    assert read_metadata(kept.images[0])["object_weight"] == 400


def test_image_prompts_style_and_object_references_combine(generator: Generator) -> None:
    lake, hill = stored(generator)
    only_image = draw(generator, "a red fox --seed 3", image_inputs=(lake,))
    all_three = draw(
        generator,
        "a red fox --seed 3",
        image_inputs=(lake,),
        style_inputs=(hill,),
        style_input_weights=(1.0,),
        object_inputs=(hill,),
    )
    assert distance(all_three.grid, only_image.grid) > 0
    meta = read_metadata(all_three.images[0])
    assert (meta["image_prompts"], meta["style_refs"], meta["object_refs"]) == (
        [lake],
        [hill],
        [hill],
    )


def test_variations_and_upscales_keep_the_references(generator: Generator) -> None:
    lake, _ = stored(generator)
    plain = imagine_job(parse_prompt("a red fox --seed 3"), model="tiny")
    styled = replace(
        plain, request=replace(plain.request, style_inputs=(lake,), style_input_weights=(1.0,))
    )
    run(generator, styled)

    def vary(request_of: Job) -> JobResult:  # V1 of the styled grid, with or without --sref
        job = vary_job(styled, 0, Strength.STRONG, owner="", request=request_of.request)
        return run(generator, replace(job, seed=4))

    styled_vary, plain_vary = vary(styled), vary(plain)
    assert distance(styled_vary.grid, plain_vary.grid) > 0
    assert read_metadata(styled_vary.images[0])["style_refs"] == [lake]

    upscaled = run(generator, upscale_job(styled, 0, Strength.SUBTLE, owner=""))
    assert read_metadata(upscaled.images[0])["style_refs"] == [lake]


def test_a_job_with_images_counts_as_loading_until_the_adapter_is_in(
    generator: Generator,
) -> None:
    lake, _ = stored(generator)
    with_image = imagine_job(replace(parse_prompt("a fox"), image_inputs=(lake,)), model="tiny")
    without = imagine_job(parse_prompt("a fox"), model="tiny")

    assert generator.is_loaded(without) and not generator.is_loaded(with_image)
    generator.load(with_image)
    assert generator.is_loaded(with_image)


def test_an_adapter_that_cannot_load_says_which_and_how_to_go_without(
    engine_config: EngineConfig, tmp_path: Path
) -> None:
    empty = IPAdapterFiles(str(tmp_path), "ip-adapter.safetensors", "image_encoder")
    broken = with_preset(engine_config, ip_adapter=empty)
    lake = broken.inputs.put(imagine(broken, "a lake --seed 1").images[0].read_bytes())

    with pytest.raises(ModelLoadError) as error:
        draw(broken, "a red fox", image_inputs=(lake,))
    message = str(error.value)
    assert "image adapter of model preset 'tiny'" in message
    assert 'ip_adapter = ""' in message


def test_the_adapter_keys_of_a_preset(tmp_path: Path) -> None:
    def preset(table: dict[str, object]) -> object:
        data = {"storage": {"path": str(tmp_path)}, "models": {"mine": table}}
        return parse_engine_config(data).preset("mine")

    sd = preset({"source": "org/model", "family": "sd"})
    assert sd.ip_adapter == IPAdapterFiles(  # type: ignore[attr-defined]
        "h94/IP-Adapter", "models/ip-adapter_sd15.safetensors", "models/image_encoder"
    )
    mine = preset({"source": "org/model", "family": "sdxl", "ip_adapter": "/adapters/x"})
    assert mine.ip_adapter.source == "/adapters/x"  # type: ignore[attr-defined]
    off = preset({"source": "org/model", "family": "sdxl", "ip_adapter": ""})
    assert off.ip_adapter is None  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="ip_adapter_weights"):
        preset({"source": "org/model", "family": "sd", "ip_adapter_weights": ""})


@pytest.mark.parametrize("weight", [50, 100, 400])
def test_a_style_reference_moves_the_grid_less_than_an_object_reference_of_the_same_weight(
    generator: Generator, weight: int
) -> None:
    # What the recipe guarantees: the style slot acts on one attention layer, the object slot
    # on all of them, so at one weight the style reference changes less of the picture.
    lake, _ = stored(generator)
    plain = draw(generator, "a red fox --seed 3")
    styled = draw(
        generator,
        f"a red fox --seed 3 --sw {weight}",
        style_inputs=(lake,),
        style_input_weights=(1.0,),
    )
    kept = draw(generator, f"a red fox --seed 3 --ow {weight}", object_inputs=(lake,))

    assert 0 < distance(styled.grid, plain.grid) < distance(kept.grid, plain.grid)
