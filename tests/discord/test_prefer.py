"""/prefer over the wire: custom options, the suffix, remix, and the personalization profile
that `--p` applies."""

from __future__ import annotations

import pytest

from bot.config import ModerationConfig
from bot.store import UserSettings
from tests.discord.helpers import Harness, harness

__all__ = ["harness"]

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def prefer(h: Harness, sub: str, user_id: int | None = None, **options: object) -> str:
    """Run `/prefer <sub>` and return its private answer."""
    interaction = await h.command(f"prefer {sub}", options or None, user_id=user_id)
    return await h.private_reply(interaction)


async def test_prefer_has_its_subcommands(harness: Harness) -> None:
    h = harness
    await h.start()
    [command] = [c for c in h.fake.commands[h.fake.guild_id] if c["name"] == "prefer"]
    names = {o["name"]: o for o in command["options"]}
    assert set(names) == {"option", "suffix", "remix", "personalize"}
    assert {o["name"] for o in names["option"]["options"]} == {"set", "list"}


async def test_an_option_is_saved_listed_used_and_deleted(harness: Harness) -> None:
    h = harness
    await h.start()
    user = str(h.tester)

    saved = await prefer(h, "option set", name="Wide", value="cinematic  --ar 21:9 --s 250")

    assert saved == "Saved: `--wide` now stands for `cinematic --ar 21:9 --s 250` in your prompts."
    assert h.bot.store.get_settings(user).options == (("wide", "cinematic --ar 21:9 --s 250"),)
    listed = await prefer(h, "option list")
    assert (
        listed == "**Your options** (1 of at most 20)\n• `--wide` → `cinematic --ar 21:9 --s 250`"
    )

    message = await h.job_message(await h.imagine("a desert road --wide --seed 3"))
    job = h.stored(message).job
    assert (job.request.aspect, job.request.stylize, job.request.seed) == ((7, 3), 250, 3)
    assert job.request.prompt == "a desert road cinematic"
    assert message.content.startswith("**a desert road cinematic --seed 3 --ar 21:9 --s 250**")
    await h.finished(message.id)

    assert await prefer(h, "option set", name="wide") == "Deleted your option `--wide`."
    assert h.bot.store.get_settings(user).options == ()
    refused = await h.private_reply(await h.imagine("a desert road --wide"))
    assert "unknown parameter --wide" in refused


async def test_an_option_may_not_take_a_parameters_name(harness: Harness) -> None:
    h = harness
    await h.start()

    for name in ("ar", "v", "sref", "video"):
        reply = await prefer(h, "option set", name=name, value="--s 50")
        assert reply.startswith(f"`--{name}` cannot be a custom option"), reply
    assert h.bot.store.get_settings(str(h.tester)).options == ()


async def test_a_bad_option_value_is_refused_with_the_problem(harness: Harness) -> None:
    h = harness
    await h.start()

    reply = await prefer(h, "option set", name="mine", value="--chaos 500")

    assert reply == "**Invalid parameter**\n--chaos must be a whole number from 0 to 100, got 500"
    assert h.bot.store.get_settings(str(h.tester)).options == ()


async def test_an_option_value_with_a_banned_word_is_refused(harness: Harness) -> None:
    h = harness
    await h.start(moderation=ModerationConfig(banned_words=("gore",)))

    reply = await prefer(h, "option set", name="mine", value="lots of gore --s 50")

    assert reply.startswith("Banned prompt detected")
    assert h.bot.store.get_settings(str(h.tester)).options == ()


async def test_deleting_an_option_that_does_not_exist_says_so(harness: Harness) -> None:
    h = harness
    await h.start()
    assert await prefer(h, "option set", name="nope") == "You have no option `--nope`."


async def test_the_suffix_is_set_checked_and_removed(harness: Harness) -> None:
    h = harness
    await h.start()
    user = str(h.tester)

    assert (
        await prefer(h, "suffix", new_value="--ar 3:2  --c 5")
        == "Your suffix is now `--ar 3:2 --c 5`."
    )
    assert h.bot.store.get_settings(user).suffix == "--ar 3:2 --c 5"
    bad = await prefer(h, "suffix", new_value="--q nope")
    assert bad.startswith("**Invalid parameter**\n--q must be")
    assert h.bot.store.get_settings(user).suffix == "--ar 3:2 --c 5"  # unchanged

    message = await h.job_message(await h.imagine("a field of tulips"))
    assert h.stored(message).job.request.chaos == 5
    await h.finished(message.id)

    removed = await prefer(h, "suffix")
    assert removed == "Your prompts have no suffix now (it was `--ar 3:2 --c 5`)."
    assert h.bot.store.get_settings(user).suffix == ""


