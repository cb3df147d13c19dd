"""Storage over the wire: retention prunes old images and their buttons say so; a full disk
refuses new jobs with a plain word; the bot will not start on storage it cannot write."""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import pytest

from bot import messages
from tests.discord.helpers import Harness, eventually, harness, job_id_of

__all__ = ["harness"]

pytestmark = pytest.mark.asyncio(loop_scope="session")


def age(folder: Path, days: float) -> None:
    then = time.time() - days * 86400
    for file in folder.iterdir():
        os.utime(file, (then, then))


async def test_retention_prunes_old_images_and_their_buttons_say_they_expired(
    harness: Harness,
) -> None:
    h = harness
    # The bot's storage must be the (shared) engine's, where the images are.
    config = h.config()
    config = replace(config, engine=replace(config.engine, storage=h.engine.config.storage))
    first = await h.start(config)
    old = await h.grid("an old picture")
    recent = await h.grid("a recent picture")
    await h.stop(first)
    images = config.engine.images_dir
    age(images / job_id_of(old), 40)

    # Retention runs a pass at start-up, then hourly.
    await h.start(replace(config, engine=replace(config.engine, keep_days=30)))

    await eventually(lambda: not (images / job_id_of(old)).exists())
    assert (images / job_id_of(recent)).exists()
    press = await h.press(old, f"mj:u:1:{job_id_of(old)}")
    assert await h.private_reply(press) == (
        "This image has expired: this server keeps images for 30 days."
    )
    shown = await h.private_reply(await h.command("show", {"job_id": job_id_of(old)}))
    assert shown == "This image has expired: this server keeps images for 30 days."


async def test_a_full_disk_refuses_a_new_job_privately(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    bot = await h.start()

    def full(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(bot.store, "add_job", full)
    reply = await h.private_reply(await h.imagine("nowhere to put it"))

    assert reply == messages.DISK_FULL
    assert h.engine.jobs() == ()
