"""Per-user and global queue limits, decided before a job reaches the engine.

The engine runs one job at a time and its fair queue takes users in turns, so
`max_running_per_user` is not a concurrency knob here: it is the point past which a user is told
"Job queued" (Midjourney's wording), and a user may hold at most
`max_running_per_user + max_queued_per_user` active (queued or running) jobs.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.config import LimitsConfig
from engine.jobs import Engine


@dataclass(frozen=True)
class QueueLoad:
    user_active: int  # the user's queued and running jobs
    waiting_total: int  # everyone's jobs waiting to start (not running)


@dataclass(frozen=True)
class Admission:
    allowed: bool
    message: str = ""  # the refusal ("Queue full"), or a note for the user ("Job queued")


def queue_load(engine: Engine, owner: str) -> QueueLoad:
    everyone = engine.jobs()
    waiting = sum(1 for job in everyone if engine.position(job.id) != 0)
    return QueueLoad(
        user_active=sum(1 for j in everyone if j.owner == owner), waiting_total=waiting
    )


def admit(limits: LimitsConfig, load: QueueLoad, count: int = 1) -> Admission:
    """May a user with `load` add `count` more jobs?"""
    per_user = limits.max_running_per_user + limits.max_queued_per_user
    if load.user_active + count > per_user:
        return Admission(
            False,
            f"**Queue full**\nYou have {load.user_active} job(s) running or waiting and may have "
            f"at most {per_user}; this would add {count}. Wait for some to finish (see `/info`) "
            "or cancel one with `/cancel`.",
        )
    if load.waiting_total + count > limits.max_queued_total:
        return Admission(
            False,
            f"**Queue full**\nThe queue is full ({load.waiting_total} jobs waiting, at most "
            f"{limits.max_queued_total}); please try again in a few minutes.",
        )
    if load.user_active >= limits.max_running_per_user:
        return Admission(
            True,
            f"**Job queued**\nYou already have {load.user_active} job(s) running or waiting; "
            "this one starts when its turn comes (see `/info`).",
        )
    return Admission(True)
