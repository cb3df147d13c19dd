"""/blend through the real bot: attached images become one grid that mixes them."""

from __future__ import annotations

import io

import pytest
import pytest_asyncio
from PIL import Image

from bot.store import UserSettings
from engine.storage import read_metadata
from tests.discord.helpers import Harness, harness, job_id_of
from tests.fake_discord import UploadedFile

__all__ = ["harness"]

pytestmark = pytest.mark.asyncio(loop_scope="session")


def png(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> UploadedFile:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return UploadedFile(f"{color[0]}.png", out.getvalue(), "image/png")


@pytest_asyncio.fixture(loop_scope="session")
async def h(harness: Harness) -> Harness:
    await harness.start()
    return harness


async def test_three_images_blend_into_a_landscape_grid(h: Harness) -> None:
    images = {f"image{n}": png((60 * n, 20, 200 - 50 * n)) for n in (1, 2, 3)}
    interaction = await h.command("blend", {**images, "dimensions": "Landscape"})
    message = await h.job_message(interaction)
    finished = await h.finished(message.id)
    assert "(seed " in finished.content, finished.content
    assert "--ar 3:2" in finished.content and f"<@{h.tester}>" in finished.content

    stored = h.stored(finished)
    request = stored.job.request
    assert len(request.image_inputs) == 3 and len(set(request.image_inputs)) == 3
    assert request.prompt == "" and request.aspect == (3, 2)
    assert stored.result is not None
    meta = read_metadata(stored.result.images[0])
    assert meta["image_prompts"] == list(request.image_inputs)
    assert meta["image_prompt_mode"] == "adapter" and meta["image_weight"] == 2.0
    assert meta["width"] > meta["height"]
    assert all(f"U{n}" in str(finished.components) for n in (1, 2, 3, 4))

    # 🔄 blends the same images again, from storage
    reroll = await h.press(finished, f"mj:r:0:{job_id_of(finished)}")
    again = await h.new_message(
        lambda m: m.interaction_id == reroll.id and "(seed " in m.content, timeout=90.0
    )
    assert h.stored(again).job.request.image_inputs == request.image_inputs


@pytest.mark.parametrize(
    ("dimensions", "aspect"), [(None, (1, 1)), ("Portrait", (2, 3)), ("Square", (1, 1))]
)
async def test_two_images_blend_in_each_shape(
    h: Harness, dimensions: str | None, aspect: tuple[int, int]
) -> None:
    options = {"image1": png((200, 0, 0)), "image2": png((0, 0, 200))}
    if dimensions is not None:
        options["dimensions"] = dimensions  # type: ignore[assignment]
    interaction = await h.command("blend", options)
    finished = await h.finished((await h.job_message(interaction)).id)
    stored = h.stored(finished)
    assert stored.job.request.aspect == aspect and len(stored.job.request.image_inputs) == 2
    assert stored.result is not None
    width, height = stored.result.width, stored.result.height
    assert (width > height, width == height) == (aspect[0] > aspect[1], aspect[0] == aspect[1])


async def test_an_attachment_that_is_not_an_image_is_refused_naming_it(h: Harness) -> None:
    notes = UploadedFile("notes.txt", b"hello", "text/plain")
    interaction = await h.command("blend", {"image1": png((1, 2, 3)), "image2": notes})
    text = await h.private_reply(interaction)
    assert text.startswith("Could not use the image <notes.txt>: it is not an image"), text
    assert h.bot.store.user_jobs(str(h.tester)) == []


async def test_a_blend_pasted_after_its_links_expired_blends_the_kept_images(h: Harness) -> None:
    """/blend shows its images' links (Discord's, expiring within hours) as its prompt; pasted
    into /imagine later, as Midjourney users paste a blend, it runs on the images the bot kept."""
    options = {"image1": png((10, 200, 0)), "image2": png((0, 10, 200))}
    finished = await h.finished((await h.job_message(await h.command("blend", options))).id)
    blend = h.stored(finished).job
    shown = finished.content.split("**")[1]  # what a user copies: `<link> <link> --ar 1:1`
    for url in blend.request.image_urls:
        assert "/ephemeral-attachments/" in url
        del h.fake.attachments[int(url.split("/")[-2])]  # expired: Discord answers 404 now
    mark = h.fake.mark()

    pasted = h.stored(await h.grid(shown)).job

    assert pasted.request.image_inputs == blend.request.image_inputs
    assert pasted.request.image_weight == blend.request.image_weight
    assert pasted.request.aspect == (1, 1) and pasted.request.prompt == ""
    assert not [r for r in h.fake.requests[mark:] if r.route == "cdn_attachment"]


async def test_a_blend_remixes_unchanged_and_with_words_added(h: Harness) -> None:
    h.bot.store.save_settings(str(h.tester), UserSettings(remix=True))
    options = {"image1": png((90, 200, 0)), "image2": png((0, 90, 200))}
    finished = await h.finished((await h.job_message(await h.command("blend", options))).id)
    blend = h.stored(finished).job

    for added in ("", " at night"):
        edited = blend.request.raw.replace(" --ar", f"{added} --ar")
        submit = await h.remix(finished, f"mj:r:0:{blend.id}", edited)
        again = h.stored(await h.finished((await h.job_message(submit)).id)).job
        assert again.request.image_inputs == blend.request.image_inputs  # not fetched again
        assert again.request.prompt == added.strip()
