"""Real signals to a real bot process (`imagine-bot run` in a subprocess, with its own engine
process and the tiny model) against the fake Discord on 127.0.0.1:

- SIGKILL mid-job (the whole process group, as `docker kill` does): the next start runs the job
  again and the grid arrives on the same message;
- SIGTERM (`docker stop`) with a queue: the running job finishes within `shutdown_grace`, the
  rest stay queued (their messages say the bot is restarting), the process exits 0, and the next
  start delivers every one of them;
- SIGTERM with a short grace: the running job too is left for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.store import JobStatus, Store
from tests.fake_discord import FakeDiscord, StoredMessage
from tests.fake_discord.payloads import FLAG_EPHEMERAL

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

START_TIMEOUT_S = 120.0  # a new process imports discord.py, then its engine imports torch
JOB_TIMEOUT_S = 120.0
ROOT = Path(__file__).parents[2]
# 512² on the tiny model: a job takes seconds, long enough to be caught mid-run.
CONFIG = """
[discord]
guild_ids = [{guild}]
[engine]
model = "slow"
cache_dir = "{storage}/models"
shutdown_grace = {grace}
threads = 1
[storage]
path = "{storage}"
[models.slow]
source = "builtin:tiny"
family = "sd"
base_resolution = 512
steps = 60
sampler = "euler"
"""


class BotProcess:
    """`imagine-bot run` as its own process (and process group) on one config."""

    def __init__(self, fake: FakeDiscord, config: Path, log: Path) -> None:
        self.fake = fake
        self.config = config
        self.log = log
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = {**os.environ, "DISCORD_TOKEN": self.fake.bot_token, "OMP_NUM_THREADS": "1"}
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.discord.bot_process",
                self.fake.api_base,
                self.fake.gateway_url,
                self.fake.base_url,
                "--log-level",
                "DEBUG",  # discord.py then logs every request and gateway event: tokens too
                "run",
                "--config",
                str(self.config),
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=log,
                start_new_session=True,  # its own process group, engine included
            )
        await self._until_answering()

    async def _until_answering(self) -> None:
        """Until the bot answers a slash command (it is connected and past READY)."""
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
        while asyncio.get_running_loop().time() < deadline:
            assert self.process is not None
            if self.process.returncode is not None:
                raise AssertionError(f"the bot exited early:\n{self.log.read_text()[-3000:]}")
            if self.fake.connected and self.fake.commands.get(self.fake.guild_id):
                probe = await self.fake.push_slash_command("info")
                with contextlib.suppress(TimeoutError):
                    await self.fake.wait_for_callback(probe, timeout=2.0)
                    return
            else:
                await asyncio.sleep(0.2)
        raise AssertionError(f"the bot did not answer in time:\n{self.log.read_text()[-3000:]}")

    def send(self, sig: signal.Signals, *, group: bool = False) -> None:
        assert self.process is not None
        if group:
            os.killpg(self.process.pid, sig)
        else:
            self.process.send_signal(sig)

    def children(self) -> list[int]:
        """The pids of the bot's child processes (its engine)."""
        assert self.process is not None
        tasks = Path(f"/proc/{self.process.pid}/task")
        return [
            int(pid) for task in tasks.iterdir() for pid in (task / "children").read_text().split()
        ]

    async def exit_code(self, timeout: float = 60.0) -> int:  # noqa: ASYNC109
        assert self.process is not None
        return await asyncio.wait_for(self.process.wait(), timeout)

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()


@pytest_asyncio.fixture(loop_scope="session")
async def fake() -> AsyncIterator[FakeDiscord]:
    """A fake Discord that the bot processes reach over loopback (nothing is patched here)."""
    server = FakeDiscord()
    server.strict = False  # a killed bot leaves requests half-done; that is the point
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def make_bot(fake: FakeDiscord, tmp_path: Path, grace: float) -> BotProcess:
    storage = tmp_path / "data"
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.format(guild=fake.guild_id, storage=storage, grace=grace))
    return BotProcess(fake, config, tmp_path / "bot.log")


