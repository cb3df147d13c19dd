"""Fetching images safely: a local aiohttp server (allowed through allowed_networks) for what must
work, and every address and answer that must be refused."""

from __future__ import annotations

import asyncio
import io
import ipaddress
import struct
import zlib
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web
from PIL import Image

from bot.fetch import FetchError, FetchLimits, address_problem, fetch_image
from tests.local_http import serving

LOCAL = (ipaddress.ip_network("127.0.0.1/32"),)
ALLOWED = FetchLimits(allowed_networks=LOCAL, read_timeout_s=0.5, total_timeout_s=3.0)


def png(
    size: tuple[int, int] = (32, 24), mode: str = "RGB", color: object = (200, 10, 10)
) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, format="PNG")  # type: ignore[arg-type]
    return out.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims to be `width`×`height` (a decompression bomb is such a file with a
    small, highly compressible body)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def rotated_jpeg() -> bytes:
    """A 40×20 JPEG whose EXIF says "rotate 90°": upright it is 20×40."""
    image = Image.new("RGB", (40, 20), (0, 120, 200))
    exif = image.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif.tobytes())
    return out.getvalue()


@pytest_asyncio.fixture
async def server() -> AsyncIterator[str]:
    async def image(request: web.Request) -> web.Response:
        return web.Response(body=png(), content_type="image/png")

    async def transparent(request: web.Request) -> web.Response:
        return web.Response(body=png(mode="RGBA", color=(0, 0, 0, 0)), content_type="image/png")

    async def rotated(request: web.Request) -> web.Response:
        return web.Response(body=rotated_jpeg(), content_type="image/jpeg")

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html>hi</html>", content_type="text/html")

    async def bomb(request: web.Request) -> web.Response:
        return web.Response(body=png_header_only(50_000, 50_000), content_type="image/png")

    async def not_an_image(request: web.Request) -> web.Response:
        return web.Response(body=b"GIF89a but not really", content_type="image/gif")

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        await response.prepare(request)  # no Content-Length: only streaming can tell
        for _ in range(25):
            await response.write(b"\0" * (1024 * 1024))
        return response

    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        await response.prepare(request)
        await response.write(png()[:10])
        await asyncio.sleep(5)
        return response

    async def to_private(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://10.20.30.40/a.png")

    async def to_image(request: web.Request) -> web.Response:
        raise web.HTTPFound("/a.png")

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    app = web.Application()
    for path, handler in [
        ("/a.png", image), ("/alpha.png", transparent), ("/rotated.jpg", rotated),
        ("/page", page), ("/bomb.png", bomb), ("/fake.gif", not_an_image), ("/huge", huge),
        ("/slow", slow), ("/to-private", to_private), ("/to-image", to_image), ("/loop", loop),
    ]:  # fmt: skip
        app.router.add_get(path, handler)
    async with serving(app) as url:
        yield url


async def refused(url: str, limits: FetchLimits = ALLOWED) -> str:
    with pytest.raises(FetchError) as info:
        await fetch_image(url, limits)
    message = str(info.value)
    assert message.startswith(f"Could not use the image <{url}>: "), message
    return info.value.reason


async def test_an_allowed_image_is_fetched_as_png(server: str) -> None:
    fetched = await fetch_image(f"{server}/a.png", ALLOWED)
    with Image.open(io.BytesIO(fetched.png)) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "RGB", (32, 24))
        assert image.getpixel((0, 0)) == (200, 10, 10)


async def test_exif_orientation_is_applied_and_alpha_flattened(server: str) -> None:
    upright = await fetch_image(f"{server}/rotated.jpg", ALLOWED)
    assert (upright.width, upright.height) == (20, 40)
    flat = await fetch_image(f"{server}/alpha.png", ALLOWED)
    with Image.open(io.BytesIO(flat.png)) as image:
        assert image.mode == "RGB" and image.getpixel((0, 0)) == (255, 255, 255)


async def test_a_redirect_to_an_allowed_image_is_followed(server: str) -> None:
    assert (await fetch_image(f"{server}/to-image", ALLOWED)).width == 32


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::1]/a.png", "loopback"),
        ("http://[::ffff:127.0.0.1]/a.png", "loopback"),
        ("http://10.0.0.8/a.png", "private network"),
        ("http://0.0.0.0/a.png", "reserved"),
        ("http://224.0.0.1/a.png", "multicast"),
        ("file:///etc/passwd", "only http and https"),
        ("gopher://example.com/", "only http and https"),
    ],
)
async def test_private_and_special_addresses_are_refused(url: str, reason: str) -> None:
    assert reason in await refused(url, FetchLimits())


async def test_loopback_is_refused_without_the_exemption(server: str) -> None:
    assert "loopback" in await refused(f"{server}/a.png", FetchLimits())


async def test_numeric_forms_and_names_are_checked_after_resolving(server: str) -> None:
    port = server.rsplit(":", 1)[1]
    strict = FetchLimits()
    # "0x7f000001" is not an address literal to a URL parser; the resolver makes it 127.0.0.1
    assert "loopback" in await refused(f"http://0x7f000001:{port}/a.png", strict)
    assert "loopback" in await refused(f"http://localhost:{port}/a.png", strict)  # a DNS name


async def test_a_redirect_to_a_private_address_is_refused(server: str) -> None:
    assert "private network" in await refused(f"{server}/to-private")


async def test_endless_redirects_are_refused(server: str) -> None:
    assert "redirected more than 3 times" in await refused(f"{server}/loop")


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/page", "not an image (the server says text/html)"),
        ("/fake.gif", "not an image (it could not be decoded)"),
        ("/bomb.png", "more pixels than the 40,000,000 an image may have"),
        ("/huge", "larger than 20 MB"),
        ("/slow", "took too long"),
        ("/missing", "the server answered 404"),
    ],
)
async def test_bad_answers_are_refused_with_the_reason(server: str, path: str, reason: str) -> None:
    assert reason in await refused(f"{server}{path}")


def test_address_rules() -> None:
    ip = ipaddress.ip_address
    assert address_problem(ip("93.184.216.34")) is None  # a public address
    assert address_problem(ip("2606:4700::1111")) is None
    assert address_problem(ip("192.168.1.5")) == "the address is on a private network"
    assert address_problem(ip("100.64.0.1")) == "the address is on a private network"  # CGNAT
    assert address_problem(ip("fd00::1")) == "the address is on a private network"
    lan = (ipaddress.ip_network("192.168.1.0/24"),)
    assert address_problem(ip("192.168.1.5"), lan) is None  # an owner's LAN image server
    assert address_problem(ip("192.168.2.5"), lan) is not None
