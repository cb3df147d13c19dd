"""Jobs belong to their server, and the bot's public messages never unfurl a prompt's links."""

from __future__ import annotations

import sqlite3

import pytest

from bot.presses import OTHER_SERVER
from tests.discord.helpers import Harness, harness, job_id_of
from tests.fake_discord import StoredMessage

__all__ = ["harness"]

pytestmark = pytest.mark.asyncio(loop_scope="session")

ELSEWHERE = 987654321987654321  # a server id that is not the fake's


def move_to_another_server(h: Harness, message: StoredMessage) -> None:
    """As if the job had been made in another server (its record says so)."""
    with sqlite3.connect(h.config().database) as db:
        db.execute("UPDATE jobs SET guild_id = ? WHERE id = ?", (ELSEWHERE, job_id_of(message)))


async def test_a_press_on_another_servers_job_is_refused(harness: Harness) -> None:
    h = harness
    await h.start()
    grid = await h.grid("made elsewhere")
    move_to_another_server(h, grid)

    for custom_id in (f"mj:u:1:{job_id_of(grid)}", f"mj:v:2:{job_id_of(grid)}"):
        press = await h.press(grid, custom_id, user_id=h.admin)  # not even an admin
        assert await h.private_reply(press) == OTHER_SERVER
    assert len(h.bot.store.user_jobs(str(h.admin))) == 0  # nothing started


async def test_show_and_cancel_of_another_servers_job_are_refused(harness: Harness) -> None:
    h = harness
    await h.start()
    grid = await h.grid("shown elsewhere")
    blocker = await h.blocker()
    waiting = await h.job_message(await h.imagine("queued elsewhere"))
    for message in (grid, waiting):
        move_to_another_server(h, message)

    shown = await h.private_reply(await h.command("show", {"job_id": job_id_of(grid)}))
    cancelled = await h.private_reply(
        await h.command("cancel", {"job_id": job_id_of(waiting)}, user_id=h.admin)
    )

    assert shown == f"You have no job with the id `{job_id_of(grid)}`."
    assert cancelled == OTHER_SERVER
    assert job_id_of(waiting) in {job.id for job in h.engine.jobs()}  # still queued
    await h.release(blocker)


async def test_links_in_a_prompt_do_not_unfurl_in_the_public_message(harness: Harness) -> None:
    h = harness
    await h.start()

    # (A link at the start would be an image prompt, fetched; one in the text is just text.)
    message = await h.job_message(
        await h.imagine("a cat, see https://example.org/x_y and https://example.com/a")
    )

    assert message.content.startswith(
        "**a cat, see <https://example.org/x_y> and <https://example.com/a>** - "
    )
    finished = await h.finished(message.id)
    assert "<https://example.org/x_y>" in finished.content
