"""Driving the real bot (bot.app.ImagineBot) through the fake Discord, with the real tiny engine.

Test modules use `pytestmark = pytest.mark.asyncio(loop_scope="session")` (the engine from
tests/conftest.py lives in the session loop) and import the `harness` fixture from here.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image

from bot.app import ImagineBot
from bot.config import (
    BotConfig,
    DiscordConfig,
    LimitsConfig,
    ModerationConfig,
    PermissionsConfig,
)
from bot.store import StoredJob
from engine.client import EngineClient
from tests.fake_discord import FakeDiscord, FakeInteraction, RecordedRequest, StoredMessage
from tests.fake_discord.fixtures import BotRunner, patch_discord
from tests.fake_discord.payloads import FLAG_EPHEMERAL

JOB_TIMEOUT = 90.0  # the first job of a session also waits for the engine process to start
EDIT_INTERVAL_S = 0.05  # the bot's edit throttle, shortened so tests see every state quickly


@dataclass
class Harness:
    fake: FakeDiscord
    engine: EngineClient
    runner: BotRunner
    storage: Path
    tester: int  # has the member role
    bob: int  # has the member role too
    admin: int  # in permissions.admins (by default)
    roleless: int  # no role at all
    bots: list[ImagineBot] = field(default_factory=list)

    @property
    def bot(self) -> ImagineBot:
        return self.bots[-1]

    def config(
        self,
        *,
        limits: LimitsConfig | None = None,
        permissions: PermissionsConfig | None = None,
        moderation: ModerationConfig | None = None,
    ) -> BotConfig:
        return BotConfig(
            discord=DiscordConfig(token="unused", guild_ids=(self.fake.guild_id,)),
            engine=replace(self.engine.config, storage=self.storage),
            limits=limits or LimitsConfig(),
            permissions=permissions or PermissionsConfig(admins=(self.admin,)),
            moderation=moderation or ModerationConfig(),
        )

    async def start(self, config: BotConfig | None = None, **tables: Any) -> ImagineBot:
        bot = ImagineBot(
            config or self.config(**tables), engine=self.engine, edit_interval_s=EDIT_INTERVAL_S
        )
        await self.runner.start(bot)
        self.bots.append(bot)
        return bot

    async def stop(self, bot: ImagineBot) -> None:
        await self.runner.stop(bot)

    # --- acting as users

    async def command(
        self, name: str, options: dict[str, Any] | None = None, **kwargs: Any
    ) -> FakeInteraction:
        return await self.fake.push_slash_command(name, options, **kwargs)

    async def imagine(self, prompt: str, **kwargs: Any) -> FakeInteraction:
        return await self.command("imagine", {"prompt": prompt}, **kwargs)

    async def press(
        self, message: StoredMessage, custom_id: str, user_id: int | None = None, **kwargs: Any
    ) -> FakeInteraction:
        return await self.fake.push_component(message, custom_id, user_id=user_id, **kwargs)

    # --- waiting for what the bot did

    async def remix(self, message: StoredMessage, custom_id: str, text: str) -> FakeInteraction:
        """Press a button in remix mode and submit `text` in the prompt box it opens."""
        press = await self.press(message, custom_id)
        callback = await self.fake.wait_for_callback(press)
        assert callback.json["type"] == 9, callback.json  # a modal
        [field] = [c for c in callback.components if c["type"] == 4]
        return await self.fake.push_modal_submit(press, {field["custom_id"]: text})

    async def job_message(self, interaction: FakeInteraction) -> StoredMessage:
        """The message a job-starting interaction answered with (its "Waiting" message)."""
        callback = await self.fake.wait_for_callback(interaction)
        if callback.json["type"] == 5:  # "thinking" first (image prompts are being fetched)
            return await self.new_message(
                lambda m: m.interaction_id == interaction.id and not m.loading, timeout=30.0
            )
        assert callback.json["type"] == 4, callback.json
        assert not callback.json["data"].get("flags", 0) & FLAG_EPHEMERAL, callback.json
        message = self.fake.original_message(interaction)
        assert message is not None
        return message

    async def finished(self, message_id: int, timeout: float = JOB_TIMEOUT) -> StoredMessage:  # noqa: ASYNC109
        """The job message once it shows a result (seed…), a failure or a cancellation."""

        def done(m: StoredMessage) -> bool:
            ends = ("(seed " in m.content, "(Failed: " in m.content, "(Cancelled)" in m.content)
            return m.id == message_id and any(ends)

        return await self.fake.wait_for_message(done, timeout=timeout)

    async def grid(self, prompt: str, **kwargs: Any) -> StoredMessage:
        """/imagine through to the finished grid."""
        message = await self.job_message(await self.imagine(prompt, **kwargs))
        finished = await self.finished(message.id)
        assert "(seed " in finished.content, finished.content
        return finished

    async def private_reply(self, interaction: FakeInteraction, timeout: float = 10.0) -> str:  # noqa: ASYNC109
        """The text of the first ephemeral answer to `interaction` (a response or a followup)."""

        def ephemeral(r: RecordedRequest) -> bool:
            if r.route == "interaction_callback":
                ours = r.params["interaction_id"] == str(interaction.id)
                data = r.payload.get("data") or {}
            elif r.route == "webhook_execute":
                ours = r.params["token"] == interaction.token
                data = r.payload
            else:
                return False
            return ours and bool(int(data.get("flags") or 0) & FLAG_EPHEMERAL)

        request = await self.fake.wait_for(ephemeral, timeout=timeout)
        data = request.payload.get("data") if request.route == "interaction_callback" else None
        return str((data or request.payload).get("content", ""))

    async def new_message(
        self,
        predicate: Callable[[StoredMessage], bool],
        timeout: float = JOB_TIMEOUT,  # noqa: ASYNC109
    ) -> StoredMessage:
        return await self.fake.wait_for_message(predicate, timeout=timeout)

    def stored(self, message: StoredMessage) -> StoredJob:
        """The record of the job a message shows, found by the job id in its buttons (the
        record exists before the message does; its message id is filled in just after)."""
        job = self.bot.store.get_job(job_id_of(message))
        assert job is not None, f"no job {job_id_of(message)} in the store"
        return job

    async def blocker(self) -> StoredMessage:
        """A job from the admin that keeps the engine busy (150 steps: seconds even on a fast
        machine), so the next ones wait in the queue until `release` cancels it."""
        return await self.job_message(
            await self.imagine("blocker job --steps 150", user_id=self.admin)
        )

    async def release(self, blocker: StoredMessage) -> None:
        assert await self.engine.cancel(job_id_of(blocker))

    async def cancel_everything(self) -> None:
        for job in self.engine.jobs():
            await self.engine.cancel(job.id)


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Wait until `check()` holds (for state the bot writes after the message went out, such as
    a job's delivered mark); AssertionError after `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still not true after {timeout} s: {check}")
        await asyncio.sleep(0.02)


def job_id_of(message: StoredMessage) -> str:
    assert message.custom_ids, f"message {message.id} has no buttons"
    return message.custom_ids[0].split(":")[-1]


def image_of(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def buttons(message: StoredMessage) -> list[tuple[str | None, str | None, str]]:
    """(label, emoji, custom_id) of every button, in order."""
    return [
        (b.get("label"), (b.get("emoji") or {}).get("name"), b["custom_id"])
        for b in message.buttons
    ]


def rows(message: StoredMessage) -> list[list[str]]:
    """Each action row's custom_ids."""
    return [[c["custom_id"] for c in row.get("components", [])] for row in message.components]


