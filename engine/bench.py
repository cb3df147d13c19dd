"""`imagine-bot bench`: time the engine's paths side by side on one model and print a table.

Ratios are against the first row (a normal 4-image grid) measured in the same run, so they
hold on any machine; absolute seconds mean something only with the device named.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from engine.client import EngineClient
from engine.config import (
    RANDOM_SDXL_PRESET,
    EngineConfig,
    LoraPreset,
    ModelPreset,
    SpeedConfig,
)
from engine.generate import Generator, LoadedModel
from engine.jobs import Job, Strength, imagine_job, upscale_job, vary_job
from engine.loader import load_pipeline, resolve_device
from engine.preview import LATENT_SCALE
from engine.prompt import parse_prompt
from engine.prompt.request import LoraUse
from engine.tiny import write_random_lora

PROMPT = "a lighthouse at dusk, dramatic sky"


def _timed(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def with_bench_presets(config: EngineConfig) -> EngineConfig:
    """`config` with sdxl-random too (unless the config names a preset so)."""
    presets = {RANDOM_SDXL_PRESET.name: RANDOM_SDXL_PRESET, **config.presets}
    return replace(config, presets=presets)


def run_bench(config: EngineConfig, model: str, repeats: int = 3) -> dict[str, Any]:
    """The engine's paths side by side, in process: each row's median seconds and its ratio to
    the first (a plain grid), and what a preview costs (`preview_cost`)."""
    config = with_bench_presets(config)
    quiet = Generator(replace(config, preview_every=0))
    previews = Generator(replace(config, preview_every=2, preview_interval_s=0.0))
    paced = Generator(config)  # previews as configured (by default at most one per 2 s)
    loaded = quiet.model(model)

    def job(flags: str = "", text: str = PROMPT, **changes: Any) -> Job:
        request = replace(parse_prompt(f"{text} --seed 7 {flags}"), **changes)
        return imagine_job(request, model=model)

    def go(generator: Generator, job: Job) -> Callable[[], object]:
        return lambda: generator.run(job, lambda *_: None, lambda: False)

    source = job()
    go(quiet, source)()  # warm-up, and the source image for vary / upscale
    rows = [
        ("grid of 4 (one batch)", go(quiet, job())),
        ("grid of 4, previews every 2 steps", go(previews, job())),
        ("grid of 4, previews as configured", go(paced, job())),
        ("grid of 4, --chaos 100 --weird 1000", go(quiet, job("--chaos 100 --weird 1000"))),
        (
            "grid of 4, multi-prompt (3 parts)",
            go(quiet, job(text=f"{PROMPT}::2 the sea:: storm clouds::")),
        ),
        ("grid of 4, --q .5", go(quiet, job("--q .5"))),
        ("grid of 4, --draft", go(quiet, job(draft=True))),
        ("grid of 4, --hd", go(quiet, job(hd=True))),
        ("variation (strong)", go(quiet, vary_job(source, 0, Strength.STRONG, owner="bench"))),
        (
            "upscale 2× (creative)",
            go(quiet, upscale_job(source, 0, Strength.CREATIVE, owner="bench")),
        ),
    ]
    previews._models[model] = paced._models[model] = loaded
    with tempfile.TemporaryDirectory(prefix="bench-lora-") as folder:
        # Last: once loaded, the LoRA's layers stay in the UNet (switched off for other jobs).
        lora = LoraPreset("bench", str(write_random_lora(loaded.pipe, Path(folder), rank=16)))
        patched = Generator(replace(config, preview_every=0, loras={"bench": lora}))
        patched._models[model] = loaded
        lora_job = job(loras=(LoraUse("bench", 1.0),))
        rows.append(("grid of 4, --lora (rank 16, attention)", go(patched, lora_job)))
        results = [(name, _timed(run, repeats)) for name, run in rows[:-1]]
        go(patched, lora_job)()  # loads it: the row times drawing with it
        results.append((rows[-1][0], _timed(rows[-1][1], repeats)))
    base = results[0][1]
    return {
        "model": model,
        "device": device_name(),
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "rows": [
            {"path": name, "seconds": seconds, "ratio": seconds / base} for name, seconds in results
        ],
        "preview": preview_cost(config, loaded, base, repeats),
    }


def bench_table(figures: dict[str, Any]) -> str:
    lines = [
        f"model {figures['model']} on {figures['device']}, {figures['threads']} CPU threads, "
        f"median of {figures['repeats']}",
        f"{'path':<40} {'seconds':>8} {'ratio':>6}",
    ]
    lines += [
        f"{row['path']:<40} {row['seconds']:>8.3f} {row['ratio']:>6.2f}" for row in figures["rows"]
    ]
    preview = figures["preview"]
    each = f"{preview['each_ms']:.1f} ms"
    if preview["shown"] is None:
        lines.append(f"previews: off; one would take {each} ({preview['kind']})")
    else:
        lines.append(
            f"previews: {each} each ({preview['kind']}); {preview['shown']} a grid as configured "
            f"(≤ 1 per {preview['interval_s']:g} s): {preview['share']:.1%} of the grid's time"
        )
    return "\n".join(lines)


def preview_cost(
    config: EngineConfig, loaded: LoadedModel, grid_s: float, repeats: int
) -> dict[str, Any]:
    """One preview's decode (a 4-image grid's latents at the preset's size → JPEG), and what the
    previews shown as configured cost a grid that takes `grid_s` (`shown`, `share`: None with
    previews off)."""
    side = loaded.preset.base_resolution // LATENT_SCALE
    pipe = loaded.pipe
    latents = torch.randn(4, 4, side, side, device=pipe.device, dtype=pipe.dtype)
    each = _timed(lambda: loaded.preview.jpeg(latents), max(5, repeats))
    kind = "TAESD" if loaded.preview.taesd is not None else "latent projection"
    interval = config.preview_interval_s
    shown: int | None = None
    if config.preview_every:
        shown = loaded.preset.steps // config.preview_every
        if interval > 0:  # the first as soon as due, then at most one per interval
            shown = min(shown, 1 + int(grid_s // interval))
    return {
        "each_ms": each * 1000,
        "kind": kind,
        "interval_s": interval,
        "shown": shown,
        "share": None if shown is None else each * shown / grid_s,
    }


def device_name() -> str:
    """What the figures are for: the GPU's name, or CPU."""
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"


