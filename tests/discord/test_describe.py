"""/describe through the real bot and the fake Discord, with the tiny captioner: four numbered
prompts with buttons 1…4, 🔄 and Imagine all; the buttons start normal /imagine jobs (through
the remix box in remix mode), describe again, obey the rules, and keep working after a restart.
"""

from __future__ import annotations

import io
import ipaddress
import re
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
import pytest_asyncio
from aiohttp import web
from PIL import Image

from bot.config import ImagesConfig, ModerationConfig, PermissionsConfig
from bot.describe import NO_IMAGES, ONE_IMAGE
from bot.messages import HIDDEN_PROMPT
from bot.moderation import banned_rule
from bot.store import JobStatus, Store, UserSettings
from engine.jobs import JobKind
from tests.discord.helpers import Harness, buttons, eventually, harness, image_of, job_id_of, rows
from tests.fake_discord import FakeInteraction, StoredMessage, UploadedFile
from tests.local_http import serving

__all__ = ["harness"]

pytestmark = pytest.mark.asyncio(loop_scope="session")

NUMBERS = ("1️⃣", "2️⃣", "3️⃣", "4️⃣")


def picture(size: tuple[int, int] = (120, 80)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 120, 30)).save(out, format="PNG")
    return out.getvalue()


async def describe(h: Harness, **options: object) -> StoredMessage:
    """/describe with `options` through to its finished message (the four prompts)."""
    interaction = await h.command("describe", options)
    callback = await h.fake.wait_for_callback(interaction)
    flags = (callback.json.get("data") or {}).get("flags", 0)
    assert callback.json["type"] == 5 and not flags & 64  # "thinking…", in public
    message = await h.new_message(lambda m: m.interaction_id == interaction.id and not m.loading)
    return await described(h, message.id)


async def described(h: Harness, message_id: int) -> StoredMessage:
    def done(m: StoredMessage) -> bool:
        return m.id == message_id and (NUMBERS[3] in m.content or "(Failed: " in m.content)

    message = await h.new_message(done)
    assert "(Failed: " not in message.content, message.content
    return message


def prompts_of(h: Harness, message: StoredMessage) -> tuple[str, ...]:
    stored = h.stored(message)
    assert stored.result is not None
    return stored.result.prompts


async def grid_of(h: Harness, press: FakeInteraction) -> StoredMessage:
    return await h.finished((await h.job_message(press)).id)


@pytest_asyncio.fixture(loop_scope="session")
async def h(harness: Harness) -> Harness:
    await harness.start()
    return harness


@pytest_asyncio.fixture(loop_scope="session")
async def h_described(h: Harness) -> tuple[Harness, StoredMessage]:
    """A started bot and a finished /describe of a 120×80 attachment."""
    return h, await describe(h, image=UploadedFile("photo.png", picture()))


async def test_an_attachment_gets_four_numbered_prompts_and_the_buttons(
    h_described: tuple[Harness, StoredMessage],
) -> None:
    h, message = h_described
    job_id = job_id_of(message)
    prompts = prompts_of(h, message)

    head, *paragraphs = message.content.split("\n\n")
    assert head == f"**Describe** - <@{h.tester}>"
    assert paragraphs == [f"{n} {p}" for n, p in zip(NUMBERS, prompts, strict=True)]
    assert len(set(prompts)) == 4
    for prompt in prompts:
        text, _, ratio = prompt.rpartition(" --ar ")
        assert ratio == "3:2" and text and "--" not in text  # the image is 120×80
    assert buttons(message) == [
        ("1", None, f"mj:p:1:{job_id}"),
        ("2", None, f"mj:p:2:{job_id}"),
        ("3", None, f"mj:p:3:{job_id}"),
        ("4", None, f"mj:p:4:{job_id}"),
        (None, "🔄", f"mj:r:0:{job_id}"),
        ("Imagine all", None, f"mj:a:0:{job_id}"),
    ]
    assert len(rows(message)) == 2
    [shown] = message.attachments  # the image it describes, as it is kept
    assert image_of(shown.data).size == (120, 80)
    stored = h.stored(message)
    assert (stored.job.kind, stored.status, stored.job.owner) == (
        JobKind.DESCRIBE,
        JobStatus.DONE,
        str(h.tester),
    )
    kept = h.storage / "inputs" / f"{stored.job.request.image_inputs[0]}.png"
    assert kept.read_bytes() == picture()


