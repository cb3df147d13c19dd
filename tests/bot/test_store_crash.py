"""The database survives its process being killed in the middle of writes (WAL, one transaction
per write): reopened, it passes SQLite's integrity check and every committed job is readable."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from bot.store import JobStatus, Store

WRITER = """
import sys
from bot.store import JobStatus, Store
from engine.jobs import imagine_job
from engine.prompt import parse_prompt

store = Store(__import__("pathlib").Path(sys.argv[1]))
request = parse_prompt("a red fox " * 50)  # big rows: more pages in flight at the kill
n = 0
while True:
    job = imagine_job(request, model="tiny", owner=str(n % 7))
    store.add_job(job, channel_id=1, message_id=n)
    store.set_status(job.id, JobStatus.RUNNING)
    n += 1
    if n % 200 == 0:
        print("wrote", n, flush=True)
"""


def test_a_kill_during_writes_leaves_a_sound_database(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    root = Path(__file__).parents[2]
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], cwd=root, stdout=subprocess.PIPE, text=True
    ) as writer:
        assert writer.stdout is not None
        for _ in range(3):  # well into its writes: the kill lands in the middle of one
            assert writer.stdout.readline().startswith("wrote ")
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(10)

    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with Store(path) as store:
        jobs = store.unfinished_jobs()
        assert len(jobs) >= 600
        assert all(j.status in (JobStatus.QUEUED, JobStatus.RUNNING) for j in jobs)
        store.add_job(dataclasses.replace(jobs[0].job, id="f" * 32))  # and it takes writes