def _sized(
    config: EngineConfig, model: str, size: int, steps: int
) -> tuple[EngineConfig, ModelPreset]:
    """`config` whose default preset is `model` drawn at `size`² in `steps` steps."""
    config = with_bench_presets(config)
    preset = replace(config.preset(model), base_resolution=size, steps=steps)
    return replace(
        config, model=preset.name, presets={**config.presets, preset.name: preset}
    ), preset


def stock_config(config: EngineConfig) -> EngineConfig:
    """What the direct calls run with: stock diffusers, as a user would call it (on CUDA float16
    and no speed switch; on a CPU float32, the engine's own precision there)."""
    cuda = resolve_device(config.device).startswith("cuda")
    return replace(
        config,
        dtype="float16" if cuda else "float32",
        speed=SpeedConfig(tf32=False, channels_last=False, fuse_qkv=False, compile="off"),
    )


def run_overhead(
    config: EngineConfig,
    model: str,
    size: int = 512,
    steps: int = 20,
    jobs: int = 8,
    repeats: int = 3,
) -> dict[str, Any]:
    """The engine's whole path (queue → engine process → previews → files) against direct
    diffusers calls on the same weights, in one run: one grid, and `jobs` grids back to back
    from several users. Medians of `repeats` interleaved rounds; ratios > 1 are the engine's
    overhead.

    Like for like: the engine's jobs run `--style raw`, so their conditioning is the direct
    call's (the prompt and the empty negative, 77 tokens each), and every grid has a prompt of
    its own on both paths (nothing is encoded once for all). What the house style costs (the
    default `--stylize 100` adds a 77-token part the UNet attends to) is timed on its own:
    `engine_styled_grid_s`."""
    config, preset = _sized(config, model, size, steps)
    pipe: Any = load_pipeline(preset, stock_config(config))  # its __call__ is typed dynamically
    seeds = [7, 8, 9, 10]
    prompts = (f"{PROMPT}, take {number}" for number in itertools.count())

    def direct() -> None:
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        pipe(
            prompt=next(prompts),
            num_images_per_prompt=len(seeds),
            width=size,
            height=size,
            num_inference_steps=steps,
            guidance_scale=preset.guidance,
            generator=generators,
            output_type="pil",
        )

    def grid_job(owner: str, flags: str = "--style raw") -> Job:
        request = parse_prompt(f"{next(prompts)} --seed 7 {flags}")
        return imagine_job(request, model=preset.name, owner=owner)

    def burst() -> None:
        for _ in range(jobs):
            direct()

    # Interleaved, direct then engine, round after round: a shared machine's speed drifts by
    # ±20% over minutes, and each pair then sees the same drift.
    keys = ("direct", "engine", "styled", "direct_n", "engine_n")
    times: dict[str, list[float]] = {key: [] for key in keys}

    async def rounds() -> None:
        async with EngineClient(config) as engine:

            async def engine_timed(owners: list[str], flags: str = "--style raw") -> float:
                started = time.perf_counter()
                handles = [await engine.submit(grid_job(owner, flags)) for owner in owners]
                for handle in handles:
                    await handle.result()
                return time.perf_counter() - started

            direct()  # warm-up, both paths
            await engine_timed(["warm-up"])
            for _ in range(repeats):
                times["direct"].append(_timed(direct, 1))
                times["engine"].append(await engine_timed(["bench"]))
                times["styled"].append(await engine_timed(["bench"], flags=""))
                times["direct_n"].append(_timed(burst, 1))
                owners = [f"user{i % 4}" for i in range(jobs)]
                times["engine_n"].append(await engine_timed(owners))

    asyncio.run(rounds())
    direct_one, engine_one, styled, direct_burst, engine_burst = (
        statistics.median(times[key]) for key in keys
    )
    return {
        "device": device_name(),
        "size": size,
        "steps": steps,
        "jobs": jobs,
        "direct_grid_s": direct_one,
        "engine_grid_s": engine_one,
        "grid_overhead": engine_one / direct_one,
        "engine_styled_grid_s": styled,
        "style_cost": styled / engine_one - 1,
        "direct_burst_s": direct_burst,
        "engine_burst_s": engine_burst,
        "burst_overhead": engine_burst / direct_burst,
    }


