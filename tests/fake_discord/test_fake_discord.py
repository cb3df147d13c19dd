"""Self-test: a minimal discord.py bot (not the project's) driven through the fake over the wire."""

from __future__ import annotations

import asyncio
import io
import re
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from .fixtures import BotRunner, bot_runner, fake_discord
from .server import EscapedRequestError, FakeDiscord, RecordedRequest, UploadedFile

__all__ = ["bot_runner", "fake_discord"]  # fixtures, re-exported for pytest

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
JOB = "abc123"


class GridButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"grid:(?P<op>[uv])(?P<n>[1-4]):(?P<job>[0-9a-f]+)",
):
    """A persistent button whose custom_id carries its state, as in discord.py's examples."""

    def __init__(self, op: str, n: int, job: str) -> None:
        button: discord.ui.Button[Any] = discord.ui.Button(
            label=f"{op.upper()}{n}", custom_id=f"grid:{op}{n}:{job}"
        )
        super().__init__(button)
        self.op, self.n, self.job = op, n, job

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> GridButton:
        return cls(match["op"], int(match["n"]), match["job"])

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.edit_message(content=f"clicked {self.op}{self.n} of {self.job}")


class PromptModal(discord.ui.Modal, title="Remix"):
    prompt: discord.ui.TextInput[Any] = discord.ui.TextInput(label="Prompt", custom_id="prompt")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"remixed: {self.prompt.value}", ephemeral=True)


@app_commands.command(description="Defer, then answer with a file and buttons")
async def ping(interaction: discord.Interaction) -> None:
    await interaction.response.defer()
    view = discord.ui.View(timeout=None)
    view.add_item(GridButton("u", 1, JOB))
    view.add_item(GridButton("v", 2, JOB))
    file = discord.File(io.BytesIO(PNG), filename="grid.png")
    embed = discord.Embed(title="grid").set_image(url="attachment://grid.png")
    await interaction.followup.send("pong", file=file, embed=embed, view=view)


@app_commands.command(description="An answer only the caller sees")
async def secret(interaction: discord.Interaction) -> None:
    await interaction.response.send_message("only you", ephemeral=True)


@app_commands.command(description="Open a modal")
async def remix(interaction: discord.Interaction) -> None:
    await interaction.response.send_modal(PromptModal())


@app_commands.command(description="Read an attached image")
async def describe(interaction: discord.Interaction, image: discord.Attachment) -> None:
    data = await image.read()
    limit = interaction.filesize_limit
    await interaction.response.send_message(f"{image.filename}: {len(data)} bytes, limit {limit}")


@app_commands.command(description="Finish after the token expired")
async def slow(interaction: discord.Interaction) -> None:
    bot = interaction.client
    assert isinstance(bot, MiniBot)
    await interaction.response.defer()
    await bot.release.wait()
    try:
        await interaction.followup.send("done")
    except discord.HTTPException as error:
        if error.code != 50027:  # Invalid Webhook Token
            raise
        assert isinstance(interaction.channel, discord.TextChannel)
        await interaction.channel.send(f"done (for {interaction.user.mention})")


COMMANDS: list[app_commands.Command[Any, ..., None]] = [ping, secret, remix, describe, slow]


class MiniBot(commands.Bot):
    def __init__(self, guild_id: int) -> None:
        super().__init__(command_prefix=commands.when_mentioned, intents=discord.Intents.default())
        self.guild = discord.Object(guild_id)
        self.release = asyncio.Event()

    async def setup_hook(self) -> None:
        self.add_dynamic_items(GridButton)
        for command in COMMANDS:
            self.tree.add_command(command, guild=self.guild)
        await self.tree.sync(guild=self.guild)


async def start_minibot(fake: FakeDiscord, runner: BotRunner) -> MiniBot:
    return await runner.start(MiniBot(fake.guild_id))


def is_followup(request: RecordedRequest, token: str) -> bool:
    return request.route == "webhook_execute" and request.params["token"] == token


async def test_ready_has_the_guild_channels_and_synced_commands(
    fake_discord: FakeDiscord, bot_runner: BotRunner
) -> None:
    bot = await start_minibot(fake_discord, bot_runner)

    guild = bot.get_guild(fake_discord.guild_id)
    assert guild is not None
    assert bot.user is not None and bot.user.id == fake_discord.application_id
    assert {c.name for c in guild.text_channels} == {"general", "imagine"}
    assert guild.member_count == len(fake_discord.members)
    synced = {c["name"] for c in fake_discord.commands[fake_discord.guild_id]}
    assert synced == {c.name for c in COMMANDS}


async def test_slash_command_defers_then_followup_carries_file_and_buttons(
    fake_discord: FakeDiscord, bot_runner: BotRunner
) -> None:
    bot = await start_minibot(fake_discord, bot_runner)

    interaction = await fake_discord.push_slash_command("ping")

    callback = await fake_discord.wait_for_callback(interaction)
    assert callback.json == {"type": 5}
    followup = await fake_discord.wait_for(lambda r: is_followup(r, interaction.token))
    assert followup.query["wait"] == "1"
    [upload] = followup.files
    assert (upload.filename, upload.data) == ("grid.png", PNG)
    assert followup.json["attachments"] == [{"id": 0, "filename": "grid.png"}]
    buttons = [c for c in followup.components if c["type"] == 2]
    assert [(b["label"], b["custom_id"]) for b in buttons] == [
        ("U1", f"grid:u1:{JOB}"),
        ("V2", f"grid:v2:{JOB}"),
    ]
    # The first followup after a defer fills in the "thinking…" message.
    message = fake_discord.original_message(interaction)
    assert message is not None and not message.loading
    assert message.content == "pong"
    assert message.embeds[0]["image"]["url"] == message.attachments[0].url
    # The stored attachment is served back, so a bot can download it.
    channel = bot.get_channel(fake_discord.channel_id)
    assert isinstance(channel, discord.TextChannel)
    fetched = await channel.fetch_message(message.id)
    assert await fetched.attachments[0].read() == PNG


