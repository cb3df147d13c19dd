"""Refusals and errors are private, plain and specific; tracebacks go to the log only."""

from __future__ import annotations

import logging

import pytest

import bot.presses
from bot.config import ModerationConfig, PermissionsConfig
from bot.messages import SOMETHING_WENT_WRONG
from bot.store import JobStatus, UserSettings
from engine.client import ENGINE_DOWN
from tests.discord.helpers import Harness, harness, job_id_of
from tests.fake_discord import FakeInteraction
from tests.fake_discord.payloads import dm_channel

__all__ = ["harness"]

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def ephemeral_answer(h: Harness, interaction: FakeInteraction) -> str:
    callback = await h.fake.wait_for_callback(interaction)
    assert callback.json["type"] == 4
    assert callback.json["data"]["flags"] == 64
    return str(callback.json["data"]["content"])


async def test_invalid_parameter_is_named_privately(harness: Harness) -> None:
    h = harness
    await h.start()

    reply = await ephemeral_answer(h, await h.imagine("a cat --chaos 500"))

    assert reply == ("**Invalid parameter**\n--chaos must be a whole number from 0 to 100, got 500")
    assert h.fake.channel_messages() == []
    assert h.engine.jobs() == ()


async def test_banned_word_names_the_rule(harness: Harness) -> None:
    h = harness
    await h.start(
        moderation=ModerationConfig(banned_words=("gore",), banned_patterns=(r"\bblood\w*",))
    )

    word = await ephemeral_answer(h, await h.imagine("a scene full of GORE"))
    pattern = await ephemeral_answer(h, await h.imagine("bloody sunset"))

    assert word == (
        'Banned prompt detected: your prompt matched the banned word "gore". Please rephrase it.'
    )
    assert pattern.startswith(
        r"Banned prompt detected: your prompt matched the pattern /\bblood\w*/"
    )
    assert h.fake.channel_messages() == []


async def test_banned_word_in_the_suffix_counts(harness: Harness) -> None:
    h = harness
    await h.start(moderation=ModerationConfig(banned_words=("gore",)))
    h.bot.store.save_settings(str(h.tester), UserSettings(suffix="gore"))

    reply = await ephemeral_answer(h, await h.imagine("a calm lake"))

    assert reply.startswith('Banned prompt detected: your prompt matched the banned word "gore"')


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("channel", "This bot is not enabled in this channel."),
        ("role", "You need one of the roles"),
        ("guild", "This bot is not enabled in this server."),
    ],
)
async def test_permission_refusals_are_private(harness: Harness, rule: str, expected: str) -> None:
    h = harness
    perms = {
        "channel": PermissionsConfig(allowed_channels=(h.fake.other_channel_id,)),
        "role": PermissionsConfig(allowed_roles=(h.fake.bot_role_id,)),
        "guild": PermissionsConfig(allowed_guilds=(1,)),
    }[rule]
    await h.start(permissions=perms)

    reply = await ephemeral_answer(h, await h.imagine("a cat"))

    assert reply.startswith(expected)
    assert h.fake.channel_messages() == []


async def test_roles_and_channels_allow_who_they_name(harness: Harness) -> None:
    h = harness
    perms = PermissionsConfig(
        allowed_channels=(h.fake.other_channel_id,), allowed_roles=(h.fake.member_role_id,)
    )
    await h.start(permissions=perms)

    message = await h.job_message(
        await h.imagine("allowed here", channel_id=h.fake.other_channel_id)
    )
    refused = await ephemeral_answer(
        h, await h.imagine("no role", channel_id=h.fake.other_channel_id, user_id=h.roleless)
    )

    assert message.channel_id == h.fake.other_channel_id
    assert refused.startswith("You need one of the roles")


