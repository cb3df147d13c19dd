"""Every job button, pressed over the wire: U, V, 🔄, 🪄 Vary, Upscale, ❌, remix, restarts."""

from __future__ import annotations

import pytest
import pytest_asyncio
from PIL import Image

from bot.config import PermissionsConfig
from bot.store import JobStatus, UserSettings
from engine.jobs import ImageRef, JobKind, Strength
from tests.discord.helpers import Harness, buttons, harness, image_of, job_id_of, queued_job
from tests.fake_discord import FakeInteraction, StoredMessage

__all__ = ["harness"]

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def new_job(h: Harness, press: FakeInteraction) -> StoredMessage:
    """The job message a button press posted, once finished."""
    return await h.finished((await h.job_message(press)).id)


@pytest_asyncio.fixture(loop_scope="session")
async def h_grid(harness: Harness) -> tuple[Harness, StoredMessage]:
    """A started bot and a finished grid of "a quiet harbor"."""
    await harness.start()
    return harness, await harness.grid("a quiet harbor")


async def test_u_posts_the_stored_image_alone_with_single_image_buttons(
    h_grid: tuple[Harness, StoredMessage],
) -> None:
    h, grid = h_grid
    job = h.stored(grid)

    press = await h.press(grid, f"mj:u:2:{job.job.id}", user_id=h.bob)

    callback = await h.fake.wait_for_callback(press)
    assert callback.json["type"] == 5  # deferred: reading and fitting the file may take a while
    posted = await h.new_message(lambda m: m.interaction_id == press.id and not m.loading)
    assert posted.content.startswith(f"**a quiet harbor** - Image #2 <@{h.bob}>")
    [attachment] = posted.attachments
    assert job.result is not None
    assert attachment.data == job.result.images[1].read_bytes()
    assert image_of(attachment.data).size == (128, 128)
    assert buttons(posted)[:5] == [  # then the tools: tests/discord/test_tools.py
        ("Vary (Subtle)", "🪄", f"mj:vs:2:{job.job.id}"),
        ("Vary (Strong)", "🪄", f"mj:vt:2:{job.job.id}"),
        ("Vary (Region)", "🖌️", f"mj:vr:2:{job.job.id}"),
        ("Upscale (Subtle)", None, f"mj:us:2:{job.job.id}"),
        ("Upscale (Creative)", None, f"mj:uc:2:{job.job.id}"),
    ]


async def test_v_makes_variations_with_the_pressers_variation_mode(
    h_grid: tuple[Harness, StoredMessage],
) -> None:
    h, grid = h_grid
    source = h.stored(grid).job
    h.bot.store.save_settings(str(h.bob), UserSettings(variation=Strength.SUBTLE))

    press = await h.press(grid, f"mj:v:3:{source.id}", user_id=h.bob)
    finished = await new_job(h, press)

    assert finished.content.startswith(
        f"**a quiet harbor** - Variations (Subtle) by <@{h.bob}> (seed "
    )
    assert image_of(finished.attachments[0].data).size == (256, 256)
    vary = h.stored(finished).job
    assert (vary.kind, vary.strength, vary.owner) == (JobKind.VARY, Strength.SUBTLE, str(h.bob))
    assert vary.source == ImageRef(source.id, 2)
    assert [c for c in finished.custom_ids if c.startswith("mj:u:1:")] == [f"mj:u:1:{vary.id}"]


async def test_v_is_strong_by_default(h_grid: tuple[Harness, StoredMessage]) -> None:
    h, grid = h_grid
    press = await h.press(grid, f"mj:v:1:{job_id_of(grid)}")
    message = await h.job_message(press)
    assert message.content == (
        f"**a quiet harbor** - Variations (Strong) by <@{h.tester}> (Waiting to start)"
    )
    assert h.stored(message).job.strength is Strength.STRONG


async def test_reroll_runs_the_same_prompt_with_a_new_seed(
    h_grid: tuple[Harness, StoredMessage],
) -> None:
    h, grid = h_grid
    source = h.stored(grid).job

    press = await h.press(grid, f"mj:r:0:{source.id}", user_id=h.bob)
    finished = await new_job(h, press)

    reroll = h.stored(finished).job
    assert reroll.kind is JobKind.IMAGINE and reroll.owner == str(h.bob)
    assert reroll.request.prompt == source.request.prompt and reroll.seed != source.seed
    assert finished.content.startswith(f"**a quiet harbor** - <@{h.bob}> (seed {reroll.seed},")


@pytest.mark.parametrize(("op", "strength"), [("vs", Strength.SUBTLE), ("vt", Strength.STRONG)])
async def test_vary_on_a_single_image(
    h_grid: tuple[Harness, StoredMessage], op: str, strength: Strength
) -> None:
    h, grid = h_grid
    source = h.stored(grid).job
    single = await pick(h, grid, 4)

    press = await h.press(single, f"mj:{op}:4:{source.id}")
    finished = await new_job(h, press)

    vary = h.stored(finished).job
    assert (vary.kind, vary.strength, vary.source) == (
        JobKind.VARY,
        strength,
        ImageRef(source.id, 3),
    )
    word = strength.value.title()
    assert finished.content.startswith(f"**a quiet harbor** - Variations ({word}) by <@{h.tester}>")
    assert image_of(finished.attachments[0].data).size == (256, 256)


