"""The engine process's loop (`engine.worker.serve`) with a stand-in generator, over real pipes:
a CUDA fault fails its job and ends the process (the client then starts a fresh one); any other
error fails only its job."""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterator
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import Any

import pytest
import torch

from engine.jobs import Failed, Job, JobEvent, Started, imagine_job
from engine.prompt import parse_prompt
from engine.storage import DISK_FULL, StorageError
from engine.worker import (
    GPU_FAULT,
    UNEXPECTED,
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

    def run(self, job: Job, progress: Any, cancelled: Any) -> None:
        self.ran.append(job.id)
        raise self.error


def job() -> Job:
    return imagine_job(parse_prompt("a red fox"), model="tiny", owner="u")


class Served:
    def __init__(self, generator: FailingGenerator) -> None:
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
