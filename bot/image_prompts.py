"""Image prompts of /imagine: fetch each image once (bot/fetch.py), keep it in storage by its
content, and give the jobs its digest; the engine reads the stored PNG, never a URL.

An `image` attachment's link leads the prompt (bot/imagine.py), then come the links typed at its
start, as on Midjourney. Attachments (and links to Discord's own CDN) are read through
discord.py.

Discord's CDN links expire (their `ex`/`is`/`hm` signature; a slash command's attachments within
hours), yet prompts show them (/blend's) and people paste them from old messages: each CDN link
read (an attachment's too) is remembered without its signature, with the kept image's digest,
and a later prompt with that link (any signature) uses the kept image without reading it again.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import discord
import yarl

from bot.fetch import FetchError, FetchLimits, decode_image, fetch_image
from engine.intake import image_links, with_images
from engine.jobs import Job
from engine.prompt import ImagineRequest
from engine.storage import InputStore

if TYPE_CHECKING:
    from bot.app import ImagineBot

DISCORD_CDN = ("cdn.discordapp.com", "media.discordapp.net")
CDN_SIGNATURE = frozenset({"ex", "is", "hm"})  # change when Discord refreshes a link; the file not


def wants_images(jobs: Sequence[Job]) -> bool:
    return any(image_links(job) for job in jobs)


def same_images(new: ImagineRequest, old: ImagineRequest) -> ImagineRequest | None:
    """`new` with `old`'s fetched images when it links the same ones (a remix that kept
    them: nothing is fetched again); None when its links changed."""
    links = ("image_urls", "style_refs", "object_refs")
    if any(getattr(new, name) != getattr(old, name) for name in links):
        return None
    return dataclasses.replace(
        new,
        image_inputs=old.image_inputs,
        style_inputs=old.style_inputs,
        style_input_weights=old.style_input_weights,
        object_inputs=old.object_inputs,
    )


async def with_image_prompts(
    bot: ImagineBot, jobs: Sequence[Job], attachments: Sequence[discord.Attachment] = ()
) -> list[Job]:
    """`jobs` with their image prompts and references fetched and stored (`image_inputs`,
    `style_inputs`, `object_inputs` set); FetchError names the first image that could not be
    used, and why. `attachments`: those whose links the prompts name (an `image` attachment's
    leads the prompt, /blend's are the prompt), read through discord.py."""
    limits = bot.config.images.limits()
    store = InputStore(bot.config.engine.inputs_dir)
    attached = dict(
        zip([a.url for a in attachments], await kept_attachments(bot, attachments), strict=True)
    )

    async def digest_of(url: str) -> str:
        if url in attached:
            return attached[url]
        link = cdn_link(url)
        kept = bot.store.kept_link(link) if link else None
        if kept is not None and store.path(kept).is_file():
            return kept
        return await _keep(bot, store, await _fetch(bot, url, limits), url)

    return await with_images(jobs, digest_of)


def cdn_link(url: str) -> str | None:
    """A Discord CDN link as it stays the same: its path (the same on either CDN host) and query
    without the signature; None for any other link."""
    parsed = yarl.URL(url)
    if parsed.scheme != "https" or parsed.host not in DISCORD_CDN:
        return None
    query = sorted((k, v) for k, v in parsed.query.items() if k not in CDN_SIGNATURE)
    return str(yarl.URL.build(path=parsed.path, query=query))


async def kept_attachments(
    bot: ImagineBot, attachments: Sequence[discord.Attachment]
) -> tuple[str, ...]:
    """Each attachment read through discord.py, checked and stored; their digests. FetchError
    names the first that could not be used."""
    limits = bot.config.images.limits()
    store = InputStore(bot.config.engine.inputs_dir)
    return tuple(
        [await _keep(bot, store, await _read(each, limits), each.url) for each in attachments]
    )


async def _keep(bot: ImagineBot, store: InputStore, png: bytes, url: str) -> str:
    """`png` (read from `url`) kept by its content, and the link remembered if Discord's; its
    digest."""
    digest = await asyncio.to_thread(store.put, png)
    link = cdn_link(url)
    if link:
        bot.store.keep_link(link, digest)
    return digest


async def _fetch(bot: ImagineBot, url: str, limits: FetchLimits) -> bytes:
    parsed = yarl.URL(url)
    if parsed.scheme == "https" and parsed.host in DISCORD_CDN:
        try:
            data = await bot.http.get_from_cdn(url)
        except discord.HTTPException as error:
            raise FetchError(url, f"Discord answered {error.status}") from None
        if len(data) > limits.max_bytes:
            raise FetchError(url, f"it is larger than {limits.max_bytes // (1024 * 1024)} MB")
        return (await asyncio.to_thread(decode_image, url, data, limits)).png
    return (await fetch_image(url, limits)).png


async def _read(attachment: discord.Attachment, limits: FetchLimits) -> bytes:
    name = attachment.filename
    if attachment.size > limits.max_bytes:
        raise FetchError(name, f"it is larger than {limits.max_bytes // (1024 * 1024)} MB")
    kind = (attachment.content_type or "").split(";")[0]
    if kind and not kind.startswith("image/"):
        raise FetchError(name, f"it is not an image (Discord says {kind})")
    try:
        data = await attachment.read()
    except discord.HTTPException as error:
        raise FetchError(name, f"Discord answered {error.status}") from None
    return (await asyncio.to_thread(decode_image, name, data, limits)).png
