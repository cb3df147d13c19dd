"""The engine process: loads pipelines once and runs jobs one at a time, sending events back.

Started with the "spawn" method by `engine.client` (fork and CUDA do not mix). Messages in:
("run", Job) and ("cancel", job_id) on one pipe; events out (engine.jobs types) on another.
A thread reads the incoming pipe so a cancel arrives while a job runs.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

from engine.config import ConfigError, EngineConfig
from engine.jobs import Cancelled, Done, Failed, Job, JobEvent, Progress, Started

if TYPE_CHECKING:  # torch and diffusers load in the engine process only, inside main()
    from engine.generate import Generator

logger = logging.getLogger(__name__)

UNEXPECTED = "the engine hit an unexpected error; the server log has the details"


def main(config: EngineConfig, commands: Connection, events: Connection, log_level: int) -> None:
    """Entry point of the engine process."""
    logging.basicConfig(
        level=log_level, format="%(asctime)s %(levelname)s engine %(name)s: %(message)s"
    )
    # Heavy imports here, not at module level: the parent imports this module to name the target.
    import diffusers
    import torch
    import transformers

    from engine.generate import Generator

    diffusers.utils.logging.disable_progress_bar()  # our own progress events replace them
    transformers.utils.logging.disable_progress_bar()
    if config.threads:
        torch.set_num_threads(config.threads)

    generator = Generator(config)
    cancelled: set[str] = set()
    jobs: queue.Queue[Job | None] = queue.Queue()
    threading.Thread(target=_receive, args=(commands, jobs, cancelled), daemon=True).start()
    if config.preload:
        try:
            generator.model(config.model)
        except Exception:  # the first job reports it to its user; keep serving other presets
            logger.exception("could not preload model %s", config.model)
    while (job := jobs.get()) is not None:
        events.send(_run(generator, job, cancelled, events.send))
        cancelled.discard(job.id)


def _receive(commands: Connection, jobs: queue.Queue[Job | None], cancelled: set[str]) -> None:
    while True:
        try:
            message = commands.recv()
        except (EOFError, OSError):  # the parent is gone: finish up
            jobs.put(None)
            return
        if message[0] == "run":
            jobs.put(message[1])
        elif message[0] == "cancel":
            cancelled.add(message[1])


def _run(
    generator: Generator, job: Job, cancelled: set[str], send: Callable[[JobEvent], None]
) -> JobEvent:
    from engine.generate import GenerationError, JobCancelledError
    from engine.loader import ModelLoadError

    def progress(step: int, total: int, preview: bytes | None) -> None:
        send(Progress(job.id, step, total, preview))

    try:
        if job.id in cancelled:
            raise JobCancelledError
        generator.model(job.model)  # load first: loading (even downloading) is not the job's time
        send(Started(job.id))
        result = generator.run(job, progress, lambda: job.id in cancelled)
    except JobCancelledError:
        return Cancelled(job.id)
    except (GenerationError, ModelLoadError, ConfigError, FileNotFoundError) as error:
        # FileNotFoundError: a vary/upscale source that is no longer in storage
        logger.warning("job %s failed: %s", job.id, error, exc_info=True)
        return Failed(job.id, str(error))
    except Exception:
        logger.exception("job %s failed", job.id)
        return Failed(job.id, UNEXPECTED)
    return Done(job.id, result)
