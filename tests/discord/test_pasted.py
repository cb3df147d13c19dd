"""A prompt pasted from Midjourney's gallery, through /imagine to the finished grid, over the wire:
it runs unchanged, the message names the preset that ran, and a private note says what of it
was mapped, rounded or ignored. Bad prompts get every problem in one private answer."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.config import BotConfig
from bot.store import UserSettings
from tests.discord.helpers import Harness, harness, job_id_of

__all__ = ["harness"]

pytestmark = pytest.mark.asyncio(loop_scope="session")

GALLERY_PROMPT = (
    "ethereal forest spirit, bioluminescent mushrooms, volumetric fog —ar 16:9 --v 6.1 "
    "--style raw --s 250 --q 3 --video"
)


def with_versions(h: Harness, versions: dict[str, str]) -> BotConfig:
    """The harness's config with a [versions] table."""
    config = h.config()
    return replace(config, engine=replace(config.engine, versions=versions))


async def test_a_pasted_gallery_prompt_runs_on_the_mapped_preset_and_says_so(
    harness: Harness,
) -> None:
    h = harness
    await h.start(with_versions(h, {"6.1": "tiny-xl"}))

    interaction = await h.imagine(GALLERY_PROMPT)
    message = await h.job_message(interaction)
    note = await h.private_reply(interaction)
    finished = await h.finished(message.id)

    assert "(seed " in finished.content and "model tiny-xl" in finished.content
    assert finished.content.startswith("**ethereal forest spirit")
    job = h.stored(finished).job
    assert job.model == "tiny-xl" and job.request.version == "6.1"
    assert (job.request.aspect, job.request.style_raw, job.request.stylize) == ((16, 9), True, 250)
    assert job.request.quality == 4.0
    assert note.startswith("**About your prompt**\n")
    assert "• `--q 3` is not a quality here, so it ran as `--q 4`" in note
    assert "• video is not available on this server: `--video` ignored" in note
    assert "• `--v 6.1` is a Midjourney model; here it ran on **tiny-xl**" in note


async def test_an_unlisted_version_runs_on_the_default_preset(harness: Harness) -> None:
    h = harness
    await h.start()

    interaction = await h.imagine("a paper lantern --v 7 --ar 2:3")
    message = await h.job_message(interaction)

    assert "here it ran on **tiny**" in await h.private_reply(interaction)
    assert "model tiny" in (await h.finished(message.id)).content


async def test_a_prompt_with_nothing_to_say_gets_no_note(harness: Harness) -> None:
    h = harness
    await h.start()
    interaction = await h.imagine("a plain prompt --ar 3:2")
    message = await h.job_message(interaction)
    await h.finished(message.id)
    notes = [
        r
        for r in h.fake.requests
        if r.route == "webhook_execute" and r.params["token"] == interaction.token
    ]
    assert notes == []


async def test_every_problem_of_a_prompt_comes_in_one_private_answer(harness: Harness) -> None:
    h = harness
    await h.start()

    interaction = await h.imagine("a fox --chaos 250 --ar 16x9 --cw 500 --v 9")

    reply = await h.private_reply(interaction)
    assert reply.split("\n") == [
        "**Invalid parameter**",
        "• --chaos must be a whole number from 0 to 100, got 250",
        "• --ar must be W:H in whole numbers from 1:8 to 8:1 (like 16:9; not 1.5:1), got 16x9",
        "• --cw must be a whole number from 0 to 100, got 500",
        "• --v must be a Midjourney version from 1 to 8.1 (like 6.1) or a model preset name "
        "(broken, niji, sdxl, sdxl-turbo, tiny, tiny-xl), got 9",
    ]
    assert h.bot.store.user_jobs(str(h.tester)) == []  # nothing ran


async def test_remix_maps_a_version_typed_into_the_box(harness: Harness) -> None:
    h = harness
    await h.start(with_versions(h, {"6.1": "tiny-xl"}))
    grid = await h.grid("a quiet harbor")
    h.bot.store.save_settings(str(h.tester), UserSettings(remix=True))

    submit = await h.remix(grid, f"mj:r:0:{job_id_of(grid)}", "a harbor --v 6.1 --q 3")

    message = await h.job_message(submit)
    assert h.stored(message).job.model == "tiny-xl"
    note = await h.private_reply(submit)
    assert "`--v 6.1` is a Midjourney model; here it ran on **tiny-xl**" in note
    assert "`--q 3`" in note
    await h.finished(message.id)


async def test_a_wide_banner_ratio_runs(harness: Harness) -> None:
    h = harness
    await h.start()

    finished = await h.grid("a long koi banner --ar 4:1")

    result = h.stored(finished).result
    assert result is not None and result.width >= 3 * result.height
