"""A drawn job's files are written while the next job draws: the client against a real engine
process whose saves wait at a gate (a FIFO the test opens to let one save through), so the overlap
is shown by the order of events, not by timing."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from engine import worker
from engine.client import EngineClient
from engine.config import EngineConfig
from engine.jobs import Done, Failed, Interrupted, JobResult, Progress, Started
from tests.engine.test_client import TIMEOUT, collect, eventually, job, kill_engine, wait_for


def gate_of(config: EngineConfig) -> Path:
    return config.storage / "save-gate"


def gated_main(config: EngineConfig, commands: Connection, events: Connection, level: int) -> None:
    """The engine process, each of whose saves first waits for one opening of the gate."""
    from engine.generate import Drawing, Generator

    save = Generator.save

    def gated_save(self: Generator, drawing: Drawing) -> JobResult:
        with open(gate_of(config)) as gate:  # blocks until the test opens it for writing
            gate.read()
        return save(self, drawing)

    Generator.save = gated_save  # type: ignore[method-assign]
    worker.main(config, commands, events, level)


@pytest.fixture
async def gated(
    engine_config: EngineConfig, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[EngineClient]:
    gate = gate_of(engine_config)
    gate.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(gate)
    monkeypatch.setattr(worker, "main", gated_main)  # the target spawned processes run
    engine = EngineClient(replace(engine_config, preload=True))
    await engine.start()
    try:
        yield engine
    finally:
        await close_letting_saves_through(engine)


async def close_letting_saves_through(engine: EngineClient, grace_s: float = 0.0) -> None:
    """`engine.close(grace_s)`, opening the gate meanwhile: a save still waiting would hold the
    process's exit."""
    closing = asyncio.ensure_future(engine.close(grace_s))
    while not closing.done():
        await let_one_save(engine, 0.2)
    await closing


async def let_one_save(engine: EngineClient, timeout: float = TIMEOUT) -> None:  # noqa: ASYNC109
    """Open the gate for one waiting save (none waiting: give up after `timeout`)."""

    def open_once() -> None:
        fd = os.open(gate_of(engine.config), os.O_WRONLY | os.O_NONBLOCK)  # ENXIO: no reader
        os.close(fd)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return open_once()
        except OSError:
            if loop.time() > deadline:
                return
            await asyncio.sleep(0.02)


def saving(engine: EngineClient, job_id: str) -> Callable[[], bool]:
    return lambda: job_id in engine._jobs_saving


async def test_the_next_job_starts_and_is_drawn_before_the_first_ones_done(
    gated: EngineClient,
) -> None:
    first = await gated.submit(job())
    second = await gated.submit(job("a blue fox --seed 2"))

    await wait_for(second, Started)
    await eventually(saving(gated, second.job.id))  # drawn too, all its steps run
    assert not first.finished and not second.finished
    assert [gated.position(h.job.id) for h in (first, second)] == [0, 0]  # both "running"
    assert [j.id for j in gated.jobs()] == [first.job.id, second.job.id]

    await let_one_save(gated)
    done = (await collect(first))[-1]
    assert isinstance(done, Done)
    assert done.result.grid is not None and done.result.grid.exists()
    assert all(path.exists() for path in done.result.images)  # Done comes with its files
    assert not second.finished and [j.id for j in gated.jobs()] == [second.job.id]
    await let_one_save(gated)
    assert isinstance((await collect(second))[-1], Done)
    assert gated.jobs() == ()


async def test_a_job_whose_engine_dies_while_saving_runs_again(gated: EngineClient) -> None:
    handle = await gated.submit(job())
    await eventually(saving(gated, handle.job.id))
    old = kill_engine(gated)
    await asyncio.to_thread(old.process.join, TIMEOUT)  # its save must not take the opening

    await let_one_save(gated)  # the save of its second run, in a new process
    events = await collect(handle)

    assert sum(isinstance(e, Started) for e in events) == 2  # it started over
    assert isinstance(events[-1], Done) and events[-1].result.grid is not None
    assert events[-1].result.grid.exists()
    assert gated._process is not old


async def test_a_saving_job_is_past_cancelling_and_ends_done(gated: EngineClient) -> None:
    handle = await gated.submit(job())
    await eventually(saving(gated, handle.job.id))

    assert not await gated.cancel(handle.job.id)  # its images are drawn: it finishes
    await let_one_save(gated)

    assert isinstance((await collect(handle))[-1], Done)


async def test_closing_with_grace_waits_for_a_saving_job(gated: EngineClient) -> None:
    handle = await gated.submit(job())
    await eventually(saving(gated, handle.job.id))

    await asyncio.wait_for(close_letting_saves_through(gated, grace_s=TIMEOUT), TIMEOUT)

    assert isinstance((await collect(handle))[-1], Done)


async def test_closing_without_grace_interrupts_a_saving_job(gated: EngineClient) -> None:
    handle = await gated.submit(job())
    await eventually(saving(gated, handle.job.id))

    await asyncio.wait_for(close_letting_saves_through(gated), TIMEOUT)

    assert (await collect(handle))[-1] == Interrupted(handle.job.id)


async def test_a_save_that_hangs_past_the_job_timeout_fails_it(gated: EngineClient) -> None:
    gated.config = replace(gated.config, job_timeout_s=2.0)
    handle = await gated.submit(job())
    old = gated._process

    events = await collect(handle)  # the gate is never opened

    assert any(isinstance(e, Progress) for e in events)
    last = events[-1]
    assert isinstance(last, Failed) and "longer than 2 s" in last.reason
    assert old is not None
    await asyncio.to_thread(old.process.join, TIMEOUT)  # killed: its save must not take the gate
    gated.config = replace(gated.config, job_timeout_s=60.0)
    after = await gated.submit(job())
    await let_one_save(gated)
    assert isinstance((await collect(after))[-1], Done)
    assert gated._process is not old  # replaced: a hung save is a hung process
