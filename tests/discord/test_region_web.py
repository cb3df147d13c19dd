"""🖌️ Vary (Region) with the web editor on: the press answers privately with a link, the page's
POST queues the job in the channel as the presser's (posted with the bot's token: there is no
interaction), and the grid keeps every pixel outside the mask. The page itself, in a browser:
tests/discord/test_region_browser.py and tests/bot/test_web_browser.py."""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

import aiohttp
import numpy as np
import pytest
from PIL import Image, ImageDraw

from bot.config import WebConfig
from bot.store import JobStatus
from engine.jobs import ImageRef, JobKind, Tool
from tests.discord.helpers import Harness, harness, job_id_of
from tests.fake_discord import FakeInteraction, StoredMessage

__all__ = ["harness", "region_link", "start_with_web"]

pytestmark = pytest.mark.asyncio(loop_scope="session")

PUBLIC_URL = "https://bot.example.com"


async def start_with_web(h: Harness) -> None:
    web = WebConfig(host="127.0.0.1", port=0, public_url=PUBLIC_URL)
    await h.start(replace(h.config(), web=web))


async def single_image(h: Harness, prompt: str) -> tuple[StoredMessage, StoredMessage]:
    grid = await h.grid(prompt)
    press = await h.press(grid, f"mj:u:1:{job_id_of(grid)}")
    single = await h.new_message(lambda m: m.interaction_id == press.id and not m.loading)
    return grid, single


async def region_link(h: Harness, press: FakeInteraction) -> str:
    """The editor's address in the private answer to a Vary (Region) press, on the real server
    (the public URL is the proxy's, which the test has not got)."""
    callback = await h.fake.wait_for_callback(press)
    data = callback.json["data"]
    assert data["flags"] & 64  # private
    [button] = [c for row in data["components"] for c in row["components"]]
    assert button["style"] == 5 and button["label"] == "Open the editor"
    assert button["url"].startswith(f"{PUBLIC_URL}/edit/")
    assert h.bot.web is not None
    return h.bot.web.address + button["url"].removeprefix(PUBLIC_URL)


def mask_png(size: tuple[int, int], box: tuple[int, int, int, int]) -> bytes:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    out = io.BytesIO()
    mask.save(out, format="PNG")
    return out.getvalue()


async def post(link: str, mask: bytes, prompt: str) -> tuple[int, dict[str, Any]]:
    form = aiohttp.FormData()
    form.add_field("mask", mask, filename="mask.png", content_type="image/png")
    form.add_field("prompt", prompt)
    async with aiohttp.ClientSession() as session, session.post(link, data=form) as response:
        return response.status, await response.json()


async def test_the_editors_post_queues_the_region_job_in_the_channel(harness: Harness) -> None:
    h = harness
    await start_with_web(h)
    grid, single = await single_image(h, "a lighthouse at dusk")
    link = await region_link(h, await h.press(single, f"mj:vr:1:{job_id_of(grid)}", user_id=h.bob))

    status, answer = await post(link, mask_png((128, 128), (0, 0, 63, 63)), "a lighthouse, a moon")

    assert status == 202, answer
    job_id = answer["job_id"]
    message = await h.new_message(lambda m: job_id in str(m.custom_ids))
    finished = await h.finished(message.id)
    assert finished.content.startswith(
        f"**a lighthouse, a moon** - Vary (Region) by <@{h.bob}> (seed "
    )
    stored = h.bot.store.get_job(job_id)
    assert stored is not None and stored.status is JobStatus.DONE
    assert stored.job.owner == str(h.bob) and stored.job.kind is JobKind.EDIT
    assert stored.job.source == ImageRef(job_id_of(grid), 0)
    assert stored.job.edit is not None and stored.job.edit.tool is Tool.REGION
    assert stored.channel_id == h.fake.channel_id
    source_result = h.stored(grid).result
    assert source_result is not None and stored.result is not None
    source = np.asarray(Image.open(source_result.images[0]).convert("RGB"))
    for path in stored.result.images:
        image = np.asarray(Image.open(path).convert("RGB"))
        assert np.array_equal(image[64:], source[64:]) and np.array_equal(
            image[:, 64:], source[:, 64:]
        )

    again, refused = await post(link, mask_png((128, 128), (0, 0, 63, 63)), "once more")
    assert again == 403 and "already used" in refused["error"]


async def test_a_refused_prompt_is_said_on_the_page_and_leaves_the_link_usable(
    harness: Harness,
) -> None:
    h = harness
    await start_with_web(h)
    grid, single = await single_image(h, "a quiet pond")
    link = await region_link(h, await h.press(single, f"mj:vr:1:{job_id_of(grid)}"))
    mask = mask_png((128, 128), (10, 10, 50, 50))

    status, answer = await post(link, mask, "a quiet pond --chaos 500")

    assert status == 400 and "--chaos must be" in answer["error"]
    status, answer = await post(link, mask, "a quiet pond at night")
    assert status == 202 and answer["job_id"]
