"""/imagine from the slash command to the finished grid, over the wire."""

from __future__ import annotations

import pytest

from bot.store import JobStatus
from tests.discord.helpers import Harness, buttons, harness, image_of, job_id_of, rows

__all__ = ["harness"]  # the fixture, re-exported for pytest

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_imagine_answers_at_once_then_delivers_the_grid(harness: Harness) -> None:
    h = harness
    await h.start()

    interaction = await h.imagine("a red fox --seed 1234")
    callback = await h.fake.wait_for_callback(interaction)

    # Answered with the public "Waiting" message and a ❌ button, before any GPU work.
    assert callback.json["type"] == 4
    data = callback.json["data"]
    assert data["content"] == f"**a red fox --seed 1234** - <@{h.tester}> (Waiting to start)"
    assert not data.get("flags")
    [cancel] = [c for row in data["components"] for c in row["components"]]
    assert cancel["emoji"]["name"] == "❌" and "label" not in cancel
    message = await h.job_message(interaction)
    job_id = cancel["custom_id"].split(":")[-1]
    assert cancel["custom_id"] == f"mj:x:0:{job_id}"

    finished = await h.finished(message.id)

    assert (
        finished.content
        == f"**a red fox --seed 1234** - <@{h.tester}> (seed 1234, model tiny, 4 steps)"
    )
    [attachment] = finished.attachments
    assert attachment.filename == f"{job_id}.png"
    grid = image_of(attachment.data)
    assert grid.size == (256, 256)  # 2 × 2 images of the tiny preset's 128²
    assert buttons(finished) == [
        ("U1", None, f"mj:u:1:{job_id}"),
        ("U2", None, f"mj:u:2:{job_id}"),
        ("U3", None, f"mj:u:3:{job_id}"),
        ("U4", None, f"mj:u:4:{job_id}"),
        (None, "🔄", f"mj:r:0:{job_id}"),
        ("V1", None, f"mj:v:1:{job_id}"),
        ("V2", None, f"mj:v:2:{job_id}"),
        ("V3", None, f"mj:v:3:{job_id}"),
        ("V4", None, f"mj:v:4:{job_id}"),
    ]
    assert len(rows(finished)) == 2 and len(rows(finished)[0]) == 5
    # The job record follows the message.
    stored = h.stored(finished)
    assert stored.job.id == job_id and stored.status is JobStatus.DONE
    assert stored.result is not None and stored.result.seeds[0] == 1234
    assert stored.channel_id == h.fake.channel_id


async def test_the_message_is_edited_from_waiting_to_the_grid(harness: Harness) -> None:
    """Which progress states appear depends on the machine's speed (edits are throttled, the
    newest state wins); test_throttle.py checks each state in lockstep. Here: what went over the
    wire is the lifecycle, in order, on one message."""
    h = harness
    await h.start()
    interaction = await h.imagine("a lighthouse")
    message = await h.job_message(interaction)

    await h.finished(message.id)

    edits = [
        r
        for r in h.fake.requests
        if r.route == "webhook_message_edit" and r.params["token"] == interaction.token
    ]
    assert edits and all(r.status == 200 for r in edits)
    contents = [str(r.payload["content"]) for r in edits]
    statuses = [c.rsplit("> ", 1)[1] for c in contents]
    assert all(s.endswith("%)") or s.startswith("(Queued") for s in statuses[:-1]), statuses
    assert statuses[-1].startswith("(seed ")
    assert [p.filename for p in edits[-1].files] == [f"{job_id_of(message)}.png"]
    previews = [p for r in edits[:-1] for p in r.files]
    assert all(p.filename == "preview.jpg" and image_of(p.data).width > 0 for p in previews)
