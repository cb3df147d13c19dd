"""Which queued jobs the engine draws together, in one pipeline call.

On a small model or at a low resolution one call for 8 or 16 images draws faster than two or
four calls of 4 (the device is not full with 4); at SDXL's 1024² it is already full. So imagine
jobs that would run with the same plan (model, size, steps, sampler, guidance, --chaos, --stop)
and --tile go together, while their images fit `[engine] batch_pixels`. Only jobs next to each
other in the fair queue's order, and one per owner (a turn each, as the queue gives them): batching
never lets a job overtake another, and nobody's second job starts with their first, which is
what `[limits] max_running_per_user` promises and how a user arriving a moment later still gets
the next turn. Each image keeps
its own seed, so a job's images are those it would get alone (engine.generate). Pure Python:
the client (no torch) decides, the engine process draws.
"""

from __future__ import annotations

from collections.abc import Hashable

from engine.config import ConfigError, EngineConfig
from engine.jobs import Job, JobKind
from engine.plan import imagine_size, make_plan
from engine.queue import FairQueue


def batch_key(job: Job, config: EngineConfig) -> Hashable | None:
    """What must be equal for jobs to be drawn together; None: `job` is drawn alone (not a
    plain imagine job: --hd, image prompts and references, edits, variations, upscales)."""
    request = job.request
    if job.kind is not JobKind.IMAGINE or request.hd or request.stored_images:
        return None
    try:
        preset = config.preset(job.model)
    except ConfigError:  # the engine says so to its user
        return None
    plan = make_plan(job, preset, imagine_size(request, preset, config.limits), config.limits)
    return preset.name, plan, request.tile, request.loras  # one set of LoRAs per call


def pixels(job: Job, config: EngineConfig) -> int:
    """The pixels `job`'s images take in a batch."""
    preset = config.preset(job.model)
    width, height = imagine_size(job.request, preset, config.limits)
    return width * height * len(job.seeds)


def take_together(first: Job, queue: FairQueue, config: EngineConfig) -> list[Job]:
    """`first` (just taken from `queue`) and the jobs after it in the queue's order that go
    with it, taken out of the queue; just `first` when batching is off or nothing matches."""
    key = batch_key(first, config)
    if key is None or config.batch_pixels <= 0:
        return [first]
    jobs, used = [first], pixels(first, config)

    def fits(job: Job) -> bool:
        if any(job.owner == taken.owner for taken in jobs):
            return False
        return batch_key(job, config) == key and used + pixels(job, config) <= config.batch_pixels

    while (job := queue.get_nowait_if(fits)) is not None:
        jobs.append(job)
        used += pixels(job, config)
    return jobs
