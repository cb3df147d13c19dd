"""/imagine from the slash command to the finished grid, over the wire."""

from __future__ import annotations

from typing import Any

import pytest

import bot.delivery
from bot import messages
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
    interaction = await h.imagine("a lighthouse --steps 40")  # enough steps to see progress
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
    assert len(statuses) >= 2, statuses  # at least one progress edit before the grid
    assert all(s.endswith("%)") or s.startswith("(Queued") for s in statuses[:-1]), statuses
    assert statuses[-1].startswith("(seed ")
    assert [p.filename for p in edits[-1].files] == [f"{job_id_of(message)}.png"]
    previews = [p for r in edits[:-1] for p in r.files]
    assert previews, statuses
    assert all(p.filename == "preview.jpg" and image_of(p.data).width > 0 for p in previews)


async def test_imagine_is_answered_in_time_while_a_long_job_runs(harness: Harness) -> None:
    """The fake forgets an interaction not answered within 3 s, as Discord does."""
    h = harness
    await h.start()
    blocker = await h.blocker()
    await h.fake.wait_for_message(lambda m: m.id == blocker.id and "%)" in m.content)

    message = await h.job_message(await h.imagine("a second painting"))

    assert message.content.endswith("(Waiting to start)")
    await h.release(blocker)


async def test_a_long_prompt_full_of_markdown_fits_in_its_messages(harness: Harness) -> None:
    h = harness
    await h.start()
    prompt = "a_b*c " * 600  # 3600 characters; escaping doubles the markdown
    message = await h.job_message(await h.imagine(prompt.strip()))
    waiting = message.content

    finished = await h.finished(message.id)

    assert len(waiting) <= 2000 and waiting.endswith("(Waiting to start)")
    assert waiting.startswith("**a\\_b\\*c a\\_b") and "…** - " in waiting
    assert "(seed " in finished.content and len(finished.content) <= 2000


@pytest.mark.parametrize(
    "fault", ["a 400 from Discord", "an unexpected error"], ids=["http", "other"]
)
async def test_a_refused_first_message_calls_the_job_off_and_says_so_privately(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    h = harness
    await h.start()
    blocker = await h.blocker()  # the job waits in the queue: calling it off is immediate
    if fault == "a 400 from Discord":
        h.fake.fail_next("interaction_callback", status=400)
    else:

        async def broken(*args: Any) -> None:
            raise RuntimeError("a bug in posting")

        monkeypatch.setattr(bot.delivery, "post_first", broken)

    reply = await h.private_reply(await h.imagine("a refused message"))

    assert reply == messages.NOT_POSTED
    [stored] = h.bot.store.user_jobs(str(h.tester))
    assert stored.status is JobStatus.FAILED
    assert h.engine.jobs(str(h.tester)) == ()
    await h.release(blocker)


async def test_a_prompt_cannot_ping_anyone_but_its_owner(harness: Harness) -> None:
    h = harness
    await h.start()

    interaction = await h.imagine(f"hello <@{h.bob}> and @everyone")
    callback = await h.fake.wait_for_callback(interaction)

    data = callback.json["data"]
    assert data["content"].startswith(f"**hello <@\u200b{h.bob}> and @\u200beveryone** - ")
    assert data["allowed_mentions"]["parse"] == []
    assert data["allowed_mentions"]["users"] == [h.tester]
    finished = await h.finished((await h.job_message(interaction)).id)
    final = next(
        r for r in reversed(h.fake.requests) if r.payload.get("content") == finished.content
    )
    assert final.payload["allowed_mentions"]["parse"] == []
    assert final.payload["allowed_mentions"]["users"] == [h.tester]


async def test_a_job_whose_model_must_load_first_says_so(harness: Harness) -> None:
    h = harness
    await h.start()
    await h.grid("warm the other model --v tiny-xl")  # one model is kept: tiny is unloaded now

    interaction = await h.imagine("a cold start --v tiny")
    message = await h.job_message(interaction)
    await h.finished(message.id)

    shown = [
        str(r.payload.get("content"))
        for r in h.fake.requests
        if r.route == "webhook_message_edit" and r.params["token"] == interaction.token
    ]
    assert f"**a cold start --v tiny** - <@{h.tester}> (Loading model tiny…)" in shown
