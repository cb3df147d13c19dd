"""Midjourney's reactions, over the wire: ✉️ sends a job to your DMs, ❌ cancels or deletes yours."""

from __future__ import annotations

import logging

import pytest

from bot.config import ModerationConfig, PermissionsConfig
from bot.store import JobStatus
from tests.discord.helpers import (
    Harness,
    dm_to,
    eventually,
    harness,
    image_of,
    job_id_of,
    queued_job,
)
from tests.fake_discord import StoredMessage

__all__ = ["harness"]

pytestmark = pytest.mark.asyncio(loop_scope="session")

ENVELOPE, CROSS = "✉️", "❌"


async def pick(h: Harness, grid: StoredMessage, number: int, user_id: int) -> StoredMessage:
    """U`number` pressed by `user_id`: the single-image post."""
    press = await h.press(grid, f"mj:u:{number}:{job_id_of(grid)}", user_id=user_id)
    return await h.new_message(lambda m: m.interaction_id == press.id and not m.loading)


async def test_envelope_sends_the_grid_with_its_seeds_and_job_id_to_dms(harness: Harness) -> None:
    h = harness
    await h.start()
    grid = await h.grid("a lighthouse at dusk --seed 7")
    stored = h.stored(grid)
    assert stored.result is not None and stored.result.grid is not None

    await h.fake.push_reaction(grid, ENVELOPE, user_id=h.bob)  # anyone may: the grid is public

    dm = await dm_to(h, h.bob)
    assert dm.content.startswith(f"**a lighthouse at dusk --seed 7** - <@{h.tester}> (seed 7,")
    assert f"Job ID: `{stored.job.id}`" in dm.content
    assert "seeds 7, 8, 9, 10" in dm.content
    assert f"<{stored.jump_url}>" in dm.content
    [attachment] = dm.attachments
    assert attachment.data == stored.result.grid.read_bytes()
    assert dm.components == []  # buttons belong to the server's message


async def test_envelope_on_a_u_post_sends_that_image_and_its_seed(harness: Harness) -> None:
    h = harness
    await h.start()
    grid = await h.grid("a red fox --seed 40")
    single = await pick(h, grid, 3, h.bob)
    stored = h.stored(grid)
    assert stored.result is not None

    await h.fake.push_reaction(single, "✉")  # without the emoji presentation selector

    dm = await dm_to(h, h.tester)
    assert dm.content.startswith(f"**a red fox --seed 40** - Image #3 <@{h.bob}> (seed 42)")
    assert "seed 42 ·" in dm.content and "seeds" not in dm.content
    [attachment] = dm.attachments
    assert attachment.data == stored.result.images[2].read_bytes()
    assert image_of(attachment.data).size == (stored.result.width, stored.result.height)


async def test_envelope_on_a_waiting_job_says_so(harness: Harness) -> None:
    h = harness
    await h.start()
    message = await queued_job(h)

    await h.fake.push_reaction(message, ENVELOPE)

    dm = await dm_to(h, h.tester)
    assert dm.content.startswith(f"**a waiting job** - <@{h.tester}>\nJob ID: `")
    assert dm.content.endswith("(queued; ✉️ it again once it has finished)")
    assert dm.attachments == []


