"""Start-up and shutdown: command sync, the bot's own engine, the CLI, no torch in the bot."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from dataclasses import replace
from typing import ClassVar

import pytest

from bot.app import ImagineBot, run_bot
from bot.app import main as app_main
from bot.cli import main as cli_main
from bot.config import BotConfig, DiscordConfig
from bot.messages import RESTARTING
from engine.config import EngineConfig
from tests.discord.helpers import Harness, harness, job_id_of

__all__ = ["harness"]

COMMANDS = {"imagine", "blend", "describe", "settings", "prefer", "info", "show", "cancel", "help"}


def test_importing_the_bot_does_not_import_torch() -> None:
    code = "import sys, bot.app; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"


def test_run_without_a_token_exits_with_a_config_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    assert run_bot(BotConfig()) == 2
    assert "no Discord token" in caplog.text
    assert cli_main(["run"]) == 2


@pytest.mark.asyncio(loop_scope="session")
async def test_commands_are_synced_to_the_configured_guilds(harness: Harness) -> None:
    h = harness
    await h.start()
    assert {c["name"] for c in h.fake.commands[h.fake.guild_id]} == COMMANDS
    assert h.fake.commands.get(None, []) == []


@pytest.mark.asyncio(loop_scope="session")
async def test_commands_are_synced_globally_without_guilds(harness: Harness) -> None:
    h = harness
    config = h.config()
    await h.start(replace(config, discord=DiscordConfig(token="unused", guild_ids=())))
    assert {c["name"] for c in h.fake.commands[None]} == COMMANDS
    assert h.fake.commands.get(h.fake.guild_id, []) == []
    imagine = next(c for c in h.fake.commands[None] if c["name"] == "imagine")
    prompt, image = imagine["options"]
    assert (prompt["name"], prompt["type"], prompt["required"]) == ("prompt", 3, True)
    assert (image["name"], image["type"], image.get("required", False)) == ("image", 11, False)


class RecordingEngine:
    """Stands in for EngineClient (whose own tests start real processes): records the calls."""

    instances: ClassVar[list[RecordingEngine]] = []

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.calls: list[str] = []
        RecordingEngine.instances.append(self)

    async def start(self) -> None:
        self.calls.append("start")

    async def close(self, grace_s: float = 0.0) -> None:
        self.calls.append(f"close {grace_s:g}")

    def jobs(self, owner: str | None = None) -> tuple[()]:
        return ()


@pytest.mark.asyncio(loop_scope="session")
async def test_the_bot_starts_its_own_engine_and_closes_it_and_the_store(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    monkeypatch.setattr("bot.app.EngineClient", RecordingEngine)
    config = h.config()
    bot = ImagineBot(config)

    await h.runner.start(bot)
    [engine] = RecordingEngine.instances
    assert engine.config == config.engine and engine.calls == ["start"]
    assert bot.engine is engine

    await h.runner.stop(bot)
    assert engine.calls == ["start", "close 8"]  # the running job gets [engine] shutdown_grace
    with pytest.raises(sqlite3.ProgrammingError):
        bot.store.get_job("0" * 32)  # closed


@pytest.mark.asyncio(loop_scope="session")
async def test_while_closing_commands_and_buttons_are_refused_privately(harness: Harness) -> None:
    h = harness
    bot = await h.start()
    grid = await h.grid("before the restart")
    bot.closing = True  # the first thing close() does
    try:
        command = await h.imagine("during the restart")
        press = await h.press(grid, f"mj:r:0:{job_id_of(grid)}")
        for interaction in (command, press):
            assert await h.private_reply(interaction) == RESTARTING
        assert h.engine.jobs() == ()
        assert len(h.bot.store.user_jobs(str(h.tester))) == 1  # only the grid's job
    finally:
        bot.closing = False  # so that the fixture really closes it


class StubBot:
    """Stands in for ImagineBot in main(): runs until closed."""

    def __init__(self, config: BotConfig) -> None:
        self.closed = asyncio.Event()

    async def __aenter__(self) -> StubBot:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self, token: str) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # as `docker stop` does
        await self.closed.wait()

    async def close(self) -> None:
        self.closed.set()


async def test_sigterm_closes_the_bot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bot.app.ImagineBot", StubBot)
    loop = asyncio.get_running_loop()
    # Without main's handler a SIGTERM would end the test run: fail instead.
    loop.add_signal_handler(signal.SIGTERM, lambda: pytest.fail("main() did not handle SIGTERM"))
    try:
        await asyncio.wait_for(app_main(BotConfig(), "token"), 10)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
