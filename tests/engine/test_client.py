"""The engine client against a real spawned engine process running the tiny model."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from engine.client import DIED, ENGINE_DOWN, EngineClient, EngineProcess, Handle
from engine.config import EngineConfig, ModelPreset
from engine.jobs import (
    Cancelled,
    Done,
    Failed,
    Interrupted,
    Job,
    JobEvent,
    JobFailed,
    Loading,
    Progress,
    Queued,
    Started,
    imagine_job,
)
from engine.prompt import parse_prompt
from engine.storage import DISK_FULL

TIMEOUT = 60


def job(prompt: str = "a red fox --seed 1", owner: str = "u") -> Job:
    return imagine_job(parse_prompt(prompt), model="tiny", owner=owner)


@pytest.fixture
async def engine(engine_config: EngineConfig) -> AsyncIterator[EngineClient]:
    async with EngineClient(engine_config) as client:
        yield client


async def collect(handle: Handle) -> list[JobEvent]:
    async def all_events() -> list[JobEvent]:
        return [event async for event in handle.events()]

    return await asyncio.wait_for(all_events(), TIMEOUT)


async def wait_for(handle: Handle, kind: type) -> JobEvent:
    """The handle's events up to the first of `kind` (consumes them)."""

    async def first() -> JobEvent:
        async for event in handle.events():
            if isinstance(event, kind):
                return event
        raise AssertionError(f"the job ended without a {kind.__name__} event: {handle.last}")

    return await asyncio.wait_for(first(), TIMEOUT)


async def test_a_job_goes_queued_started_progress_done(engine: EngineClient) -> None:
    events = await collect(await engine.submit(job()))

    kinds = [type(e) for e in events]
    assert kinds[0] is Queued and Started in kinds and kinds[-1] is Done
    steps = [e.step for e in events if isinstance(e, Progress)]
    assert steps == list(range(1, 9))
    result = events[-1].result  # type: ignore[union-attr]
    assert result.grid.exists() and all(p.exists() for p in result.images)
    assert engine.jobs() == ()


def kill_engine(engine: EngineClient) -> EngineProcess:
    process = engine._process
    assert process is not None and process.process.pid is not None
    os.kill(process.process.pid, signal.SIGKILL)
    return process


async def test_a_job_whose_engine_is_killed_runs_again_in_a_new_process(
    engine: EngineClient,
) -> None:
    doomed = await engine.submit(job("a red fox --steps 150"))
    await wait_for(doomed, Progress)
    first = kill_engine(engine)

    events = await collect(doomed)

    assert isinstance(events[-1], Done)
    assert any(isinstance(e, Started) for e in events)  # it started over
    assert engine._process is not first
    after = await engine.submit(job())
    assert isinstance((await collect(after))[-1], Done)


async def test_a_job_that_kills_the_engine_twice_fails_and_the_next_job_runs(
    engine: EngineClient,
) -> None:
    doomed = await engine.submit(job("a red fox --steps 150"))
    await wait_for(doomed, Progress)
    first = kill_engine(engine)
    await wait_for(doomed, Progress)  # its second run, in a new process
    assert engine._process is not first
    kill_engine(engine)

    last = (await collect(doomed))[-1]

    assert last == Failed(doomed.job.id, DIED)
    after = await engine.submit(job())
    assert isinstance((await collect(after))[-1], Done)


async def test_a_queued_job_can_be_cancelled(engine: EngineClient) -> None:
    first = await engine.submit(job("a red fox --steps 40"))
    await wait_for(first, Started)
    second = await engine.submit(job())

    assert engine.position(second.job.id) == 1
    assert await engine.cancel(second.job.id)
    assert isinstance((await collect(second))[-1], Cancelled)
    assert isinstance((await collect(first))[-1], Done)
    assert not await engine.cancel(second.job.id)


async def test_a_running_job_can_be_cancelled_and_the_engine_goes_on(engine: EngineClient) -> None:
    running = await engine.submit(job("a red fox --steps 150"))
    await wait_for(running, Progress)

    assert engine.position(running.job.id) == 0
    assert await engine.cancel(running.job.id)
    events = await collect(running)
    assert isinstance(events[-1], Cancelled)
    assert max((e.step for e in events if isinstance(e, Progress)), default=0) < 150
    assert isinstance((await collect(await engine.submit(job())))[-1], Done)