async def test_dynamic_button_works_after_a_restart(
    fake_discord: FakeDiscord, bot_runner: BotRunner
) -> None:
    bot = await start_minibot(fake_discord, bot_runner)
    interaction = await fake_discord.push_slash_command("ping")
    message = await fake_discord.wait_for_message(
        lambda m: m.interaction_id == interaction.id and not m.loading
    )

    click = await fake_discord.push_component(message, f"grid:u1:{JOB}")
    assert (await fake_discord.wait_for_callback(click)).json["type"] == 7
    assert message.content == f"clicked u1 of {JOB}"

    await bot_runner.stop(bot)
    await start_minibot(fake_discord, bot_runner)
    click = await fake_discord.push_component(message, f"grid:v2:{JOB}")
    assert (await fake_discord.wait_for_callback(click)).json["type"] == 7
    assert message.content == f"clicked v2 of {JOB}"


async def test_ephemeral_answer_has_flag_64_and_is_hidden_from_the_channel(
    fake_discord: FakeDiscord, bot_runner: BotRunner
) -> None:
    await start_minibot(fake_discord, bot_runner)

    interaction = await fake_discord.push_slash_command("secret")

    callback = await fake_discord.wait_for_callback(interaction)
    assert callback.json["type"] == 4
    assert callback.json["data"]["flags"] == 64
    message = fake_discord.original_message(interaction)
    assert message is not None and message.ephemeral and message.content == "only you"
    assert message not in fake_discord.channel_messages()


async def test_modal_submit_reaches_on_submit(
    fake_discord: FakeDiscord, bot_runner: BotRunner
) -> None:
    await start_minibot(fake_discord, bot_runner)
    opened = await fake_discord.push_slash_command("remix")
    callback = await fake_discord.wait_for_callback(opened)
    assert callback.json["type"] == 9
    assert "prompt" in [c.get("custom_id") for c in callback.components]

    submitted = await fake_discord.push_modal_submit(opened, {"prompt": "a red fox"})

    answer = await fake_discord.wait_for_callback(submitted)
    assert answer.json["type"] == 4
    assert answer.json["data"]["content"] == "remixed: a red fox"


async def test_attachment_option_is_downloadable_and_size_limit_is_sent(
    fake_discord: FakeDiscord, bot_runner: BotRunner
) -> None:
    fake_discord.attachment_size_limit = 25 * 1024 * 1024
    await start_minibot(fake_discord, bot_runner)

    image = UploadedFile("cat.png", PNG, "image/png")
    interaction = await fake_discord.push_slash_command("describe", {"image": image})

    callback = await fake_discord.wait_for_callback(interaction)
    assert callback.json["data"]["content"] == f"cat.png: {len(PNG)} bytes, limit {25 * 1024**2}"


async def test_expired_token_falls_back_to_the_channel(
    fake_discord: FakeDiscord, bot_runner: BotRunner
) -> None:
    bot = await start_minibot(fake_discord, bot_runner)
    interaction = await fake_discord.push_slash_command("slow")
    await fake_discord.wait_for_callback(interaction)

    fake_discord.expire(interaction)
    bot.release.set()

    rejected = await fake_discord.wait_for(lambda r: is_followup(r, interaction.token))
    assert rejected.status == 401
    assert rejected.response == {"message": "Invalid Webhook Token", "code": 50027}
    posted = await fake_discord.wait_for(lambda r: r.route == "channel_message_create")
    assert posted.params["channel_id"] == str(fake_discord.channel_id)
    assert posted.headers["Authorization"] == f"Bot {fake_discord.bot_token}"
    [message] = [m for m in fake_discord.channel_messages() if m.content.startswith("done")]
    assert message.content == f"done (for <@{fake_discord.user_id}>)"


async def test_rate_limited_request_is_retried(
    fake_discord: FakeDiscord, bot_runner: BotRunner
) -> None:
    bot = await start_minibot(fake_discord, bot_runner)
    fake_discord.fail_next("channel_message_create", status=429, retry_after=0.01)
    channel = bot.get_channel(fake_discord.channel_id)
    assert isinstance(channel, discord.TextChannel)

    await channel.send("hello")

    statuses = [r.status for r in fake_discord.requests if r.route == "channel_message_create"]
    assert statuses == [429, 200]


async def test_unknown_routes_and_escaping_requests_are_recorded(
    fake_discord: FakeDiscord, bot_runner: BotRunner
) -> None:
    bot = await start_minibot(fake_discord, bot_runner)

    with pytest.raises(discord.NotFound):
        await bot.http.request(discord.http.Route("GET", "/nowhere"))
    async with aiohttp.ClientSession() as session:
        with pytest.raises(EscapedRequestError):
            await session.get("https://discord.com/api/v10/users/@me")

    assert [r.path for r in fake_discord.unknown_requests] == ["/api/v10/nowhere"]
    assert fake_discord.escaped_requests == ["GET https://discord.com/api/v10/users/@me"]
    with pytest.raises(AssertionError, match="unknown route"):
        fake_discord.check_clean()
    fake_discord.unknown_requests.clear()
    fake_discord.escaped_requests.clear()
