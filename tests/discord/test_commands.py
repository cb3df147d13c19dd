"""/settings, /info, /show, /cancel and /help over the wire."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.config import LimitsConfig
from bot.store import JobStatus, UserSettings
from engine.jobs import Strength
from engine.prompt.request import LoraUse
from tests.discord.helpers import Harness, eventually, harness, image_of, job_id_of
from tests.fake_discord import FakeInteraction, StoredMessage

__all__ = ["harness"]

pytestmark = pytest.mark.asyncio(loop_scope="session")


# --- /settings ----------------------------------------------------------------------------------


async def open_settings(h: Harness) -> StoredMessage:
    interaction = await h.command("settings")
    callback = await h.fake.wait_for_callback(interaction)
    assert callback.json["type"] == 4 and callback.json["data"]["flags"] == 64
    panel = h.fake.original_message(interaction)
    assert panel is not None and panel.ephemeral
    return panel


async def updated(h: Harness, interaction: FakeInteraction) -> str:
    """The panel's new content after a control was used (an in-place edit, type 7)."""
    callback = await h.fake.wait_for_callback(interaction)
    assert callback.json["type"] == 7, callback.json
    return str(callback.json["data"]["content"])


async def test_settings_panel_is_private_and_lists_every_control(harness: Harness) -> None:
    h = harness
    await h.start()

    panel = await open_settings(h)

    assert panel.content.startswith("**Your settings**")
    assert panel.custom_ids == [
        "mjset:model",
        "mjset:stylize",
        "mjset:var:strong",
        "mjset:var:subtle",
        "mjset:remix",
        "mjset:suffix",
        "mjset:reset",
        "mjset:lora",  # the tests' engine has a LoRA; without [loras] there is no such select
    ]
    model_select = panel.component("mjset:model")
    assert model_select is not None
    assert {o["value"] for o in model_select["options"]} == set(h.bot.config.engine.presets)
    stylize = panel.component("mjset:stylize")
    assert stylize is not None
    assert [o["value"] for o in stylize["options"]] == ["50", "100", "250", "750"]


async def test_each_setting_persists_in_the_store(harness: Harness) -> None:
    h = harness
    await h.start()
    panel = await open_settings(h)
    user = str(h.tester)

    content = await updated(h, await h.press(panel, "mjset:model", values=["tiny-xl"]))
    assert "Model: **tiny-xl**" in content
    assert h.bot.store.get_settings(user).model == "tiny-xl"

    content = await updated(h, await h.press(panel, "mjset:stylize", values=["750"]))
    assert "Stylize: **very high** (750)" in content
    assert h.bot.store.get_settings(user).stylize == 750

    await updated(h, await h.press(panel, "mjset:var:subtle"))
    assert h.bot.store.get_settings(user).variation is Strength.SUBTLE

    content = await updated(h, await h.press(panel, "mjset:remix"))
    assert "Remix: **on**" in content
    assert h.bot.store.get_settings(user).remix is True

    opened = await h.press(panel, "mjset:suffix")
    assert (await h.fake.wait_for_callback(opened)).json["type"] == 9
    assert opened.modal is not None
    [field] = [c for row in opened.modal["components"] for c in row["components"]]
    submitted = await h.fake.push_modal_submit(opened, {field["custom_id"]: "--ar 3:2   --chaos 5"})
    assert "Suffix: `--ar 3:2 --chaos 5`" in await updated(h, submitted)

    assert h.bot.store.get_settings(user) == UserSettings(
        model="tiny-xl",
        stylize=750,
        variation=Strength.SUBTLE,
        remix=True,
        suffix="--ar 3:2 --chaos 5",
    )
    await updated(h, await h.press(panel, "mjset:reset"))
    assert h.bot.store.get_settings(user) == UserSettings()


async def test_the_loras_chosen_in_settings_draw_every_prompt_without_its_own(
    harness: Harness,
) -> None:
    h = harness
    await h.start()
    panel = await open_settings(h)
    lora_select = panel.component("mjset:lora")
    assert lora_select is not None and (lora_select["min_values"], lora_select["max_values"]) == (
        0,
        1,
    )
    assert [(o["value"], o.get("description")) for o in lora_select["options"]] == [
        ("ink", "ink wash")
    ]

    content = await updated(h, await h.press(panel, "mjset:lora", values=["ink"]))
    assert "LoRAs: **ink**" in content
    assert h.bot.store.get_settings(str(h.tester)).loras == ("ink",)

    chosen = h.stored(await h.grid("a harbour --seed 3")).job.request
    assert chosen.loras == (LoraUse("ink", 0.8, "ink wash"),)  # at its default weight
    typed = h.stored(await h.grid("a harbour --seed 3 --lora ink:0.3")).job.request
    assert typed.loras == (LoraUse("ink", 0.3, "ink wash"),)  # the prompt's own win
    xl = h.stored(await h.grid("a harbour --seed 3 --v tiny-xl")).job.request
    assert xl.loras == ()  # an SD LoRA: left out on SDXL (no note: the prompt named none)

    content = await updated(h, await h.press(panel, "mjset:lora", values=[]))
    assert "LoRAs: **none**" in content
    assert h.stored(await h.grid("a harbour --seed 3")).job.request.loras == ()