async def test_pressing_2_imagines_that_prompt_in_a_grid_of_its_own(
    h_described: tuple[Harness, StoredMessage],
) -> None:
    h, message = h_described
    second = prompts_of(h, message)[1]

    grid = await grid_of(h, await h.press(message, f"mj:p:2:{job_id_of(message)}", user_id=h.bob))

    assert grid.id != message.id
    assert grid.content.startswith(f"**{second}** - <@{h.bob}> (seed ")
    job = h.stored(grid).job
    assert (job.kind, job.owner, job.request.raw) == (JobKind.IMAGINE, str(h.bob), second)
    assert job.request.aspect == (3, 2)
    assert [label for label, _, _ in buttons(grid)][:5] == ["U1", "U2", "U3", "U4", None]


async def test_in_remix_mode_a_number_opens_the_box_with_that_prompt(
    h_described: tuple[Harness, StoredMessage],
) -> None:
    h, message = h_described
    third = prompts_of(h, message)[2]
    h.bot.store.save_settings(str(h.tester), UserSettings(remix=True))

    press = await h.press(message, f"mj:p:3:{job_id_of(message)}")
    callback = await h.fake.wait_for_callback(press)
    assert callback.json["type"] == 9  # a modal, before any job
    [box] = [c for c in callback.components if c["type"] == 4]
    assert box["value"] == third
    submit = await h.fake.push_modal_submit(press, {box["custom_id"]: "a red kite --ar 3:2"})
    grid = await grid_of(h, submit)

    assert grid.content.startswith(f"**a red kite --ar 3:2** - <@{h.tester}> (seed ")


async def test_reroll_describes_the_same_image_again_with_new_prompts(
    h_described: tuple[Harness, StoredMessage],
) -> None:
    h, message = h_described
    press = await h.press(message, f"mj:r:0:{job_id_of(message)}", user_id=h.bob)
    waiting = await h.job_message(press)
    assert waiting.content.startswith(f"**Describe** - <@{h.bob}> (")
    again = await described(h, waiting.id)

    first, second = h.stored(message), h.stored(again)
    assert second.job.id != first.job.id and second.job.owner == str(h.bob)
    assert second.job.request.image_inputs == first.job.request.image_inputs  # no new fetch
    assert second.job.seed != first.job.seed
    assert not set(prompts_of(h, again)) & set(prompts_of(h, message))
    assert all(p.endswith(" --ar 3:2") for p in prompts_of(h, again))


async def test_imagine_all_starts_four_jobs(h_described: tuple[Harness, StoredMessage]) -> None:
    h, message = h_described
    press = await h.press(message, f"mj:a:0:{job_id_of(message)}")

    def four_grids() -> list[StoredMessage] | None:
        ours = [m for m in h.fake.live_messages() if m.interaction_id == press.id]
        done = [m for m in ours if "(seed " in m.content]
        return done if len(done) == 4 else None

    grids = await h.fake.wait_until(four_grids, timeout=120, what="4 grids")
    raws = sorted(h.stored(grid).job.request.raw for grid in grids)
    assert raws == sorted(prompts_of(h, message))
    assert all(not grid.ephemeral for grid in grids)


async def test_u_and_v_under_a_describe_are_refused(
    h_described: tuple[Harness, StoredMessage],
) -> None:
    h, message = h_described
    job_id = job_id_of(message)
    # Discord only sends custom_ids the bot made; pretend a client sent others.
    for forged in (f"mj:u:1:{job_id}", f"mj:v:2:{job_id}"):
        message.components[0]["components"][0]["custom_id"] = forged
        assert await h.private_reply(await h.press(message, forged)) == NO_IMAGES


