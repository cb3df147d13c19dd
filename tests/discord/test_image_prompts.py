"""Image prompts through the real bot: the `image` attachment of /imagine, links at the start of
the prompt (from a local server that [images] allowed_networks lets in), and refusals."""

from __future__ import annotations

import hashlib
import io
import ipaddress
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
import pytest_asyncio
from aiohttp import web
from PIL import Image

from bot.config import ImagesConfig
from bot.store import UserSettings
from engine.prompt.parser import BLEND_IMAGE_WEIGHT
from engine.storage import read_metadata
from tests.discord.helpers import Harness, harness, job_id_of
from tests.fake_discord import StoredMessage, UploadedFile
from tests.local_http import serving

__all__ = ["harness"]

pytestmark = pytest.mark.asyncio(loop_scope="session")


def picture(color: tuple[int, int, int] = (10, 200, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(out, format="PNG")
    return out.getvalue()


SERVED: list[str] = []  # the paths the test's image server answered (cleared for each test)


@pytest_asyncio.fixture(loop_scope="session")
async def image_server() -> AsyncIterator[str]:
    SERVED.clear()

    async def image(request: web.Request) -> web.Response:
        SERVED.append(request.path)
        return web.Response(body=picture(), content_type="image/png")

    async def red(request: web.Request) -> web.Response:
        SERVED.append(request.path)
        return web.Response(body=picture((200, 10, 10)), content_type="image/png")

    app = web.Application()
    app.router.add_get("/green.png", image)
    app.router.add_get("/red.png", red)
    async with serving(app) as url:
        yield url


async def test_an_attached_image_is_the_image_prompt_and_kept_with_the_job(h: Harness) -> None:
    interaction = await h.command(
        "imagine",
        {"prompt": "a green field --iw 2 --seed 5", "image": UploadedFile("f.png", picture())},
    )
    callback = await h.fake.wait_for_callback(interaction)
    assert callback.json["type"] == 5  # "thinking" while the image is read
    message = await h.new_message(lambda m: m.interaction_id == interaction.id and not m.loading)
    finished = await h.finished(message.id)
    assert "(seed 5, " in finished.content
    # Its link leads the prompt shown, as on Midjourney (so that the prompt can be pasted) ...
    [link] = h.stored(finished).job.request.image_urls
    assert link.startswith("https://cdn.discordapp.com/ephemeral-attachments/")
    assert f"**<{link}> a green field --iw 2 --seed 5** - " in finished.content
    # ... and --iw has an image to weigh: no note says otherwise
    sent = [r.json for r in h.fake.requests if isinstance(r.json, dict)]
    private = [each for each in sent if each.get("flags", 0) & 64]
    assert not private, private

    stored = h.stored(finished)
    [digest] = stored.job.request.image_inputs
    kept = h.storage / "inputs" / f"{digest}.png"
    assert kept.is_file() and hashlib.sha256(kept.read_bytes()).hexdigest() == digest

    # 🔄 keeps the image prompt, read from storage (no fetch)
    reroll = await h.press(finished, f"mj:r:0:{job_id_of(finished)}")
    again = await h.new_message(
        lambda m: m.interaction_id == reroll.id and "(seed " in m.content, timeout=90.0
    )
    assert h.stored(again).job.request.image_inputs == (digest,)


async def test_an_attachment_and_a_link_without_text_are_a_blend(h: Harness) -> None:
    """Two images and no text are a blend, however they are given (attachment first)."""
    upload = h.fake.store_attachment(UploadedFile("red.png", picture((200, 10, 10))))
    red = f"https://cdn.discordapp.com/attachments/123/{upload.id}/red.png?ex=1&hm=ab"
    green = UploadedFile("green.png", picture())
    interaction = await h.command("imagine", {"prompt": f"{red} --ar 2:3", "image": green})
    message = await h.new_message(lambda m: m.interaction_id == interaction.id and not m.loading)
    finished = await h.finished(message.id)

    request = h.stored(finished).job.request
    assert request.prompt == "" and request.image_weight == BLEND_IMAGE_WEIGHT
    colors = []
    for digest in request.image_inputs:
        with Image.open(h.storage / "inputs" / f"{digest}.png") as kept:
            colors.append(kept.getpixel((0, 0)))
    assert colors == [(10, 200, 30), (200, 10, 10)]


async def test_the_prompt_of_an_attached_image_pastes_after_its_link_expired(h: Harness) -> None:
    """Discord drops a command's attachments within hours; the grid's prompt names its link,
    and pasted later it runs on the image kept then, without reading Discord again."""
    interaction = await h.command(
        "imagine", {"prompt": "a green field", "image": UploadedFile("g.png", picture())}
    )
    message = await h.new_message(lambda m: m.interaction_id == interaction.id and not m.loading)
    first = h.stored(await h.finished(message.id)).job.request
    [link] = first.image_urls
    h.fake.attachments.clear()  # expired: Discord answers 404 now
    mark = h.fake.mark()

    again = await h.grid(f"<{link}> a green lake")

    assert h.stored(again).job.request.image_inputs == first.image_inputs
    assert not [r for r in h.fake.requests[mark:] if r.route == "cdn_attachment"]


async def start_with_lan_images(h: Harness, image_server: str) -> str:
    """Start the bot with 127.0.0.1 in [images] allowed_networks; the test image's URL."""
    lan = ImagesConfig(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))
    await h.start(replace(h.config(), images=lan))
    return f"{image_server}/green.png"


async def test_a_link_at_the_start_of_the_prompt_is_fetched(
    harness: Harness, image_server: str
) -> None:
    h = harness
    url = await start_with_lan_images(h, image_server)
    grid = await h.grid(f"{url} a green field --seed 6")
    assert len(h.stored(grid).job.request.image_inputs) == 1
    assert f"<{url}>" in grid.content  # shown, not unfurled


async def test_style_and_object_references_are_fetched_and_drawn_with(
    harness: Harness, image_server: str
) -> None:
    h = harness
    green = await start_with_lan_images(h, image_server)
    red = f"{image_server}/red.png"
    grid = await h.grid(f"a fox --sref {green}::2 {red} --sw 300 --oref {red} --seed 6")

    stored = h.stored(grid)
    request = stored.job.request
    assert request.style_input_weights == (2.0, 1.0) and len(request.style_inputs) == 2
    assert request.object_inputs == request.style_inputs[1:]  # the same picture, kept once
    assert request.image_inputs == ()
    for digest in request.stored_images:
        assert (h.storage / "inputs" / f"{digest}.png").is_file()
    assert stored.result is not None
    meta = read_metadata(stored.result.images[0])
    assert meta["style_refs"] == list(request.style_inputs) and meta["style_weight"] == 300
    assert meta["object_refs"] == list(request.object_inputs)


async def test_a_style_reference_on_a_private_address_is_refused(h: Harness) -> None:
    interaction = await h.imagine("a cat --sref http://10.1.2.3/style.png")
    text = await h.private_reply(interaction)
    assert text.startswith("Could not use the image <http://10.1.2.3/style.png>: "), text
    assert h.bot.store.user_jobs(str(h.tester)) == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://10.1.2.3/a.png", "the address is on a private network"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ],
)
async def test_a_link_to_a_private_address_is_refused_privately(
    h: Harness, url: str, reason: str
) -> None:
    interaction = await h.imagine(f"{url} a cat")
    text = await h.private_reply(interaction)
    assert text.startswith(f"Could not use the image <{url}>: ") and reason in text, text
    thinking = h.fake.original_message(interaction)
    assert thinking is None or thinking.deleted  # the public "thinking" message is gone
    assert h.bot.store.user_jobs(str(h.tester)) == []  # nothing was queued