async def test_owners_take_turns_in_the_queue(engine: EngineClient) -> None:
    blocker = await engine.submit(job("a red fox --steps 40", owner="a"))
    await wait_for(blocker, Started)
    a_jobs = [await engine.submit(job(owner="a")) for _ in range(3)]
    b_job = await engine.submit(job(owner="b"))

    # a was served last (the blocker), so b, arriving later, still goes first
    assert [engine.position(h.job.id) for h in [*a_jobs, b_job]] == [2, 3, 4, 1]
    assert [j.owner for j in engine.jobs()] == ["a", "b", "a", "a", "a"]
    assert [j.id for j in engine.jobs("b")] == [b_job.job.id]
    await engine.cancel(a_jobs[0].job.id)
    assert [engine.position(h.job.id) for h in (a_jobs[1], a_jobs[2], b_job)] == [2, 3, 1]
    positions = [(await wait_for(a_jobs[2], Queued)).position for _ in range(3)]  # type: ignore[union-attr]
    assert positions == [3, 4, 3]  # queued; b went ahead; a_jobs[0] was cancelled
    for handle in (blocker, a_jobs[1], a_jobs[2], b_job):
        await asyncio.wait_for(handle.result(), TIMEOUT)


async def test_a_model_that_cannot_load_fails_clearly_and_others_still_run(
    engine_config: EngineConfig, tmp_path: Path
) -> None:
    broken = ModelPreset("broken", str(tmp_path / "missing"), "sd", 128, 4, 5.0, "euler")
    config = replace(engine_config, presets={**engine_config.presets, "broken": broken})
    async with EngineClient(config) as engine:
        failing = await engine.submit(imagine_job(parse_prompt("a fox"), model="broken"))
        with pytest.raises(JobFailed, match="could not load model preset 'broken'"):
            await asyncio.wait_for(failing.result(), TIMEOUT)
        assert not any(isinstance(e, Started) for e in await collect(failing))  # loads first
        assert (await asyncio.wait_for((await engine.submit(job())).result(), TIMEOUT)).grid


async def test_a_job_past_the_timeout_is_stopped_and_the_engine_restarts(
    engine_config: EngineConfig,
) -> None:
    # The limit counts from the job's start, not the process's (which takes seconds to import).
    async with EngineClient(replace(engine_config, job_timeout_s=0.5)) as engine:
        slow = await engine.submit(job("a red fox --ar 3:1 --steps 150 --q 2"))
        last = (await collect(slow))[-1]
        assert isinstance(last, Failed) and "longer than 0.5 s" in last.reason
        old = engine._process
        engine.config = replace(engine.config, job_timeout_s=60)
        assert isinstance((await collect(await engine.submit(job())))[-1], Done)
        assert engine._process is not old


async def test_closing_interrupts_what_is_queued_and_running(engine_config: EngineConfig) -> None:
    engine = EngineClient(engine_config)
    await engine.start()
    running = await engine.submit(job("a red fox --steps 150 --q 2"))
    queued = await engine.submit(job())
    await wait_for(running, Started)

    await asyncio.wait_for(engine.close(), TIMEOUT)  # no grace: the running job stops now
    for handle in (running, queued):
        assert (await collect(handle))[-1] == Interrupted(handle.job.id)
    with pytest.raises(JobFailed, match="interrupted"):
        await running.result()


async def test_closing_with_grace_lets_the_running_job_finish(engine_config: EngineConfig) -> None:
    engine = EngineClient(engine_config)
    await engine.start()
    running = await engine.submit(job("a red fox --steps 20"))
    queued = await engine.submit(job())
    await wait_for(running, Started)

    await asyncio.wait_for(engine.close(grace_s=TIMEOUT), TIMEOUT + 5)

    assert isinstance((await collect(running))[-1], Done)
    assert (await collect(queued))[-1] == Interrupted(queued.job.id)