@pytest.mark.parametrize(
    ("link", "reason"),
    [
        ("http://10.1.2.3/a.png", "the address is on a private network"),
        ("http://127.0.0.1:9/a.png", "the address is this machine's own (loopback)"),
        ("ftp://example.com/a.png", "only http and https links can be fetched"),
    ],
)
async def test_a_bad_link_is_refused_privately_naming_it(
    h: Harness, link: str, reason: str
) -> None:
    interaction = await h.command("describe", {"link": link})
    text = await h.private_reply(interaction)
    assert text == f"Could not use the image <{link}>: {reason}."
    thinking = h.fake.original_message(interaction)
    assert thinking is None or thinking.deleted  # the public "thinking" message is gone
    assert h.bot.store.user_jobs(str(h.tester)) == []  # nothing was queued


@pytest.mark.parametrize("options", [{}, {"link": "https://example.com/a.png", "image": True}])
async def test_describe_takes_one_image_or_one_link(h: Harness, options: dict[str, object]) -> None:
    if options.get("image"):
        options = {**options, "image": UploadedFile("a.png", picture())}
    interaction = await h.command("describe", options)
    assert await h.private_reply(interaction) == ONE_IMAGE
    assert h.bot.store.user_jobs(str(h.tester)) == []


async def test_an_attachment_that_is_not_an_image_is_refused(h: Harness) -> None:
    file = UploadedFile("notes.txt", b"hello", "text/plain")
    text = await h.private_reply(await h.command("describe", {"image": file}))
    assert text.startswith("Could not use the image <notes.txt>: it is not an image"), text


@pytest_asyncio.fixture(loop_scope="session")
async def image_server() -> AsyncIterator[str]:
    async def square(request: web.Request) -> web.Response:
        return web.Response(body=picture((64, 64)), content_type="image/png")

    app = web.Application()
    app.router.add_get("/square.png", square)
    async with serving(app) as url:
        yield f"{url}/square.png"


async def test_a_link_is_fetched_and_shown_with_the_prompts(
    harness: Harness, image_server: str
) -> None:
    h = harness
    lan = ImagesConfig(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))
    await h.start(replace(h.config(), images=lan))

    message = await describe(h, link=image_server)

    assert message.content.startswith(f"**Describe** <{image_server}> - <@{h.tester}>\n")
    assert all(p.endswith(" --ar 1:1") for p in prompts_of(h, message))
    assert h.stored(message).job.request.image_urls == (image_server,)


async def test_a_number_obeys_the_moderation_rules_in_force_when_pressed(
    harness: Harness,
) -> None:
    h = harness
    bot = await h.start()
    message = await describe(h, image=UploadedFile("photo.png", picture()))
    word = prompts_of(h, message)[0].split()[0]
    await h.stop(bot)
    await h.start(moderation=ModerationConfig(banned_words=(word,)))

    for custom_id in (f"mj:p:1:{job_id_of(message)}", f"mj:a:0:{job_id_of(message)}"):
        text = await h.private_reply(await h.press(message, custom_id))
        assert text == (
            f'Banned prompt detected: your prompt matched the banned word "{word}". '
            "Please rephrase it."
        )
    assert [j.job.kind for j in h.bot.store.user_jobs(str(h.tester))] == [JobKind.DESCRIBE]

    # Shown again (/show), a caption that breaks a rule is not shown in the public message.
    shown = await h.command("show", {"job_id": job_id_of(message)})
    posted = await h.new_message(lambda m: m.interaction_id == shown.id and not m.loading)
    paragraphs = posted.content.split("\n\n")[1:]
    assert paragraphs[0] == f"1️⃣ {HIDDEN_PROMPT}"
    for paragraph, prompt in zip(paragraphs, prompts_of(h, message), strict=True):
        banned = banned_rule(ModerationConfig(banned_words=(word,)), prompt) is not None
        assert (HIDDEN_PROMPT in paragraph) == banned


async def test_only_the_owner_may_press_when_buttons_are_the_owners(harness: Harness) -> None:
    h = harness
    await h.start(permissions=PermissionsConfig(admins=(h.admin,), buttons_owner_only=True))
    message = await describe(h, image=UploadedFile("photo.png", picture()))
    text = await h.private_reply(
        await h.press(message, f"mj:p:1:{job_id_of(message)}", user_id=h.bob)
    )
    assert text.startswith(f"Only <@{h.tester}>, who made this job, may use its buttons")