async def test_a_discord_cdn_link_is_read_through_discord(h: Harness) -> None:
    # No LAN exemption: the bot's own fetcher would refuse the fake's 127.0.0.1, so only
    # discord.py's CDN download can read this link (the test fixture sends the CDN to the fake).
    upload = h.fake.store_attachment(UploadedFile("red.png", picture((200, 10, 10))))
    url = f"https://cdn.discordapp.com/attachments/123/{upload.id}/red.png?ex=1&hm=ab"
    grid = await h.grid(f"{url} a red square --seed 2")

    [digest] = h.stored(grid).job.request.image_inputs
    kept = h.storage / "inputs" / f"{digest}.png"
    with Image.open(kept) as image:
        assert image.getpixel((0, 0)) == (200, 10, 10)
    assert any(r.route == "cdn_attachment" for r in h.fake.requests)


async def test_an_expired_cdn_link_runs_on_the_image_it_showed(h: Harness) -> None:
    """A Discord link pasted from an old message: the signature has changed (or the file is
    gone from the CDN), the path has not; the bot uses the image it read from it then."""
    upload = h.fake.store_attachment(UploadedFile("blue.png", picture((12, 10, 200))))
    path = f"attachments/123/{upload.id}/blue.png"
    first = await h.grid(f"https://cdn.discordapp.com/{path}?ex=1&is=2&hm=ab a blue square")
    del h.fake.attachments[upload.id]  # expired: Discord answers 404 now
    mark = h.fake.mark()

    again = await h.grid(f"https://media.discordapp.net/{path}?ex=9&is=8&hm=cd a blue circle")

    assert h.stored(again).job.request.image_inputs == h.stored(first).job.request.image_inputs
    assert not [r for r in h.fake.requests[mark:] if r.route == "cdn_attachment"]


