"""The waiting line in front of the engine: round-robin between owners, first-come within one.

A user with ten jobs queued does not hold up a user who just arrived: owners take turns. The
owner served last counts as having just had their turn, even when their queue had run dry and
they joined again as a newcomer. Pure Python; lives in the parent process.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from engine.jobs import Job


class FairQueue:
    def __init__(self) -> None:
        self._jobs: dict[str, deque[Job]] = {}  # owner → their jobs, oldest first
        self._turns: deque[str] = deque()  # owners with jobs, whose turn is next first
        self._last: str | None = None  # the owner of the job served last
        self._first: deque[Job] = deque()  # jobs to run again, before anyone's turn
        self._ready = asyncio.Event()
        # order() and place(), worked out once per change: the bot asks for every queued job's
        # place on every /imagine (the queue limits), which must not cost O(n²) in a burst
        self._order: list[Job] | None = None
        self._places: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._first) + sum(len(jobs) for jobs in self._jobs.values())

    def put_first(self, job: Job) -> None:
        """`job` next, ahead of every turn: a job to run again (its process died under it)."""
        self._first.append(job)
        self._changed()
        self._ready.set()

    def put(self, job: Job) -> None:
        self._changed()
        if job.owner not in self._jobs:
            self._jobs[job.owner] = deque()
            self._turns.append(job.owner)
        self._jobs[job.owner].append(job)
        self._ready.set()

    def get_nowait(self) -> Job | None:
        if self._first:
            self._changed()
            return self._first.popleft()
        if not self._turns:
            return None
        self._changed()
        owner = _next_owner(self._turns, self._last)
        jobs = self._jobs[owner]
        job = jobs.popleft()
        if jobs:
            self._turns.append(owner)
        else:
            del self._jobs[owner]
        self._last = owner
        return job

    def get_nowait_if(self, wanted: Callable[[Job], bool]) -> Job | None:
        """The next job, taken only if `wanted(job)`; else None and the queue is unchanged."""
        upcoming = self.order()
        if not upcoming or not wanted(upcoming[0]):
            return None
        job = self.get_nowait()
        assert job is upcoming[0]
        return job

    async def get(self) -> Job:
        while (job := self.get_nowait()) is None:
            self._ready.clear()
            await self._ready.wait()
        return job

    def remove(self, job_id: str) -> Job | None:
        for job in self._first:
            if job.id == job_id:
                self._first.remove(job)
                self._changed()
                return job
        for owner, jobs in self._jobs.items():
            for job in jobs:
                if job.id == job_id:
                    self._changed()
                    jobs.remove(job)
                    if not jobs:
                        del self._jobs[owner]
                        self._turns.remove(owner)
                    return job
        return None

    def order(self) -> list[Job]:
        """Every queued job in the order it will start, if nothing else arrives."""
        if self._order is None:
            self._order = self._work_out_order()
            self._places = {job.id: place for place, job in enumerate(self._order, start=1)}
        return list(self._order)

    def place(self, job_id: str) -> int:
        """The job's 1-based place in order(); 0 when it is not queued."""
        if self._order is None:
            self.order()
        return self._places.get(job_id, 0)

    def _changed(self) -> None:
        self._order = None  # worked out again when next asked for

    def _work_out_order(self) -> list[Job]:
        pending = {owner: list(jobs) for owner, jobs in self._jobs.items()}
        turns = deque(self._turns)
        last = self._last
        out: list[Job] = list(self._first)
        while turns:
            owner = last = _next_owner(turns, last)
            out.append(pending[owner].pop(0))
            if pending[owner]:
                turns.append(owner)
        return out

    def clear(self) -> list[Job]:
        jobs = self.order()
        self._changed()
        self._first.clear()
        self._jobs.clear()
        self._turns.clear()
        return jobs


def _next_owner(turns: deque[str], last: str | None) -> str:
    """Pop whose turn it is; the owner served last goes behind anyone else waiting."""
    if len(turns) > 1 and turns[0] == last:
        turns.rotate(-1)
    return turns.popleft()
