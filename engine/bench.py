"""`imagine-bot bench`: time the engine's paths side by side on one model and print a table.

Ratios are against the first row (a normal 4-image grid) measured in the same run, so they
hold on any machine; absolute seconds mean something only with the device named.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from engine.config import EngineConfig
from engine.generate import Generator
from engine.jobs import Job, Strength, imagine_job, upscale_job, vary_job
from engine.prompt import parse_prompt

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


def run_bench(config: EngineConfig, model: str, repeats: int = 3) -> str:
    quiet = Generator(replace(config, preview_every=0))
    previews = Generator(replace(config, preview_every=2))
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
    previews._models[model] = loaded
    results = [(name, _timed(run, repeats)) for name, run in rows]
    base = results[0][1]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    lines = [
        f"model {model} on {device}, {torch.get_num_threads()} CPU threads, median of {repeats}",
        f"{'path':<40} {'seconds':>8} {'ratio':>6}",
    ]
    lines += [f"{name:<40} {seconds:>8.3f} {seconds / base:>6.2f}" for name, seconds in results]
    return "\n".join(lines)
