"""Jobs, results and events: the data that crosses between the bot, the engine client and the
engine process. Pure Python (no torch), frozen, picklable.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from engine.prompt.request import SEED_MAX, ImagineRequest

GRID_SIZE = 4  # images per imagine / variation job; prompts per describe job
CAPTIONER = "captioner"  # the `model` of a describe job: the engine's one captioning model


class JobKind(StrEnum):
    IMAGINE = "imagine"
    VARY = "vary"
    UPSCALE = "upscale"
    DESCRIBE = "describe"  # an image → four prompts (/describe); no images are made
    EDIT = "edit"  # Zoom Out, Pan, Make Square, Vary (Region): `Job.edit` says which


class Strength(StrEnum):
    """How far a variation or an upscale may move away from its source image."""

    SUBTLE = "subtle"
    STRONG = "strong"  # variations only
    CREATIVE = "creative"  # upscales only


ALLOWED_STRENGTHS: dict[JobKind, frozenset[Strength | None]] = {
    JobKind.IMAGINE: frozenset({None}),
    JobKind.VARY: frozenset({Strength.SUBTLE, Strength.STRONG}),
    JobKind.UPSCALE: frozenset({Strength.SUBTLE, Strength.CREATIVE}),
    JobKind.DESCRIBE: frozenset({None}),
    JobKind.EDIT: frozenset({None}),
}


class Tool(StrEnum):
    """Midjourney's tools on one image: each makes a new grid, the source's pixels kept."""

    ZOOM = "zoom"  # Zoom Out 2x / 1.5x / Custom Zoom: the image shrunk inside a larger canvas
    PAN = "pan"  # ⬅️ ➡️ ⬆️ ⬇️: the canvas grows by half the image on one side
    SQUARE = "square"  # Make Square: a non-square image outpainted to a square
    REGION = "region"  # Vary (Region): a masked area redrawn


class Direction(StrEnum):
    LEFT = "left"
    RIGHT = "right"
    UP = "up"
    DOWN = "down"


ZOOM_MIN, ZOOM_MAX = 1.0, 2.0  # --zoom's range (Custom Zoom), as on Midjourney


@dataclass(frozen=True)
class Edit:
    """What an edit job does to its source image (`Job.source`).

    ZOOM: the canvas is `zoom` × the image per side (ZOOM_MIN…ZOOM_MAX), shaped `aspect` (W, H;
    None: the source's shape); zoom 1 with another aspect only extends the canvas to that shape.
    PAN: `direction`. SQUARE: nothing more. REGION: `mask`, the sha256 of a mask PNG in the
    input store (the source's size; white = redraw), like an image prompt's digest.
    """

    tool: Tool
    zoom: float = 1.0
    aspect: tuple[int, int] | None = None
    direction: Direction | None = None
    mask: str | None = None

    def __post_init__(self) -> None:
        if self.tool is Tool.ZOOM and not ZOOM_MIN <= self.zoom <= ZOOM_MAX:
            raise ValueError(f"zoom must be from {ZOOM_MIN} to {ZOOM_MAX}, got {self.zoom}")
        if (self.tool is Tool.PAN) != (self.direction is not None):
            raise ValueError("a pan, and only a pan, has a direction")
        if (self.tool is Tool.REGION) != (self.mask is not None):
            raise ValueError("a region edit, and only one, has a mask")


@dataclass(frozen=True)
class ImageRef:
    """One image of a finished job. `index` is 0-based; the UI shows it as U1…U4 (index + 1)."""

    job_id: str
    index: int


def new_job_id() -> str:
    return secrets.token_hex(16)


def random_seed() -> int:
    return random.SystemRandom().randint(0, SEED_MAX)


@dataclass(frozen=True)
class Job:
    """A unit of GPU work. Images of an imagine/vary job use seeds seed, seed+1, seed+2, seed+3;
    so do the four prompts of a describe job, whose image is `request.image_inputs[0]`."""

    id: str
    kind: JobKind
    request: ImagineRequest
    model: str  # a preset name, resolved by the caller
    seed: int
    owner: str = ""  # who the fair queue counts this job against (a Discord user id, "local", …)
    source: ImageRef | None = None  # the image a vary / upscale / edit job starts from
    strength: Strength | None = None
    edit: Edit | None = None  # what an edit job does (and only an edit job has one)

    def __post_init__(self) -> None:
        if not 0 <= self.seed <= SEED_MAX:
            raise ValueError(f"seed must be from 0 to {SEED_MAX}, got {self.seed}")
        needs_source = self.kind in (JobKind.VARY, JobKind.UPSCALE, JobKind.EDIT)
        if needs_source != (self.source is not None):
            raise ValueError(
                f"a {self.kind.value} job {'needs' if needs_source else 'takes no'} source"
            )
        allowed = ALLOWED_STRENGTHS[self.kind]
        if self.strength not in allowed:
            raise ValueError(
                f"a {self.kind.value} job takes strength {allowed}, got {self.strength}"
            )

        if (self.kind is JobKind.EDIT) != (self.edit is not None):
            raise ValueError("an edit job, and only an edit job, has an edit")

    @property
    def stored_images(self) -> tuple[str, ...]:
        """The digests of every image the job reads from the input store (a region's mask too)."""
        mask = () if self.edit is None or self.edit.mask is None else (self.edit.mask,)
        return (*self.request.stored_images, *mask)

    @property
    def image_count(self) -> int:
        return 1 if self.kind is JobKind.UPSCALE else GRID_SIZE

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple((self.seed + i) % (SEED_MAX + 1) for i in range(self.image_count))


def imagine_job(
    request: ImagineRequest,
    *,
    model: str,
    owner: str = "",
    seed: int | None = None,
    repeat: int = 0,
) -> Job:
    """A new imagine job; the request's --seed wins, then `seed`, then a random one.

    `repeat` numbers the runs of one --repeat prompt: with a fixed seed, run n starts 4n further
    on, so each run draws new images and the whole set stays reproducible.
    """
    chosen = request.seed if request.seed is not None else seed
    return Job(
        id=new_job_id(),
        kind=JobKind.IMAGINE,
        request=request,
        model=model,
        seed=random_seed() if chosen is None else (chosen + GRID_SIZE * repeat) % (SEED_MAX + 1),
        owner=owner,
    )


def describe_job(*, owner: str, link: str | None = None, seed: int | None = None) -> Job:
    """/describe: four prompts for one image. The bot fetches the image (from `link`, or an
    attachment) and stores it before the job is queued: its digest goes in `image_inputs`, as
    for an image prompt, and the engine reads it from storage."""
    request = ImagineRequest(prompt="", image_urls=(link,) if link else ())
    return Job(
        id=new_job_id(),
        kind=JobKind.DESCRIBE,
        request=request,
        model=CAPTIONER,
        seed=random_seed() if seed is None else seed,
        owner=owner,
    )


def reroll_job(job: Job, *, owner: str, request: ImagineRequest | None = None) -> Job:
    """🔄: the same prompt (or an edited one, in remix mode) with new seeds; of a describe job,
    the same image described again."""
    req = replace(request or job.request, seed=None)
    return replace(job, id=new_job_id(), request=req, seed=random_seed(), owner=owner)


def vary_job(
    job: Job,
    index: int,
    strength: Strength,
    *,
    owner: str,
    request: ImagineRequest | None = None,
) -> Job:
    """V1…V4 / 🪄 Vary: four new images starting from image `index` of `job`."""
    return Job(
        id=new_job_id(),
        kind=JobKind.VARY,
        request=request or job.request,
        model=job.model,
        seed=random_seed(),
        owner=owner,
        source=ImageRef(job.id, index),
        strength=strength,
    )


def upscale_job(job: Job, index: int, strength: Strength, *, owner: str) -> Job:
    """Upscale (Subtle) / (Creative): image `index` of `job` at twice its size."""
    return Job(
        id=new_job_id(),
        kind=JobKind.UPSCALE,
        request=job.request,
        model=job.model,
        seed=job.seeds[index] if index < job.image_count else job.seed,
        owner=owner,
        source=ImageRef(job.id, index),
        strength=strength,
    )


def edit_job(
    job: Job,
    index: int,
    edit: Edit,
    *,
    owner: str,
    request: ImagineRequest | None = None,
) -> Job:
    """Zoom Out, Pan, Make Square, Vary (Region) of image `index` of `job`: a new grid from its
    prompt (or an edited one), with new seeds."""
    return Job(
        id=new_job_id(),
        kind=JobKind.EDIT,
        request=replace(request or job.request, seed=None),
        model=job.model,
        seed=random_seed(),
        owner=owner,
        source=ImageRef(job.id, index),
        edit=edit,
    )


@dataclass(frozen=True)
class JobResult:
    job_id: str
    images: tuple[Path, ...]  # full resolution, one per seed
    grid: Path | None  # the 2×2 grid; None for an upscale
    seeds: tuple[int, ...]
    width: int  # of one image
    height: int
    model: str
    steps: int  # steps actually run
    elapsed_s: float
    # A describe job's four prompts (it makes no images: `images` is empty, `width`/`height` are
    # the source image's). Kept in the bot's store, so its buttons work for as long as it is.
    prompts: tuple[str, ...] = ()


# Events, in the order a caller sees them:
# Queued* → Loading? → Started → Progress* → Done | Failed | Cancelled | Interrupted.
@dataclass(frozen=True)
class Queued:
    job_id: str
    position: int  # 1 = next to start


@dataclass(frozen=True)
class Loading:
    """The job is next, and its model is being loaded first (which may mean a download)."""

    job_id: str
    model: str


@dataclass(frozen=True)
class Started:
    job_id: str


@dataclass(frozen=True)
class Progress:
    job_id: str
    step: int
    total: int
    preview: bytes | None = None  # a small JPEG of the grid as it is now

    @property
    def percent(self) -> int:
        return min(100, round(100 * self.step / max(1, self.total)))


@dataclass(frozen=True)
class Done:
    job_id: str
    result: JobResult


@dataclass(frozen=True)
class Failed:
    job_id: str
    reason: str  # plain words, safe to show a user


@dataclass(frozen=True)
class Cancelled:
    job_id: str


@dataclass(frozen=True)
class Interrupted:
    """The engine stopped (the bot is shutting down) before it finished the job. The job is not
    done, nor failed: whoever keeps the queue of record runs it again later."""

    job_id: str


JobEvent = Queued | Loading | Started | Progress | Done | Failed | Cancelled | Interrupted
TERMINAL_EVENTS = (Done, Failed, Cancelled, Interrupted)


class JobFailed(Exception):
    """Raised by `JobHandle.result()` when a job ends without a result."""

    def __init__(self, event: Failed | Cancelled | Interrupted):
        self.event = event
        reasons = {Cancelled: "cancelled", Interrupted: "interrupted: the engine was stopped"}
        super().__init__(event.reason if isinstance(event, Failed) else reasons[type(event)])


class JobHandle(Protocol):
    job: Job

    def events(self) -> AsyncIterator[JobEvent]:
        """Every event of this job, ending with its terminal one (Done, Failed or Cancelled)."""
        ...

    async def result(self) -> JobResult:
        """Wait for the end; raise JobFailed unless it is Done."""
        ...


class Engine(Protocol):
    """The one async interface between a front-end and whatever runs the GPU work.

    Today: `engine.client.EngineClient` (a local engine process). Later: a distributed backend.
    """

    async def submit(self, job: Job) -> JobHandle: ...

    async def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job; False if it is unknown or already finished."""
        ...

    def position(self, job_id: str) -> int | None:
        """1-based place in the queue; 0 while running; None when not known."""
        ...

    def jobs(self, owner: str | None = None) -> tuple[Job, ...]:
        """Running and queued jobs (of `owner`, or everyone's), running first, then queue order."""
        ...

    def unavailable(self) -> str | None:
        """Why no job is taken now, in words for the user (e.g. the engine cannot start), or
        None when jobs are taken."""
        ...
