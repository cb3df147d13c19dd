"""The engine process: loads pipelines once and runs jobs one at a time, sending events back.

Started with the "spawn" method by `engine.client` (fork and CUDA do not mix). Messages in:
("run", Job), ("run_together", (Job, ...)) (jobs drawn in one batch: engine.batching) and
("cancel", job_id) on one pipe; events out (engine.jobs types) on another.
A thread reads the incoming pipe so a cancel arrives while a job runs.

A job's images are saved (PNG encoding, the grid) by a saver thread, not by the loop: once a job
is drawn the process says `Drawn` and starts the next one, and the saver sends the job's `Done`
when its files are written. So only the device's work is on the path from one job to the next.

With a compiled UNet the loop also draws warm-up grids after preloading (each size's first call
compiles): one at a time, only while no job waits (Generator.warm_ups).
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, TypeVar

from engine.config import ConfigError, EngineConfig
from engine.jobs import (
    TERMINAL_EVENTS,
    Cancelled,
    Done,
    Failed,
    Job,
    JobEvent,
    JobKind,
    JobResult,
    Loading,
    Progress,
    Started,
)

if TYPE_CHECKING:  # torch and diffusers load in the engine process only, inside main()
    from engine.describe import Describer
    from engine.generate import CancelFn, Drawing, Generator, ProgressFn

logger = logging.getLogger(__name__)

UNEXPECTED = "the engine hit an unexpected error; the server log has the details"


@dataclass(frozen=True)
class Ready:
    """Sent once the process has imported torch and diffusers: it takes jobs. A process that
    dies before sending it could not start at all. `preloading` names the default model it
    loads before the first job (then `Preloaded` follows)."""

    preloading: str | None = None


@dataclass(frozen=True)
class Preloaded:
    """The default model is loaded (or failed to: the first job on it says why)."""


@dataclass(frozen=True)
class Drawn:
    """The job's images are drawn and being saved: the process takes the next job now. The
    job's own terminal event (Done, or Failed if its files cannot be written) follows."""

    job_id: str


# Drawn jobs whose files are not written yet, at most: past it the loop waits for the saver (each
# holds its images in memory).
MAX_SAVING = 2


GPU_FAULT = "the GPU hit an error and the engine was restarted; please try again"


def main(config: EngineConfig, commands: Connection, events: Connection, log_level: int) -> None:
    """Entry point of the engine process."""
    logging.basicConfig(
        level=log_level, format="%(asctime)s %(levelname)s engine %(name)s: %(message)s"
    )
    # Heavy imports here, not at module level: the parent imports this module to name the target.
    import diffusers
    import torch
    import transformers

    from engine.describe import Describer
    from engine.generate import Generator

    diffusers.utils.logging.disable_progress_bar()  # our own progress events replace them
    transformers.utils.logging.disable_progress_bar()
    if config.threads:
        torch.set_num_threads(config.threads)

    preload = config.model if config.preload else None
    serve(Generator(config), commands, events, preload, Describer(config))


def serve(
    generator: Generator,
    commands: Connection,
    events: Connection,
    preload: str | None,
    describer: Describer | None = None,
) -> None:
    """Run jobs until the parent closes the command pipe, or until a CUDA fault leaves the
    device unusable: then this process ends, and the parent starts a fresh one. Describe jobs
    go to `describer` (its captioner loads on the first one), the others to `generator`."""
    cancelled: set[str] = set()
    jobs: queue.Queue[tuple[Job, ...] | None] = queue.Queue()
    threading.Thread(target=_receive, args=(commands, jobs, cancelled), daemon=True).start()
    send = _one_at_a_time(events.send)  # the loop and the saver both send
    send(Ready(preload))
    if preload is not None:
        try:
            generator.model(preload)
        except Exception:  # the first job reports it to its user; keep serving other presets
            logger.exception("could not preload model %s", preload)
        send(Preloaded())
    warm_ups = deque(generator.warm_ups(preload) if preload is not None else ())
    saving: deque[Future[None]] = deque()
    # One thread: a job's save takes less time than the next one's drawing on any device worth
    # it, and a second would take a CPU core from torch.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-saver") as saver:
        while True:
            if warm_ups and jobs.empty():  # compile ahead only while no job waits
                _warm_up(generator, warm_ups.popleft(), jobs)
                continue
            if (group := jobs.get()) is None:
                break
            if len(group) == 1:
                one, poisoned = _run(generator, describer, group[0], cancelled, send)
                outcomes = [one]
            else:
                outcomes, poisoned = _run_together(generator, group, cancelled, send)
            for job, outcome in zip(group, outcomes, strict=True):
                cancelled.discard(job.id)
                if isinstance(outcome, TERMINAL_EVENTS):
                    send(outcome)
                    continue
                send(Drawn(job.id))
                while len(saving) >= MAX_SAVING:
                    saving.popleft().result()
                saving.append(saver.submit(_save, generator, outcome, send))
            if poisoned:
                logger.error(
                    "a GPU fault makes this process unusable; exiting so that a new one starts"
                )
                return  # once the saver has written the jobs drawn before (leaving the `with`)


