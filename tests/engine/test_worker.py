"""The engine process's loop (`engine.worker.serve`) with a stand-in generator, over real pipes:
a CUDA fault fails its job and ends the process (the client then starts a fresh one); any other
error fails only its job; a drawn job is saved beside the next one's drawing."""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterator
from dataclasses import replace
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.generate import Drawing
from engine.jobs import Done, Failed, Job, JobEvent, JobResult, Started, imagine_job
from engine.prompt import parse_prompt
from engine.storage import DISK_FULL, StorageError
from engine.worker import (
    GPU_FAULT,
    UNEXPECTED,
    Drawn,
    Preloaded,
    Ready,
    hide_paths,
    poisons_the_device,
    serve,
)

TIMEOUT = 10


class FailingGenerator:
    """Raises `error` from every run; records what it was asked to run."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.ran: list[str] = []

    def is_loaded(self, job: Job) -> bool:
        return True

    def model(self, name: str) -> None:
        return None

    def load(self, job: Job) -> None:
        return None

    def draw(self, job: Job, progress: Any, cancelled: Any) -> None:
        self.ran.append(job.id)
        raise self.error


class SlowSaver:
    """Draws at once; saves a job (one file) only once its `release` is set. `saving` is set
    while a save waits."""

    def __init__(self, root: Path, save_error: Exception | None = None) -> None:
        self.root = root
        self.save_error = save_error
        self.release: dict[str, threading.Event] = {}
        self.saving = threading.Event()

    def is_loaded(self, job: Job) -> bool:
        return True

    def model(self, name: str) -> None:
        return None

    def load(self, job: Job) -> None:
        return None

    def draw(self, job: Job, progress: Any, cancelled: Any) -> Drawing:
        self.release[job.id] = threading.Event()
        return Drawing(job, model=None, plan=None, images=(), elapsed_s=0.0)  # type: ignore[arg-type]

    def save(self, drawing: Drawing) -> JobResult:
        self.saving.set()
        assert self.release[drawing.job.id].wait(TIMEOUT)
        if self.save_error is not None:
            raise self.save_error
        path = self.root / f"{drawing.job.id}.png"
        path.write_bytes(b"png")
        return JobResult(drawing.job.id, (path,), None, drawing.job.seeds, 1, 1, "tiny", 1, 0.0)


def job() -> Job:
    return imagine_job(parse_prompt("a red fox"), model="tiny", owner="u")


class Served:
    def __init__(self, generator: FailingGenerator | SlowSaver) -> None:
        commands_in, self.commands = Pipe(duplex=False)
        self.events, events_out = Pipe(duplex=False)
        self.thread = threading.Thread(
            target=serve, args=(generator, commands_in, events_out, None), daemon=True
        )
        self.thread.start()

    def events_of(self, count: int) -> list[JobEvent]:
        """The next `count` job events (after the process's one Ready)."""
        out = []
        while len(out) < count:
            assert self.events.poll(TIMEOUT), "no event in time"
            event = self.events.recv()
            if not isinstance(event, Ready | Preloaded):
                out.append(event)
        return out


@pytest.fixture
def close_pipes() -> Iterator[list[Connection]]:
    pipes: list[Connection] = []
    yield pipes
    for pipe in pipes:
        pipe.close()


def test_a_cuda_fault_fails_its_job_and_ends_the_process(close_pipes: list[Connection]) -> None:
    generator = FailingGenerator(
        RuntimeError("CUDA error: an illegal memory access was encountered")
    )
    served = Served(generator)
    close_pipes.append(served.commands)
    first, second = job(), job()
    served.commands.send(("run", first))
    served.commands.send(("run", second))

    assert served.events_of(2) == [Started(first.id), Failed(first.id, GPU_FAULT)]
    served.thread.join(TIMEOUT)
    assert not served.thread.is_alive()  # serve returned: the process exits
    assert generator.ran == [first.id]  # the next job was left for a fresh process


def test_another_error_fails_only_its_job(close_pipes: list[Connection]) -> None:
    generator = FailingGenerator(ValueError("something odd"))
    served = Served(generator)
    close_pipes.append(served.commands)
    first, second = job(), job()
    served.commands.send(("run", first))
    served.commands.send(("run", second))

    events = served.events_of(4)

    assert events[1] == Failed(first.id, UNEXPECTED) and events[3] == Failed(second.id, UNEXPECTED)
    assert served.thread.is_alive() and generator.ran == [first.id, second.id]


@pytest.mark.parametrize(
    ("error", "poisoned"),
    [
        (RuntimeError("CUDA error: device-side assert triggered"), True),
        (RuntimeError("CUDA error: an illegal memory access was encountered"), True),
        (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), False),
        (RuntimeError("shapes cannot be multiplied"), False),
        (ValueError("CUDA"), False),
    ],
)
def test_which_errors_poison_the_device(error: Exception, poisoned: bool) -> None:
    assert poisons_the_device(error) is poisoned


def test_a_full_disk_fails_its_job_plainly_and_the_process_goes_on(
    close_pipes: list[Connection],
) -> None:
    generator = FailingGenerator(StorageError(errno.ENOSPC, DISK_FULL))
    served = Served(generator)
    close_pipes.append(served.commands)
    first = job()
    served.commands.send(("run", first))

    assert served.events_of(2) == [Started(first.id), Failed(first.id, DISK_FULL)]
    assert served.thread.is_alive()