async def test_a_remix_keeps_the_loras_settings_gave_its_job(harness: Harness) -> None:
    h = harness
    await h.start()
    user = str(h.tester)
    h.bot.store.save_settings(user, UserSettings(loras=("ink",)))
    grid = await h.grid("a harbour --seed 3")
    h.bot.store.save_settings(user, UserSettings(remix=True))  # LoRAs cleared since

    submit = await h.remix(grid, f"mj:r:0:{job_id_of(grid)}", "a harbour at night")

    message = await h.job_message(submit)
    assert h.stored(message).job.request.loras == (LoraUse("ink", 0.8, "ink wash"),)
    await h.finished(message.id)
    typed = await h.grid("a harbour --lora ink:0.5")
    submit = await h.remix(typed, f"mj:r:0:{job_id_of(typed)}", "a harbour")  # --lora deleted
    assert h.stored(await h.job_message(submit)).job.request.loras == ()


async def test_a_bad_suffix_is_refused_privately(harness: Harness) -> None:
    h = harness
    await h.start()
    panel = await open_settings(h)
    opened = await h.press(panel, "mjset:suffix")
    await h.fake.wait_for_callback(opened)
    assert opened.modal is not None
    [field] = [c for row in opened.modal["components"] for c in row["components"]]

    submitted = await h.fake.push_modal_submit(opened, {field["custom_id"]: "--chaos 500"})

    assert (await h.private_reply(submitted)).startswith("**Invalid parameter**\n--chaos must be")
    assert h.bot.store.get_settings(str(h.tester)).suffix == ""


async def test_settings_shape_the_next_prompt(harness: Harness) -> None:
    h = harness
    await h.start()
    h.bot.store.save_settings(str(h.tester), UserSettings(stylize=250, suffix="--ar 2:1 --chaos 7"))

    message = await h.job_message(await h.imagine("a wide valley"))

    job = h.stored(message).job
    assert job.request.aspect == (2, 1) and job.request.chaos == 7  # the suffix was parsed
    assert job.request.stylize == 250  # no --s in the prompt: the /settings preset applies
    assert job.model == "tiny"
    finished = await h.finished(message.id)
    width, height = image_of(finished.attachments[0].data).size
    assert width > height


# --- /info, /cancel, /show ----------------------------------------------------------------------


async def test_info_lists_running_and_queued_jobs_with_positions(harness: Harness) -> None:
    h = harness
    await h.start()
    await h.blocker()
    first = await h.job_message(await h.imagine("first in line"))
    second = await h.job_message(await h.imagine("second in line"))

    reply = await h.private_reply(await h.command("info"))

    lines = reply.splitlines()
    assert lines[0].startswith("**Your jobs** (2 of at most")
    assert f"`{job_id_of(first)}`" in lines[1] and "queued, position" in lines[1]
    assert f"`{job_id_of(second)}`" in lines[2] and "queued, position" in lines[2]
    assert "blocker" not in reply  # the admin's job is not the tester's


async def test_info_with_nothing_queued(harness: Harness) -> None:
    h = harness
    await h.start()
    reply = await h.private_reply(await h.command("info"))
    assert reply == "You have no running or queued jobs."


async def test_info_links_your_recent_finished_jobs(harness: Harness) -> None:
    h = harness
    await h.start()
    grid = await h.grid("a result to find again")
    job_id = job_id_of(grid)
    await eventually(lambda: h.stored(grid).delivered)
    await h.grid("someone else's", user_id=h.bob)

    reply = await h.private_reply(await h.command("info"))

    link = f"https://discord.com/channels/{h.fake.guild_id}/{grid.channel_id}/{grid.id}"
    assert reply.splitlines() == [
        "You have no running or queued jobs.",
        "",
        "**Recent jobs**",
        f"• `{job_id}` **a result to find again** (done) <{link}>",
    ]