def _warm_up(generator: Generator, job: Job, jobs: queue.Queue[Any]) -> None:
    """Draw a warm-up grid (engine.generate.Generator.warm_ups), given up at its first step's
    end if a job came meanwhile; its failure is only logged (a job at that size compiles)."""
    from engine.generate import JobCancelledError

    width, height = job.request.aspect
    started = time.monotonic()
    try:
        generator.draw(job, lambda *_: None, lambda: not jobs.empty())
    except JobCancelledError:
        logger.info(
            "warm-up at %d:%d cut short by a job (%.1f s)",
            width,
            height,
            time.monotonic() - started,
        )
    except Exception:
        logger.warning("warm-up at %d:%d failed", width, height, exc_info=True)
    else:
        logger.info(
            "warmed up %s at %d:%d in %.1f s", job.model, width, height, time.monotonic() - started
        )


def _one_at_a_time(send: Callable[[Any], None]) -> Callable[[Any], None]:
    """`send`, for several threads: a pipe's messages must not interleave."""
    lock = threading.Lock()

    def locked(message: Any) -> None:
        with lock:
            send(message)

    return locked


def _save(generator: Generator, drawing: Drawing, send: Callable[[JobEvent], None]) -> None:
    """The saver thread: write a drawn job's files, then send its terminal event."""
    job_id = drawing.job.id
    try:
        result = generator.save(drawing)
    except Exception as error:
        send(Failed(job_id, _failure(job_id, error)))
    else:
        send(Done(job_id, result))


def _failure(job_id: str, error: Exception) -> str:
    """What a job's user is told of an error while saving it (the log has the rest)."""
    from engine.storage import StorageError

    if isinstance(error, StorageError):  # a full disk: nothing half-written is left behind
        logger.error("job %s: %s", job_id, error.strerror)
        return error.strerror or UNEXPECTED
    logger.error("job %s could not be saved", job_id, exc_info=error)
    return UNEXPECTED


def _receive(
    commands: Connection, jobs: queue.Queue[tuple[Job, ...] | None], cancelled: set[str]
) -> None:
    while True:
        try:
            message = commands.recv()
        except (EOFError, OSError):  # the parent is gone: finish up
            jobs.put(None)
            return
        if message[0] == "run":
            jobs.put((message[1],))
        elif message[0] == "run_together":
            jobs.put(tuple(message[1]))
        elif message[0] == "cancel":
            cancelled.add(message[1])


# An absolute path of two or more parts, not inside a URL ("https://host/a/b" is left alone).
_PATH = re.compile(r"""(?<![\w:/.~-])~?/[^\s/'"`]+(?:/[^\s/'"`]*)+""")


def hide_paths(text: str) -> str:
    """`text` for a user: the server's file paths in it (an error about a model folder, a
    missing file) replaced by words; the log keeps the full text."""
    return _PATH.sub("(a path on the server)", text)


def poisons_the_device(error: BaseException) -> bool:
    """A CUDA error other than running out of memory (an illegal memory access, a device-side
    assert) leaves the process's CUDA context broken: every later call would fail too."""
    if type(error).__name__ == "OutOfMemoryError":
        return False
    text = str(error)
    return (
        type(error).__name__ == "AcceleratorError"
        or "CUDA error" in text
        or "device-side assert" in text
    )


# A describe job's run ends with its result; a generation's with its images, to be saved.
Run = Callable[[Job, "ProgressFn", "CancelFn"], "JobResult | Drawing"]


