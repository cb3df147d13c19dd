"""🖌️ Vary (Region) end to end in a real headless Chromium: press the button in (fake) Discord,
open the link, drag a rectangle with the mouse, submit, and the grid comes in the channel with
everything outside the rectangle kept. Skipped (saying why) without chromium or selenium."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.bot.test_web_browser import driver
from tests.bot.test_web_browser import pytestmark as without_a_browser_skip
from tests.discord.helpers import Harness, harness, job_id_of
from tests.discord.test_region_web import region_link, start_with_web

pytestmark = [pytest.mark.asyncio(loop_scope="session"), without_a_browser_skip]

__all__ = ["driver", "harness"]


def drag_and_submit(driver: Any, link: str, prompt: str) -> tuple[tuple[float, ...], str]:
    """Open the page, drag from 10% to 45% of the canvas, submit; the rectangle in image pixels
    and the page's status."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(link)
    WebDriverWait(driver, 10).until(
        lambda d: d.execute_script(
            "const i = document.getElementById('image'); return i.complete && i.naturalWidth > 0;"
        )
    )
    canvas = driver.find_element(By.ID, "canvas")
    box = driver.execute_script(
        "const r = document.getElementById('canvas').getBoundingClientRect();"
        "return {left: r.left, top: r.top, width: r.width, height: r.height};"
    )
    # ActionChains offsets are from the element's in-view centre (rounded to a whole pixel).
    cx = math.floor(box["left"] + box["width"] / 2) - box["left"]
    cy = math.floor(box["top"] + box["height"] / 2) - box["top"]
    start = (round(0.1 * box["width"] - cx), round(0.1 * box["height"] - cy))
    end = (round(0.45 * box["width"] - cx), round(0.45 * box["height"] - cy))
    chain = ActionChains(driver, duration=20)
    chain.move_to_element_with_offset(canvas, *start).click_and_hold()
    chain.move_by_offset(end[0] - start[0], end[1] - start[1]).release().perform()
    prompt_box = driver.find_element(By.ID, "prompt")
    prompt_box.clear()
    prompt_box.send_keys(prompt)
    driver.find_element(By.ID, "submit").click()
    WebDriverWait(driver, 30).until(
        expected_conditions.text_to_be_present_in_element((By.ID, "status"), "Queued")
    )
    scale = 128 / box["width"]
    rect = tuple((c + offset) * scale for offset, c in ((start[0], cx), (start[1], cy)))
    rect += tuple((c + offset) * scale for offset, c in ((end[0], cx), (end[1], cy)))
    return rect, str(driver.find_element(By.ID, "status").text)


async def test_drawing_a_rectangle_in_the_browser_redraws_only_that_area(
    harness: Harness, driver: Any
) -> None:
    h = harness
    await start_with_web(h)
    grid = await h.grid("a red barn in a field")
    press = await h.press(grid, f"mj:u:1:{job_id_of(grid)}")
    single = await h.new_message(lambda m: m.interaction_id == press.id and not m.loading)
    link = await region_link(h, await h.press(single, f"mj:vr:1:{job_id_of(grid)}"))

    (x0, y0, x1, y1), status = await asyncio.to_thread(
        drag_and_submit, driver, link, "a red barn under a rainbow"
    )

    assert status.startswith("Queued — job ")
    job_id = status.removeprefix("Queued — job ").split(".")[0]
    message = await h.new_message(lambda m: job_id in str(m.custom_ids))
    finished = await h.finished(message.id)
    assert finished.content.startswith(
        f"**a red barn under a rainbow** - Vary (Region) by <@{h.tester}> (seed "
    )
    result, source_result = h.bot.store.get_job(job_id), h.stored(grid).result
    assert result is not None and result.result is not None and source_result is not None
    source = np.asarray(Image.open(source_result.images[0]).convert("RGB"))
    right, bottom = math.ceil(max(x0, x1)) + 2, math.ceil(max(y0, y1)) + 2  # +2: the stroke's edge
    for path in result.result.images:
        image = np.asarray(Image.open(path).convert("RGB"))
        assert np.array_equal(image[bottom:], source[bottom:])
        assert np.array_equal(image[:, right:], source[:, right:])
    inside = np.asarray(Image.open(result.result.images[0]).convert("RGB"))
    top, left = math.ceil(min(y0, y1)) + 2, math.ceil(min(x0, x1)) + 2
    area = (slice(top, bottom - 4), slice(left, right - 4))
    assert np.abs(inside[area].astype(int) - source[area].astype(int)).mean() > 1