async def test_a_grace_shorter_than_the_job_interrupts_it(engine_config: EngineConfig) -> None:
    engine = EngineClient(engine_config)
    await engine.start()
    running = await engine.submit(job("a red fox --steps 150 --q 2"))
    await wait_for(running, Progress)

    await asyncio.wait_for(engine.close(grace_s=0.2), TIMEOUT)

    assert (await collect(running))[-1] == Interrupted(running.job.id)


async def test_submitting_the_same_job_twice_is_refused(engine: EngineClient) -> None:
    once = job()
    await engine.submit(once)
    with pytest.raises(ValueError, match="already submitted"):
        await engine.submit(once)


async def test_result_works_after_the_events_were_read(engine: EngineClient) -> None:
    handle = await engine.submit(job())
    events = await collect(handle)

    assert (await asyncio.wait_for(handle.result(), TIMEOUT)) == events[-1].result  # type: ignore[union-attr]


async def test_a_job_submitted_after_close_fails_at_once(engine_config: EngineConfig) -> None:
    engine = EngineClient(engine_config)
    await engine.start()
    await engine.close()

    handle = await engine.submit(job())

    last = (await collect(handle))[-1]
    assert isinstance(last, Failed) and "not running" in last.reason


async def test_cancel_and_close_survive_a_dead_engine_process(engine_config: EngineConfig) -> None:
    engine = EngineClient(engine_config)
    await engine.start()
    running = await engine.submit(job("a red fox --steps 150"))
    await wait_for(running, Progress)
    process = kill_engine(engine)
    # Cancelled before the client has seen the death (nothing awaited in between), then again
    # once the process is surely gone: the job must not run again in the next process.
    assert await engine.cancel(running.job.id)
    await asyncio.to_thread(process.process.join, TIMEOUT)

    await engine.cancel(running.job.id)  # must not raise
    await asyncio.wait_for(engine.close(), TIMEOUT)
    assert isinstance((await collect(running))[-1], Cancelled)


async def test_a_job_whose_model_is_not_loaded_says_loading_first(engine: EngineClient) -> None:
    first = await engine.submit(imagine_job(parse_prompt("a red fox"), model="tiny-xl"))
    events = await collect(first)
    second = await engine.submit(imagine_job(parse_prompt("a red fox"), model="tiny-xl"))
    again = await collect(second)

    kinds = [type(e) for e in events if not isinstance(e, Queued)]
    assert kinds[0] is Loading and Started in kinds and events[-1].__class__ is Done
    assert Loading(first.job.id, "tiny-xl") in events
    assert not any(isinstance(e, Loading) for e in again)  # loaded now


async def test_cancelling_while_the_model_loads_answers_at_once(engine: EngineClient) -> None:
    handle = await engine.submit(imagine_job(parse_prompt("a red fox"), model="tiny-xl"))
    await wait_for(handle, Loading)

    assert await engine.cancel(handle.job.id)

    rest = await collect(handle)
    assert rest == [Cancelled(handle.job.id)]  # before it ever started
    after = await engine.submit(job())  # and the engine goes on
    assert isinstance((await collect(after))[-1], Done)


async def eventually(check: Callable[[], bool], timeout: float = TIMEOUT) -> None:  # noqa: ASYNC109
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"still not true: {check}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    "broken_torch",
    [
        "raise ImportError('libcudart.so.12: cannot open shared object file')\n",
        "import time\ntime.sleep(3600)\n",  # an import that hangs (a dead network disk)
    ],
    ids=["fails", "hangs"],
)
async def test_an_engine_that_cannot_start_is_said_at_once_and_retried_with_backoff(
    engine_config: EngineConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broken_torch: str
) -> None:
    """A broken install: torch does not import in the engine process (spawn gives the child the
    parent's sys.path, with a broken torch first on it)."""
    broken = tmp_path / "broken" / "torch"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text(broken_torch)
    monkeypatch.setattr("engine.client.START_RETRY_DELAYS_S", (0.5,))
    monkeypatch.setattr("engine.client.START_TIMEOUT_S", 1.5)
    sys.path.insert(0, str(broken.parent))
    engine = EngineClient(engine_config)
    try:
        await engine.start()
        await eventually(lambda: engine.unavailable() is not None)
        assert engine.unavailable() == ENGINE_DOWN
        refused = await engine.submit(job())
        assert (await collect(refused)) == [Failed(refused.job.id, ENGINE_DOWN)]  # at once

        sys.path.remove(str(broken.parent))  # the owner fixes the install …
        monkeypatch.setattr("engine.client.START_TIMEOUT_S", 300.0)  # (a real start is slower)
        await eventually(lambda: engine.unavailable() is None)  # … and a retry comes up

        assert isinstance((await collect(await engine.submit(job())))[-1], Done)
    finally:
        if str(broken.parent) in sys.path:
            sys.path.remove(str(broken.parent))
        await engine.close()