async def imagine(fake: FakeDiscord, prompt: str) -> StoredMessage:
    interaction = await fake.push_slash_command("imagine", {"prompt": prompt})
    callback = await fake.wait_for_callback(interaction)
    assert callback.json["type"] == 4 and not callback.json["data"].get("flags", 0) & FLAG_EPHEMERAL
    message = fake.original_message(interaction)
    assert message is not None
    return message


async def shown(fake: FakeDiscord, message: StoredMessage, text: str) -> StoredMessage:
    return await fake.wait_for_message(
        lambda m: m.id == message.id and text in m.content, timeout=JOB_TIMEOUT_S
    )


def environ_of(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


def job_id(message: StoredMessage) -> str:
    return message.custom_ids[0].split(":")[-1]


def record(tmp_path: Path, message: StoredMessage) -> tuple[JobStatus, int]:
    with Store(tmp_path / "data" / "bot.sqlite3") as store:
        stored = store.get_job(job_id(message))
    assert stored is not None
    return stored.status, stored.interruptions


async def test_sigkill_mid_job_then_the_grid_arrives_on_the_same_message(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    bot = make_bot(fake, tmp_path, grace=8)
    try:
        await bot.start()
        message = await imagine(fake, "killed mid-job --seed 5")
        await shown(fake, message, "%)")  # running
        children = bot.children()  # the engine (and multiprocessing's resource tracker) …
        assert children and all(b"DISCORD_TOKEN" not in environ_of(pid) for pid in children)
        bot.send(signal.SIGKILL, group=True)
        assert await bot.exit_code() == -signal.SIGKILL
        assert record(tmp_path, message)[0] is JobStatus.RUNNING  # as the kill left it

        await bot.start()
        finished = await shown(fake, message, "(seed ")

        assert finished.content.startswith("**killed mid-job --seed 5** - <@")
        assert "(seed 5, model slow, 60 steps)" in finished.content
        assert finished.attachments and finished.custom_ids[0] == f"mj:u:1:{job_id(message)}"
        assert record(tmp_path, message) == (JobStatus.DONE, 1)
        log = bot.log.read_text()
        assert "[redacted]" in log  # tokens were about to be logged …
        assert fake.bot_token not in log  # … and none was
        assert not [i.token for i in fake.interactions.values() if i.token in log]
    finally:
        await bot.kill()


async def test_sigterm_finishes_the_running_job_and_keeps_the_queue_for_the_next_start(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    bot = make_bot(fake, tmp_path, grace=60)
    try:
        await bot.start()
        running = await imagine(fake, "finishes before the exit")
        waiting = [await imagine(fake, f"waits for the restart {n}") for n in (1, 2)]
        await shown(fake, running, "%)")

        bot.send(signal.SIGTERM)

        assert await bot.exit_code() == 0
        assert "(seed " in (await shown(fake, running, "(seed ")).content
        for message in waiting:
            await shown(fake, message, "(Waiting: the bot is restarting)")
            assert record(tmp_path, message) == (JobStatus.QUEUED, 0)
        assert record(tmp_path, running)[0] is JobStatus.DONE

        await bot.start()
        for message in waiting:
            assert "(seed " in (await shown(fake, message, "(seed ")).content
            assert record(tmp_path, message)[0] is JobStatus.DONE
    finally:
        await bot.kill()


async def test_sigterm_with_a_short_grace_leaves_the_running_job_for_the_next_start(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    bot = make_bot(fake, tmp_path, grace=0.5)
    try:
        await bot.start()
        running = await imagine(fake, "cut by the grace")
        await shown(fake, running, "%)")

        bot.send(signal.SIGTERM)

        assert await bot.exit_code() == 0
        await shown(fake, running, "(Waiting: the bot is restarting)")
        assert record(tmp_path, running) == (JobStatus.QUEUED, 0)  # a stop, not a crash
        await bot.start()
        assert "(seed " in (await shown(fake, running, "(seed ")).content
    finally:
        await bot.kill()
