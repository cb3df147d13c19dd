"""Edit jobs on the tiny models: Zoom Out, Pan, Make Square and Vary (Region) end to end."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import canvas
from engine.config import EngineConfig, parse_engine_config
from engine.generate import GenerationError, Generator, JobCancelledError
from engine.jobs import Direction, Edit, Job, JobResult, Tool, edit_job, imagine_job, new_job_id
from engine.prompt import parse_prompt
from engine.storage import read_metadata
from engine.tiny import build_tiny_inpaint
from tests.engine.conftest import FAMILIES, Recorder, run

REGION_BOX = (40, 24, 100, 72)  # the white rectangle of the test mask, on a 160×96 source


def source_job(generator: Generator, size: tuple[int, int], model: str = "tiny") -> Job:
    """A finished job whose image 1 is smooth random colours of `size` (in the image store)."""
    job = replace(imagine_job(parse_prompt("a lake"), model=model, seed=1), id=new_job_id())
    rng = np.random.default_rng(size[0] * size[1])
    small = rng.integers(0, 256, (max(1, size[1] // 8), max(1, size[0] // 8), 3), dtype=np.uint8)
    picture = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
    generator.store.save(picture, generator.store.image_path(job.id, 0), {})
    return job


def region_mask(generator: Generator, size: tuple[int, int]) -> str:
    mask = Image.new("L", size, 0)
    mask.paste(255, REGION_BOX)
    out = io.BytesIO()
    mask.save(out, format="PNG")
    return generator.inputs.put(out.getvalue())


def edit(generator: Generator, tool: Tool, model: str, seed: int = 7) -> tuple[Job, JobResult]:
    """`tool` on a source shaped for it (square for zoom and pan, 160×96 otherwise)."""
    size = (128, 128) if tool in (Tool.ZOOM, Tool.PAN) else (160, 96)
    source = source_job(generator, size, model)
    operation = {
        Tool.ZOOM: Edit(Tool.ZOOM, 1.0, aspect=(16, 9)),  # 168×96: latents 21×12, odd
        Tool.PAN: Edit(Tool.PAN, direction=Direction.LEFT),
        Tool.SQUARE: Edit(Tool.SQUARE),
        Tool.REGION: Edit(Tool.REGION, mask=region_mask(generator, size)),
    }[tool]
    job = replace(edit_job(source, 0, operation, owner="u"), seed=seed)
    return job, run(generator, job)


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def kept(generator: Generator, job: Job) -> tuple[np.ndarray, np.ndarray]:
    """What the result must hold where the mask is black (the source, resized into its box)
    and where that is (a bool array of the result's size)."""
    assert job.source is not None and job.edit is not None
    source = generator.store.load(job.source.job_id, job.source.index)
    lay = canvas.layout(job.edit, source.size, generator.config.preset(job.model), LIMITS)
    if job.edit.mask is not None:
        mask = canvas.read_mask(generator.inputs.path(job.edit.mask).read_bytes(), source.size)
    else:
        mask = canvas.outpaint_mask(lay)
    return np.asarray(canvas.canvas_image(source, lay)), np.asarray(mask) == 0


LIMITS = EngineConfig().limits
SIZES = {
    Tool.ZOOM: (168, 96),
    Tool.PAN: (192, 128),
    Tool.SQUARE: (160, 160),
    Tool.REGION: (160, 96),
}


@pytest.mark.parametrize("model", FAMILIES)
@pytest.mark.parametrize("tool", list(Tool))
def test_each_tool_makes_a_grid_of_its_size_keeping_the_source_outside_the_mask(
    generator: Generator, model: str, tool: Tool
) -> None:
    job, result = edit(generator, tool, model)

    assert (result.width, result.height) == SIZES[tool]
    assert len(result.images) == 4 and result.grid is not None
    expected, keep = kept(generator, job)
    assert keep.any() and not keep.all()
    for path in result.images:
        image = pixels(path)
        assert image.shape[:2] == keep.shape
        assert np.array_equal(image[keep], expected[keep])  # bit for bit
        assert not np.array_equal(image[~keep], expected[~keep])  # the rest is drawn anew


@pytest.mark.parametrize("model", FAMILIES)
def test_a_pan_keeps_the_source_on_its_side(generator: Generator, model: str) -> None:
    job, result = edit(generator, Tool.PAN, model)

    assert job.source is not None
    source = np.asarray(generator.store.load(job.source.job_id, 0))
    image = pixels(result.images[0])
    assert np.array_equal(image[:, 64 + 4 :], source[:, 4:])  # panned left: the source right


@pytest.mark.parametrize("model", FAMILIES)
def test_image_two_of_an_edit_is_image_one_of_the_edit_seeded_one_later(
    generator: Generator, model: str
) -> None:
    job, grid = edit(generator, Tool.PAN, model, seed=500)
    alone = run(generator, replace(job, id=new_job_id(), seed=501))

    assert grid.seeds == (500, 501, 502, 503)
    assert np.array_equal(pixels(grid.images[1]), pixels(alone.images[0]))
    assert not np.array_equal(pixels(grid.images[0]), pixels(grid.images[1]))


def test_the_png_metadata_records_the_operation(generator: Generator) -> None:
    job, result = edit(generator, Tool.REGION, "tiny")

    meta = read_metadata(result.images[2])
    assert job.edit is not None and job.source is not None
    assert meta["kind"] == "edit" and meta["strength"] == 1.0 and meta["seed"] == job.seed + 2
    assert meta["source"] == f"{job.source.job_id}/0"
    assert meta["edit"] == {
        "tool": "region",
        "zoom": None,
        "aspect": None,
        "direction": None,
        "mask": job.edit.mask,
        "box": [0, 0, 160, 96],
        "drawn": [160, 96],
    }
    zoom_job, zoomed = edit(generator, Tool.ZOOM, "tiny")
    entry = read_metadata(zoomed.grid)["edit"]  # type: ignore[arg-type]
    assert (entry["tool"], entry["zoom"], entry["aspect"], entry["box"]) == (
        "zoom",
        1.0,
        "16:9",
        [36, 0, 132, 96],
    )
    _, panned = edit(generator, Tool.PAN, "tiny")
    assert read_metadata(panned.images[0])["edit"]["direction"] == "left"
    assert read_metadata(result.images[0])["edit"] is not None
    assert zoom_job.edit is not None


def test_other_kinds_record_no_edit(generator: Generator) -> None:
    result = run(generator, imagine_job(parse_prompt("a fox --steps 1"), model="tiny"))

    assert read_metadata(result.images[0])["edit"] is None


def test_an_edit_reports_progress_with_previews(generator: Generator) -> None:
    source = source_job(generator, (128, 128))
    recorder = Recorder()
    job = edit_job(source, 0, Edit(Tool.ZOOM, 2.0), owner="u")

    generator.run(job, recorder.progress, recorder.cancelled)

    assert [(s, t) for s, t, _ in recorder.steps] == [(s, 8) for s in range(1, 9)]
    assert sum(p is not None for _, _, p in recorder.steps) == 3


def test_an_edit_can_be_cancelled(generator: Generator) -> None:
    source = source_job(generator, (128, 128))
    recorder = Recorder(cancel_at=2)
    job = edit_job(source, 0, Edit(Tool.PAN, direction=Direction.UP), owner="u")

    with pytest.raises(JobCancelledError):
        generator.run(job, recorder.progress, recorder.cancelled)
    assert max(s for s, _, _ in recorder.steps) < 8
    assert not generator.store.grid_path(job.id).exists()


def test_an_impossible_edit_fails_with_the_canvas_message(generator: Generator) -> None:
    source = source_job(generator, (128, 128))

    with pytest.raises(GenerationError, match="already square"):
        run(generator, edit_job(source, 0, Edit(Tool.SQUARE), owner="u"))


def test_an_edit_of_a_missing_image_or_mask_says_so(generator: Generator) -> None:
    ghost = imagine_job(parse_prompt("a fox"), model="tiny")
    with pytest.raises(FileNotFoundError, match="not in storage"):
        run(generator, edit_job(ghost, 0, Edit(Tool.ZOOM, 2.0), owner="u"))

    source = source_job(generator, (128, 128))
    lost = Edit(Tool.REGION, mask="0" * 64)
    with pytest.raises(FileNotFoundError, match="the mask of this job is no longer in storage"):
        run(generator, edit_job(source, 0, lost, owner="u"))


def test_the_inpaint_key_is_read_per_preset() -> None:
    config = parse_engine_config({"models": {"tiny": {"inpaint": "./inpainting"}}})

    assert config.preset("tiny").inpaint == "./inpainting"
    assert config.preset("tiny-xl").inpaint is None


@pytest.mark.parametrize("model", FAMILIES)
def test_a_configured_inpainting_model_is_loaded_on_first_edit_and_used(
    engine_config: EngineConfig, tmp_path: Path, model: str
) -> None:
    folder = build_tiny_inpaint(model, tmp_path / f"{model}-inpaint")
    preset = replace(engine_config.preset(model), inpaint=str(folder))
    generator = Generator(replace(engine_config, presets={**engine_config.presets, model: preset}))
    plain = Generator(engine_config)

    run(generator, imagine_job(parse_prompt("a fox --steps 1"), model=model))
    loaded = generator.model(model)
    assert loaded.inpaint is None  # not loaded for other kinds
    job, result = edit(generator, Tool.PAN, model)

    assert loaded.inpaint is not None and loaded.inpaint.unet.config.in_channels == 9
    assert loaded.inpaint.vae is loaded.pipe.vae  # shared, not loaded twice
    assert loaded.inpaint.text_encoder is loaded.pipe.text_encoder
    assert job.source is not None
    plain.store.save(  # the same source, edited by the base model instead
        generator.store.load(job.source.job_id, 0), plain.store.image_path(job.source.job_id, 0), {}
    )
    base = run(plain, replace(job, id=new_job_id()))
    assert not np.array_equal(pixels(result.images[0]), pixels(base.images[0]))
    expected, keep = kept(generator, job)
    assert np.array_equal(pixels(result.images[0])[keep], expected[keep])
