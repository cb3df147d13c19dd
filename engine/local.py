"""`imagine-bot local`: one prompt through the same queue and engine process, without Discord."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from PIL import Image
from tqdm import tqdm

from engine.client import EngineClient
from engine.config import ConfigError, EngineConfig
from engine.intake import image_links, prompt_jobs, read_prompt, with_images
from engine.jobs import JobFailed, Loading, Progress, Queued, Started
from engine.prompt import PromptError
from engine.prompt.flags import is_image_url
from engine.storage import InputStore, StorageError, check_storage, png_bytes, upright_rgb

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
FetchPng = Callable[[str], Awaitable[bytes]]  # an image URL → its PNG bytes


class ImageUnavailableError(Exception):
    """A linked image that could not be used; the message names it and why."""


MAX_LOCAL_JOBS = 40


def output_paths(out: Path, job_number: int, count: int) -> tuple[Path, list[Path]]:
    """grid.png → grid.png and grid_1.png … grid_4.png; the n-th job of several → grid-n.png …"""
    stem = out.stem if job_number == 0 else f"{out.stem}-{job_number + 1}"
    grid = out.with_name(f"{stem}{out.suffix or '.png'}")
    return grid, [grid.with_name(f"{stem}_{i + 1}{grid.suffix}") for i in range(count)]


async def run_local(
    config: EngineConfig,
    prompt: str,
    out: Path,
    model: str | None = None,
    err: TextIO | None = None,
    images: Sequence[str] = (),
    fetch: FetchPng | None = None,
) -> int:
    """`images`: image prompt files or URLs (before the prompt's links). `fetch` downloads a
    URL (the bot's safe fetcher, which the engine package does not import); without one, links
    are not used."""
    err = err or sys.stderr
    try:
        if model is not None:
            config = config.with_model(model)  # preload the model that will run, not the default
        reading = read_prompt(prompt, config, limit=MAX_LOCAL_JOBS, model_override=model)
        jobs = prompt_jobs(reading, "local", MAX_LOCAL_JOBS)
    except PromptError as error:
        print(f"{error.title}: {error.message}", file=err)
        return EXIT_USAGE
    except ConfigError as error:  # an unknown --model / --v
        print(f"Invalid parameter: {error}", file=err)
        return EXIT_USAGE
    try:
        check_storage(config.storage)
    except StorageError as error:
        print(f"Storage: {error.strerror}", file=err)
        return EXIT_USAGE

    store = InputStore(config.inputs_dir)

    async def digest_of(url: str) -> str:
        assert fetch is not None
        return store.put(await fetch(url))

    try:
        first = tuple(
            [
                await digest_of(image) if fetch and is_image_url(image) else _keep(store, image)
                for image in images
            ]
        )
        if fetch is not None:
            jobs = await with_images(jobs, digest_of, first)
        elif first:
            jobs = [replace(j, request=replace(j.request, image_inputs=first)) for j in jobs]
    except (OSError, ImageUnavailableError) as error:  # UnidentifiedImageError too
        print(f"Image: {error}", file=err)
        return EXIT_USAGE
    for note in reading.notes:  # what was mapped, rounded or ignored (bold is for Discord)
        print(f"note: {note.replace('**', '')}", file=err)
    if fetch is None and any(image_links(job) for job in jobs):
        print("note: image links are not fetched here: ignored", file=err)
    status = EXIT_OK
    async with EngineClient(config) as engine:
        for number, job in enumerate(jobs):
            handle = await engine.submit(job)
            with tqdm(total=1, desc=f"job {number + 1}/{len(jobs)}", file=err, unit="step") as bar:
                async for event in handle.events():
                    if isinstance(event, Queued):
                        bar.set_postfix_str(f"queued ({event.position})")
                    elif isinstance(event, Loading):
                        bar.set_postfix_str(f"loading model {event.model}")
                    elif isinstance(event, Started):
                        bar.set_postfix_str("starting")
                    elif isinstance(event, Progress):
                        bar.set_postfix_str("")
                        bar.total = event.total
                        bar.update(event.step - bar.n)
            try:
                result = await handle.result()
            except JobFailed as failure:
                print(f"job failed: {failure}", file=err)
                status = EXIT_FAILED
                continue
            grid, files = output_paths(out, number, len(result.images))
            grid.parent.mkdir(parents=True, exist_ok=True)
            if result.grid is not None:
                shutil.copyfile(result.grid, grid)
                print(f"grid  {grid}  ({result.width}×{result.height} each, model {result.model})")
            for seed, source, target in zip(result.seeds, result.images, files, strict=True):
                shutil.copyfile(source, target)
                print(f"seed {seed}  {target}")
            print(f"job {result.job_id}  {result.steps} steps  {result.elapsed_s:.1f} s")
    return status


def _keep(store: InputStore, path: str) -> str:
    """An image file, kept as the bot keeps a fetched image prompt; its digest."""
    try:
        with Image.open(path) as image:
            return store.put(png_bytes(upright_rgb(image)))
    except OSError as error:  # a missing file, or not an image (UnidentifiedImageError)
        raise OSError(f"could not read {path}: {error}") from error