@pytest.mark.parametrize(("op", "strength"), [("us", Strength.SUBTLE), ("uc", Strength.CREATIVE)])
async def test_upscale_doubles_the_image_and_keeps_the_tools_but_upscaling(
    h_grid: tuple[Harness, StoredMessage], op: str, strength: Strength
) -> None:
    h, grid = h_grid
    source = h.stored(grid).job
    single = await pick(h, grid, 1)

    press = await h.press(single, f"mj:{op}:1:{source.id}")
    finished = await new_job(h, press)

    upscale = h.stored(finished).job
    assert (upscale.kind, upscale.strength) == (JobKind.UPSCALE, strength)
    assert upscale.source == ImageRef(source.id, 0)
    word = strength.value.title()
    assert finished.content.startswith(f"**a quiet harbor** - Upscaled ({word}) by <@{h.tester}>")
    assert image_of(finished.attachments[0].data).size == (256, 256)  # 2 × 128
    # As on Midjourney, an upscale is not upscaled again: each press would double its side.
    assert [label or emoji for label, emoji, _ in buttons(finished)] == [
        "Vary (Subtle)", "Vary (Strong)", "Vary (Region)",
        "Zoom Out 2x", "Zoom Out 1.5x", "Custom Zoom", "⬅️", "➡️", "⬆️", "⬇️",
    ]  # fmt: skip
    assert finished.custom_ids[0] == f"mj:vs:1:{upscale.id}"


async def test_an_image_already_at_full_size_is_not_upscaled(
    h_grid: tuple[Harness, StoredMessage],
) -> None:
    h, grid = h_grid
    stored = h.stored(grid)
    single = await pick(h, grid, 1)
    assert stored.result is not None
    Image.new("L", (4096, 2048)).save(stored.result.images[0])  # as if it were a big upscale
    jobs_before = len(h.engine.jobs())

    press = await h.press(single, f"mj:uc:1:{stored.job.id}")

    assert await h.private_reply(press) == "This image is already at full size."
    assert len(h.engine.jobs()) == jobs_before


async def test_vary_on_an_upscaled_image_starts_from_the_upscale(
    h_grid: tuple[Harness, StoredMessage],
) -> None:
    h, grid = h_grid
    single = await pick(h, grid, 2)
    press = await h.press(single, f"mj:us:2:{job_id_of(grid)}")
    upscaled = await new_job(h, press)
    upscale_id = job_id_of(upscaled)

    vary = await h.press(upscaled, f"mj:vt:1:{upscale_id}", user_id=h.bob)

    message = await h.job_message(vary)
    assert message.content == (
        f"**a quiet harbor** - Variations (Strong) by <@{h.bob}> (Waiting to start)"
    )
    assert h.stored(message).job.source == ImageRef(upscale_id, 0)


async def test_a_forged_image_number_is_refused(h_grid: tuple[Harness, StoredMessage]) -> None:
    h, grid = h_grid
    job_id = job_id_of(grid)
    # Discord only sends custom_ids the bot made; pretend a client sent another one.
    grid.components[0]["components"][0]["custom_id"] = f"mj:u:0:{job_id}"

    press = await h.press(grid, f"mj:u:0:{job_id}")

    assert await h.private_reply(press) == "This job has no such image."


async def pick(h: Harness, grid: StoredMessage, number: int) -> StoredMessage:
    press = await h.press(grid, f"mj:u:{number}:{job_id_of(grid)}")
    return await h.new_message(lambda m: m.interaction_id == press.id and not m.loading)


# --- ❌ -----------------------------------------------------------------------------------------


async def test_owner_cancels_with_the_x_button(harness: Harness) -> None:
    h = harness
    await h.start()
    message = await queued_job(h)
    job_id = job_id_of(message)

    press = await h.press(message, f"mj:x:0:{job_id}")

    assert await h.private_reply(press) == f"Cancelling job `{job_id}`."
    finished = await h.finished(message.id)
    assert finished.content == f"**a waiting job** - <@{h.tester}> (Cancelled)"
    assert finished.components == [] and finished.attachments == []
    stored = h.bot.store.get_job(job_id)
    assert stored is not None and stored.status is JobStatus.CANCELLED


async def test_others_may_not_cancel_but_an_admin_may(harness: Harness) -> None:
    h = harness
    await h.start()
    message = await queued_job(h)
    job_id = job_id_of(message)

    refused = await h.press(message, f"mj:x:0:{job_id}", user_id=h.bob)
    assert await h.private_reply(refused) == "Only the job's owner or an admin may cancel it."
    assert h.bot.store.get_job(job_id) is not None
    assert h.engine.position(job_id) is not None

    allowed = await h.press(message, f"mj:x:0:{job_id}", user_id=h.admin)
    assert (await h.private_reply(allowed)).startswith("Cancelling job")
    assert (await h.finished(message.id)).content.endswith("(Cancelled)")