def test_the_process_says_it_is_ready_before_any_job(close_pipes: list[Connection]) -> None:
    served = Served(FailingGenerator(ValueError("unused")))
    close_pipes.append(served.commands)
    assert served.events.poll(TIMEOUT) and served.events.recv() == Ready()


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "no file named model_index.json found in directory /models/mine/v2",
            "no file named model_index.json found in directory (a path on the server)",
        ),
        ("No such file: '/data/images/abc/0.png'", "No such file: '(a path on the server)'"),
        ("~/models/x/y is empty", "(a path on the server) is empty"),
        ("see https://huggingface.co/org/name/tree/main", None),  # a URL is no server path
        ("org/name is not on the hub", None),  # nor is a hub id
    ],
)
def test_paths_on_the_server_are_hidden_from_users(text: str, shown: str | None) -> None:
    assert hide_paths(text) == (text if shown is None else shown)


def test_the_next_job_is_drawn_while_the_last_one_saves(
    close_pipes: list[Connection], tmp_path: Path
) -> None:
    generator = SlowSaver(tmp_path)
    served = Served(generator)
    close_pipes.append(served.commands)
    first, second = job(), job()
    served.commands.send(("run", first))
    served.commands.send(("run", second))

    # The first job's save is held: the second starts and is drawn all the same.
    assert served.events_of(4) == [
        Started(first.id),
        Drawn(first.id),
        Started(second.id),
        Drawn(second.id),
    ]
    assert generator.saving.is_set() and not (tmp_path / f"{first.id}.png").exists()
    generator.release[first.id].set()
    done = served.events_of(1)[0]
    assert isinstance(done, Done) and done.job_id == first.id
    assert all(path.exists() for path in done.result.images)  # Done comes with its files
    generator.release[second.id].set()
    assert [type(e) for e in served.events_of(1)] == [Done]


def test_a_full_disk_while_saving_fails_only_that_job(
    close_pipes: list[Connection], tmp_path: Path
) -> None:
    generator = SlowSaver(tmp_path, save_error=StorageError(errno.ENOSPC, DISK_FULL))
    served = Served(generator)
    close_pipes.append(served.commands)
    first = job()
    served.commands.send(("run", first))
    assert served.events_of(2) == [Started(first.id), Drawn(first.id)]

    generator.release[first.id].set()

    assert served.events_of(1) == [Failed(first.id, DISK_FULL)]
    assert served.thread.is_alive()


def test_the_process_ends_only_once_its_drawn_jobs_are_saved(
    close_pipes: list[Connection], tmp_path: Path
) -> None:
    generator = SlowSaver(tmp_path)
    served = Served(generator)
    first = job()
    served.commands.send(("run", first))
    assert served.events_of(2) == [Started(first.id), Drawn(first.id)]

    served.commands.close()  # the parent asks the process to finish
    assert generator.saving.wait(TIMEOUT)
    served.thread.join(0.2)
    assert served.thread.is_alive()  # still saving the drawn job
    generator.release[first.id].set()

    assert [type(e) for e in served.events_of(1)] == [Done]
    served.thread.join(TIMEOUT)
    assert not served.thread.is_alive()


class WarmingGenerator(SlowSaver):
    """Two warm-ups (1:1, 16:9) once the preset is loaded; the first waits for `go_on`, then
    until a job waits (its `cancelled()`): what serve() drew, in order, in `drawn`."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.drawn: list[object] = []
        self.warming = threading.Event()
        self.go_on = threading.Event()

    def warm_ups(self, name: str) -> list[Job]:
        request = parse_prompt("warm-up")
        return [
            imagine_job(replace(request, aspect=aspect, steps=1), model=name)
            for aspect in ((1, 1), (16, 9))
        ]

    def draw(self, job: Job, progress: Any, cancelled: Any) -> Drawing:
        warm_up = job.owner == ""
        self.drawn.append(job.request.aspect if warm_up else job.owner)
        if warm_up and len(self.drawn) == 1:
            self.warming.set()
            assert self.go_on.wait(TIMEOUT)
            for _ in range(100):  # until the job sent meanwhile is queued
                if cancelled():
                    self.drawn.append("told a job waits")
                    break
                threading.Event().wait(0.05)
        drawing = super().draw(job, progress, cancelled)
        self.release[job.id].set()
        return drawing


def test_after_preloading_warm_ups_run_only_while_no_job_waits(
    tmp_path: Path, close_pipes: list[Connection]
) -> None:
    generator = WarmingGenerator(tmp_path)
    commands_in, commands = Pipe(duplex=False)
    events, events_out = Pipe(duplex=False)
    close_pipes.append(commands)
    threading.Thread(
        target=serve, args=(generator, commands_in, events_out, "tiny"), daemon=True
    ).start()

    assert generator.warming.wait(TIMEOUT)  # the first warm-up, with nothing queued
    waiting = job()
    commands.send(("run", waiting))
    generator.go_on.set()

    done = None
    while done is None:
        assert events.poll(TIMEOUT), "no event in time"
        if isinstance(event := events.recv(), Done):
            done = event
    assert done.job_id == waiting.id  # the job's own events only: warm-ups send none
    for _ in range(100):
        if len(generator.drawn) == 4:
            break
        threading.Event().wait(0.05)
    # the first warm-up was told to stop, the job went next, the second warm-up once idle again
    assert generator.drawn == [(1, 1), "told a job waits", "u", (16, 9)]