async def test_the_buttons_work_after_a_restart(harness: Harness) -> None:
    h = harness
    bot = await h.start()
    message = await describe(h, image=UploadedFile("photo.png", picture()))
    fourth = prompts_of(h, message)[3]
    await h.stop(bot)

    await h.start()  # a new bot on the same database: only the custom_id says which job
    grid = await grid_of(h, await h.press(message, f"mj:p:4:{job_id_of(message)}"))

    assert grid.content.startswith(f"**{fourth}** - <@{h.tester}> (seed ")


async def test_a_describe_left_queued_at_a_restart_is_answered_on_its_message(
    harness: Harness,
) -> None:
    h = harness
    bot = await h.start()
    blocker = await h.blocker()
    interaction = await h.command("describe", {"image": UploadedFile("q.png", picture())})
    waiting = await h.new_message(lambda m: m.interaction_id == interaction.id and not m.loading)
    assert re.search(r"\((Waiting to start|Queued: position \d+)\)$", waiting.content)
    job_ids = [job_id_of(blocker), job_id_of(waiting)]
    await h.stop(bot)
    for job_id in job_ids:  # the shared engine forgets them, as a new process would
        await h.engine.cancel(job_id)
    await eventually(lambda: not set(job_ids) & {job.id for job in h.engine.jobs()})
    with Store(h.config().database) as store:
        store.set_status(job_ids[0], JobStatus.CANCELLED)
        store.set_delivered(job_ids[0])
        store.set_status(job_ids[1], JobStatus.QUEUED)

    await h.start()

    answered = await described(h, waiting.id)
    assert answered.id == waiting.id and len(prompts_of(h, answered)) == 4


async def test_cancel_stops_a_describe_waiting_in_the_queue(h: Harness) -> None:
    blocker = await h.blocker()
    interaction = await h.command("describe", {"image": UploadedFile("c.png", picture())})
    waiting = await h.new_message(lambda m: m.interaction_id == interaction.id and not m.loading)
    assert buttons(waiting) == [(None, "❌", f"mj:x:0:{job_id_of(waiting)}")]

    await h.press(waiting, f"mj:x:0:{job_id_of(waiting)}")

    cancelled = await h.new_message(lambda m: m.id == waiting.id and "(Cancelled)" in m.content)
    assert cancelled.content == f"**Describe** - <@{h.tester}> (Cancelled)"
    await h.release(blocker)


async def test_show_posts_a_describe_again_with_its_buttons(
    h_described: tuple[Harness, StoredMessage],
) -> None:
    h, message = h_described
    shown = await h.command("show", {"job_id": job_id_of(message)})
    posted = await h.new_message(lambda m: m.interaction_id == shown.id and not m.loading)
    assert posted.id != message.id
    assert (posted.content, posted.custom_ids) == (message.content, message.custom_ids)
    assert posted.attachments[0].data == message.attachments[0].data

    (h.storage / "inputs" / f"{h.stored(message).job.request.image_inputs[0]}.png").unlink()
    again = await h.command("show", {"job_id": job_id_of(message)})
    without = await h.new_message(lambda m: m.interaction_id == again.id and not m.loading)
    assert without.content == message.content and without.attachments == []  # image gone
    refused = await h.private_reply(await h.press(without, f"mj:r:0:{job_id_of(message)}"))
    assert refused == "This image has expired: it is no longer in the bot's storage."


async def test_envelope_sends_the_four_prompts_and_the_image_to_dms(
    h_described: tuple[Harness, StoredMessage],
) -> None:
    h, message = h_described
    prompts = prompts_of(h, message)

    await h.fake.push_reaction(message, "✉️")

    dm = await h.new_message(lambda m: h.fake.channels[m.channel_id]["type"] == 1, timeout=10.0)
    assert all(f"{number} " in dm.content for number in NUMBERS)
    assert prompts[0][:40] in dm.content.replace("\\", "")
    assert f"Job ID: `{job_id_of(message)}`" in dm.content
    [attachment] = dm.attachments
    assert image_of(attachment.data).size == (120, 80)