async def dm_to(h: Harness, user_id: int) -> StoredMessage:
    """The next message the bot sends in its direct-message channel with `user_id`."""
    return await h.new_message(
        lambda m: (
            h.fake.channels.get(m.channel_id, {}).get("type") == 1
            and h.fake.channels[m.channel_id]["recipients"][0]["id"] == str(user_id)
        ),
        timeout=10.0,
    )


async def queued_job(h: Harness) -> StoredMessage:
    """A job of the tester's that waits behind the admin's blocker."""
    await h.blocker()
    message = await h.job_message(await h.imagine("a waiting job"))
    assert message.content.endswith("(Waiting to start)")  # next after the blocker
    return message


@pytest_asyncio.fixture(loop_scope="session")
async def harness(
    monkeypatch: pytest.MonkeyPatch, tiny_engine: EngineClient, tmp_path: Path
) -> AsyncIterator[Harness]:
    """A running fake Discord (discord.py pointed at it), its users, and a way to start bots;
    at the end every job is cancelled, every bot closed and the fake checked for stray requests.
    (The fake's own fixtures run in the function loop; this is the same for the session loop.)"""
    fake = FakeDiscord()
    await fake.start()
    # The bot keeps image prompts where the engine reads them: one storage in production; here
    # the bot's storage (a database per test) shares the session engine's inputs.
    tiny_engine.config.inputs_dir.mkdir(parents=True, exist_ok=True)
    (tmp_path / "inputs").symlink_to(tiny_engine.config.inputs_dir)
    h = Harness(
        fake=fake,
        engine=tiny_engine,
        runner=BotRunner(fake),
        storage=tmp_path,
        tester=fake.user_id,
        bob=fake.add_user("bob"),
        admin=fake.add_user("admin"),
        roleless=fake.add_user("roleless", roles=[]),
    )
    try:
        patch_discord(monkeypatch, fake)
        yield h
    finally:
        try:
            await h.cancel_everything()
            await h.runner.stop_all()
        finally:
            await fake.stop()
    fake.check_clean()
