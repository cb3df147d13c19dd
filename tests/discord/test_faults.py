"""Discord on a bad day: 429s and 5xx on every call the bot makes, and a dropped gateway
connection. Nothing is lost: every job reaches its grid, once, on its own message."""

from __future__ import annotations

import pytest

from tests.discord.helpers import Harness, eventually, harness, job_id_of
from tests.fake_discord import StoredMessage

__all__ = ["harness"]

pytestmark = pytest.mark.asyncio(loop_scope="session")

TIMEOUT = 120.0  # discord.py backs off 1, 3, 5 … s on 5xx


def messages_of(h: Harness, prompt: str) -> list[StoredMessage]:
    return [m for m in h.fake.live_messages() if m.content.startswith(f"**{prompt}**")]


@pytest.mark.parametrize(
    ("status", "expired"),
    [(429, False), (502, False), (503, False), (503, True)],
    ids=["429", "502", "503", "503-bot-token"],
)
async def test_every_other_call_refused_loses_nothing(
    harness: Harness, status: int, expired: bool
) -> None:
    """discord.py retries 429s (after retry_after) and most 5xx itself; a 503 on a call with
    the bot token (after the interaction's 15 minutes) it raises, and the bot retries."""
    h = harness
    await h.start()
    h.fake.flaky(status, every=2)  # the callback, each edit, each upload, each post: 1 in 2

    interaction = await h.imagine("a stormy harbour --seed 3")
    message = await h.job_message(interaction)
    if expired:
        h.fake.expire(interaction)  # edits go through the channel, with the bot token
        h.fake.fail_next(  # and the grid's own edit is refused too, whatever the alternation
            "channel_message_edit", status=503, times=2, when=lambda r: "(seed " in str(r.json)
        )
    grid = await h.finished(message.id, timeout=TIMEOUT)
    assert "(seed 3, model tiny" in grid.content, grid.content
    assert grid.attachments and grid.custom_ids[0] == f"mj:u:1:{job_id_of(grid)}"

    press = await h.press(grid, grid.custom_ids[0])
    picked = await h.new_message(
        lambda m: m.interaction_id == press.id and "Image #1" in m.content and not m.loading,
        timeout=TIMEOUT,
    )
    h.fake.steady()

    assert picked.attachments
    refused = {r.route for r in h.fake.requests if r.injected}
    edits = "channel_message_edit" if expired else "webhook_message_edit"
    assert {"interaction_callback", edits} <= refused, refused
    assert all(r.status == status for r in h.fake.requests if r.injected)
    assert messages_of(h, "a stormy harbour --seed 3") == [grid, picked]  # no message twice
    await eventually(lambda: h.stored(grid).delivered)


async def test_a_dropped_gateway_connection_loses_nothing(harness: Harness) -> None:
    h = harness
    await h.start()
    blocker = await h.blocker()
    interaction = await h.imagine("a lighthouse in fog --seed 4")
    message = await h.job_message(interaction)

    await h.fake.drop_gateway()  # Discord restarts the gateway node under a running job
    late = await h.imagine("a second lighthouse --seed 5")  # sent while the bot reconnects
    await eventually(lambda: h.fake.resumes == 1, timeout=30.0)
    await h.release(blocker)

    grid = await h.finished(message.id)
    assert "(seed 4, " in grid.content
    late_grid = await h.finished((await h.job_message(late)).id)  # replayed on RESUME
    assert "(seed 5, " in late_grid.content
    after = await h.grid("a third lighthouse --seed 6")  # and the bot goes on as before
    assert after.attachments
    assert h.fake.connected == 1


async def test_a_new_gateway_session_runs_nothing_twice(harness: Harness) -> None:
    h = harness
    await h.start()
    blocker = await h.blocker()
    interaction = await h.imagine("a lighthouse at dusk --seed 4")
    message = await h.job_message(interaction)

    await h.fake.drop_gateway(resumable=False)  # the session is gone: a new READY follows
    await eventually(lambda: identifies(h) == 2 and h.fake.connected == 1, timeout=30.0)
    await h.engine.cancel(job_id_of(blocker))  # (discord.py waits 1-5 s first: it may be done)

    grid = await h.finished(message.id)
    assert "(seed 4, " in grid.content
    assert (await h.grid("after the new session --seed 6")).attachments
    assert messages_of(h, "a lighthouse at dusk --seed 4") == [grid]  # not resubmitted
    assert h.fake.resumes == 0


def identifies(h: Harness) -> int:
    return sum(1 for frame in h.fake.gateway_frames if frame.get("op") == 2)