async def test_a_suffix_may_use_an_option(harness: Harness) -> None:
    h = harness
    await h.start()
    h.bot.store.save_settings(str(h.tester), UserSettings(options=(("mine", "--s 20"),)))

    assert await prefer(h, "suffix", new_value="--mine") == "Your suffix is now `--mine`."

    message = await h.job_message(await h.imagine("a quiet lake"))
    assert h.stored(message).job.request.stylize == 20
    await h.finished(message.id)


async def test_remix_toggles(harness: Harness) -> None:
    h = harness
    await h.start()
    assert (await prefer(h, "remix")).startswith("Remix mode is on")
    assert h.bot.store.get_settings(str(h.tester)).remix is True
    assert await prefer(h, "remix") == "Remix mode is off."
    assert h.bot.store.get_settings(str(h.tester)).remix is False


async def test_a_profile_is_saved_and_p_applies_it(harness: Harness) -> None:
    h = harness
    await h.start()

    saved = await prefer(h, "personalize", style="muted film colours, soft grain")

    profile = h.bot.store.get_profile(str(h.tester))
    assert profile is not None and profile.style == "muted film colours, soft grain"
    assert saved.startswith("Saved. Your profile: `muted film colours, soft grain`")
    assert f"`--p {profile.code}`" in saved
    shown = await prefer(h, "personalize")
    assert shown.startswith("Your profile: `muted film colours, soft grain`")

    message = await h.job_message(await h.imagine("a harbour at dawn --p"))
    job = h.stored(message).job
    assert job.request.personal_styles == ("muted film colours, soft grain",)
    await h.finished(message.id)


async def test_anyone_may_use_a_profile_by_its_code_and_unknown_codes_are_noted(
    harness: Harness,
) -> None:
    h = harness
    await h.start()
    await prefer(h, "personalize", user_id=h.bob, style="neon noir")
    profile = h.bot.store.get_profile(str(h.bob))
    assert profile is not None

    interaction = await h.imagine(f"a rainy street --p {profile.code} zzzz999")
    message = await h.job_message(interaction)

    assert h.stored(message).job.request.personal_styles == ("neon noir",)
    note = await h.private_reply(interaction)
    assert "`--p zzzz999` is not a profile code on this server: it was ignored" in note
    await h.finished(message.id)


async def test_p_without_a_profile_runs_and_says_how_to_make_one(harness: Harness) -> None:
    h = harness
    await h.start()
    interaction = await h.imagine("a rainy street --p")
    message = await h.job_message(interaction)
    assert "make one with /prefer personalize" in await h.private_reply(interaction)
    await h.finished(message.id)


async def test_a_profile_is_removed_and_its_code_stops_working(harness: Harness) -> None:
    h = harness
    await h.start()
    await prefer(h, "personalize", style="pastel")
    profile = h.bot.store.get_profile(str(h.tester))
    assert profile is not None

    assert await prefer(h, "personalize", remove=True) == "Your personalization profile is deleted."

    assert h.bot.store.profile_style(profile.code) is None
    assert await prefer(h, "personalize", remove=True) == "You have no profile."


async def test_a_profile_with_a_banned_word_is_refused(harness: Harness) -> None:
    h = harness
    await h.start(moderation=ModerationConfig(banned_words=("gore",)))
    assert (await prefer(h, "personalize", style="gore everywhere")).startswith("Banned prompt")
    assert h.bot.store.get_profile(str(h.tester)) is None


async def test_settings_reset_keeps_custom_options(harness: Harness) -> None:
    h = harness
    await h.start()
    user = str(h.tester)
    h.bot.store.save_settings(user, UserSettings(stylize=750, options=(("mine", "--s 20"),)))
    panel_interaction = await h.command("settings")
    await h.fake.wait_for_callback(panel_interaction)
    panel = h.fake.original_message(panel_interaction)
    assert panel is not None

    reset = await h.press(panel, "mjset:reset")
    await h.fake.wait_for_callback(reset)

    assert h.bot.store.get_settings(user) == UserSettings(options=(("mine", "--s 20"),))


async def test_a_banned_word_inside_a_custom_option_is_caught_in_the_prompt(
    harness: Harness,
) -> None:
    """An option saved before the rule existed still cannot smuggle the word in."""
    h = harness
    await h.start(moderation=ModerationConfig(banned_words=("gore",)))
    h.bot.store.save_settings(str(h.tester), UserSettings(options=(("mine", "gore --s 5"),)))

    reply = await h.private_reply(await h.imagine("a castle --mine"))

    assert reply.startswith('Banned prompt detected: your prompt matched the banned word "gore"')
    assert h.bot.store.user_jobs(str(h.tester)) == []


async def test_a_banned_word_in_a_profile_used_by_code_is_caught(harness: Harness) -> None:
    h = harness
    await h.start(moderation=ModerationConfig(banned_words=("gore",)))
    profile = h.bot.store.save_profile(str(h.bob), "lots of gore")  # saved before the rule

    reply = await h.private_reply(await h.imagine(f"a castle --p {profile.code}"))

    assert reply.startswith('Banned prompt detected: your prompt matched the banned word "gore"')
