"""Generation on real diffusers pipelines (the tiny presets, both families), in-process."""

from __future__ import annotations

import io
import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine import plan as plan_module
from engine.config import DEFAULT_PRESETS, EngineConfig, JobLimits
from engine.generate import Batch, GenerationError, Generator, JobCancelledError, seamless
from engine.jobs import JobKind, JobResult, Strength, imagine_job, upscale_job, vary_job
from engine.prompt import parse_prompt
from engine.resolution import image_size, supported_aspects
from engine.storage import read_metadata
from engine.tiles import blend_tiles, tile_boxes
from tests.engine.conftest import FAMILIES, Recorder, imagine, run


def load(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def size_of(path: Path | None) -> tuple[int, int]:
    assert path is not None
    with Image.open(path) as image:
        return image.size


def pixels(path: Path | None) -> np.ndarray:
    assert path is not None
    return np.asarray(load(path), dtype=np.float64)


def layout(path: Path) -> np.ndarray:
    """The picture at 4×4: its composition and colours, without the fine detail."""
    return np.asarray(load(path).resize((4, 4), Image.Resampling.BOX), float)


def spread(paths: tuple[Path, ...]) -> float:
    """How different the images of a grid are from each other, in composition."""
    return float(
        np.mean([np.abs(layout(a) - layout(b)).mean() for a, b in itertools.combinations(paths, 2)])
    )


def distance(a: Path | None, b: Path | None) -> float:
    return float(np.abs(pixels(a) - pixels(b)).mean())


@pytest.mark.parametrize("model", FAMILIES)
@pytest.mark.parametrize("aspect", supported_aspects(), ids=lambda a: f"{a[0]}x{a[1]}")
def test_grid_has_four_images_of_the_aspect_size(
    generator: Generator, model: str, aspect: tuple[int, int]
) -> None:
    result = imagine(
        generator, f"a lighthouse --ar {aspect[0]}:{aspect[1]} --steps 1 --seed 3", model
    )

    width, height = image_size(aspect, generator.config.preset(model))
    assert (result.width, result.height) == (width, height)
    assert size_of(result.grid) == (2 * width, 2 * height)
    assert [size_of(p) for p in result.images] == [(width, height)] * 4
    assert (width > height) == (aspect[0] > aspect[1])


@pytest.mark.parametrize("model", FAMILIES)
def test_the_unet_and_vae_take_sides_that_are_odd_multiples_of_8(
    generator: Generator, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 16:9 is 168×96 on both tiny presets: a 21×12 latent, which the UNet's down-sampling does not
    # halve evenly (diffusers then sizes its upsamplers to the skips); --hd draws 240×136, 30×17.
    assert image_size((16, 9), generator.config.preset(model)) == (168, 96)
    unet = generator.model(model).pipe.unet
    forward = unet.forward
    latents: set[tuple[int, int]] = set()

    def spy(sample: torch.Tensor, *args: object, **kwargs: object) -> object:
        latents.add((sample.shape[-1], sample.shape[-2]))
        return forward(sample, *args, **kwargs)

    monkeypatch.setattr(unet, "forward", spy)
    result = imagine_with(generator, "a lighthouse --ar 16:9 --steps 2 --seed 3", model, hd=True)

    assert latents == {(21, 12), (30, 17)}
    assert (result.width, result.height) == (240, 136)
    assert [size_of(p) for p in result.images] == [(240, 136)] * 4
    for path in result.images:
        picture = pixels(path)
        assert np.isfinite(picture).all() and picture.std() > 1  # a picture, not a flat fill


@pytest.mark.parametrize("model", FAMILIES)
def test_image_three_equals_the_first_image_of_its_seed(generator: Generator, model: str) -> None:
    grid = imagine(generator, "a red fox --seed 1000 --chaos 40", model)
    alone = imagine(generator, "a red fox --seed 1002 --chaos 40", model)

    assert grid.seeds == (1000, 1001, 1002, 1003)
    assert np.array_equal(pixels(grid.images[2]), pixels(alone.images[0]))


def test_same_prompt_and_seed_give_the_same_pixels(generator: Generator) -> None:
    first = imagine(generator, "a red fox --ar 3:2 --seed 42")
    second = imagine(generator, "a red fox --ar 3:2 --seed 42")

    assert np.array_equal(pixels(first.grid), pixels(second.grid))


def test_different_seeds_give_different_images(generator: Generator) -> None:
    result = imagine(generator, "a red fox --seed 7")

    assert all(distance(a, b) > 1 for a, b in itertools.combinations(result.images, 2))


@pytest.mark.parametrize("model", FAMILIES)
def test_higher_chaos_makes_the_grid_images_differ_more(generator: Generator, model: str) -> None:
    calm = imagine(generator, "a red fox --seed 11", model)
    wild = imagine(generator, "a red fox --seed 11 --chaos 100", model)

    assert spread(wild.images) > 1.3 * spread(calm.images)


def test_chaos_grows_monotonically(generator: Generator) -> None:
    spreads = [
        spread(imagine(generator, f"a red fox --seed 21 --c {c}").images) for c in (0, 50, 100)
    ]

    assert spreads == sorted(spreads)


def test_stylize_zero_is_style_raw(generator: Generator) -> None:
    raw = imagine(generator, "a red fox --seed 5 --style raw")
    zero = imagine(generator, "a red fox --seed 5 --s 0")
    styled = imagine(generator, "a red fox --seed 5 --s 1000")

    assert np.array_equal(pixels(raw.grid), pixels(zero.grid))
    assert distance(styled.grid, raw.grid) > 0


def test_higher_stylize_moves_further_from_the_raw_prompt(generator: Generator) -> None:
    raw = imagine(generator, "a red fox --seed 5 --style raw")
    distances = [
        distance(imagine(generator, f"a red fox --seed 5 --s {s}").grid, raw.grid)
        for s in (50, 250, 1000)
    ]

    assert distances == sorted(distances) and distances[0] > 0


def test_weird_changes_the_images_more_as_it_grows(generator: Generator) -> None:
    plain = imagine(generator, "a red fox --seed 9")
    distances = [
        distance(imagine(generator, f"a red fox --seed 9 --w {w}").grid, plain.grid)
        for w in (250, 3000)
    ]

    assert 0 < distances[0] < distances[1]


def test_no_changes_the_images_and_is_recorded(generator: Generator) -> None:
    plain = imagine(generator, "a red fox --seed 9")
    negative = imagine(generator, "a red fox --seed 9 --no blue, water")

    assert distance(plain.grid, negative.grid) > 0
    assert read_metadata(negative.images[0])["negative_prompt"] == "blue, water"


def test_multi_prompt_weights_are_relative(generator: Generator) -> None:
    a = imagine(generator, "a red fox::2 a blue whale::1 --seed 4")
    same = imagine(generator, "a red fox::4 a blue whale::2 --seed 4")
    other = imagine(generator, "a red fox::1 a blue whale::2 --seed 4")

    assert np.array_equal(pixels(a.grid), pixels(same.grid))
    assert distance(a.grid, other.grid) > 0


def test_negative_weight_part_acts_like_no(generator: Generator) -> None:
    weighted = imagine(generator, "a red fox:: a blue whale::-0.5 --seed 4")
    no = imagine(generator, "a red fox --no a blue whale --seed 4")

    assert np.array_equal(pixels(weighted.grid), pixels(no.grid))


def test_prompt_past_77_tokens_still_counts(generator: Generator) -> None:
    words = " ".join(f"word{i}" for i in range(60))  # each "wordN" is several byte-level tokens
    short = imagine(generator, f"{words} --seed 2")
    longer = imagine(generator, f"{words} and a castle on a hill at night --seed 2")

    assert distance(short.grid, longer.grid) > 0


@pytest.mark.parametrize(
    ("flags", "total"),
    [
        ("", 8),
        ("--q .5", 4),
        ("--q 2", 16),
        ("--steps 6", 6),
        ("--stop 50", 4),
        ("--sampler heun", 8),  # second order: 15 callbacks for 8 steps
        ("--sampler dpmpp_2m --stop 50", 4),
    ],
)
def test_quality_steps_and_stop_set_the_steps_run(
    generator: Generator, flags: str, total: int
) -> None:
    recorder = Recorder()
    result = generator.run(
        imagine_job(parse_prompt(f"a fox {flags}"), model="tiny"),
        recorder.progress,
        recorder.cancelled,
    )

    assert {t for _, t, _ in recorder.steps} == {total}
    assert result.steps == total


def test_stop_changes_the_image_and_runs_with_euler(generator: Generator) -> None:
    full = imagine(generator, "a red fox --seed 8 --sampler euler")
    stopped = imagine(generator, "a red fox --seed 8 --sampler euler --stop 30")

    def detail(path: Path) -> float:  # mean absolute difference between neighbouring pixels
        p = pixels(path)
        return float(np.abs(np.diff(p, axis=1)).mean())

    assert detail(stopped.images[0]) != detail(full.images[0])
    assert read_metadata(stopped.images[0])["sampler"] == "euler"


def test_cfg_and_sampler_change_the_result_and_are_recorded(generator: Generator) -> None:
    base = imagine(generator, "a red fox --seed 3 --cfg 5 --sampler euler")
    cfg = imagine(generator, "a red fox --seed 3 --cfg 12 --sampler euler")
    sampler = imagine(generator, "a red fox --seed 3 --cfg 5 --sampler dpmpp_2m")

    assert distance(base.grid, cfg.grid) > 0 and distance(base.grid, sampler.grid) > 0
    meta = read_metadata(sampler.images[0])
    assert (meta["guidance"], meta["sampler"]) == (5.0, "dpmpp_2m")


def test_png_metadata_has_every_parameter(generator: Generator) -> None:
    result = imagine(generator, "a red fox --seed 77 --ar 3:2 --no snow --steps 5")
    meta = read_metadata(result.images[1])

    assert meta["prompt"].startswith("a red fox")
    assert meta["negative_prompt"] == "snow"
    assert (meta["seed"], meta["index"], meta["steps"]) == (78, 1, 5)
    assert (meta["width"], meta["height"]) == (result.width, result.height)
    assert meta["model"] == "tiny" and meta["model_revision"]
    assert meta["job_id"] == result.job_id and meta["sampler"] and meta["guidance"] == 5.0
    assert (meta["experimental"], meta["draft"], meta["hd"], meta["hd_steps"]) == (
        0,
        False,
        False,
        None,
    )
    assert (meta["style"], meta["personal_styles"]) == (None, [])
    with Image.open(result.images[1]) as image:
        parameters = image.info["parameters"]
    assert "Seed: 78" in parameters and "Negative prompt: snow" in parameters


def test_progress_sends_jpeg_previews(generator: Generator) -> None:
    recorder = Recorder()
    generator.run(
        imagine_job(parse_prompt("a fox --seed 1"), model="tiny"),
        recorder.progress,
        recorder.cancelled,
    )

    previews = [p for _, _, p in recorder.steps if p is not None]
    assert [s for s, _, _ in recorder.steps] == list(range(1, 9))
    assert len(previews) == 3  # every 2nd step, none at the end (the final image follows)
    image = Image.open(io.BytesIO(previews[0]))
    assert image.format == "JPEG" and image.width <= 2 * 192


def test_a_running_job_can_be_cancelled_and_nothing_is_decoded(generator: Generator) -> None:
    recorder = Recorder(cancel_at=2)
    job = imagine_job(parse_prompt("a fox"), model="tiny")
    vae = generator.model("tiny").pipe.vae
    decodes: list[object] = []
    original = vae.decode
    vae.decode = lambda *a, **k: decodes.append(a) or original(*a, **k)  # type: ignore[method-assign]

    with pytest.raises(JobCancelledError):
        generator.run(job, recorder.progress, recorder.cancelled)
    assert max(s for s, _, _ in recorder.steps) < 8
    assert not generator.store.grid_path(job.id).exists()
    assert decodes == []  # stopped at once: the VAE never ran for the discarded images


@pytest.mark.parametrize("model", FAMILIES)
@pytest.mark.parametrize("strength", [Strength.SUBTLE, Strength.STRONG])
def test_variation_gives_four_images_of_the_source_size(
    generator: Generator, model: str, strength: Strength
) -> None:
    source_job = imagine_job(parse_prompt("a red fox --ar 16:9 --seed 5"), model=model)
    source = run(generator, source_job)
    variation = run(generator, vary_job(source_job, 1, strength, owner="u"))

    assert len(variation.images) == 4
    assert (variation.width, variation.height) == (source.width, source.height)
    assert size_of(variation.grid) == (2 * source.width, 2 * source.height)
    assert variation.steps == int(8 * {Strength.SUBTLE: 0.5, Strength.STRONG: 0.85}[strength])


def test_strong_variation_moves_further_than_subtle(generator: Generator) -> None:
    source_job = imagine_job(parse_prompt("a red fox --seed 5"), model="tiny")
    source = run(generator, source_job)
    subtle = run(generator, vary_job(source_job, 0, Strength.SUBTLE, owner="u"))
    strong = run(generator, vary_job(source_job, 0, Strength.STRONG, owner="u"))

    def moved(result_images: tuple[Path, ...]) -> float:
        return float(np.mean([distance(p, source.images[0]) for p in result_images]))

    assert moved(subtle.images) < moved(strong.images)


@pytest.mark.parametrize("model", FAMILIES)
@pytest.mark.parametrize("strength", [Strength.SUBTLE, Strength.CREATIVE])
def test_upscale_doubles_the_size(generator: Generator, model: str, strength: Strength) -> None:
    source_job = imagine_job(parse_prompt("a red fox --ar 2:1 --seed 5"), model=model)
    source = run(generator, source_job)
    upscaled = run(generator, upscale_job(source_job, 3, strength, owner="u"))

    assert upscaled.grid is None and len(upscaled.images) == 1
    assert (upscaled.width, upscaled.height) == (2 * source.width, 2 * source.height)
    assert read_metadata(upscaled.images[0])["kind"] == JobKind.UPSCALE.value


@pytest.mark.parametrize(
    ("strength", "denoise"), [(Strength.SUBTLE, 0.3), (Strength.CREATIVE, 0.5)]
)
def test_upscale_strengths_are_the_documented_ones(
    generator: Generator, strength: Strength, denoise: float
) -> None:
    source_job = imagine_job(parse_prompt("a red fox --seed 5 --steps 10"), model="tiny")
    run(generator, source_job)
    upscaled = run(generator, upscale_job(source_job, 0, strength, owner="u"))

    meta = read_metadata(upscaled.images[0])
    assert (meta["strength"], meta["steps"]) == (denoise, int(10 * denoise))
    assert meta["source"] == f"{source_job.id}/0"


@pytest.mark.parametrize(
    ("size", "tile"), [((256, 256), 128), ((384, 128), 128), ((2048, 1536), 1024)]
)
def test_upscale_tiles_cover_the_image_and_blend_back_exactly(
    size: tuple[int, int], tile: int
) -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    boxes = tile_boxes(size, tile)

    covered = np.zeros((size[1], size[0]), bool)
    for x0, y0, x1, y1 in boxes:
        assert (x1 - x0, y1 - y0) == (min(tile, size[0]), min(tile, size[1]))
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    assert np.array_equal(
        np.asarray(blend_tiles(size, boxes, [image.crop(b) for b in boxes])), np.asarray(image)
    )


def test_vary_of_a_missing_image_says_so(generator: Generator) -> None:
    ghost = imagine_job(parse_prompt("a fox"), model="tiny")

    with pytest.raises(FileNotFoundError, match="not in storage"):
        run(generator, vary_job(ghost, 0, Strength.STRONG, owner="u"))


def wrap_seam(path: Path) -> float:
    """How much the right edge differs from the left edge, against neighbouring columns."""
    p = pixels(path)
    inner = np.abs(np.diff(p, axis=1)).mean()
    return float(np.abs(p[:, 0] - p[:, -1]).mean() / inner)


@pytest.mark.parametrize("model", FAMILIES)
def test_tile_wraps_around_seamlessly(generator: Generator, model: str) -> None:
    tiled = imagine(generator, "a brick wall --tile --seed 6", model)
    plain = imagine(generator, "a brick wall --seed 6", model)

    assert np.mean([wrap_seam(p) for p in tiled.images]) < np.mean(
        [wrap_seam(p) for p in plain.images]
    )
    assert read_metadata(tiled.images[0])["tile"] is True


def test_tile_padding_makes_the_decoder_shift_equivariant(generator: Generator) -> None:
    """With circular padding, rolling the latents rolls the decoded image by 8× as much."""
    vae = generator.model("tiny").pipe.vae
    latents = torch.randn((1, 4, 16, 16), generator=torch.Generator().manual_seed(0))
    latents = latents.to(vae.device, vae.dtype)
    with seamless(generator.model("tiny").pipe, True), torch.inference_mode():
        image = vae.decode(latents).sample
        shifted = vae.decode(torch.roll(latents, 5, dims=3)).sample
    tolerance = 1e-4 if vae.dtype == torch.float32 else 1e-2
    assert torch.allclose(torch.roll(image, 40, dims=3), shifted, atol=tolerance)
    assert all(c.padding_mode == "zeros" for c in vae.modules() if isinstance(c, torch.nn.Conv2d))


def test_out_of_memory_retries_in_smaller_chunks_with_the_same_pixels(
    generator: Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = imagine(generator, "a red fox --seed 31")
    unet = generator.model("tiny").pipe.unet
    forward = unet.forward
    batches: list[int] = []

    def limited(sample: torch.Tensor, *args: object, **kwargs: object) -> object:
        batches.append(sample.shape[0])
        if sample.shape[0] > 2:  # 2 = one image with its unconditional twin
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(sample, *args, **kwargs)

    monkeypatch.setattr(unet, "forward", limited)
    retried = imagine(generator, "a red fox --seed 31")

    # Equal but for float summation order at batch 1 vs 4: at most 1 level in a few pixels.
    difference = np.abs(pixels(retried.grid) - pixels(expected.grid))
    assert difference.max() <= 1 and difference.mean() < 0.01
    assert 8 in batches and 4 in batches and batches[-1] == 2


def test_an_out_of_memory_retry_keeps_the_images_already_drawn(
    generator: Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = imagine(generator, "a red fox --seed 31")
    unet = generator.model("tiny").pipe.unet
    forward = unet.forward
    batches: list[int] = []

    def limited(sample: torch.Tensor, *args: object, **kwargs: object) -> object:
        size = sample.shape[0]
        if size > 4 or (size == 4 and batches.count(4) == 8):  # 4 at once never fits; and
            raise torch.cuda.OutOfMemoryError("simulated")  # the 2nd pair fails at its start
        batches.append(size)
        return forward(sample, *args, **kwargs)

    monkeypatch.setattr(unet, "forward", limited)
    retried = imagine(generator, "a red fox --seed 31")

    # images 1-2 came from the pair that finished (8 steps at batch 4); only 3-4 ran again, alone
    assert batches == [4] * 8 + [2] * 16
    difference = np.abs(pixels(retried.grid) - pixels(expected.grid))
    assert difference.max() <= 1 and difference.mean() < 0.01


def test_out_of_memory_at_every_size_fails_with_a_clear_message(
    generator: Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    unet = generator.model("tiny").pipe.unet

    def always(*args: object, **kwargs: object) -> object:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(unet, "forward", always)
    with pytest.raises(GenerationError, match=r"ran out of memory .* 128×128 .*--ar"):
        imagine(generator, "a red fox")
    monkeypatch.undo()
    assert imagine(generator, "a red fox --steps 1").grid is not None  # still serving


def test_previews_use_taesd_when_the_preset_names_one(
    engine_config: EngineConfig, tmp_path: Path
) -> None:
    from dataclasses import replace

    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    taesd_dir = tmp_path / "taesd"
    AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
    ).save_pretrained(taesd_dir)
    preset = replace(engine_config.preset("tiny"), preview=str(taesd_dir))
    generator = Generator(replace(engine_config, presets={**engine_config.presets, "tiny": preset}))
    recorder = Recorder()

    generator.run(
        imagine_job(parse_prompt("a fox --seed 1"), model="tiny"),
        recorder.progress,
        recorder.cancelled,
    )

    assert generator.model("tiny").preview.taesd is not None
    previews = [p for _, _, p in recorder.steps if p is not None]
    with Image.open(io.BytesIO(previews[0])) as image:
        assert image.size == (2 * 128, 2 * 128)  # TAESD decodes to full size (the projection: 1/8)


def test_an_upscaler_that_cannot_load_falls_back_to_lanczos(
    engine_config: EngineConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from dataclasses import replace

    weights = tmp_path / "not-a-model.pth"
    weights.write_bytes(b"not a model")
    generator = Generator(replace(engine_config, upscaler=weights))
    source_job = imagine_job(parse_prompt("a red fox --seed 5 --steps 2"), model="tiny")
    run(generator, source_job)

    upscaled = run(generator, upscale_job(source_job, 0, Strength.SUBTLE, owner="u"))

    assert (upscaled.width, upscaled.height) == (256, 256)
    assert "upscaling with Lanczos" in caplog.text


def test_stop_keeps_the_first_noise_levels_of_the_full_schedule_then_jumps_to_zero() -> None:
    from engine.noise import stop_sigmas
    from engine.plan import Plan
    from engine.samplers import make_scheduler

    config = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
    full = make_scheduler("euler", config)
    full.set_timesteps(20)
    plan = Plan(
        steps=20, stop_at=6, guidance=5, sampler="euler", width=64, height=64, strength=None
    )

    sigmas = stop_sigmas(make_scheduler("euler", config), plan)

    assert sigmas == [*full.sigmas[:6].tolist(), 0.0]


def test_stop_runs_with_euler_whatever_sampler_was_asked(generator: Generator) -> None:
    stopped = imagine(generator, "a red fox --seed 8 --sampler dpmpp_2m --stop 30")

    assert read_metadata(stopped.images[0])["sampler"] == "euler"


def test_tile_makes_the_unet_shift_equivariant_too(generator: Generator) -> None:
    pipe = generator.model("tiny").pipe
    unet = pipe.unet
    g = torch.Generator().manual_seed(0)
    latents = torch.randn((1, 4, 16, 16), generator=g).to(unet.device, unet.dtype)
    text = torch.randn((1, 77, 32), generator=g).to(unet.device, unet.dtype)

    def shifted_error() -> float:
        with torch.inference_mode():
            out = unet(latents, 500, encoder_hidden_states=text).sample
            moved = unet(torch.roll(latents, 4, dims=3), 500, encoder_hidden_states=text).sample
        return float((torch.roll(out, 4, dims=3) - moved).abs().max())

    with seamless(pipe, True):
        assert shifted_error() < 1e-3
    assert shifted_error() > 1e-2  # without circular padding the edges differ


def test_tiled_images_wrap_vertically_too(generator: Generator) -> None:
    tiled = imagine(generator, "a brick wall --tile --seed 6")
    plain = imagine(generator, "a brick wall --seed 6")

    def vertical_seam(path: Path) -> float:
        p = pixels(path)
        return float(np.abs(p[0] - p[-1]).mean() / np.abs(np.diff(p, axis=0)).mean())

    assert np.mean([vertical_seam(p) for p in tiled.images]) < np.mean(
        [vertical_seam(p) for p in plain.images]
    )


def test_upscale_tiles_share_one_conditioning(
    generator: Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine import conditioning

    source_job = imagine_job(parse_prompt("a red fox --seed 5 --chaos 100 --w 1000"), model="tiny")
    run(generator, source_job)
    seen: list[tuple[int, ...]] = []
    encode = conditioning.encode

    def spy(text: object, preset: object, request: object, seeds: tuple[int, ...]) -> object:
        seen.append(seeds)
        return encode(text, preset, request, seeds)  # type: ignore[arg-type]

    monkeypatch.setattr(conditioning, "encode", spy)
    run(generator, upscale_job(source_job, 0, Strength.SUBTLE, owner="u"))

    assert len(seen) == 1 and len(seen[0]) == 9 and len(set(seen[0])) == 1


def test_a_kept_text_is_encoded_once_until_pushed_out(generator: Generator) -> None:
    from engine.conditioning import TextEncoder

    text = generator.model("tiny").text
    calls: list[str] = []
    compel = text._compel
    text._compel = lambda t: calls.append(t) or compel(t)  # type: ignore[method-assign]
    fox = text("a red fox")
    assert text("a red fox") is fox and calls == ["a red fox"]
    for i in range(TextEncoder.KEPT):
        text(f"a fox {i}")
    again = text("a red fox")
    assert calls.count("a red fox") == 2 and torch.equal(again.embeds, fox.embeds)


@pytest.mark.parametrize("model", FAMILIES)
def test_a_prompt_reaches_the_text_encoders_as_typed(generator: Generator, model: str) -> None:
    """Midjourney's prompts have no compel syntax: each text is encoded as diffusers' own
    `encode_prompt` encodes it, the pooled embedding (SDXL) too. Punctuation that compel reads
    as its syntax once reached CLIP with the backslashes that escaped it (`C\\+\\+`)."""
    loaded = generator.model(model)
    device = loaded.pipe.device
    for text in ["C++ programmer, well - done", 'a cat (orange) says "hi"', "C:\\path \\(x\\)"]:
        ours = loaded.text(text)
        theirs = loaded.pipe.encode_prompt(
            text, device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        assert torch.allclose(ours.embeds, theirs[0], atol=1e-5), text
        if ours.pooled is not None:
            assert torch.allclose(ours.pooled, theirs[2], atol=1e-5), text


def test_kept_embeddings_draw_what_a_fresh_encoding_draws(generator: Generator) -> None:
    """--chaos and --weird add noise to a job's rows in place: none of it reaches the kept
    embeddings of its prompt and the house style, which the next job reuses."""
    run(generator, imagine_job(parse_prompt("a red fox --seed 5 --c 100 --w 1000"), model="tiny"))
    again = run(generator, imagine_job(parse_prompt("a red fox --seed 5"), model="tiny"))
    fresh = run(
        Generator(generator.config), imagine_job(parse_prompt("a red fox --seed 5"), model="tiny")
    )
    assert np.array_equal(pixels(again.grid), pixels(fresh.grid))


@pytest.mark.parametrize("model", FAMILIES)
def test_a_half_precision_model_stays_in_it_through_every_kind_of_job(
    engine_config: EngineConfig, model: str
) -> None:
    """Each call builds its pipeline from the loaded one's parts (`from_pipe`); that must never
    cast them (diffusers' `DiffusionPipeline.from_pipe` casts to float32 unless told a dtype:
    on a GPU, every job would turn a bfloat16 model into a float32 one). bfloat16 runs on a CPU
    too, so this holds there."""
    from engine.jobs import Direction, Edit, Tool, edit_job

    generator = Generator(replace(engine_config, dtype="bfloat16"))
    source = imagine_job(parse_prompt("a red fox --seed 5 --steps 2"), model=model)
    jobs = [
        source,
        vary_job(source, 0, Strength.STRONG, owner="u"),
        upscale_job(source, 0, Strength.SUBTLE, owner="u"),
        edit_job(source, 0, Edit(Tool.PAN, direction=Direction.LEFT), owner="u"),
    ]
    pipe = generator.model(model).pipe
    for job in jobs:
        run(generator, job)
        dtypes = {
            name: {p.dtype for p in getattr(pipe, name).parameters()}
            for name in ("unet", "vae", "text_encoder")
        }
        assert all(kinds == {torch.bfloat16} for kinds in dtypes.values()), (job.kind, dtypes)


def test_past_max_loaded_models_the_least_recently_used_is_unloaded(
    engine_config: EngineConfig,
) -> None:
    from dataclasses import replace

    generator = Generator(replace(engine_config, max_loaded_models=1))
    tiny = generator.model("tiny")
    assert generator.model("tiny") is tiny  # loaded once
    generator.model("tiny-xl")

    assert list(generator._models) == ["tiny-xl"]
    assert generator.model("tiny") is not tiny  # loaded again


def test_pooled_embedding_is_the_weighted_mean_of_the_parts() -> None:
    from engine.conditioning import Encoded, _conjunction

    vectors = {"": 0.0, "a fox": 1.0, "style": 3.0}

    def encode_text(text: str) -> Encoded:
        v = vectors[text]
        return Encoded(torch.full((1, 77, 4), v), torch.full((1, 4), v))

    out = _conjunction(encode_text, [("a fox", 1.0), ("style", 0.5)], encode_text(""))

    assert out.pooled is not None
    assert torch.allclose(out.pooled, torch.full((1, 4), (1.0 + 0.5 * 3.0) / 1.5))
    assert out.embeds.shape == (1, 154, 4)
    assert torch.allclose(out.embeds[:, 77:], torch.full((1, 77, 4), 1.5))  # empty + 0.5 × style


def imagine_with(
    generator: Generator, prompt: str, model: str = "tiny", **changes: object
) -> JobResult:
    """An imagine job whose request has `changes` (fields the parser may not fill yet)."""
    request = replace(parse_prompt(prompt), **changes)  # type: ignore[arg-type]
    return run(generator, imagine_job(request, model=model))


def with_preset(engine_config: EngineConfig, **changes: object) -> Generator:
    """A generator whose "tiny" preset has `changes` (same model)."""
    preset = replace(engine_config.preset("tiny"), **changes)  # type: ignore[arg-type]
    return Generator(replace(engine_config, presets={**engine_config.presets, "tiny": preset}))


# --exp
def test_exp_moves_the_grid_further_as_it_grows(generator: Generator) -> None:
    plain = imagine(generator, "a red fox --seed 5")
    distances = [
        distance(imagine_with(generator, "a red fox --seed 5", experimental=e).grid, plain.grid)
        for e in (25, 100)
    ]

    assert 0 < distances[0] < distances[1]


def test_exp_raises_the_recorded_guidance_unless_cfg_is_given(generator: Generator) -> None:
    raised = imagine_with(generator, "a red fox --seed 5", experimental=100)
    given = imagine_with(generator, "a red fox --seed 5 --cfg 4", experimental=100)

    assert read_metadata(raised.images[0])["guidance"] == 7.5  # tiny: 5 × 1.5
    assert read_metadata(given.images[0])["guidance"] == 4.0
    assert read_metadata(given.images[0])["experimental"] == 100


def test_exp_strengthens_the_house_style_even_at_stylize_zero_but_not_with_raw(
    generator: Generator,
) -> None:
    def grid(prompt: str, exp: int) -> Path | None:  # --cfg fixed: only the style part moves
        return imagine_with(
            generator, f"a red fox --seed 5 --cfg 5 {prompt}", experimental=exp
        ).grid

    assert distance(grid("", 100), grid("", 0)) > 0
    assert distance(grid("--s 0", 100), grid("--s 0", 0)) > 0
    assert np.array_equal(pixels(grid("--style raw", 100)), pixels(grid("--style raw", 0)))


def test_style_weight_with_exp_and_its_cap() -> None:
    from engine.conditioning import style_weight

    def weight(stylize: int, exp: int, raw: bool = False) -> float:
        request = replace(parse_prompt("a fox"), stylize=stylize, experimental=exp, style_raw=raw)
        return style_weight(request)

    assert weight(0, 100) == 0.5
    assert weight(250, 50) == pytest.approx(0.75)
    assert weight(1000, 0) == 1.0 and weight(1000, 100) == 1.5  # capped
    assert weight(0, 0) == 0.0 and weight(1000, 100, raw=True) == 0.0


# --draft, --q 4, the step cap
@pytest.mark.parametrize(
    ("prompt", "changes", "total"),
    [
        ("a fox", {"draft": True}, 2),
        ("a fox --q 2", {"draft": True}, 4),
        ("a fox", {"quality": 4.0}, 32),
        ("a fox --steps 150 --q 2", {}, 150),
    ],
    ids=["draft", "draft-q2", "q4", "capped"],
)
def test_draft_quality_four_and_the_step_cap_set_the_steps_run(
    generator: Generator, prompt: str, changes: dict[str, object], total: int
) -> None:
    recorder = Recorder()
    request = replace(parse_prompt(prompt), **changes)  # type: ignore[arg-type]
    result = generator.run(
        imagine_job(request, model="tiny"), recorder.progress, recorder.cancelled
    )

    assert {t for _, t, _ in recorder.steps} == {total}
    assert result.steps == total == read_metadata(result.images[0])["steps"]
    assert read_metadata(result.images[0])["draft"] is bool(changes.get("draft"))


# --hd
@pytest.mark.parametrize("model", FAMILIES)
def test_hd_makes_the_images_one_and_a_half_times_the_size(
    generator: Generator, model: str
) -> None:
    result = imagine_with(generator, "a red fox --seed 5", model, hd=True)

    assert (result.width, result.height) == (192, 192)
    assert [size_of(p) for p in result.images] == [(192, 192)] * 4
    assert size_of(result.grid) == (384, 384)
    assert result.steps == 8 + 3  # int(8 × 0.45) steps in the second pass
    meta = read_metadata(result.images[0])
    assert (meta["hd"], meta["hd_steps"], meta["hd_strength"], meta["steps"]) == (True, 3, 0.45, 11)
    assert (meta["width"], meta["height"]) == (192, 192)
    with Image.open(result.images[0]) as image:
        assert "Steps: 8," in image.info["parameters"]
        assert "Hires steps: 3" in image.info["parameters"]


def test_hd_second_pass_starts_from_the_enlarged_first_pass(
    generator: Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = imagine(generator, "a red fox --seed 5 --chaos 50")
    batches: list[Batch] = []
    call = Generator._call

    def spy(self: Generator, batch: Batch, on_step: object) -> list[Image.Image]:
        batches.append(batch)
        return call(self, batch, on_step)  # type: ignore[arg-type]

    monkeypatch.setattr(Generator, "_call", spy)
    imagine_with(generator, "a red fox --seed 5 --chaos 50", hd=True)

    first, second = batches
    assert first.inits is None and second.inits is not None
    assert [image.size for image in second.inits] == [(192, 192)] * 4
    shrunk = [
        np.asarray(i.resize((128, 128), Image.Resampling.LANCZOS), float) for i in second.inits
    ]
    for i, image in enumerate(shrunk):  # close to the non-HD image of the same seed, no other
        gaps = [float(np.abs(image - pixels(p)).mean()) for p in plain.images]
        assert gaps[i] < min(g for j, g in enumerate(gaps) if j != i) / 5
    assert tuple(second.seeds) == tuple(first.seeds) == plain.seeds
    assert torch.equal(second.cond.embeds, first.cond.embeds)  # chaos included
    assert second.plan.strength == 0.45
    keep = ("steps", "guidance", "sampler")
    assert [getattr(second.plan, k) for k in keep] == [getattr(first.plan, k) for k in keep]


def test_hd_refines_the_picture_rather_than_redrawing_it(
    generator: Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tiny models' random VAE does not give back the picture it encodes, so even a light
    img2img pass moves far; a pass at HD_STRENGTH must still stay closer than a full redraw."""
    plain = imagine(generator, "a red fox --seed 5")

    def moved(result: JobResult) -> float:
        def small(path: Path) -> np.ndarray:
            return np.asarray(load(path).resize((128, 128), Image.Resampling.LANCZOS), float)

        pairs = zip(result.images, plain.images, strict=True)
        return float(np.mean([np.abs(small(h) - pixels(p)).mean() for h, p in pairs]))

    refined = imagine_with(generator, "a red fox --seed 5", hd=True)
    monkeypatch.setattr(plan_module, "HD_STRENGTH", 1.0)
    redrawn = imagine_with(generator, "a red fox --seed 5", hd=True)

    assert moved(refined) < 0.9 * moved(redrawn)
    assert read_metadata(plain.images[0])["hd"] is False


def test_hd_progress_runs_once_over_both_passes(generator: Generator) -> None:
    recorder = Recorder()
    request = replace(parse_prompt("a fox --seed 1"), hd=True)

    generator.run(imagine_job(request, model="tiny"), recorder.progress, recorder.cancelled)

    assert [s for s, _, _ in recorder.steps] == list(range(1, 12))
    assert {t for _, t, _ in recorder.steps} == {11}


def test_hd_job_can_be_cancelled_in_the_second_pass(generator: Generator) -> None:
    recorder = Recorder(cancel_at=9)  # the first pass ends at step 8
    job = imagine_job(replace(parse_prompt("a fox"), hd=True), model="tiny")

    with pytest.raises(JobCancelledError):
        generator.run(job, recorder.progress, recorder.cancelled)
    assert 9 <= max(s for s, _, _ in recorder.steps) < 11
    assert not generator.store.grid_path(job.id).exists()


def test_hd_second_pass_retries_in_smaller_chunks_when_out_of_memory(
    generator: Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = imagine_with(generator, "a red fox --seed 31", hd=True)
    unet = generator.model("tiny").pipe.unet
    forward = unet.forward
    batches: list[tuple[int, int]] = []

    def limited(sample: torch.Tensor, *args: object, **kwargs: object) -> object:
        batches.append((sample.shape[0], sample.shape[-1]))
        if sample.shape[-1] == 192 // 8 and sample.shape[0] > 2:  # only the --hd pass
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(sample, *args, **kwargs)

    monkeypatch.setattr(unet, "forward", limited)
    retried = imagine_with(generator, "a red fox --seed 31", hd=True)

    difference = np.abs(pixels(retried.grid) - pixels(expected.grid))
    assert difference.max() <= 1 and difference.mean() < 0.01
    assert (8, 16) in batches and (8, 24) in batches and batches[-1] == (2, 24)


def test_hd_second_pass_keeps_tile_padding(
    generator: Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    unet = generator.model("tiny").pipe.unet
    forward = unet.forward
    modes: dict[int, set[str]] = {}  # latent width → padding modes seen

    def spy(sample: torch.Tensor, *args: object, **kwargs: object) -> object:
        modes.setdefault(sample.shape[-1], set()).add(unet.conv_in.padding_mode)
        return forward(sample, *args, **kwargs)

    monkeypatch.setattr(unet, "forward", spy)
    imagine_with(generator, "a brick wall --tile --seed 6 --steps 3", hd=True)

    assert modes == {16: {"circular"}, 24: {"circular"}}
    assert unet.conv_in.padding_mode == "zeros"


def test_a_variation_of_an_upscale_is_drawn_at_the_models_size(generator: Generator) -> None:
    source_job = imagine_job(parse_prompt("a red fox --seed 5 --ar 3:2"), model="tiny")
    run(generator, source_job)
    upscale = upscale_job(source_job, 0, Strength.SUBTLE, owner="u")
    upscaled = run(generator, upscale)
    assert (upscaled.width, upscaled.height) == (336, 224)

    variation = run(generator, vary_job(upscale, 0, Strength.STRONG, owner="u"))

    assert (variation.width, variation.height) == image_size((3, 2), TINY) == (168, 112)


def test_no_job_makes_an_image_past_max_pixels(engine_config: EngineConfig) -> None:
    limits = JobLimits(max_pixels=32_000)
    generator = Generator(replace(engine_config, limits=limits))
    source_job = imagine_job(parse_prompt("a red fox --seed 5 --ar 3:2 --hd"), model="tiny")
    source = run(generator, source_job)
    assert (source.width, source.height) == (216, 144)  # --hd's 240×160, shrunk to fit, still 3:2
    upscale = upscale_job(source_job, 0, Strength.SUBTLE, owner="u")
    upscaled = run(generator, upscale)
    again = run(generator, upscale_job(upscale, 0, Strength.SUBTLE, owner="u"))  # a forged press

    for result in (upscaled, again):
        assert result.width * result.height <= limits.max_pixels
        assert size_of(result.images[0]) == (result.width, result.height)
    assert upscaled.width > upscaled.height  # its shape kept
    assert (upscaled.width, upscaled.height) == (216, 144)  # 3:2 exactly


def test_variation_and_upscale_of_an_hd_image_start_from_its_size(generator: Generator) -> None:
    source_job = imagine_job(replace(parse_prompt("a red fox --seed 5"), hd=True), model="tiny")
    run(generator, source_job)

    variation = run(generator, vary_job(source_job, 1, Strength.SUBTLE, owner="u"))
    upscaled = run(generator, upscale_job(source_job, 1, Strength.SUBTLE, owner="u"))

    assert (variation.width, variation.height) == (192, 192)
    assert variation.steps == int(8 * 0.5)  # no second pass: the source already has the detail
    assert (upscaled.width, upscaled.height) == (384, 384)


TINY = DEFAULT_PRESETS["tiny"]


# --style NAME and personalization
CUTE = "cute, kawaii, adorable, soft pastel colors"


def test_named_style_changes_the_image_on_a_preset_that_has_it(
    engine_config: EngineConfig,
) -> None:
    generator = with_preset(engine_config, styles=(("cute", CUTE),))
    plain = imagine(generator, "a red fox --seed 5")
    cute = imagine_with(generator, "a red fox --seed 5", style="cute")

    assert distance(plain.grid, cute.grid) > 0
    meta = read_metadata(cute.images[0])
    assert meta["style"] == "cute" and CUTE in meta["prompt"]


def test_named_style_changes_nothing_on_a_preset_without_it(generator: Generator) -> None:
    plain = imagine(generator, "a red fox --seed 5")
    cute = imagine_with(generator, "a red fox --seed 5", style="cute")

    assert np.array_equal(pixels(plain.grid), pixels(cute.grid))
    assert read_metadata(cute.images[0])["style"] is None


def test_personal_styles_change_the_image_and_are_recorded(generator: Generator) -> None:
    plain = imagine(generator, "a red fox --seed 5")
    personal = imagine_with(
        generator, "a red fox --seed 5", personal_styles=("watercolor, muted greens",)
    )

    assert distance(plain.grid, personal.grid) > 0
    meta = read_metadata(personal.images[0])
    assert meta["personal_styles"] == ["watercolor, muted greens"]
    assert "watercolor, muted greens" in meta["prompt"]


def test_style_parts_and_their_weights() -> None:
    from engine.conditioning import weighed_parts

    preset = replace(EngineConfig().preset("tiny"), styles=(("cute", CUTE),))
    request = replace(
        parse_prompt("a fox --s 1000"), style="cute", personal_styles=("ink", " ", "oil")
    )

    parts, _ = weighed_parts(request, preset)
    assert parts == [
        ("a fox", 1.0),
        (preset.style, 1.0),
        (CUTE, 0.6),
        ("ink", 1.0),  # 0.5 + 1000 / 2000; the blank profile is left out
        ("oil", 1.0),
    ]
    raw, _ = weighed_parts(replace(request, style_raw=True, stylize=100), preset)
    assert raw == [("a fox", 1.0), (CUTE, 0.6), ("ink", 0.55), ("oil", 0.55)]


# image prompts on a preset without an IP-Adapter: img2img from the first image, strength
# 1 - --iw/4 (with one: tests/engine/test_adapter.py)


def image_prompt(generator: Generator, prompt: str, picture: Path) -> JobResult:
    """`prompt` with the PNG at `picture` as its image prompt."""
    digest = generator.inputs.put(picture.read_bytes())
    return imagine_with(generator, prompt, image_inputs=(digest,))


@pytest.fixture
def img2img_generator(engine_config: EngineConfig) -> Generator:
    """A generator whose tiny preset has no IP-Adapter (`ip_adapter = ""`)."""
    return with_preset(engine_config, ip_adapter=None)


def test_an_image_prompt_pulls_the_images_towards_it_more_with_a_higher_iw(
    img2img_generator: Generator,
) -> None:
    generator = img2img_generator
    # The picture is one the tiny model drew: its random VAE keeps such pictures (as variations
    # of them show), not arbitrary ones.
    picture = imagine_with(generator, "a blue lake at night --seed 11").images[0]
    none = imagine_with(generator, "a red fox --seed 3")
    weak = image_prompt(generator, "a red fox --seed 3 --iw 0.5", picture)
    strong = image_prompt(generator, "a red fox --seed 3 --iw 3", picture)

    far, nearer, nearest = (distance(r.images[0], picture) for r in (none, weak, strong))
    assert far > nearer > nearest, (far, nearer, nearest)
    meta = read_metadata(strong.images[0])
    assert meta["image_weight"] == 3.0 and len(meta["image_prompts"]) == 1
    assert meta["image_prompt_mode"] == "img2img"
    assert meta["strength"] == pytest.approx(0.25)
    assert strong.steps == int(8 * 0.25)  # img2img runs the last quarter of the schedule


def test_the_same_seed_and_image_give_the_same_grid(img2img_generator: Generator) -> None:
    generator = img2img_generator
    picture = imagine_with(generator, "a blue lake at night --seed 11").images[0]
    first = image_prompt(generator, "a red fox --seed 9 --iw 2", picture)
    again = image_prompt(generator, "a red fox --seed 9 --iw 2", picture)
    assert distance(first.grid, again.grid) == 0.0


def test_an_image_prompt_gone_from_storage_fails_plainly(generator: Generator) -> None:
    with pytest.raises(FileNotFoundError, match="an image prompt of this job is no longer"):
        imagine_with(generator, "a red fox", image_inputs=("0" * 64,))


def test_previews_come_at_most_once_per_preview_interval(engine_config: EngineConfig) -> None:
    ticks = iter(range(1000))  # each step is half a second later on this clock
    clock = lambda: next(ticks) * 0.5  # noqa: E731
    paced = Generator(replace(engine_config, preview_every=1, preview_interval_s=1.0), clock=clock)
    recorder = Recorder()
    paced.run(
        imagine_job(parse_prompt("a fox --steps 12"), model="tiny"),
        recorder.progress,
        recorder.cancelled,
    )

    shown = [step for step, _, preview in recorder.steps if preview is not None]
    assert shown == [1, 3, 5, 7, 9, 11]  # the first at once, then one per second, none at the end
    every = Generator(replace(engine_config, preview_every=1, preview_interval_s=0.0))
    recorder = Recorder()
    every.run(
        imagine_job(parse_prompt("a fox --steps 12"), model="tiny"),
        recorder.progress,
        recorder.cancelled,
    )
    assert [s for s, _, p in recorder.steps if p is not None] == list(range(1, 12))
