"""The Vary (Region) editor's HTTP contract, on a real server on 127.0.0.1 with a fake submit."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import aiohttp
import pytest
import pytest_asyncio
from PIL import Image

from bot.config import WebConfig
from bot.region_tokens import (
    TOKEN_TTL_S,
    ExpiredToken,
    ForgedToken,
    RegionClaim,
    RegionTokens,
    load_secret,
)
from bot.store import Store
from bot.web import MAX_BODY_BYTES, RegionEditor, RegionRefused, mask_problem

SIZE = (96, 64)
CLAIM = RegionClaim(job_id="job1", index=2, user_id="42", channel_id=7, guild_id=9)


def png(
    size: tuple[int, int] = SIZE, white: tuple[int, int, int, int] | None = (10, 10, 30, 20)
) -> bytes:
    """A black mask of `size`, white inside the box `white` (None: all black)."""
    mask = Image.new("L", size, 0)
    if white is not None:
        mask.paste(255, white)
    out = io.BytesIO()
    mask.save(out, "PNG")
    return out.getvalue()


@dataclass
class Bot:
    """The rest of the bot, as the editor sees it: the callbacks, recording what they got."""

    image: Path | None
    prompt: str = "a red fox in the snow --ar 3:2"
    submitted: list[tuple[RegionClaim, bytes, str]] = field(default_factory=list)
    refuse: str | None = None
    fail: bool = False

    def image_for(self, claim: RegionClaim) -> Path | None:
        return self.image

    def prompt_for(self, claim: RegionClaim) -> str:
        return self.prompt

    async def submit(self, claim: RegionClaim, mask_png: bytes, prompt: str) -> str:
        if self.fail:
            raise RuntimeError("the engine is on fire")
        if self.refuse is not None:
            raise RegionRefused(self.refuse)
        self.submitted.append((claim, mask_png, prompt))
        return f"new{len(self.submitted)}"


@dataclass
class Clock:
    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Served:
    editor: RegionEditor
    bot: Bot
    clock: Clock
    store: Store
    http: aiohttp.ClientSession

    def url(self, claim: RegionClaim = CLAIM) -> str:
        """The link's address on the test server (the link itself names public_url)."""
        link = self.editor.link(claim)
        assert link.startswith("https://bot.example.com/edit/")
        return self.editor.address + link.removeprefix("https://bot.example.com")

    async def post(
        self, url: str, mask: bytes | str | None = None, prompt: str | None = "a blue fox"
    ) -> tuple[int, dict[str, str]]:
        form = aiohttp.FormData()
        if isinstance(mask, bytes):
            form.add_field("mask", io.BytesIO(mask), filename="mask.png", content_type="image/png")
        elif isinstance(mask, str):
            form.add_field("mask", mask)
        if prompt is not None:
            form.add_field("prompt", prompt)
        if mask is None and prompt is None:
            form.add_field("other", "x")
        async with self.http.post(url, data=form) as response:
            return response.status, await response.json()


@pytest_asyncio.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    image = tmp_path / "0.png"
    Image.new("RGB", SIZE, (200, 80, 40)).save(image)
    bot = Bot(image=image)
    clock = Clock()
    store = Store(tmp_path / "bot.sqlite3")
    editor = RegionEditor(
        WebConfig(host="127.0.0.1", port=0, public_url="https://bot.example.com"),
        store,
        secret="test-secret",
        image_for=bot.image_for,
        prompt_for=bot.prompt_for,
        submit=bot.submit,
        clock=clock,
    )
    await editor.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Served(editor, bot, clock, store, http)
    finally:
        await editor.close()
        store.close()


# --- GET


async def test_the_page_has_the_editor_and_the_prefilled_prompt(served: Served) -> None:
    served.bot.prompt = "a <b>fox</b> & co"
    async with served.http.get(served.url()) as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        page = await response.text()
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    for element in ("image", "canvas", "tool-rect", "tool-lasso", "undo", "clear", "prompt"):
        assert f'id="{element}"' in page
    assert 'id="submit"' in page and 'id="status"' in page
    assert "a &lt;b&gt;fox&lt;/b&gt; &amp; co</textarea>" in page
    assert 'name="viewport"' in page
    assert "http" not in page.replace("http-equiv", "")  # nothing fetched from elsewhere


async def test_the_pages_script_and_style_are_served(served: Served) -> None:
    for name, kind in (("editor.js", "text/javascript"), ("editor.css", "text/css")):
        async with served.http.get(f"{served.editor.address}/static/{name}") as response:
            assert response.status == 200 and response.content_type == kind
            assert "http://" not in await response.text()
    async with served.http.get(f"{served.editor.address}/static/other.js") as response:
        assert response.status == 404


