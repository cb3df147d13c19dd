"""The Vary (Region) page in a real headless Chromium: what a user draws is the mask the bot gets.

Needs Debian's chromium and chromedriver (scripts/install-browser) and selenium (the dev extra);
skipped, saying which is missing, without them.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import math
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image, ImageDraw

from bot.config import WebConfig
from bot.region_tokens import RegionClaim
from bot.store import Store
from bot.web import RegionEditor, RegionRefused

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
_missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
pytestmark = pytest.mark.skipif(
    bool(_missing), reason=f"no {' or '.join(_missing)}: run scripts/install-browser"
)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

# Larger than the window: the page shows it scaled down, so screen and image pixels differ.
SIZE = (1200, 800)
CLAIM = RegionClaim(job_id="job1", index=0, user_id="42", channel_id=7, guild_id=9)
EDGE_PX = 4  # image pixels of tolerance where a shape's edge falls (rounding, anti-aliasing)


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--window-size=1000,900",
                     "--disable-gpu", "--disable-dev-shm-usage"):  # fmt: skip
        options.add_argument(argument)
    options.binary_location = str(CHROMIUM)
    # Both paths given: Selenium Manager (which downloads drivers) is never run.
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    browser = webdriver.Chrome(options=options, service=service)
    try:
        yield browser
    finally:
        browser.quit()


class Page:
    """The editor on a real server with a fake submit, driven through `driver`."""

    def __init__(self, driver: Any, editor: RegionEditor) -> None:
        self.driver = driver
        self.editor = editor
        self.submitted: list[tuple[bytes, str]] = []
        self.refuse: str | None = None

    async def submit(self, claim: RegionClaim, mask_png: bytes, prompt: str) -> str:
        if self.refuse is not None:
            raise RegionRefused(self.refuse)
        self.submitted.append((mask_png, prompt))
        return f"new{len(self.submitted)}"

    def open(self) -> None:
        path = self.editor.link(CLAIM).removeprefix("https://bot.example.com")
        self.driver.get(self.editor.address + path)
        WebDriverWait(self.driver, 10).until(
            lambda d: d.execute_script("const i = document.getElementById('image');"
                                       "return i.complete && i.naturalWidth > 0;")
        )  # fmt: skip

    def box(self) -> dict[str, float]:
        """The canvas's place on the screen (CSS pixels)."""
        return dict(self.driver.execute_script(
            "const r = document.getElementById('canvas').getBoundingClientRect();"
            "return {left: r.left, top: r.top, width: r.width, height: r.height};"
        ))  # fmt: skip

    def trace(self, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        """Press at the first point (fractions of the canvas), move through the others, let go;
        the points where the pointer went, in image pixels."""
        box = self.box()
        canvas = self.driver.find_element(By.ID, "canvas")
        screen = [(round(fx * box["width"]), round(fy * box["height"])) for fx, fy in points]
        # ActionChains offsets are from the element's in-view centre, which WebDriver rounds
        # down to a whole viewport pixel.
        cx = math.floor(box["left"] + box["width"] / 2) - box["left"]
        cy = math.floor(box["top"] + box["height"] / 2) - box["top"]
        offsets = [(round(x - cx), round(y - cy)) for x, y in screen]
        chain = ActionChains(self.driver, duration=20)
        chain.move_to_element_with_offset(canvas, *offsets[0]).click_and_hold()
        for (xa, ya), (xb, yb) in itertools.pairwise(offsets):
            chain.move_by_offset(xb - xa, yb - ya)
        chain.release().perform()
        sx, sy = SIZE[0] / box["width"], SIZE[1] / box["height"]
        return [((cx + dx) * sx, (cy + dy) * sy) for dx, dy in offsets]

    def click(self, element_id: str) -> None:
        self.driver.find_element(By.ID, element_id).click()

    def write_prompt(self, text: str) -> None:
        box = self.driver.find_element(By.ID, "prompt")
        box.clear()
        box.send_keys(text)

    def status_shows(self, text: str) -> str:
        WebDriverWait(self.driver, 10).until(
            expected_conditions.text_to_be_present_in_element((By.ID, "status"), text)
        )
        return str(self.driver.find_element(By.ID, "status").text)

    def enabled(self, element_id: str) -> bool:
        return bool(self.driver.find_element(By.ID, element_id).is_enabled())


@pytest_asyncio.fixture
async def page(driver: Any, tmp_path: Path) -> AsyncIterator[Page]:
    image = tmp_path / "0.png"
    Image.new("RGB", SIZE, (90, 140, 60)).save(image)
    store = Store(tmp_path / "bot.sqlite3")
    holder: list[Page] = []
    editor = RegionEditor(
        WebConfig(host="127.0.0.1", port=0, public_url="https://bot.example.com"),
        store,
        secret="browser-secret",
        image_for=lambda claim: image,
        prompt_for=lambda claim: "a castle on a hill",
        submit=lambda claim, mask, prompt: holder[0].submit(claim, mask, prompt),
    )
    holder.append(Page(driver, editor))
    await editor.start()
    try:
        yield holder[0]
    finally:
        await editor.close()
        store.close()


def in_browser(page: Page, steps: Callable[[Page], Any]) -> Any:
    """Selenium blocks: it runs in a thread while the loop serves the page's requests."""
    return asyncio.to_thread(steps, page)


def mask_array(mask_png: bytes) -> np.ndarray[Any, Any]:
    with Image.open(io.BytesIO(mask_png)) as mask:
        assert mask.format == "PNG" and mask.size == SIZE
        return np.asarray(mask.convert("L"))


def assert_mask_is_rects(mask: np.ndarray[Any, Any], rects: list[tuple[float, ...]]) -> None:
    """White inside the rects, black outside, but for EDGE_PX at their edges."""
    ys, xs = np.mgrid[0 : SIZE[1], 0 : SIZE[0]]
    inner = np.zeros(mask.shape, bool)
    outer = np.zeros(mask.shape, bool)
    for x0, y0, x1, y1 in rects:
        left, right, top, bottom = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
        across = (xs > left + EDGE_PX) & (xs < right - EDGE_PX)
        inner |= across & (ys > top + EDGE_PX) & (ys < bottom - EDGE_PX)
        near = (xs > left - EDGE_PX) & (xs < right + EDGE_PX)
        outer |= near & (ys > top - EDGE_PX) & (ys < bottom + EDGE_PX)
    assert inner.any()
    assert (mask[inner] == 255).all(), "a pixel inside the drawn area is not white"
    assert (mask[~outer] == 0).all(), "a pixel outside the drawn area is not black"


async def test_a_dragged_rectangle_is_the_masks_white_area(page: Page) -> None:
    def steps(page: Page) -> tuple[list[tuple[float, float]], str, bool]:
        page.open()
        corners = page.trace([(0.2, 0.25), (0.4, 0.5), (0.6, 0.7)])
        page.write_prompt("a dragon on the castle")
        page.click("submit")
        shown = page.status_shows("Queued — job new1")
        return corners, shown, page.enabled("submit")

    corners, shown, submit_enabled = await in_browser(page, steps)
    assert shown == "Queued — job new1. The grid will appear in the Discord channel."
    assert not submit_enabled  # the link is spent
    [(mask_png, prompt)] = page.submitted
    assert prompt == "a dragon on the castle"
    (x0, y0), (x1, y1) = corners[0], corners[-1]
    assert_mask_is_rects(mask_array(mask_png), [(x0, y0, x1, y1)])


async def test_a_lasso_is_filled_as_the_polygon_drawn(page: Page) -> None:
    outline = [(0.3, 0.2), (0.7, 0.3), (0.75, 0.6), (0.5, 0.85), (0.2, 0.6)]

    def steps(page: Page) -> list[tuple[float, float]]:
        page.open()
        page.click("tool-lasso")
        points = page.trace(outline)
        page.click("submit")
        page.status_shows("Queued")
        return points

    points = await in_browser(page, steps)
    [(mask_png, prompt)] = page.submitted
    assert prompt == "a castle on a hill"  # the prefilled one
    expected = Image.new("L", SIZE, 0)
    ImageDraw.Draw(expected).polygon(points, fill=255)
    drawn = mask_array(mask_png) > 127
    wanted = np.asarray(expected) > 127
    perimeter = sum(math.dist(a, b) for a, b in itertools.pairwise([*points, points[0]]))
    assert wanted.sum() > 100_000
    assert (drawn != wanted).sum() < perimeter * EDGE_PX, "the lasso's mask is not its polygon"


async def test_undo_removes_the_last_shape_and_clear_all(page: Page) -> None:
    def steps(page: Page) -> tuple[list[tuple[float, float]], bool]:
        page.open()
        kept = page.trace([(0.1, 0.1), (0.3, 0.3)])
        page.trace([(0.6, 0.6), (0.9, 0.9)])
        page.click("undo")
        page.click("submit")
        page.status_shows("Queued")
        return kept, page.enabled("undo")

    kept, undo_enabled = await in_browser(page, steps)
    (x0, y0), (x1, y1) = kept
    [(mask_png, _)] = page.submitted
    assert_mask_is_rects(mask_array(mask_png), [(x0, y0, x1, y1)])
    assert not undo_enabled


async def test_clear_then_submit_asks_for_a_mark_and_sends_nothing(page: Page) -> None:
    def steps(page: Page) -> str:
        page.open()
        page.trace([(0.1, 0.1), (0.3, 0.3)])
        page.click("clear")
        page.click("submit")
        return page.status_shows("Mark the area")

    await in_browser(page, steps)
    assert page.submitted == []


async def test_a_refusal_is_shown_and_the_user_may_send_again(page: Page) -> None:
    page.refuse = "Queue full: you have 10 jobs waiting."

    def steps(page: Page) -> bool:
        page.open()
        page.trace([(0.1, 0.1), (0.3, 0.3)])
        page.click("submit")
        page.status_shows("Queue full: you have 10 jobs waiting.")
        return page.enabled("submit")

    assert await in_browser(page, steps)
    assert page.submitted == []
