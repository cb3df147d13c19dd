"""The parent side of the engine: an async `Engine` backed by one spawned engine process.

    async with EngineClient(config) as engine:
        handle = await engine.submit(imagine_job(request, model="tiny"))
        async for event in handle.events():
            ...

Jobs wait in a `FairQueue` here, in the parent, and go to the process one at a time (or a few
alike, next to each other in the queue, together: engine.batching); so queue positions,
cancelling a queued job and fairness never touch the GPU process. A job is sent once
the one before is drawn (`worker.Drawn`): its files are written while the next job draws, and it
counts as running (position 0) until its Done. If the process dies during a job, or while it
saves one, a new one is started and the job runs once more; if it dies again the job fails
(never hangs). Closing lets the running job finish within a grace period and ends every other
job as `Interrupted` (not failed: the bot's store runs them on its next start). Pure Python: the
Discord bot imports this without importing torch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import threading
from asyncio import FIRST_COMPLETED
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

from engine import worker
from engine.batching import take_together
from engine.config import EngineConfig
from engine.jobs import (
    TERMINAL_EVENTS,
    Cancelled,
    Done,
    Failed,
    Interrupted,
    Job,
    JobEvent,
    JobFailed,
    JobResult,
    Loading,
    Queued,
    Started,
)
from engine.queue import FairQueue

logger = logging.getLogger(__name__)

STOP_GRACE_S = 10.0
RUNS_PER_JOB = 2  # a job whose engine process dies under it runs once more, in a new process
DIED = "the engine stopped unexpectedly while running this job, twice; it was not retried again"
# A process that dies before it is ready (a broken install, a CUDA driver that does not load) is
# started again after these pauses (then every last one), and no job is taken meanwhile.
START_RETRY_DELAYS_S = (5.0, 15.0, 60.0, 300.0)
START_TIMEOUT_S = 300.0  # importing torch and diffusers (a cold disk, CUDA's first init)
ENGINE_DOWN = (
    "The image engine could not start (the server log says why); it is being retried. "
    "Try again in a few minutes."
)


class EngineDiedError(RuntimeError):
    pass


class Handle:
    """One job's events, as the client receives them. `events()` has one reader; `result()`
    may be awaited by anyone, before or after the events are read."""

    def __init__(self, job: Job):
        self.job = job
        self._events: asyncio.Queue[JobEvent] = asyncio.Queue()
        self._end: asyncio.Future[JobEvent] = asyncio.get_running_loop().create_future()
        self.last: JobEvent | None = None

    def push(self, event: JobEvent) -> None:
        if self.finished:  # e.g. a late event from a process that was already given up on
            return
        self.last = event
        self._events.put_nowait(event)
        if isinstance(event, TERMINAL_EVENTS):
            self._end.set_result(event)

    @property
    def finished(self) -> bool:
        return isinstance(self.last, TERMINAL_EVENTS)

    async def events(self) -> AsyncIterator[JobEvent]:
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, TERMINAL_EVENTS):
                return

    async def result(self) -> JobResult:
        event = await asyncio.shield(self._end)
        if isinstance(event, Done):
            return event.result
        assert isinstance(event, Failed | Cancelled | Interrupted)
        raise JobFailed(event)


@dataclass
class Running:
    """A job an engine process is working on (drawing it, or saving its images)."""

    handle: Handle
    started: asyncio.Future[None]  # set by its Started event
    done: asyncio.Future[JobEvent]  # its terminal event; EngineDiedError if the process dies
    loading: asyncio.Future[None]  # set by its Loading event
    drawn: asyncio.Future[None]  # set by its Drawn event: the process takes the next job


@dataclass(frozen=True)
class Saving:
    """A drawn job whose files the engine process is writing."""

    running: Running
    deadline: float  # loop time: its job_timeout, counted from its start
    cancelled: bool  # cancelled too late to stop: it is not to run again if its process dies


class EngineProcess:
    """One engine process and the two pipes to it. Draws one job at a time, while it may still
    be saving those drawn before."""

    def __init__(self, config: EngineConfig):
        ctx = multiprocessing.get_context("spawn")
        self._commands_out: Connection
        commands_in, self._commands_out = ctx.Pipe(duplex=False)
        self._events_in, events_out = ctx.Pipe(duplex=False)
        self.process = ctx.Process(
            target=worker.main,
            args=(config, commands_in, events_out, logging.getLogger().getEffectiveLevel()),
            name="imagine-engine",
            daemon=True,
        )
        self._child_ends = (commands_in, events_out)
        self._starting: asyncio.Future[None] | None = None
        # Set once it takes jobs (to the model it preloads first), and once that model is in;
        # EngineDiedError if it dies before.
        self.ready: asyncio.Future[str | None] | None = None
        self.preloaded: asyncio.Future[None] | None = None
        self._jobs: dict[str, Running] = {}  # sent, and not ended yet
        self._loop: asyncio.AbstractEventLoop | None = None
        self.dead = False
        self._stopping = False

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.ready = self._loop.create_future()
        self.preloaded = self._loop.create_future()
        for future in (self.ready, self.preloaded):  # nobody may be waiting when it dies
            future.add_done_callback(_retrieved)
        # Shielded: a thread cannot be cancelled, and stop() must know whether the process is
        # there (a close during a restart after a crash would otherwise orphan it).
        self._starting = asyncio.ensure_future(asyncio.to_thread(self.process.start))
        await asyncio.shield(self._starting)
        for end in self._child_ends:  # so that EOF reaches us when the child exits
            end.close()
        threading.Thread(target=self._read, name="engine-events", daemon=True).start()
        logger.info("engine process %s started", self.process.pid)

    def _read(self) -> None:
        """Thread: forward events into the event loop; report death on EOF."""
        assert self._loop is not None
        while True:
            try:
                event = self._events_in.recv()
            except (EOFError, OSError):
                break
            try:
                self._loop.call_soon_threadsafe(self._deliver, event)
            except RuntimeError:  # the event loop is closed: nobody is listening any more
                return
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._died)

    def _deliver(self, event: JobEvent | worker.Ready | worker.Preloaded | worker.Drawn) -> None:
        if isinstance(event, worker.Ready):
            _settle(self.ready, event.preloading)
            if event.preloading is None:
                _settle(self.preloaded, None)
            return
        if isinstance(event, worker.Preloaded):
            _settle(self.preloaded, None)
            return
        current = self._jobs.get(event.job_id)
        if current is None:
            return
        if isinstance(event, worker.Drawn):
            _settle(current.drawn, None)
            return
        if isinstance(event, TERMINAL_EVENTS):
            del self._jobs[event.job_id]
            _settle(current.done, event)
            return
        if isinstance(event, Started) and not current.started.done():
            current.started.set_result(None)
        if isinstance(event, Loading) and not current.loading.done():
            current.loading.set_result(None)
        current.handle.push(event)

    def _died(self) -> None:
        self.dead = True
        self.process.join(timeout=0)  # reap it if it is gone already; never block the loop
        log = logger.info if self._stopping else logger.error
        log("engine process %s exited (code %s)", self.process.pid, self.process.exitcode)
        for running in self._jobs.values():  # the one drawing, and those saving
            if not running.done.done():
                running.done.set_exception(EngineDiedError(self.process.exitcode))
        self._jobs.clear()
        for future in (self.ready, self.preloaded):
            if future is not None and not future.done():
                future.set_exception(EngineDiedError(self.process.exitcode))

    def run(self, handle: Handle) -> Running:
        """Send one job. Its Started and Progress events go to the handle; the terminal one
        resolves `Running.done` (the caller pushes it)."""
        if self.dead:
            raise EngineDiedError(self.process.exitcode)
        self._send(("run", handle.job))
        return self._track(handle)

    def run_together(self, handles: list[Handle]) -> list[Running]:
        """Send jobs to be drawn in one batch; each is then as if sent by `run`."""
        if self.dead:
            raise EngineDiedError(self.process.exitcode)
        self._send(("run_together", tuple(handle.job for handle in handles)))
        return [self._track(handle) for handle in handles]

    def _track(self, handle: Handle) -> Running:
        loop = asyncio.get_running_loop()
        running = Running(handle, *(loop.create_future() for _ in range(4)))
        running.done.add_done_callback(_retrieved)  # a timed-out job's is never awaited again
        self._jobs[handle.job.id] = running
        return running

    def cancel(self, job_id: str) -> None:
        with contextlib.suppress(OSError, EngineDiedError):  # a dead process runs nothing
            self._send(("cancel", job_id))

    def _send(self, message: tuple[str, Any]) -> None:
        try:
            self._commands_out.send(message)
        except (BrokenPipeError, EOFError) as error:
            raise EngineDiedError(self.process.exitcode) from error

    def kill(self) -> None:
        """Give up on this process now: the next job must not be sent to it."""
        self._stopping = self.dead = True
        if self.process.is_alive():
            self.process.kill()

    async def stop(self) -> None:
        """Ask the process to finish (closing its command pipe), then kill it if it lingers."""
        self._stopping = True
        self._jobs.clear()  # their callers are gone: no one would read an exception set on them
        if self._starting is not None:
            await asyncio.gather(self._starting, return_exceptions=True)
        self._commands_out.close()
        if self.process.pid is None:  # never started
            self._events_in.close()
            return
        await asyncio.to_thread(self.process.join, STOP_GRACE_S)
        if self.process.is_alive():
            logger.warning("engine process %s did not stop; killing it", self.process.pid)
            self.process.kill()
            await asyncio.to_thread(self.process.join, STOP_GRACE_S)
        self._events_in.close()


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # marks it seen: no "exception was never retrieved" in the log


def _settle(future: asyncio.Future[Any] | None, value: Any) -> None:
    if future is not None and not future.done():
        future.set_result(value)


class EngineClient:
    """An `engine.jobs.Engine` that runs jobs in a local engine process."""

    def __init__(self, config: EngineConfig):
        self.config = config
        self._queue = FairQueue()
        self._handles: dict[str, Handle] = {}
        self._running: dict[str, Job] = {}  # the jobs being drawn (several: drawn together)
        self._saving: dict[str, asyncio.Task[None]] = {}  # drawn jobs being saved, oldest first
        self._jobs_saving: dict[str, Job] = {}
        self._runs: dict[str, int] = {}  # runs started of each job not ended yet
        # A running job's cancel is remembered: if its process dies meanwhile, the job must
        # not run again in the next one.
        self._cancelled_running: set[str] = set()
        self._idle = asyncio.Event()  # set while no job runs or saves
        self._idle.set()
        self._process: EngineProcess | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._closed = False
        self._down: str | None = None  # why no job is taken now (the engine failed to start)
        self._failed_starts = 0
        self._next_start = 0.0  # loop time before which no new process is started
        self._background: set[asyncio.Task[Any]] = set()
        self._preload = config.preload  # off after a preload that took past load_timeout

    async def __aenter__(self) -> EngineClient:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Start the engine process now (so the default model loads before the first job)."""
        await self._ensure_process()
        self._dispatcher = asyncio.create_task(self._dispatch(), name="engine-dispatcher")

    async def close(self, grace_s: float = 0.0) -> None:
        """Stop taking work; let the running job finish within `grace_s` seconds; end it and
        everything still queued as `Interrupted` (they were not run to their end); stop the
        process."""
        self._closed = True
        for task in self._background:  # a start retry waiting out its pause
            task.cancel()
        for job in self._queue.clear():
            self._finish(job.id, Interrupted(job.id))
        if grace_s > 0 and not self._idle.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace_s)
        running, cancelled = list(self._running.values()), set(self._cancelled_running)
        for job in running:
            if self._process is not None:  # stop the GPU work now; nobody waits for its result
                self._process.cancel(job.id)
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
        for job in running:
            if job.id in cancelled:  # never to be resumed
                self._finish(job.id, Cancelled(job.id))
            else:
                logger.info("job %s was still running at shutdown: left for the next start", job.id)
                self._finish(job.id, Interrupted(job.id))
        for job_id, task in list(self._saving.items()):  # its files may be half written: redo it
            task.cancel()
            logger.info("job %s was still saving at shutdown: left for the next start", job_id)
            self._finish(job_id, Interrupted(job_id))
        if self._process is not None:
            await self._process.stop()
            self._process = None

    def unavailable(self) -> str | None:
        """Why no job is taken now (the engine process fails to start), or None."""
        return self._down

    async def submit(self, job: Job) -> Handle:
        if job.id in self._handles:
            raise ValueError(f"job {job.id} was already submitted")
        handle = Handle(job)
        if self._closed or self._dispatcher is None:  # nothing would ever run it
            handle.push(Failed(job.id, "the engine is not running (the bot is shutting down)"))
            return handle
        if self._down is not None:  # no job is accepted into a void
            handle.push(Failed(job.id, self._down))
            return handle
        self._handles[job.id] = handle
        self._queue.put(job)
        self._announce_positions()  # the newcomer may go ahead of others (owners take turns)
        return handle

    async def cancel(self, job_id: str) -> bool:
        if self._queue.remove(job_id) is not None:
            self._finish(job_id, Cancelled(job_id))
            self._announce_positions()
            return True
        if job_id in self._running:
            self._cancelled_running.add(job_id)
            if self._process is not None:
                self._process.cancel(job_id)
            handle = self._handles.get(job_id)
            if handle is not None and isinstance(handle.last, Loading):
                # A load (a download, even) cannot be stopped halfway: say Cancelled now; the
                # engine drops the job once its model is in.
                handle.push(Cancelled(job_id))
            return True
        return False

    def position(self, job_id: str) -> int | None:
        if job_id in self._running:
            return 0
        if job_id in self._jobs_saving:  # drawn, not yet saved: still running to its user
            return 0
        return self._position_in_queue(job_id) or None

    def jobs(self, owner: str | None = None) -> tuple[Job, ...]:
        running = [*self._jobs_saving.values(), *self._running.values()]
        return tuple(
            j for j in [*running, *self._queue.order()] if owner is None or j.owner == owner
        )

    def _position_in_queue(self, job_id: str) -> int:
        return self._queue.place(job_id)

    def _announce_positions(self) -> None:
        for place, job in enumerate(self._queue.order(), start=1):
            if job.id in self._runs:  # to run again: its user saw it start already
                continue
            handle = self._handles[job.id]
            if not (isinstance(handle.last, Queued) and handle.last.position == place):
                handle.push(Queued(job.id, place))

    def _finish(self, job_id: str, event: JobEvent) -> None:
        self._runs.pop(job_id, None)
        handle = self._handles.pop(job_id, None)
        if handle is not None:
            handle.push(event)

    async def _ensure_process(self) -> EngineProcess:
        if self._process is None or self._process.dead:
            wait = self._next_start - asyncio.get_running_loop().time()
            if wait > 0:  # the last one could not start: not again before its pause is over
                await asyncio.sleep(wait)
            if self._process is None or self._process.dead:
                config = self.config if self._preload else replace(self.config, preload=False)
                self._process = EngineProcess(config)
                await self._process.start()
                self._spawn(self._watch_start(self._process))
        return self._process

    async def _watch_start(self, process: EngineProcess) -> None:
        """Whether `process` became ready; if it died first, the engine is down until a process
        (tried again with backoff) does."""
        assert process.ready is not None
        try:  # shielded: a job waits on the same future
            await asyncio.wait_for(asyncio.shield(process.ready), START_TIMEOUT_S)
        except (EngineDiedError, TimeoutError) as error:
            if isinstance(error, TimeoutError):  # e.g. an import stuck on a network disk
                logger.error("the engine process did not start within %g s", START_TIMEOUT_S)
                process.kill()
            elif process._stopping:
                return
            self._failed_starts += 1
            delays = START_RETRY_DELAYS_S
            delay = delays[min(self._failed_starts, len(delays)) - 1]
            self._down = ENGINE_DOWN
            self._next_start = asyncio.get_running_loop().time() + delay
            logger.error(
                "the engine process could not start (%s, %d time(s) in a row); "
                "trying again in %g s",
                f"exit code {error}" if isinstance(error, EngineDiedError) else "too slow",
                self._failed_starts,
                delay,
            )
            await asyncio.sleep(delay)
            if not self._closed:
                await self._ensure_process()
            return
        if self._down is not None:
            logger.info("the engine process started again")
        self._down, self._failed_starts = None, 0

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _dispatch(self) -> None:
        while True:
            group = take_together(await self._queue.get(), self._queue, self.config)
            self._running.update((job.id, job) for job in group)
            self._idle.clear()
            self._announce_positions()
            if len(group) == 1:
                await self._member(group[0], None)
                continue
            try:
                process = await self._ensure_process()
                live = [job for job in group if job.id not in self._cancelled_running]
                sent = process.run_together([self._handles[j.id] for j in live]) if live else []
            except EngineDiedError:  # no process to send them to: each goes its own way
                await asyncio.gather(*(self._member(job, None) for job in group))
                continue
            runs = dict(zip((job.id for job in live), ((process, r) for r in sent), strict=True))
            await asyncio.gather(*(self._member(job, runs.get(job.id)) for job in group))

    async def _member(self, job: Job, sent: tuple[EngineProcess, Running] | None) -> None:
        """Run one job of those taken (sent already when drawn together) until it is drawn
        (then its files are awaited in the background) or ends."""
        try:
            if sent is None and job.id in self._cancelled_running:  # before it could be sent
                outcome: JobEvent | Saving = Cancelled(job.id)
            else:
                outcome = await self._run_with_retry(job, sent)
            if isinstance(outcome, Saving):  # the engine takes the next job meanwhile
                self._jobs_saving[job.id] = job
                self._saving[job.id] = asyncio.create_task(self._saved(job, outcome))
        finally:
            del self._running[job.id]
            self._cancelled_running.discard(job.id)
            self._idle_if_nothing_runs()
        if not isinstance(outcome, Saving):
            self._finish(job.id, outcome)

    def _idle_if_nothing_runs(self) -> None:
        if not self._running and not self._saving:
            self._idle.set()

    async def _saved(self, job: Job, saving: Saving) -> None:
        """Wait for a drawn job's files; if its process dies first, it runs again (next,
        before the queue) or fails, as a job whose process dies while it draws."""
        try:
            event = await self._files(job, saving)
        finally:
            del self._saving[job.id], self._jobs_saving[job.id]
            self._idle_if_nothing_runs()
        if event is None:
            self._queue.put_first(job)
        else:
            self._finish(job.id, event)

    async def _files(self, job: Job, saving: Saving) -> JobEvent | None:
        """The saving job's terminal event, or None if it is to run again."""
        remaining = saving.deadline - asyncio.get_running_loop().time()
        try:
            return await asyncio.wait_for(saving.running.done, max(0.0, remaining))
        except TimeoutError:
            return self._timed_out(job)
        except EngineDiedError as error:
            run = self._runs.get(job.id, RUNS_PER_JOB)
            logger.error(
                "engine process died while saving job %s (exit code %s), run %d of %d",
                job.id,
                error,
                run,
                RUNS_PER_JOB,
            )
            if saving.cancelled:
                return Cancelled(job.id)
            return None if run < RUNS_PER_JOB else Failed(job.id, self._down or DIED)

    async def _run_with_retry(
        self, job: Job, sent: tuple[EngineProcess, Running] | None = None
    ) -> JobEvent | Saving:
        """A process that dies under a job (killed, out of host memory, a CUDA fault) is
        replaced and the job runs once more; a second death fails it, so a job that crashes the
        engine every time cannot take it down in a loop. (A job whose process died while it
        saved comes here for its second run.)"""
        while True:
            run = self._runs[job.id] = self._runs.get(job.id, 0) + 1
            try:
                return await self._run(job, sent)
            except EngineDiedError as error:
                sent = None  # the next run goes alone
                logger.error(
                    "engine process died during job %s (exit code %s), run %d of %d",
                    job.id,
                    error,
                    run,
                    RUNS_PER_JOB,
                )
                await asyncio.sleep(0)  # let the start watcher see a process that never started
                if job.id in self._cancelled_running:  # cancelled while its process was dying
                    return Cancelled(job.id)
                if run >= RUNS_PER_JOB:
                    return Failed(job.id, self._down or DIED)

    async def _loaded(self, job: Job, running: Running) -> JobEvent | None:
        """Wait for the job's model to load, at most `[engine] load_timeout`; a Failed event if
        it takes longer (the process is replaced: a load cannot be stopped halfway)."""
        limit = self.config.load_timeout_s
        loaded: set[asyncio.Future[Any]] = {running.started, running.done}
        finished, _ = await asyncio.wait(loaded, timeout=limit, return_when=FIRST_COMPLETED)
        if finished:
            return None
        logger.error("loading model %s took over %g s; restarting the engine", job.model, limit)
        if self._process is not None:
            self._process.kill()
        return Failed(
            job.id,
            f"loading model {job.model} took longer than {limit:g} s ([engine] load_timeout) "
            "and was stopped",
        )

    async def _preloaded(self, job: Job, process: EngineProcess) -> bool:
        """Wait for `process` to take jobs, then for its preload of the default model, which
        may take `[engine] load_timeout` (the job's message says a model loads meanwhile).
        False when the preload took longer: the process is killed. EngineDiedError if it dies
        first (the start watcher limits how long starting itself may take)."""
        assert process.ready is not None and process.preloaded is not None
        preloading = await asyncio.shield(process.ready)
        if process.preloaded.done():
            return True
        if preloading is not None:
            self._handles[job.id].push(Loading(job.id, preloading))
        limit = self.config.load_timeout_s
        try:
            await asyncio.wait_for(asyncio.shield(process.preloaded), limit)
        except TimeoutError:
            logger.error(
                "preloading model %s took over %g s; starting the engine without preloading",
                preloading,
                limit,
            )
            process.kill()
            return False
        return True

    async def _run(
        self, job: Job, sent: tuple[EngineProcess, Running] | None = None
    ) -> JobEvent | Saving:
        """One run of `job` (`sent`: already sent, with others), to its end or until it is
        drawn; EngineDiedError when the process dies under it."""
        handle = self._handles[job.id]
        try:
            if sent is None:
                process = await self._ensure_process()
                if job.id in self._cancelled_running:  # cancelled while a new process started
                    return Cancelled(job.id)
                running = process.run(handle)
            else:
                process, running = sent
            if not await self._preloaded(job, process):  # it hung (a download): go without
                self._preload = False
                if isinstance(handle.last, Cancelled):  # cancelled while it waited
                    return handle.last
                return await self._run(job)
            # The time limit starts when the job does: loading its model (even downloading it)
            # is not the job's time, and has load_timeout instead.
            first: set[asyncio.Future[Any]] = {running.started, running.done, running.loading}
            await asyncio.wait(first, return_when=FIRST_COMPLETED)
            if running.loading.done() and not running.started.done():
                loaded = await self._loaded(job, running)
                if loaded is not None:
                    return loaded
            deadline = asyncio.get_running_loop().time() + self.config.job_timeout_s
            await asyncio.wait_for(_first(running.drawn, running.done), self.config.job_timeout_s)
            if running.done.done():
                return running.done.result()  # EngineDiedError if the process died
            return Saving(running, deadline, job.id in self._cancelled_running)
        except TimeoutError:
            return self._timed_out(job)
        except EngineDiedError:
            raise
        except Exception:
            logger.exception("could not run job %s", job.id)
            return Failed(job.id, worker.UNEXPECTED)

    def _timed_out(self, job: Job) -> Failed:
        """A job past `[engine] job_timeout`: its process is replaced (jobs it was saving run
        again)."""
        logger.error(
            "job %s ran past %g s; restarting the engine", job.id, self.config.job_timeout_s
        )
        if self._process is not None:
            self._process.kill()
        return Failed(
            job.id, f"the job took longer than {self.config.job_timeout_s:g} s and was stopped"
        )


async def _first(*futures: asyncio.Future[Any]) -> None:
    """Until one of `futures` is done (none is cancelled when this is)."""
    await asyncio.wait(futures, return_when=FIRST_COMPLETED)
