"""`imagine-bot run` refuses to start on storage it cannot use, and says why."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.app import run_bot
from bot.config import BotConfig, DiscordConfig
from engine.config import EngineConfig


def test_the_bot_does_not_start_on_storage_it_cannot_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config = BotConfig(
        discord=DiscordConfig(token="x"), engine=EngineConfig(storage=blocker / "data")
    )

    with caplog.at_level(logging.ERROR):
        assert run_bot(config) == 2

    assert f"the storage {blocker / 'data'} is not writable" in caplog.text