def run_batching(
    config: EngineConfig,
    model: str,
    size: int = 128,
    steps: int = 20,
    jobs: int = 8,
    repeats: int = 3,
) -> dict[str, Any]:
    """`jobs` grids from as many users, through the engine with batching as configured
    (`[engine] batch_pixels`) and with it off (one job at a time), interleaved round after
    round in one run; medians, and the throughput gained."""
    config, preset = _sized(config, model, size, steps)
    times: dict[str, list[float]] = {"batched": [], "alone": []}

    async def burst(engine: EngineClient, round_: int) -> float:
        started = time.perf_counter()
        handles = [
            await engine.submit(
                imagine_job(
                    parse_prompt(f"{PROMPT} {i} --seed {round_ * 100 + i}"),
                    model=preset.name,
                    owner=f"user{i}",
                )
            )
            for i in range(jobs)
        ]
        for handle in handles:
            await handle.result()
        return time.perf_counter() - started

    async def rounds() -> None:
        async with (
            EngineClient(config) as batched,
            EngineClient(replace(config, batch_pixels=0)) as alone,
        ):
            await burst(batched, 0)  # warm-up, both
            await burst(alone, 0)
            for number in range(1, repeats + 1):
                times["batched"].append(await burst(batched, number))
                times["alone"].append(await burst(alone, number))

    asyncio.run(rounds())
    batched, alone = statistics.median(times["batched"]), statistics.median(times["alone"])
    return {
        "device": device_name(),
        "size": size,
        "steps": steps,
        "jobs": jobs,
        "batch_pixels": config.batch_pixels,
        "alone_s": alone,
        "batched_s": batched,
        "speedup": alone / batched,
    }


def batching_table(figures: dict[str, Any], model: str) -> str:
    device = figures["device"]
    jobs, budget = int(figures["jobs"]), int(figures["batch_pixels"])
    return "\n".join(
        [
            f"batching: {jobs} grids from {jobs} users, model {model} at {int(figures['size'])}², "
            f"{int(figures['steps'])} steps, on {device}",
            f"{'path':<48} {'seconds':>8}",
            f"{'one job at a time (batch_pixels = 0)':<48} {figures['alone_s']:>8.3f}",
            f"{f'batched (batch_pixels = {budget})':<48} {figures['batched_s']:>8.3f}",
            f"throughput gained: {figures['speedup']:.2f}×",
        ]
    )


