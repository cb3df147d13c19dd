"""Nothing is lost across restarts (in-process: the bot is stopped and a new one started on the
same database; tests/discord/test_signals.py does the same with real signals to a real process).

- a job left queued or running runs again, on its existing message, edited with the bot token;
- one the bot stopped under twice is failed with a plain message instead;
- a finished job whose message was never shown is delivered again: a deleted message is posted
  again in its channel, a deleted channel sends it to its owner directly;
- a last edit that Discord refuses for a while is retried until it goes through;
- a bot that stops leaves its jobs queued, and their messages say it is restarting.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot import messages
from bot.app import ImagineBot
from bot.store import JobStatus, Store, StoredJob
from engine.client import EngineClient
from tests.discord.helpers import EDIT_INTERVAL_S, Harness, eventually, harness, job_id_of
from tests.fake_discord import RecordedRequest, StoredMessage

__all__ = ["harness"]

pytestmark = pytest.mark.asyncio(loop_scope="session")

QUICK_RETRIES = (0.05, 0.1, 0.2)


async def stop_leaving(h: Harness, bot: ImagineBot, *messages_: StoredMessage) -> list[StoredJob]:
    """Stop `bot` as a crash would leave things: its jobs are gone from the (shared) engine
    but still unfinished in the store. Returns their records."""
    stored = [h.stored(m) for m in messages_]
    await h.stop(bot)
    for each in stored:
        await h.engine.cancel(each.job.id)  # the shared engine forgets them, as a new one would
    ids = {each.job.id for each in stored}
    await eventually(lambda: not ids & {job.id for job in h.engine.jobs()})
    return stored


def channel_edits(h: Harness, message_id: int) -> list[RecordedRequest]:
    return [
        r
        for r in h.fake.requests
        if r.route == "channel_message_edit" and r.params["message_id"] == str(message_id)
    ]


async def test_a_job_left_running_runs_again_on_its_own_message(harness: Harness) -> None:
    h = harness
    bot = await h.start()
    blocker = await h.blocker()
    message = await h.job_message(await h.imagine("cut short"))
    [stored, _] = await stop_leaving(h, bot, message, blocker)
    with Store(h.config().database) as store:  # as if the bot had died while the job ran
        store.set_status(stored.job.id, JobStatus.RUNNING)
        store.set_status(job_id_of(blocker), JobStatus.CANCELLED)
        store.set_delivered(job_id_of(blocker))

    second = await h.start()

    finished = await h.finished(message.id)
    assert finished.id == message.id  # the same message, not a new one
    assert finished.content.startswith(f"**cut short** - <@{h.tester}> (seed {stored.job.seed},")
    finals = [r for r in channel_edits(h, message.id) if "(seed " in str(r.payload["content"])]
    assert finals and all(r.headers["Authorization"] == f"Bot {h.fake.bot_token}" for r in finals)
    await eventually(lambda: h.stored(finished).delivered)
    after = second.store.get_job(stored.job.id)
    assert after is not None and after.status is JobStatus.DONE
    assert after.interruptions == 1 and after.job == stored.job


async def test_queued_jobs_left_behind_run_in_their_order(harness: Harness) -> None:
    h = harness
    bot = await h.start()
    blocker = await h.blocker()
    first = await h.job_message(await h.imagine("first in line"))
    second = await h.job_message(await h.imagine("second in line", user_id=h.bob))
    await stop_leaving(h, bot, blocker, first, second)
    with Store(h.config().database) as store:
        store.set_status(job_id_of(blocker), JobStatus.CANCELLED)
        store.set_delivered(job_id_of(blocker))

    restarted = await h.start()

    done = [await h.finished(m.id) for m in (first, second)]
    assert all("(seed " in m.content for m in done)
    records = [restarted.store.get_job(job_id_of(m)) for m in (first, second)]
    assert all(r is not None and r.status is JobStatus.DONE for r in records)
    assert all(r is not None and r.interruptions == 0 for r in records)  # queued: not counted
    starts = [r for r in records if r is not None]
    assert starts[0].created_at < starts[1].created_at


async def test_a_job_the_bot_stopped_under_twice_is_failed(harness: Harness) -> None:
    h = harness
    bot = await h.start()
    blocker = await h.blocker()
    message = await h.job_message(await h.imagine("poison pill"))
    [stored, _] = await stop_leaving(h, bot, message, blocker)
    with Store(h.config().database) as store:
        store.set_status(job_id_of(blocker), JobStatus.CANCELLED)
        store.set_delivered(job_id_of(blocker))
        store.set_status(stored.job.id, JobStatus.RUNNING)
        assert store.interrupted(stored.job.id) == 1  # its first restart …
        store.set_status(stored.job.id, JobStatus.RUNNING)  # … and it was running again

    restarted = await h.start()

    edited = await h.new_message(lambda m: m.id == message.id and "(Failed: " in m.content)
    assert edited.content == (
        f"**poison pill** - <@{h.tester}> (Failed: {messages.INTERRUPTED_TWICE})"
    )
    assert edited.components == []
    after = restarted.store.get_job(stored.job.id)
    assert after is not None and after.status is JobStatus.FAILED and after.interruptions == 2
    assert stored.job.id not in {job.id for job in h.engine.jobs()}


async def test_a_finished_job_never_shown_is_delivered_on_the_next_start(
    harness: Harness,
) -> None:
    h = harness
    bot = await h.start()
    grid = await h.grid("finished unseen")
    job_id = job_id_of(grid)
    await h.stop(bot)
    grid.deleted = True  # and someone deleted its message meanwhile
    with Store(h.config().database) as store:
        stored = store.get_job(job_id)
        assert stored is not None and stored.result is not None
        store.set_status(job_id, JobStatus.DONE, result=stored.result)  # not delivered

    restarted = await h.start()

    posted = await h.new_message(
        lambda m: m.id != grid.id and job_id in "".join(m.custom_ids) and "(seed " in m.content
    )
    assert posted.channel_id == h.fake.channel_id and posted.attachments
    await eventually(lambda: h.stored(posted).delivered)
    assert h.stored(posted).message_id == posted.id
    assert restarted.store.undelivered_jobs() == []


async def test_a_result_whose_channel_is_gone_goes_to_its_owner_directly(
    harness: Harness,
) -> None:
    h = harness
    await h.start()
    blocker = await h.blocker()
    interaction = await h.imagine("homeless grid")
    message = await h.job_message(interaction)
    h.fake.expire(interaction)  # so the bot token is used, and the channel is asked
    del h.fake.channels[h.fake.channel_id]  # the channel is deleted while the job waits
    await h.release(blocker)

    dm = await h.new_message(
        lambda m: "homeless grid" in m.content and m.channel_id != message.channel_id
    )

    assert dm.content.startswith(f"**homeless grid** - <@{h.tester}> (seed ")
    assert dm.content.endswith("the channel of this job is gone, or closed to the bot.")
    assert dm.attachments and dm.components == []  # no buttons where DMs are off
    await eventually(lambda: h.stored(message).delivered)
    assert h.stored(message).channel_id == dm.channel_id


async def test_a_last_edit_refused_for_a_while_is_retried_until_it_lands(
    harness: Harness,
) -> None:
    h = harness
    bot = await h.start()
    bot.deliveries.retry_delays_s = QUICK_RETRIES
    blocker = await h.blocker()
    interaction = await h.imagine("stubborn discord")
    message = await h.job_message(interaction)
    h.fake.expire(interaction)
    # The edit with the result is refused 8 times. 503, because discord.py itself retries a 500
    # five times with its own pauses: this way each refusal reaches the bot (which used to give
    # up after its fourth try).
    h.fake.fail_next(
        "channel_message_edit",
        status=503,
        times=8,
        when=lambda r: "(seed " in str(r.payload.get("content")),
    )
    await h.release(blocker)

    finished = await h.finished(message.id)

    assert "(seed " in finished.content
    refused = [r for r in channel_edits(h, message.id) if r.status == 503]
    assert len(refused) >= 8
    await eventually(lambda: h.stored(finished).delivered)


async def test_stopping_leaves_jobs_queued_and_their_messages_say_so(harness: Harness) -> None:
    """The bot's own engine is closed with it: what was queued or running is interrupted."""
    h = harness
    engine = EngineClient(replace(h.engine.config, storage=h.storage / "own-engine"))
    await engine.start()
    bot = ImagineBot(h.config(), engine=engine, edit_interval_s=EDIT_INTERVAL_S)
    await h.runner.start(bot)
    h.bots.append(bot)
    running = await h.job_message(await h.imagine("long one --steps 150 --q 2"))
    await h.new_message(lambda m: m.id == running.id and "%)" in m.content)  # a new process
    waiting = await h.job_message(await h.imagine("next one"))

    await engine.close()  # what close() does to an engine of its own, without the grace

    for message in (running, waiting):
        shown = await h.new_message(
            lambda m, message=message: m.id == message.id and "restarting" in m.content
        )
        assert shown.content.endswith("(Waiting: the bot is restarting)")
        assert bot.store.get_job(job_id_of(message)).status is JobStatus.QUEUED  # type: ignore[union-attr]
    await h.stop(bot)