async def dm_interaction(h: Harness, user_id: int) -> FakeInteraction:
    """/imagine from a DM: no guild, no member, a `user` and a DM channel."""
    user = h.fake.users[user_id]
    channel = dm_channel(h.fake._ids.next(), user)
    h.fake.channels[int(channel["id"])] = channel
    return await h.imagine(
        "a cat in a dm",
        channel_id=int(channel["id"]),
        guild_id=None,
        guild=None,
        member=None,
        user=user,
        channel=channel,
        context=1,
    )


async def test_direct_messages_are_refused_when_off(harness: Harness) -> None:
    h = harness
    await h.start(permissions=PermissionsConfig(allow_dms=False))

    reply = await ephemeral_answer(h, await dm_interaction(h, h.tester))

    assert reply == "Direct messages are turned off for this bot."


async def test_an_unexpected_error_is_logged_and_answered_plainly(
    harness: Harness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    bot = await h.start()

    def broken(user_id: str) -> None:
        raise RuntimeError("the database is on fire")

    monkeypatch.setattr(bot.store, "get_settings", broken)
    with caplog.at_level(logging.ERROR):
        reply = await ephemeral_answer(h, await h.imagine("a cat"))

    assert reply == SOMETHING_WENT_WRONG
    assert "Traceback" not in reply and "fire" not in reply
    [record] = [r for r in caplog.records if r.name == "bot.interactions"]
    assert record.exc_info is not None and "on fire" in str(record.exc_info[1])
    assert "/imagine" in record.getMessage()


async def test_a_button_error_is_logged_and_answered_plainly(
    harness: Harness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    bot = await h.start()
    grid = await h.grid("a button that breaks")

    def broken(job_id: str) -> None:
        raise RuntimeError("lost the records")

    monkeypatch.setattr(bot.store, "get_job", broken)
    with caplog.at_level(logging.ERROR):
        press = await h.press(grid, f"mj:u:1:{job_id_of(grid)}")
        reply = await h.private_reply(press)

    assert reply == SOMETHING_WENT_WRONG
    [record] = [r for r in caplog.records if r.name == "bot.interactions"]
    assert record.exc_info is not None and "lost the records" in str(record.exc_info[1])


async def test_a_failed_job_says_why_in_plain_words(harness: Harness) -> None:
    h = harness
    await h.start()

    message = await h.job_message(await h.imagine("a cat --v broken"))
    job_id = job_id_of(message)
    finished = await h.finished(message.id)

    assert finished.content.startswith(f"**a cat --v broken** - <@{h.tester}> (Failed: ")
    assert "Traceback" not in finished.content
    # The preset's source is a folder on the server: the user is not shown where.
    assert "could not load model preset 'broken' from local" in finished.content
    assert "no-such-model" not in finished.content, finished.content
    assert finished.components == [] and finished.attachments == []
    stored = h.bot.store.get_job(job_id)
    assert stored is not None and stored.status is JobStatus.FAILED and stored.error


async def test_banned_words_apply_to_remix_edits_and_saved_suffixes(harness: Harness) -> None:
    h = harness
    await h.start(moderation=ModerationConfig(banned_words=("gore",)))
    grid = await h.grid("a calm lake")
    h.bot.store.save_settings(str(h.tester), UserSettings(remix=True))

    edited = await h.remix(grid, f"mj:r:0:{job_id_of(grid)}", "a lake of gore")
    assert (await h.private_reply(edited)).startswith(
        'Banned prompt detected: your prompt matched the banned word "gore"'
    )

    panel_command = await h.command("settings")
    await h.fake.wait_for_callback(panel_command)
    panel = h.fake.original_message(panel_command)
    assert panel is not None
    opened = await h.press(panel, "mjset:suffix")
    await h.fake.wait_for_callback(opened)
    assert opened.modal is not None
    [suffix] = [c for row in opened.modal["components"] for c in row["components"]]
    saved = await h.fake.push_modal_submit(opened, {suffix["custom_id"]: "lots of gore"})
    assert (await h.private_reply(saved)).startswith("Banned prompt detected")
    assert h.bot.store.get_settings(str(h.tester)).suffix == ""
    assert len(h.fake.channel_messages()) == 1  # only the grid


@pytest.mark.parametrize(
    "prompt", ["a scene of {go}re", "a {calm, quiet} lake --no {go}re"], ids=["prompt", "no"]
)
async def test_banned_words_are_checked_after_permutations_expand(
    harness: Harness, prompt: str
) -> None:
    h = harness
    await h.start(moderation=ModerationConfig(banned_words=("gore",)))

    reply = await ephemeral_answer(h, await h.imagine(prompt))

    assert reply.startswith('Banned prompt detected: your prompt matched the banned word "gore"')
    assert h.engine.jobs() == () and h.bot.store.user_jobs(str(h.tester)) == []


async def test_job_buttons_and_settings_controls_follow_the_role_rules(harness: Harness) -> None:
    h = harness
    await h.start(permissions=PermissionsConfig(allowed_roles=(h.fake.member_role_id,)))
    grid = await h.grid("members only")
    panel_command = await h.command("settings")
    await h.fake.wait_for_callback(panel_command)
    panel = h.fake.original_message(panel_command)
    assert panel is not None

    button = await h.press(grid, f"mj:r:0:{job_id_of(grid)}", user_id=h.roleless)
    setting = await h.press(panel, "mjset:remix", user_id=h.roleless)
    select = await h.press(panel, "mjset:stylize", user_id=h.roleless, values=["750"])

    for press in (button, setting, select):
        assert (await ephemeral_answer(h, press)).startswith("You need one of the roles")
    assert h.bot.store.get_settings(str(h.roleless)) == UserSettings()
    assert len(h.fake.channel_messages()) == 1  # only the grid


async def test_roles_count_even_when_the_guild_is_not_cached(harness: Harness) -> None:
    h = harness
    bot = await h.start(permissions=PermissionsConfig(allowed_roles=(h.fake.member_role_id,)))
    guild = bot.get_guild(h.fake.guild_id)
    assert guild is not None
    guild._roles.clear()  # as for a guild the bot has no cache of

    message = await h.job_message(await h.imagine("a member's prompt"))

    assert message.content.startswith("**a member's prompt**")


async def test_an_error_after_a_public_defer_stays_private(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    await h.start()
    grid = await h.grid("an image that will not load")

    def broken(*args: object) -> None:
        raise OSError("the disk is gone")

    monkeypatch.setattr(bot.presses, "fit_image", broken)
    press = await h.press(grid, f"mj:u:1:{job_id_of(grid)}")

    assert await h.private_reply(press) == SOMETHING_WENT_WRONG
    assert [m.content for m in h.fake.channel_messages()] == [grid.content]  # no public error
    loading = [m for m in h.fake.messages.values() if m.interaction_id == press.id]
    assert all(m.deleted or m.ephemeral for m in loading)


async def test_buttons_apply_the_rules_in_force_when_pressed(harness: Harness) -> None:
    h = harness
    before = await h.start()
    grid = await h.grid("a gory battle")
    await h.stop(before)

    await h.start(moderation=ModerationConfig(banned_words=("gory",)))  # a rule added since

    for custom_id in (f"mj:r:0:{job_id_of(grid)}", f"mj:v:1:{job_id_of(grid)}"):
        reply = await h.private_reply(await h.press(grid, custom_id))
        assert reply.startswith(
            'Banned prompt detected: your prompt matched the banned word "gory"'
        )
    assert len(h.bot.store.user_jobs(str(h.tester))) == 1  # nothing new started


async def test_imagine_while_the_engine_cannot_start_says_so_at_once(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    await h.start()
    monkeypatch.setattr(h.engine, "unavailable", lambda: ENGINE_DOWN)

    reply = await h.private_reply(await h.imagine("into the void"))

    assert reply == ENGINE_DOWN
    assert h.bot.store.user_jobs(str(h.tester)) == []  # nothing was accepted