# SDXL at 1024² (field notes §4, counted with FlopCounterMode): the UNet per forward per image,
# and the VAE decode per image, in TFLOP; a grid is 4 images, guided (two UNet passes a step).
SDXL_UNET_TFLOP = 6.76
SDXL_VAE_TFLOP = 10.47
# Dense bf16 peak, TFLOP/s, by a word in the device's name (H100: 798 measured; H200: about 790).
BF16_PEAK = {"H100": 800.0, "H200": 790.0, "A100": 312.0}


def grid_tflop(steps: int, images: int = 4, guided: bool = True) -> float:
    """The work of one SDXL 1024² grid: UNet forwards (× 2 with CFG) and the VAE decodes."""
    return steps * images * (2 if guided else 1) * SDXL_UNET_TFLOP + images * SDXL_VAE_TFLOP


def peak_share(seconds: float, steps: int, device: str) -> float | None:
    """The share of the device's bf16 peak a grid in `seconds` reaches; None off the list."""
    peak = next((tflops for word, tflops in BF16_PEAK.items() if word in device), None)
    return None if peak is None else grid_tflop(steps) / seconds / peak


def overhead_table(figures: dict[str, Any], model: str) -> str:
    device = figures["device"]
    size, steps, jobs = int(figures["size"]), int(figures["steps"]), int(figures["jobs"])
    lines = [f"UNet it/s (steps per second of a grid): stock {steps / figures['direct_grid_s']:.2f}"
             f", engine {steps / figures['engine_grid_s']:.2f}"]  # fmt: skip
    if model == RANDOM_SDXL_PRESET.name and size == 1024:
        for name, key in (("stock", "direct_grid_s"), ("engine", "engine_grid_s")):
            share = peak_share(figures[key], steps, device)
            if share is not None:
                lines.append(f"share of {device}'s bf16 peak, {name}: {share:.0%}")
    return "\n".join(
        [
            f"engine vs diffusers: model {model} at {size}², {steps} steps, on {device}",
            f"{'path':<40} {'diffusers':>9} {'engine':>8} {'ratio':>6}",
            f"{'one 4-image grid':<40} {figures['direct_grid_s']:>9.3f} "
            f"{figures['engine_grid_s']:>8.3f} {figures['grid_overhead']:>6.2f}",
            f"{f'{jobs} grids back to back (4 users)':<40} {figures['direct_burst_s']:>9.3f} "
            f"{figures['engine_burst_s']:>8.3f} {figures['burst_overhead']:>6.2f}",
            *lines,
            f"the house style (--stylize 100, the default; --style raw above): "
            f"{figures['engine_styled_grid_s']:.3f} s a grid, {figures['style_cost']:+.1%}",
        ]
    )


def run_cold_start(config: EngineConfig, model: str, runs: int = 2) -> list[dict[str, float]]:
    """Launch to the first grid, `runs` times in a row: a new engine process each time (start,
    imports, the model's load), then one grid. The second run finds what the first left on disk
    (built models, downloads, torch.compile's cache)."""
    config = replace(with_bench_presets(config), model=model, preload=True)

    async def once() -> dict[str, float]:
        started = time.perf_counter()
        async with EngineClient(config) as engine:
            job = imagine_job(parse_prompt(f"{PROMPT} --seed 7"), model=model, owner="bench")
            handle = await engine.submit(job)
            first_event = None
            async for event in handle.events():
                if first_event is None and type(event).__name__ == "Started":
                    first_event = time.perf_counter() - started
            await handle.result()
            done = time.perf_counter() - started
        return {"started_s": first_event or done, "first_grid_s": done}

    return [asyncio.run(once()) for _ in range(runs)]


def cold_start_table(runs: list[dict[str, float]], model: str) -> str:
    device = device_name()
    lines = [
        f"cold start: model {model} on {device} (launch → the first job starts → its grid)",
        f"{'run':<34} {'job started':>12} {'first grid':>11}",
    ]
    for number, run in enumerate(runs, 1):
        label = "1 (nothing cached this run)" if number == 1 else f"{number} (after run 1)"
        lines.append(f"{label:<34} {run['started_s']:>12.2f} {run['first_grid_s']:>11.2f}")
    return "\n".join(lines)