async def test_envelope_to_closed_dms_is_logged_and_nothing_else_breaks(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    caplog.set_level(logging.INFO, logger="bot.reactions")
    await h.start()
    grid = await h.grid("closed doors")
    h.fake.fail_next(  # Discord: 50007, Cannot send messages to this user
        "channel_message_create",
        status=403,
        when=lambda r: h.fake.channels[int(r.params["channel_id"])]["type"] == 1,
    )

    await h.fake.push_reaction(grid, ENVELOPE)

    await eventually(lambda: "their direct messages are closed" in caplog.text)
    after = await h.grid("still working")  # the bot goes on
    assert "(seed " in after.content


async def test_cross_cancels_your_waiting_job(harness: Harness) -> None:
    h = harness
    await h.start()
    message = await queued_job(h)
    job_id = job_id_of(message)

    await h.fake.push_reaction(message, CROSS)

    finished = await h.finished(message.id)
    assert finished.content == f"**a waiting job** - <@{h.tester}> (Cancelled)"
    stored = h.bot.store.get_job(job_id)
    assert stored is not None and stored.status is JobStatus.CANCELLED


async def test_cross_deletes_your_finished_job_message_and_keeps_the_job(
    harness: Harness,
) -> None:
    h = harness
    await h.start()
    grid = await h.grid("delete me")
    job_id = job_id_of(grid)
    await eventually(lambda: h.stored(grid).delivered)

    await h.fake.push_reaction(grid, CROSS)

    await eventually(lambda: h.fake.messages[grid.id].deleted)
    stored = h.bot.store.get_job(job_id)
    assert stored is not None and stored.status is JobStatus.DONE
    assert stored.message_id is None and stored.jump_url is None  # /info offers /show instead
    assert stored.result is not None and stored.result.grid is not None
    assert stored.result.grid.exists()


async def test_cross_from_someone_else_does_nothing_but_an_admins_deletes(
    harness: Harness,
) -> None:
    h = harness
    await h.start()
    grid = await h.grid("not yours")
    await eventually(lambda: h.stored(grid).delivered)
    single = await pick(h, grid, 1, h.bob)

    await h.fake.push_reaction(grid, CROSS, user_id=h.bob)
    await h.fake.push_reaction(single, CROSS, user_id=h.roleless)
    await h.fake.push_reaction(grid, ENVELOPE, user_id=h.bob)  # handled after the ❌ before it
    await dm_to(h, h.bob)
    assert not h.fake.messages[grid.id].deleted and not h.fake.messages[single.id].deleted

    await h.fake.push_reaction(single, CROSS, user_id=h.bob)  # the U post was made for bob
    await eventually(lambda: h.fake.messages[single.id].deleted)
    assert h.stored(grid).message_id == grid.id  # the grid's job keeps its message

    await h.fake.push_reaction(grid, CROSS, user_id=h.admin)
    await eventually(lambda: h.fake.messages[grid.id].deleted)


async def test_reactions_follow_the_access_rules(harness: Harness) -> None:
    h = harness
    await h.start(
        permissions=PermissionsConfig(admins=(h.admin,), allowed_roles=(h.fake.member_role_id,))
    )
    grid = await h.grid("members only")

    await h.fake.push_reaction(grid, ENVELOPE, user_id=h.roleless)
    await h.fake.push_reaction(grid, ENVELOPE, user_id=h.bob)

    dm = await dm_to(h, h.bob)
    assert "members only" in dm.content
    dms = [c for c in h.fake.channels.values() if c["type"] == 1]
    assert [c["recipients"][0]["id"] for c in dms] == [str(h.bob)]


async def test_other_reactions_and_other_messages_are_ignored(harness: Harness) -> None:
    h = harness
    await h.start()
    grid = await h.grid("a plain grid")
    not_ours = h.fake.create_message(h.fake.channel_id, {"content": "hello"})
    not_ours.author = h.fake.users[h.bob]  # a member's message, not the bot's
    mark = h.fake.mark()

    await h.fake.push_reaction(grid, "👍")
    await h.fake.push_reaction(not_ours, CROSS)
    await h.fake.push_reaction(not_ours, ENVELOPE)
    await h.fake.push_reaction(grid, ENVELOPE)  # the last one: its DM means the others were seen

    await dm_to(h, h.tester)
    sent = [r.route for r in h.fake.requests[mark:]]
    assert sent.count("channel_message_create") == 1 and "channel_message_delete" not in sent
    assert not h.fake.messages[not_ours.id].deleted


async def test_envelope_again_within_a_minute_sends_nothing_more(harness: Harness) -> None:
    h = harness
    await h.start()
    grid = await h.grid("once is enough")

    await h.fake.push_reaction(grid, ENVELOPE)
    await dm_to(h, h.tester)
    await h.fake.push_reaction(grid, ENVELOPE)  # taken off and put back
    await h.fake.push_reaction(grid, ENVELOPE, user_id=h.bob)  # someone else's is their own
    await dm_to(h, h.bob)

    dms = [m for m in h.fake.messages.values() if h.fake.channels[m.channel_id]["type"] == 1]
    assert len(dms) == 2


async def test_envelope_applies_the_rules_in_force(harness: Harness) -> None:
    h = harness
    before = await h.start()
    grid = await h.grid("a gory battle")
    await h.stop(before)
    await h.start(moderation=ModerationConfig(banned_words=("gory",)))  # a rule added since

    await h.fake.push_reaction(grid, ENVELOPE)
    await h.fake.push_reaction(grid, ENVELOPE, user_id=h.bob)  # the rule holds for everyone
    fine = await h.grid("a calm battle")
    await h.fake.push_reaction(fine, ENVELOPE, user_id=h.bob)

    dm = await dm_to(h, h.bob)
    assert "a calm battle" in dm.content
    dms = [m for m in h.fake.messages.values() if h.fake.channels[m.channel_id]["type"] == 1]
    assert [m.id for m in dms] == [dm.id]


async def test_a_thread_counts_as_its_channel_for_the_access_rules(harness: Harness) -> None:
    """Commands, buttons' messages and reactions in a thread follow its parent's rules."""
    h = harness
    allowed = h.fake.add_thread(h.fake.other_channel_id, "ideas")
    elsewhere = h.fake.add_thread(h.fake.channel_id, "chatter")
    await h.start(permissions=PermissionsConfig(allowed_channels=(h.fake.other_channel_id,)))

    grid = await h.finished((await h.job_message(await h.imagine("a kite", channel_id=allowed))).id)
    assert grid.channel_id == allowed
    refused = await h.private_reply(await h.imagine("a kite", channel_id=elsewhere))
    assert refused.startswith("This bot is not enabled in this channel."), refused

    await h.fake.push_reaction(grid, ENVELOPE, user_id=h.bob)
    assert (await dm_to(h, h.bob)).content.startswith(f"**a kite** - <@{h.tester}> (seed ")