class SilentServer:
    """Accepts connections and never answers: a network that hangs a download."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.writers.append(writer)

        self.server = await asyncio.start_server(hold, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        for writer in self.writers:
            writer.close()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


HANGING_MODEL = ModelPreset(
    name="remote",
    source="imagine-bot-tests/hangs-forever",
    family="sd",
    base_resolution=128,
    steps=2,
    guidance=5.0,
    sampler="euler",
)


@pytest.fixture
async def silent_hub(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """The engine process's hub is a server that never answers."""
    silent = SilentServer()
    port = await silent.start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    try:
        yield
    finally:
        await silent.stop()


@pytest.mark.usefixtures("silent_hub")
async def test_a_model_load_that_hangs_is_stopped_at_load_timeout(
    engine_config: EngineConfig,
) -> None:
    config = replace(
        engine_config,
        load_timeout_s=1.0,
        presets={**engine_config.presets, "remote": HANGING_MODEL},
    )
    async with EngineClient(config) as engine:
        handle = await engine.submit(imagine_job(parse_prompt("a red fox"), model="remote"))
        events = await collect(handle)

        assert Loading(handle.job.id, "remote") in events
        last = events[-1]
        assert isinstance(last, Failed)
        assert last.reason.startswith("loading model remote took longer than 1 s")
        assert isinstance((await collect(await engine.submit(job())))[-1], Done)  # goes on


@pytest.mark.usefixtures("silent_hub")
async def test_a_preload_that_hangs_is_stopped_and_the_job_runs_without_it(
    engine_config: EngineConfig,
) -> None:
    # The default model is preloaded when a process starts: a download that never ends must
    # not hold the first job forever, nor every later process.
    config = replace(
        engine_config,
        model="remote",
        preload=True,
        load_timeout_s=1.0,
        presets={**engine_config.presets, "remote": HANGING_MODEL},
    )
    async with EngineClient(config) as engine:
        first = await engine.submit(job())
        events = await collect(first)
        assert Loading(first.job.id, "remote") in events  # its message says a model loads
        assert isinstance(events[-1], Done), events
        assert isinstance((await collect(await engine.submit(job())))[-1], Done)
        assert engine.unavailable() is None  # a stopped start is not an engine that is down


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MB filesystem (tmpfs), for disk-full tests without injection; skipped where
    mounting is not allowed (not root)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Fill `disk` until `leave` bytes are free; the filler file is returned (delete it to free
    the space)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):  # ENOSPC: full
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def files_besides(disk: Path, filler: Path) -> list[Path]:
    return [p for p in disk.rglob("*") if p.is_file() and p != filler]


async def test_a_real_full_disk_fails_the_job_plainly_leaves_nothing_and_the_engine_goes_on(
    engine_config: EngineConfig, small_disk: Path
) -> None:
    config = replace(engine_config, storage=small_disk)
    filler = fill(small_disk, leave=8 * 1024)  # a 128² PNG is larger than this
    async with EngineClient(config) as engine:
        full = await engine.submit(job())
        assert (await collect(full))[-1] == Failed(full.job.id, DISK_FULL)
        assert files_besides(small_disk, filler) == []  # no half-written image, no temporary

        filler.unlink()  # the owner frees space
        assert isinstance((await collect(await engine.submit(job())))[-1], Done)