async def test_the_image_is_served(served: Served) -> None:
    assert served.bot.image is not None
    async with served.http.get(served.url() + "/image") as response:
        assert response.status == 200 and response.content_type == "image/png"
        assert await response.read() == served.bot.image.read_bytes()


async def test_a_gone_image_is_410(served: Served) -> None:
    served.bot.image = None
    url = served.url()
    for address in (url, url + "/image"):
        async with served.http.get(address) as response:
            assert response.status == 410 and "image is gone" in await response.text()
    status, answer = await served.post(url, png())
    assert status == 410 and "image is gone" in answer["error"]


# --- POST


async def test_a_region_is_submitted_with_the_exact_mask_and_prompt(served: Served) -> None:
    mask = png()
    status, answer = await served.post(served.url(), mask, "  a blue fox  ")
    assert status == 202
    assert answer == {
        "job_id": "new1",
        "message": "Queued — job new1. The grid will appear in the Discord channel.",
    }
    [(claim, got, prompt)] = served.bot.submitted
    assert claim == CLAIM and got == mask and prompt == "a blue fox"


async def test_a_used_link_is_403_for_every_route(served: Served) -> None:
    url = served.url()
    assert (await served.post(url, png()))[0] == 202
    status, answer = await served.post(url, png())
    assert status == 403 and "already used" in answer["error"]
    for address in (url, url + "/image"):
        async with served.http.get(address) as response:
            assert response.status == 403 and "already used" in await response.text()
    assert len(served.bot.submitted) == 1


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "WyJqb2IxIiwyLCI0MiIsNywsbnVsbCwibiJd.ZV8AAA.AAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "-",
    ],
)
async def test_a_forged_link_is_403(served: Served, token: str) -> None:
    url = f"{served.editor.address}/edit/{token}"
    async with served.http.get(url) as response:
        assert response.status == 403 and "not valid" in await response.text()
    status, answer = await served.post(url, png())
    assert status == 403 and "not valid" in answer["error"]
    assert served.bot.submitted == []


@pytest.mark.parametrize(
    "path", ["/edit/garbage", "/edit/garbage/image", "/nowhere", "/edit/a/b/c", "/", "/edit/"]
)
async def test_every_error_page_finds_its_stylesheet(served: Served, path: str) -> None:
    async with served.http.get(served.editor.address + path) as response:
        assert response.status in (403, 404) and response.content_type == "text/html"
        [href] = re.findall(r'<link rel="stylesheet" href="([^"]+)">', await response.text())
    # as the browser resolves it, from the page's address
    stylesheet = urljoin(served.editor.address + path, href)
    assert stylesheet == f"{served.editor.address}/static/editor.css"
    async with served.http.get(stylesheet) as response:
        assert response.status == 200 and response.content_type == "text/css"


async def test_a_link_signed_with_another_secret_is_403(served: Served) -> None:
    other = RegionTokens("another-secret", clock=served.clock).issue(CLAIM)
    url = f"{served.editor.address}/edit/{other}"
    assert (await served.post(url, png()))[0] == 403
    assert served.bot.submitted == []


async def test_a_tampered_link_is_403(served: Served) -> None:
    url = served.url()
    payload, rest = url.rsplit("/", 1)[1].split(".", 1)
    tampered = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB")
    async with served.http.get(f"{served.editor.address}/edit/{tampered}.{rest}") as response:
        assert response.status == 403


async def test_a_link_expires_after_an_hour(served: Served) -> None:
    url = served.url()
    served.clock.now += TOKEN_TTL_S
    async with served.http.get(url) as response:
        assert response.status == 200  # an hour to the second: still valid
    served.clock.now += 1
    for address in (url, url + "/image"):
        async with served.http.get(address) as response:
            assert response.status == 410 and "expired" in await response.text()
    status, answer = await served.post(url, png())
    assert status == 410 and "expired" in answer["error"]
    assert served.bot.submitted == []


@pytest.mark.parametrize(
    ("mask", "error"),
    [
        (b"GIF89a not a png at all", "not a PNG"),
        (png(SIZE)[:40], "not a readable PNG"),
        (png((64, 96)), "The mask is 64×96; it must be the image's size, 96×64."),
        (png((96, 65)), "must be the image's size"),
        (png(white=None), "The mask is empty"),
        ("a text field", "must be sent as a file"),
        (None, "No mask"),
    ],
    ids=["not-png", "truncated", "turned", "a-row-more", "all-black", "text-field", "missing"],
)
async def test_a_bad_mask_is_400_and_nothing_is_submitted(
    served: Served, mask: bytes | str | None, error: str
) -> None:
    url = served.url()
    status, answer = await served.post(url, mask)
    assert status == 400 and error in answer["error"]
    assert served.bot.submitted == []
    assert (await served.post(url, png()))[0] == 202  # the link was not spent


