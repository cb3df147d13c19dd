"""`imagine-bot local`: one prompt through the same queue and engine process, without Discord.

With `--from IMAGE` and one tool (`--zoom-out F`, `--pan SIDE`, `--make-square`, `--region
MASK`), the image file is kept in the image store as a one-image job of its own, and an edit job
of that image is queued like any other: what Zoom Out, Pan, Make Square and Vary (Region) do
under a Discord image, on a file.
"""

from __future__ import annotations

import math
import shutil
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from PIL import Image
from tqdm import tqdm

from engine import canvas
from engine.client import EngineClient
from engine.config import ConfigError, EngineConfig
from engine.intake import Reading, image_links, prompt_jobs, read_prompt, with_images
from engine.jobs import (
    ZOOM_MAX,
    ZOOM_MIN,
    Direction,
    Edit,
    ImageRef,
    Job,
    JobFailed,
    JobKind,
    Loading,
    Progress,
    Queued,
    Started,
    Tool,
    new_job_id,
    random_seed,
)
from engine.prompt import PromptError
from engine.prompt.flags import is_image_url
from engine.prompt.parser import flag_name
from engine.storage import (
    ImageStore,
    InputStore,
    StorageError,
    check_storage,
    png_bytes,
    upright_rgb,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
FetchPng = Callable[[str], Awaitable[bytes]]  # an image URL → its PNG bytes


class ImageUnavailableError(Exception):
    """A linked image that could not be used; the message names it and why."""


MAX_LOCAL_JOBS = 40
TOOL_FLAGS = "--zoom-out FACTOR, --pan left|right|up|down, --make-square or --region MASK.png"


class UsageError(Exception):
    """A bad combination of the local command's flags; the message says what works."""


@dataclass(frozen=True)
class LocalEdit:
    """`--from IMAGE` and its one tool, as given on the command line."""

    source: Path
    tool: Tool
    zoom: float = 1.0
    direction: Direction | None = None
    mask: Path | None = None


def local_edit(
    source: Path | None,
    zoom_out: str | None = None,
    pan: str | None = None,
    make_square: bool = False,
    region: Path | None = None,
) -> LocalEdit | None:
    """The edit the flags ask for (None: a plain prompt); UsageError for a bad combination."""
    tools = [
        name
        for name, given in (
            ("--zoom-out", zoom_out is not None),
            ("--pan", pan is not None),
            ("--make-square", make_square),
            ("--region", region is not None),
        )
        if given
    ]
    if source is None:
        if tools:
            raise UsageError(f"{tools[0]} edits an image: give it with --from IMAGE")
        return None
    if len(tools) != 1:
        given = " and ".join(tools) if tools else "none"
        raise UsageError(f"--from takes exactly one of {TOOL_FLAGS} (got {given})")
    if zoom_out is not None:
        try:
            factor = float(zoom_out)
        except ValueError:
            factor = math.nan
        if not ZOOM_MIN <= factor <= ZOOM_MAX:
            raise UsageError(
                f"--zoom-out must be a number from {ZOOM_MIN:g} to {ZOOM_MAX:g}, got {zoom_out}"
            )
        return LocalEdit(source, Tool.ZOOM, zoom=factor)
    if pan is not None:
        sides = [d.value for d in Direction]
        if pan.lower() not in sides:
            raise UsageError(f"--pan must be one of {', '.join(sides)}, got {pan}")
        return LocalEdit(source, Tool.PAN, direction=Direction(pan.lower()))
    if region is not None:
        return LocalEdit(source, Tool.REGION, mask=region)
    return LocalEdit(source, Tool.SQUARE)


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
    edit: LocalEdit | None = None,
) -> int:
    """`images`: image prompt files or URLs (before the prompt's links). `fetch` downloads a
    URL (the bot's safe fetcher, which the engine package does not import); without one, links
    are not used. `edit`: the prompt edits that image instead (`local_edit`)."""
    err = err or sys.stderr
    try:
        if model is not None:
            config = config.with_model(model)  # preload the model that will run, not the default
        permutations = edit is None  # an edit is one job, as under a Discord image
        reading = read_prompt(
            prompt,
            config,
            limit=MAX_LOCAL_JOBS,
            model_override=model,
            permutations=permutations,
            images=len(images),
        )
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

    if edit is not None:
        try:
            jobs = [_edit_job(config, reading, prompt, edit)]
        except (OSError, canvas.CanvasError) as error:
            print(f"Image: {error}", file=err)
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


def _edit_job(config: EngineConfig, reading: Reading, text: str, edit: LocalEdit) -> Job:
    """The edit job of `edit` with the prompt's request: the image file kept in the image store
    as image 1 of a job of its own (as under a Discord grid), the mask in the input store.
    Refused here, as the bot refuses before queueing, when the edit cannot be made."""
    [first] = reading.prompts  # no permutations
    request = first.request
    source = _read_image(edit.source)
    mask = None
    if edit.mask is not None:
        with _open(edit.mask) as image:
            mask_png = png_bytes(image)
        canvas.read_mask(mask_png, source.size)  # refused now rather than in the engine
        mask = InputStore(config.inputs_dir).put(mask_png)
    given_ar = any(flag_name(word) in ("ar", "aspect") for word in text.split())
    operation = Edit(
        edit.tool,
        zoom=edit.zoom,
        aspect=request.aspect if edit.tool is Tool.ZOOM and given_ar else None,
        direction=edit.direction,
        mask=mask,
    )
    canvas.layout(operation, source.size, config.preset(first.model), config.limits)
    holder = new_job_id()
    store = ImageStore(config.images_dir, config.png)
    store.save(source, store.image_path(holder, 0), {"kind": "local-file", "job_id": holder})
    return Job(
        id=new_job_id(),
        kind=JobKind.EDIT,
        request=request,
        model=first.model,
        seed=random_seed() if request.seed is None else request.seed,
        owner="local",
        source=ImageRef(holder, 0),
        edit=operation,
    )


def _open(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except OSError as error:  # a missing file, or not an image (UnidentifiedImageError)
        raise OSError(f"could not read {path}: {error}") from error


def _read_image(path: Path) -> Image.Image:
    with _open(path) as image:
        try:
            return upright_rgb(image)
        except OSError as error:  # a truncated file
            raise OSError(f"could not read {path}: {error}") from error


def _keep(store: InputStore, path: str) -> str:
    """An image file, kept as the bot keeps a fetched image prompt; its digest."""
    try:
        with Image.open(path) as image:
            return store.put(png_bytes(upright_rgb(image)))
    except OSError as error:  # a missing file, or not an image (UnidentifiedImageError)
        raise OSError(f"could not read {path}: {error}") from error
