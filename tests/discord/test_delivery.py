"""Getting a finished job to Discord: the expired-token fallback and the upload size limit."""

from __future__ import annotations

import datetime

import pytest

import bot.editing
from tests.discord.helpers import JOB_TIMEOUT, Harness, eventually, harness, image_of, job_id_of
from tests.fake_discord import RecordedRequest

__all__ = ["harness"]

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_job_finishing_after_the_token_expired_arrives_through_the_channel(
    harness: Harness,
) -> None:
    h = harness
    await h.start()
    blocker = await h.blocker()  # the job below waits, so its token expires before it ends
    interaction = await h.imagine("a slow painting")
    message = await h.job_message(interaction)
    job_id = job_id_of(message)

    h.fake.expire(interaction)
    await h.release(blocker)
    finished = await h.finished(message.id)

    def refused(r: RecordedRequest) -> bool:
        return r.route == "webhook_message_edit" and r.params["token"] == interaction.token

    rejected = [r for r in h.fake.requests if refused(r)]
    assert rejected and all(r.status == 401 for r in rejected)
    assert rejected[0].response == {"message": "Invalid Webhook Token", "code": 50027}
    [final] = [
        r
        for r in h.fake.requests
        if r.route == "channel_message_edit" and "(seed " in str(r.payload.get("content"))
    ]
    assert final.status == 200
    assert final.params == {"channel_id": str(h.fake.channel_id), "message_id": str(message.id)}
    assert final.headers["Authorization"] == f"Bot {h.fake.bot_token}"
    assert finished.content.startswith(f"**a slow painting** - <@{h.tester}> (seed ")
    assert image_of(finished.attachments[0].data).size == (256, 256)
    assert finished.custom_ids[0] == f"mj:u:1:{job_id}"


async def test_a_deleted_message_is_posted_again_in_the_channel(harness: Harness) -> None:
    h = harness
    await h.start()
    blocker = await h.blocker()
    interaction = await h.imagine("gone missing")
    message = await h.job_message(interaction)
    job_id = job_id_of(message)

    h.fake.expire(interaction)
    message.deleted = True  # someone deleted the waiting message
    await h.release(blocker)

    reposted = await h.new_message(
        lambda m: (
            m.id != message.id
            and m.content.startswith("**gone missing**")
            and "(seed " in m.content
        )
    )
    assert reposted.interaction_id is None  # sent with the bot token, not the webhook
    stored = h.bot.store.get_job(job_id)
    assert stored is not None and stored.message_id is not None


async def test_a_result_over_the_upload_limit_is_reencoded_to_fit(harness: Harness) -> None:
    h = harness
    h.fake.attachment_size_limit = 12_000  # sent in the interaction payload; the fake enforces it
    await h.start()

    interaction = await h.imagine("a very detailed tapestry")
    assert interaction.payload["attachment_size_limit"] == 12_000
    finished = await h.finished((await h.job_message(interaction)).id)

    [attachment] = finished.attachments
    assert len(attachment.data) <= 12_000
    assert attachment.filename.endswith(".jpg")
    grid = image_of(attachment.data)
    assert grid.format == "JPEG"
    assert grid.size[0] == grid.size[1] and grid.size[0] <= 256
    stored = h.stored(finished)
    assert stored.result is not None and stored.result.grid is not None
    assert stored.result.grid.stat().st_size > 12_000  # the stored PNG itself stays lossless


async def test_a_file_refused_as_too_large_is_shrunk_until_it_lands(harness: Harness) -> None:
    """The upload limit can be a guess (a job delivered after a restart assumes 10 MB): a 413
    shrinks the file and sends it again, instead of retrying the same bytes for ever."""
    h = harness
    h.fake.attachment_size_limit = 30_000  # what the fake enforces …
    await h.start()
    # … while the interaction says 10 MB, as the guess after a restart does
    interaction = await h.imagine("a very detailed tapestry", attachment_size_limit=10_000_000)
    finished = await h.finished((await h.job_message(interaction)).id)

    [attachment] = finished.attachments
    assert len(attachment.data) <= 30_000
    assert image_of(attachment.data).format == "JPEG"
    refused = [r for r in h.fake.requests if r.status == 413]
    assert refused and all(r.response["code"] == 40005 for r in refused)
    await eventually(lambda: h.stored(finished).delivered)


async def test_a_final_edit_refused_as_malformed_is_given_up_not_retried_for_ever(
    harness: Harness,
) -> None:
    h = harness
    await h.start()
    interaction = await h.imagine("a malformed ending")
    message = await h.job_message(interaction)
    h.fake.fail_next(
        "webhook_message_edit", status=400, times=100, when=lambda r: "(seed " in str(r.json)
    )
    h.fake.fail_next(
        "channel_message_edit", status=400, times=100, when=lambda r: "(seed " in str(r.json)
    )
    await eventually(lambda: h.stored(message).delivered, timeout=JOB_TIMEOUT)  # settled

    tries = [r for r in h.fake.requests if r.status == 400]
    assert 1 <= len(tries) <= 2  # the webhook, then the channel: once each
    stored = h.stored(message)
    assert stored.status.value == "done" and stored.result is not None  # kept for /show


async def test_near_the_token_expiry_edits_go_through_the_channel_unasked(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bot stops using a token TOKEN_MARGIN before it expires, without waiting for a 401."""
    h = harness
    await h.start()
    blocker = await h.blocker()
    interaction = await h.imagine("an old token")
    message = await h.job_message(interaction)

    # As if 15 minutes had passed: the token is now within the margin of its expiry.
    monkeypatch.setattr(bot.editing, "TOKEN_MARGIN", datetime.timedelta(minutes=16))
    await h.release(blocker)
    finished = await h.finished(message.id)

    assert "(seed " in finished.content
    assert not [
        r
        for r in h.fake.requests
        if r.route == "webhook_message_edit" and r.params["token"] == interaction.token
    ]
    edits = [
        r
        for r in h.fake.requests
        if r.route == "channel_message_edit" and r.params["message_id"] == str(message.id)
    ]
    assert edits and all(r.status == 200 for r in edits)
