"""Fetching an image a user points at (an image prompt, a reference), safely, in the bot process.

A URL in a prompt makes the bot open a connection: to the public internet only. Every address
a host resolves to is checked (loopback, private, link-local, multicast, reserved, unspecified,
shared and IPv4-mapped ranges are refused, unless `[images] allowed_networks` lists them), after
every redirect too, and the connection is made to the addresses that were checked (the checking
resolver is the connector's own: a second DNS answer cannot rebind it). The body is streamed
under a size limit and must decode as an image of at most `max_pixels` (a decompression bomb is
refused from its header, before it is decoded). EXIF orientation is applied and alpha flattened.

Every refusal is a `FetchError` whose message names the URL and the reason, for the user.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp
import yarl
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver
from PIL import Image, UnidentifiedImageError

from engine.storage import png_bytes, upright_rgb

logger = logging.getLogger(__name__)

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_REDIRECTS = 3
CHUNK = 64 * 1024


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000  # about 6300²: any photo; a 50 000² "image" is a bomb
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0  # between two chunks
    total_timeout_s: float = 30.0
    allowed_networks: tuple[IpNetwork, ...] = field(default_factory=tuple)


class FetchError(Exception):
    """An image that could not be used; the message is for the user."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"Could not use the image <{url}>: {reason}.")
        self.url = url
        self.reason = reason


@dataclass(frozen=True)
class FetchedImage:
    """An image as the engine will read it: RGB, upright, PNG-encoded."""

    url: str
    png: bytes
    width: int
    height: int


def address_problem(address: IpAddress, allowed: Sequence[IpNetwork] = ()) -> str | None:
    """Why the bot must not connect to `address`, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if any(address.version == net.version and address in net for net in allowed):
        return None
    if address.is_loopback:
        return "the address is this machine's own (loopback)"
    if address.is_link_local:
        return "the address is link-local (such as a cloud's metadata service)"
    if address.is_multicast:
        return "the address is a multicast address"
    if address.is_unspecified or address.is_reserved:
        return "the address is reserved"
    if address.is_private or not address.is_global:
        return "the address is on a private network"
    return None


class _Refused(OSError):
    """Raised inside the connector: the host resolved to an address the bot must not reach."""


class CheckedResolver(ThreadedResolver):
    """Resolves as usual, then refuses the whole host if any of its addresses is not allowed;
    the connector connects only to addresses this returned."""

    def __init__(self, allowed: Sequence[IpNetwork]) -> None:
        super().__init__()
        self._allowed = tuple(allowed)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await super().resolve(host, port, family)
        for result in results:
            problem = address_problem(ipaddress.ip_address(result["host"]), self._allowed)
            if problem is not None:
                raise _Refused(problem)
        return results


async def fetch_image(url: str, limits: FetchLimits) -> FetchedImage:
    """Download and decode the image at `url` (http or https), within `limits`."""
    timeout = aiohttp.ClientTimeout(
        total=limits.total_timeout_s,
        sock_connect=limits.connect_timeout_s,
        sock_read=limits.read_timeout_s,
    )
    connector = aiohttp.TCPConnector(resolver=CheckedResolver(limits.allowed_networks))
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, trust_env=False
    ) as session:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            target = _checked_url(url, current, limits)
            try:
                async with session.get(target, allow_redirects=False) as response:
                    if response.status in (301, 302, 303, 307, 308):
                        location = response.headers.get("Location")
                        if not location:
                            raise FetchError(url, "the server redirected nowhere")
                        current = str(target.join(yarl.URL(location)))
                        continue
                    data = await _body(url, response, limits)
            except _Refused as error:
                raise FetchError(url, str(error)) from None
            except aiohttp.ClientConnectorError as error:
                if isinstance(error.os_error, _Refused):
                    raise FetchError(url, str(error.os_error)) from None
                raise FetchError(url, "the server could not be reached") from None
            except TimeoutError:
                raise FetchError(url, "the server took too long to answer") from None
            except aiohttp.ClientError as error:
                logger.info("fetching %s failed: %r", url, error)
                raise FetchError(url, "the download failed") from None
            return await asyncio.to_thread(decode_image, url, data, limits)
        raise FetchError(url, f"the server redirected more than {MAX_REDIRECTS} times")


def _checked_url(original: str, current: str, limits: FetchLimits) -> yarl.URL:
    try:
        parsed = yarl.URL(current)
    except ValueError:
        raise FetchError(original, "it is not a valid link") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise FetchError(original, "only http and https links can be fetched")
    try:  # a literal address is not resolved, so it is checked here
        literal = ipaddress.ip_address(parsed.host.strip("[]"))
    except ValueError:
        return parsed
    problem = address_problem(literal, limits.allowed_networks)
    if problem is not None:
        raise FetchError(original, problem)
    return parsed


async def _body(url: str, response: aiohttp.ClientResponse, limits: FetchLimits) -> bytes:
    if response.status != 200:
        raise FetchError(url, f"the server answered {response.status}")
    kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if kind and not kind.startswith("image/") and kind != "application/octet-stream":
        raise FetchError(url, f"it is not an image (the server says {kind})")
    too_large = f"it is larger than {limits.max_bytes // (1024 * 1024)} MB"
    if (response.content_length or 0) > limits.max_bytes:
        raise FetchError(url, too_large)
    body = bytearray()
    async for chunk in response.content.iter_chunked(CHUNK):
        body.extend(chunk)
        if len(body) > limits.max_bytes:
            raise FetchError(url, too_large)
    return bytes(body)


def decode_image(url: str, data: bytes, limits: FetchLimits) -> FetchedImage:
    """`data` as an upright RGB image (alpha over white), PNG-encoded; the pixel count is
    checked from the header before anything is decoded."""
    too_many = f"it has more pixels than the {limits.max_pixels:,} an image may have"
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > limits.max_pixels:
                raise FetchError(url, f"{too_many} ({width}×{height})")
            image.load()
            rgb = upright_rgb(image)
    except Image.DecompressionBombError:  # Pillow's own cap (far above ours) refused its header
        raise FetchError(url, too_many) from None
    except (UnidentifiedImageError, OSError, SyntaxError):
        raise FetchError(url, "it is not an image (it could not be decoded)") from None
    return FetchedImage(url, png_bytes(rgb), rgb.width, rgb.height)