async def test_cancel_without_an_id_cancels_your_most_recent_active_job(harness: Harness) -> None:
    h = harness
    await h.start()
    await h.blocker()
    older = await h.job_message(await h.imagine("older"))
    newer = await h.job_message(await h.imagine("newer"))

    reply = await h.private_reply(await h.command("cancel"))

    assert reply == f"Cancelling job `{job_id_of(newer)}`."
    assert (await h.finished(newer.id)).content.endswith("(Cancelled)")
    assert h.engine.position(job_id_of(older)) is not None


async def test_cancel_by_id_is_refused_for_someone_elses_job(harness: Harness) -> None:
    h = harness
    await h.start()
    blocker = await h.blocker()
    job_id = job_id_of(blocker)

    reply = await h.private_reply(await h.command("cancel", {"job_id": job_id}))

    assert reply == "Only the job's owner or an admin may cancel it."
    admin_reply = await h.private_reply(
        await h.command("cancel", {"job_id": job_id}, user_id=h.admin)
    )
    assert admin_reply == f"Cancelling job `{job_id}`."


async def test_show_reposts_a_finished_job_with_working_buttons(harness: Harness) -> None:
    h = harness
    await h.start()
    grid = await h.grid("show me again")
    job_id = job_id_of(grid)

    shown = await h.command("show", {"job_id": job_id})

    callback = await h.fake.wait_for_callback(shown)
    assert callback.json["type"] == 5
    posted = await h.new_message(lambda m: m.interaction_id == shown.id and not m.loading)
    assert posted.id != grid.id
    assert posted.content == grid.content
    assert posted.attachments[0].data == grid.attachments[0].data
    assert posted.custom_ids == grid.custom_ids
    stored = h.bot.store.get_job(job_id)
    assert stored is not None and stored.status is JobStatus.DONE
    # …and its buttons route like the original's.
    press = await h.press(posted, f"mj:u:1:{job_id}")
    picked = await h.new_message(lambda m: m.interaction_id == press.id and not m.loading)
    assert picked.content.startswith("**show me again** - Image #1")


async def test_show_refuses_other_users_jobs_but_not_for_admins(harness: Harness) -> None:
    h = harness
    await h.start()
    grid = await h.grid("private work")
    job_id = job_id_of(grid)

    refused = await h.private_reply(await h.command("show", {"job_id": job_id}, user_id=h.bob))
    assert refused == f"You have no job with the id `{job_id}`."

    shown = await h.command("show", {"job_id": job_id}, user_id=h.admin)
    posted = await h.new_message(lambda m: m.interaction_id == shown.id and not m.loading)
    assert posted.attachments[0].data == grid.attachments[0].data


async def test_show_with_a_malformed_id(harness: Harness) -> None:
    h = harness
    await h.start()
    reply = await h.private_reply(await h.command("show", {"job_id": "../../etc/passwd"}))
    assert reply == "You have no job with the id `../../etc/passwd`."


async def test_info_shortens_prompts_and_drops_whole_lines_past_the_limit(
    harness: Harness,
) -> None:
    h = harness
    await h.start(limits=LimitsConfig(max_queued_per_user=40, max_queued_total=60))
    await h.blocker()
    prompt = "*stars* " * 200
    for _ in range(30):
        await h.job_message(await h.imagine(prompt.strip()))

    reply = await h.private_reply(await h.command("info"))

    lines = reply.splitlines()
    assert len(reply) <= 2000
    assert lines[-1].startswith("…and ") and lines[-1].endswith(" more")
    assert all(line.startswith("• `") and line.endswith(")") for line in lines[1:-1])
    assert all(len(line) < 200 for line in lines[1:-1])


# --- /help --------------------------------------------------------------------------------------


async def test_help_names_the_commands_and_this_servers_models_versions_and_loras(
    harness: Harness,
) -> None:
    h = harness
    config = h.config()
    engine = replace(config.engine, versions={"7": "tiny-xl"})
    await h.start(replace(config, engine=engine))

    reply = await h.private_reply(await h.command("help"))

    for command in ("/imagine", "/blend", "/describe", "/settings", "/prefer", "/info", "/show"):
        assert f"`{command}`" in reply
    assert "`tiny` (default)" in reply and "`tiny-xl`" in reply and "`broken`" in reply
    assert "`--v 7` → `tiny-xl`" in reply
    assert "LoRAs (`--lora NAME[:WEIGHT]`): `ink` (SD 1.x/2.x): ink wash" in reply
    assert len(reply) <= 2000