# --- who may press ------------------------------------------------------------------------------


async def test_buttons_owner_only_refuses_others_privately(harness: Harness) -> None:
    h = harness
    await h.start(permissions=PermissionsConfig(admins=(h.admin,), buttons_owner_only=True))
    grid = await h.grid("owner only")
    before = len(h.fake.channel_messages())

    press = await h.press(grid, f"mj:v:1:{job_id_of(grid)}", user_id=h.bob)

    reply = await h.private_reply(press)
    assert reply == f"Only <@{h.tester}>, who made this job, may use its buttons."
    assert len(h.fake.channel_messages()) == before


# --- remix --------------------------------------------------------------------------------------


async def test_remix_mode_opens_a_prefilled_modal_and_uses_the_edited_prompt(
    h_grid: tuple[Harness, StoredMessage],
) -> None:
    h, grid = h_grid
    source = h.stored(grid).job
    h.bot.store.save_settings(str(h.tester), UserSettings(remix=True))

    press = await h.press(grid, f"mj:v:2:{source.id}")

    callback = await h.fake.wait_for_callback(press)
    assert callback.json["type"] == 9
    [field] = [c for c in callback.components if c["type"] == 4]
    assert field["value"] == "a quiet harbor"
    submit = await h.fake.push_modal_submit(
        press, {field["custom_id"]: "a stormy harbor --chaos 20"}
    )
    message = await h.job_message(submit)
    assert message.content == (
        f"**a stormy harbor --chaos 20** - Variations (Strong) by <@{h.tester}> (Waiting to start)"
    )
    vary = h.stored(message).job
    assert vary.request.chaos == 20 and vary.source == ImageRef(source.id, 1)


async def test_remix_reports_an_invalid_edit_privately(
    h_grid: tuple[Harness, StoredMessage],
) -> None:
    h, grid = h_grid
    h.bot.store.save_settings(str(h.tester), UserSettings(remix=True))

    submit = await h.remix(grid, f"mj:r:0:{job_id_of(grid)}", "a harbor --chaos 500")

    reply = await h.private_reply(submit)
    assert reply.startswith("**Invalid parameter**\n--chaos must be")


# --- restarts -----------------------------------------------------------------------------------


async def test_buttons_still_work_after_a_restart(harness: Harness) -> None:
    h = harness
    first = await h.start()
    grid = await h.grid("before the restart")
    job_id = job_id_of(grid)
    await h.stop(first)

    second = await h.start()  # a new Bot and a new Store on the same database
    assert second is not first and second.store is not first.store
    press = await h.press(grid, f"mj:u:3:{job_id}", user_id=h.bob)

    posted = await h.new_message(lambda m: m.interaction_id == press.id and not m.loading)
    assert posted.content.startswith(f"**before the restart** - Image #3 <@{h.bob}>")
    stored = second.store.get_job(job_id)
    assert stored is not None and stored.result is not None
    assert posted.attachments[0].data == stored.result.images[2].read_bytes()


async def test_an_image_gone_from_storage_is_reported(
    h_grid: tuple[Harness, StoredMessage],
) -> None:
    h, grid = h_grid
    result = h.stored(grid).result
    assert result is not None
    result.images[0].unlink()

    press = await h.press(grid, f"mj:u:1:{job_id_of(grid)}")

    assert (
        await h.private_reply(press)
        == "This image has expired: it is no longer in the bot's storage."
    )


async def test_remix_applies_the_pressers_stylize_setting(
    h_grid: tuple[Harness, StoredMessage],
) -> None:
    h, grid = h_grid
    h.bot.store.save_settings(str(h.bob), UserSettings(remix=True, stylize=750))
    press = await h.press(grid, f"mj:r:0:{job_id_of(grid)}", user_id=h.bob)
    callback = await h.fake.wait_for_callback(press)
    [field] = [c for c in callback.components if c["type"] == 4]

    submit = await h.fake.push_modal_submit(press, {field["custom_id"]: "a stormy harbor"})

    message = await h.job_message(submit)
    assert h.stored(message).job.request.stylize == 750


async def test_remix_refuses_a_prompt_too_long_for_the_box(harness: Harness) -> None:
    h = harness
    await h.start()
    prompt = "waves " * 700 + "--seed 5"  # over 4000 characters: the box would cut --seed
    grid = await h.grid(prompt)
    h.bot.store.save_settings(str(h.tester), UserSettings(remix=True))

    press = await h.press(grid, f"mj:r:0:{job_id_of(grid)}")

    assert await h.private_reply(press) == (
        "This prompt is too long to edit in Discord's box; run /imagine with the edit."
    )
    assert press.modal is None