async def test_a_kept_link_whose_image_retention_deleted_is_read_again(h: Harness) -> None:
    upload = h.fake.store_attachment(UploadedFile("teal.png", picture((12, 190, 180))))
    url = f"https://cdn.discordapp.com/attachments/123/{upload.id}/teal.png?ex=1&hm=ab"
    [digest] = h.stored(await h.grid(f"{url} a teal square")).job.request.image_inputs
    (h.storage / "inputs" / f"{digest}.png").unlink()
    del h.fake.attachments[upload.id]

    text = await h.private_reply(await h.imagine(f"{url} a teal circle"))

    assert text == f"Could not use the image <{url}>: Discord answered 404."


async def test_an_attachment_that_is_not_an_image_is_refused(h: Harness) -> None:
    interaction = await h.command(
        "imagine", {"prompt": "a cat", "image": UploadedFile("notes.txt", b"hello", "text/plain")}
    )
    text = await h.private_reply(interaction)
    assert text.startswith("Could not use the image <notes.txt>: it is not an image"), text


@pytest_asyncio.fixture(loop_scope="session")
async def h(harness: Harness) -> Harness:
    await harness.start()
    return harness


async def test_a_remix_keeps_the_image_prompt_of_its_job(
    harness: Harness, image_server: str
) -> None:
    h = harness
    url = await start_with_lan_images(h, image_server)
    grid = await h.grid(f"{url} a green field --sref {url} --seed 8")
    before = h.stored(grid).job.request
    assert SERVED == ["/green.png"]  # fetched once for both of its uses
    h.bot.store.save_settings(str(h.tester), UserSettings(remix=True))

    remixed = f"{url} a green field at dawn --sref {url}"
    submit = await h.remix(grid, f"mj:r:0:{job_id_of(grid)}", remixed)
    again = await h.new_message(
        lambda m: m.interaction_id == submit.id and "(seed " in m.content, timeout=90.0
    )
    after = h.stored(again).job.request
    assert (after.image_inputs, after.style_inputs) == (before.image_inputs, before.style_inputs)
    assert after.prompt == "a green field at dawn"
    assert SERVED == ["/green.png"]  # the remix kept the links: nothing was fetched again


async def test_permutations_with_an_image_ask_privately_then_all_use_it(h: Harness) -> None:
    interaction = await h.command(
        "imagine", {"prompt": "a {red, blue} field", "image": UploadedFile("f.png", picture())}
    )
    callback = await h.fake.wait_for_callback(interaction)
    assert callback.json["type"] == 5 and callback.json["data"]["flags"] & 64  # private thinking

    def asked() -> StoredMessage | None:
        message = h.fake.original_message(interaction)
        return message if message is not None and message.buttons else None

    question = await h.fake.wait_until(asked, timeout=10, what="the question")
    assert question.ephemeral and "**2 jobs**" in question.content
    yes = next(b["custom_id"] for b in question.buttons if b["label"] == "Yes")
    press = await h.press(question, yes)

    def two_done() -> list[StoredMessage] | None:
        ours = [m for m in h.fake.live_messages() if m.interaction_id == press.id]
        done = [m for m in ours if "(seed " in m.content]
        return done if len(done) == 2 else None

    grids = await h.fake.wait_until(two_done, timeout=90, what="2 grids")
    inputs = {h.stored(grid).job.request.image_inputs for grid in grids}
    assert len(inputs) == 1 and len(next(iter(inputs))) == 1  # both from the one image
