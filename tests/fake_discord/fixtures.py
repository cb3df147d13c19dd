"""pytest fixtures: a running :class:`FakeDiscord` and a runner that connects bots to it.

Use from a conftest with ``from <package>.fixtures import bot_runner, fake_discord``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import discord
import discord.asset
import discord.gateway
import discord.http
import pytest
import pytest_asyncio
import yarl

from .server import FakeDiscord

ClientT = TypeVar("ClientT", bound=discord.Client)

# discord.py waits this long after the last GUILD_CREATE before READY (default 2 s).
FAST_GUILD_READY_TIMEOUT = 0.05


def patch_discord(monkeypatch: pytest.MonkeyPatch, fake: FakeDiscord) -> None:
    """Point discord.py at the fake and refuse any HTTP request that would leave the machine.

    ``Route.BASE`` covers ``HTTPClient`` and the interaction webhooks (``AsyncWebhookAdapter``
    builds its URLs from ``Route`` too); discord.py 2.7 connects straight to ``DEFAULT_GATEWAY``.
    """
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
    monkeypatch.setattr(
        discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url)
    )
    monkeypatch.setattr(discord.asset.Asset, "BASE", fake.base_url)
    monkeypatch.setattr(
        aiohttp.ClientSession, "_request", _loopback_only(aiohttp.ClientSession._request, fake)
    )


DISCORD_CDN = ("cdn.discordapp.com", "media.discordapp.net")


def _loopback_only(
    original: Callable[..., Awaitable[aiohttp.ClientResponse]], fake: FakeDiscord
) -> Callable[..., Awaitable[aiohttp.ClientResponse]]:
    async def _request(
        session: aiohttp.ClientSession, method: str, url: Any, **kwargs: Any
    ) -> aiohttp.ClientResponse:
        link = yarl.URL(str(url))
        if link.host in DISCORD_CDN:  # the fake is Discord's CDN too
            url = yarl.URL(fake.base_url).with_path(link.path).with_query(link.query)
        fake.guard_request(method, str(url))
        return await original(session, method, url, **kwargs)

    return _request


@pytest_asyncio.fixture
async def fake_discord(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    """A running fake Discord; discord.py is pointed at it for the test's duration."""
    fake = FakeDiscord()
    await fake.start()
    try:
        patch_discord(monkeypatch, fake)
        yield fake
    finally:
        await fake.stop()
    fake.check_clean()


class BotRunner:
    """Connects clients to the fake and closes them again (all of them at teardown)."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self._tasks: dict[int, tuple[discord.Client, asyncio.Task[None]]] = {}

    async def start(
        self,
        client: ClientT,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> ClientT:
        """Log in (runs ``setup_hook``), connect in the background, return once READY."""
        if client._connection.guild_ready_timeout == 2.0:
            client._connection.guild_ready_timeout = FAST_GUILD_READY_TIMEOUT
        try:
            await client.login(self.fake.bot_token)
        except BaseException:
            await client.close()
            raise
        task = asyncio.create_task(client.connect(reconnect=False), name="fake-discord-bot")
        self._tasks[id(client)] = (client, task)
        await self._until_ready(client, task, timeout)
        return client

    async def _until_ready(
        self,
        client: discord.Client,
        task: asyncio.Task[None],
        timeout: float,  # noqa: ASYNC109
    ) -> None:
        ready = asyncio.create_task(client.wait_until_ready())
        done, _ = await asyncio.wait(
            {task, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if ready in done:
            return
        ready.cancel()
        await asyncio.gather(ready, return_exceptions=True)
        await self.stop(client)
        raise TimeoutError(f"{type(client).__name__} did not get READY within {timeout}s")

    async def stop(
        self,
        client: discord.Client,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> None:
        """Close the client; re-raise what its connection task died of, if anything."""
        entry = self._tasks.pop(id(client), None)
        await client.close()
        if entry is not None:
            await asyncio.wait_for(entry[1], timeout)

    async def stop_all(self) -> None:
        """Stop every client, then re-raise the first failure (so none is left open)."""
        clients = [client for client, _ in self._tasks.values()]
        results = [await _capture(self.stop(client)) for client in clients]
        errors = [r for r in results if r is not None]
        if errors:
            raise errors[0]


async def _capture(step: Awaitable[None]) -> BaseException | None:
    try:
        await step
    except Exception as error:
        return error
    return None


@pytest_asyncio.fixture
async def bot_runner(fake_discord: FakeDiscord) -> AsyncIterator[BotRunner]:
    """Start bots with ``await bot_runner.start(MyBot(...))``; they are closed at teardown."""
    runner = BotRunner(fake_discord)
    try:
        yield runner
    finally:
        await runner.stop_all()