@pytest.mark.parametrize(
    ("prompt", "error"),
    [(None, "No prompt"), ("   ", "The prompt is empty"), ("x" * 6001, "over 6000 characters")],
)
async def test_a_bad_prompt_is_400(served: Served, prompt: str | None, error: str) -> None:
    status, answer = await served.post(served.url(), png(), prompt)
    assert status == 400 and error in answer["error"]
    assert served.bot.submitted == []


async def test_a_refused_submit_is_400_with_its_message_and_keeps_the_link(served: Served) -> None:
    url = served.url()
    served.bot.refuse = "Queue full: you have 10 jobs waiting."
    assert await served.post(url, png()) == (
        400,
        {"error": "Queue full: you have 10 jobs waiting."},
    )
    served.bot.refuse = None
    assert (await served.post(url, png()))[0] == 202


async def test_an_unexpected_error_is_500_without_a_traceback(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    served.bot.fail = True
    with caplog.at_level(logging.ERROR, logger="bot.web"):
        status, answer = await served.post(served.url(), png())
    assert (status, answer) == (500, {"error": "something went wrong; it was logged"})
    [record] = [r for r in caplog.records if r.name == "bot.web"]
    assert record.exc_info is not None and "on fire" in str(record.exc_info[1])


async def test_a_body_over_the_limit_is_413(served: Served) -> None:
    status, answer = await served.post(served.url(), b"\0" * (MAX_BODY_BYTES + 1))
    assert status == 413 and "MB" in answer["error"]


async def test_other_methods_are_405(served: Served) -> None:
    url = served.url()
    for method in ("PUT", "DELETE", "PATCH"):
        async with served.http.request(method, url) as response:
            assert response.status == 405
            assert "POST" in response.headers["Allow"]
    async with served.http.post(url + "/image") as response:
        assert response.status == 405


async def test_concurrent_posts_of_one_link_make_one_job(served: Served) -> None:
    url = served.url()
    results = await asyncio.gather(*(served.post(url, png()) for _ in range(5)))
    assert sorted(status for status, _ in results) == [202, 403, 403, 403, 403]
    assert len(served.bot.submitted) == 1


async def test_a_used_link_stays_used_after_the_store_is_reopened(
    served: Served, tmp_path: Path
) -> None:
    url = served.url()
    assert (await served.post(url, png()))[0] == 202
    served.store.close()
    with Store(tmp_path / "bot.sqlite3") as reopened:
        claim = RegionTokens("test-secret", clock=served.clock).read(url.rsplit("/", 1)[1])
        assert reopened.token_used(claim.nonce)


# --- tokens and the secret


def test_a_claim_round_trips_through_its_token() -> None:
    tokens = RegionTokens("s", clock=Clock())
    for claim in (CLAIM, RegionClaim("j", 0, "1", 2, None)):
        assert tokens.read(tokens.issue(claim)) == claim
    assert RegionClaim("j", 0, "1", 2, None).nonce != RegionClaim("j", 0, "1", 2, None).nonce


def test_forged_and_expired_tokens_are_told_apart() -> None:
    clock = Clock()
    tokens = RegionTokens("s", clock=clock)
    token = tokens.issue(CLAIM)
    with pytest.raises(ForgedToken):
        RegionTokens("s2", clock=clock).read(token)
    with pytest.raises(ForgedToken):
        tokens.read(token + "x")
    clock.now += TOKEN_TTL_S + 1
    with pytest.raises(ExpiredToken):
        tokens.read(token)


def test_a_genuine_token_of_the_wrong_shape_is_forged() -> None:
    tokens = RegionTokens("s", clock=Clock())
    bad = tokens._serializer.dumps(["job", "0", "1", 2, None, "n"])
    with pytest.raises(ForgedToken):
        tokens.read(bad)


def test_the_secret_is_made_once_and_kept_private(tmp_path: Path) -> None:
    assert load_secret("configured", tmp_path) == "configured"
    assert not (tmp_path / "web-secret").exists()
    made = load_secret("", tmp_path / "data")
    assert len(made) >= 32
    path = tmp_path / "data" / "web-secret"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_secret("", tmp_path / "data") == made
    assert os.listdir(tmp_path / "data") == ["web-secret"]


def test_mask_problem_accepts_a_grey_mask() -> None:
    mask = io.BytesIO()
    Image.new("RGBA", SIZE, (128, 128, 128, 255)).save(mask, "PNG")
    assert mask_problem(mask.getvalue(), SIZE) is None