def _work(
    generator: Generator, describer: Describer | None, job: Job
) -> tuple[bool, Callable[[], Any], Run]:
    """What runs `job`: whether its model is loaded, how to load it, and the run itself (a
    generation: its drawing)."""
    from engine.generate import GenerationError

    if job.kind is JobKind.DESCRIBE:  # a captioning model, not a diffusion pipeline
        if describer is None:
            raise GenerationError("this engine cannot describe images")
        return describer.loaded, describer.load, describer.run
    return generator.is_loaded(job), partial(generator.load, job), generator.draw


def _run(
    generator: Generator,
    describer: Describer | None,
    job: Job,
    cancelled: set[str],
    send: Callable[[JobEvent], None],
) -> tuple[Done | Failed | Cancelled | Drawing, bool]:
    """The job's terminal event (or, drawn, its images to save), and whether the process must
    end after it (a GPU fault)."""
    from engine.generate import JobCancelledError

    def progress(step: int, total: int, preview: bytes | None) -> None:
        send(Progress(job.id, step, total, preview))

    def attempt() -> JobResult | Drawing:
        if job.id in cancelled:
            raise JobCancelledError
        loaded, load, run = _work(generator, describer, job)
        if not loaded:
            send(Loading(job.id, job.model))
        load()  # load first: loading (even downloading) is not the job's time
        if job.id in cancelled:  # cancelled while its model loaded
            raise JobCancelledError
        send(Started(job.id))
        return run(job, progress, lambda: job.id in cancelled)

    result, poisoned = _attempt(job.id, attempt)
    if isinstance(result, JobResult):
        return Done(job.id, result), False
    return result, poisoned


def _run_together(
    generator: Generator,
    jobs: tuple[Job, ...],
    cancelled: set[str],
    send: Callable[[JobEvent], None],
) -> tuple[list[Done | Failed | Cancelled | Drawing], bool]:
    """Jobs drawn in one batch (Generator.draw_together): each one's outcome, as `_run`'s. An
    error fails them all (each told why); a job cancelled meanwhile ends Cancelled."""
    from engine.generate import JobCancelledError

    first = jobs[0]

    def attempt() -> list[Drawing | None]:
        if all(job.id in cancelled for job in jobs):
            raise JobCancelledError
        if not generator.is_loaded(first):
            for job in jobs:
                send(Loading(job.id, job.model))
        generator.load(first)
        for job in jobs:
            send(Started(job.id))

        def progress(job_id: str) -> ProgressFn:
            return lambda step, total, preview: send(Progress(job_id, step, total, preview))

        return generator.draw_together(
            jobs,
            [progress(job.id) for job in jobs],
            [partial(lambda job_id: job_id in cancelled, job.id) for job in jobs],
        )

    drawn, poisoned = _attempt(first.id, attempt)
    if not isinstance(drawn, list):  # one terminal event for all, each with its own id
        return [replace(drawn, job_id=job.id) for job in jobs], poisoned
    return [
        Cancelled(job.id) if drawing is None else drawing
        for job, drawing in zip(jobs, drawn, strict=True)
    ], poisoned


T = TypeVar("T")


def _attempt(job_id: str, attempt: Callable[[], T]) -> tuple[T | Failed | Cancelled, bool]:
    """`attempt()`, or the terminal event an error in it comes to, and whether the process must
    end after it (a GPU fault)."""
    from engine.generate import GenerationError, JobCancelledError
    from engine.loader import ModelLoadError
    from engine.storage import StorageError

    try:
        return attempt(), False
    except JobCancelledError:
        return Cancelled(job_id), False
    except StorageError as error:  # a full disk: nothing half-written is left behind
        return Failed(job_id, _failure(job_id, error)), False
    except (GenerationError, ModelLoadError, ConfigError, FileNotFoundError) as error:
        # FileNotFoundError: a vary/upscale source (or a described image) no longer in storage
        logger.warning("job %s failed: %s", job_id, error, exc_info=True)
        return Failed(job_id, hide_paths(str(error))), False
    except Exception as error:
        logger.exception("job %s failed", job_id)
        if poisons_the_device(error):
            return Failed(job_id, GPU_FAULT), True
        return Failed(job_id, UNEXPECTED), False
