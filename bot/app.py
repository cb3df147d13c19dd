"""The Discord bot: start-up, shutdown and the error paths, shaped like discord.py's
examples/advanced_startup.py.

    run_bot(config)  →  asyncio.run(main())  →  async with ImagineBot(config) as bot: bot.start()

`setup_hook` opens the Store, starts the engine, adds the cogs, registers the persistent buttons
and syncs the slash commands; it never waits for the gateway (that would deadlock).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.blend import BlendCog
from bot.buttons import JobButton
from bot.commands import JobCommands
from bot.config import BotConfig, ConfigError, require_token
from bot.delivery import Deliveries
from bot.describe import DescribeCog
from bot.editing import EDIT_INTERVAL_S
from bot.help import HelpCog
from bot.imagine import ImagineCog
from bot.interactions import refusal, reply_private, report_error
from bot.prefer import PreferCog
from bot.presses import Presses
from bot.reactions import ReactionsCog
from bot.region import RegionSubmissions
from bot.region_tokens import load_secret
from bot.retention import keep_pruning
from bot.settings import SettingsButton, SettingsCog, SettingsSelect
from bot.store import Store
from bot.web import RegionEditor
from engine.client import EngineClient
from engine.jobs import Engine
from engine.storage import StorageError, check_storage

logger = logging.getLogger(__name__)


class GuardedTree(app_commands.CommandTree["ImagineBot"]):
    """Every slash command passes the permission rules first (and none runs while the bot shuts
    down); every error is logged."""

    async def interaction_check(self, interaction: discord.Interaction[ImagineBot]) -> bool:
        reason = refusal(interaction)
        if reason is not None:
            await reply_private(interaction, reason)
            return False
        return True

    async def on_error(
        self, interaction: discord.Interaction[ImagineBot], error: app_commands.AppCommandError
    ) -> None:
        original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        command = interaction.command.qualified_name if interaction.command else "?"
        await report_error(interaction, original, f"/{command}")


class ImagineBot(commands.Bot):
    store: Store
    engine: Engine
    deliveries: Deliveries
    presses: Presses

    def __init__(
        self,
        config: BotConfig,
        *,
        engine: Engine | None = None,
        edit_interval_s: float = EDIT_INTERVAL_S,
        **options: Any,
    ) -> None:
        """`engine`: an already running Engine to use (and leave running); by default the bot
        starts its own EngineClient and stops it on close."""
        intents = discord.Intents.default()  # slash commands need no message content
        super().__init__(
            command_prefix=commands.when_mentioned,
            help_command=None,  # a prefix command; this bot has slash commands only
            intents=intents,
            tree_cls=GuardedTree,
            allowed_mentions=discord.AllowedMentions(everyone=False, roles=False, users=True),
            **options,
        )
        self.config = config
        self._given_engine = engine
        self._owned_engine: EngineClient | None = None
        self._edit_interval_s = edit_interval_s
        self._retention: asyncio.Task[None] | None = None
        self.closing = False  # set first on close: new work is refused from then on
        self.web: RegionEditor | None = None  # the Vary (Region) editor, when [web] has a URL

    async def setup_hook(self) -> None:
        self.store = Store(self.config.database)
        if self._given_engine is not None:
            self.engine = self._given_engine
        else:
            self._owned_engine = EngineClient(self.config.engine)
            await self._owned_engine.start()
            self.engine = self._owned_engine
        self.deliveries = Deliveries(self, self._edit_interval_s)
        self.presses = Presses(self)
        await self.deliveries.resume()  # what the last run left: before any new job
        cogs = (
            ImagineCog,
            BlendCog,
            DescribeCog,
            SettingsCog,
            PreferCog,
            JobCommands,
            ReactionsCog,
            HelpCog,
        )
        for cog in cogs:
            await self.add_cog(cog(self))
        self.add_dynamic_items(JobButton, SettingsSelect, SettingsButton)
        await self._start_web()
        engine = self.config.engine
        if engine.keep_days or engine.max_gb:
            self._retention = asyncio.create_task(keep_pruning(self), name="retention")
        await self.sync_commands()

    async def _start_web(self) -> None:
        """The browser editor of Vary (Region), when `[web] public_url` is set."""
        web = self.config.web
        if not web.enabled:
            return
        submissions = RegionSubmissions(self)
        editor = RegionEditor(
            web,
            self.store,
            secret=load_secret(web.secret, self.config.engine.storage),
            image_for=submissions.image_for,
            prompt_for=submissions.prompt_for,
            submit=submissions.submit,
        )
        try:
            await editor.start()
        except OSError:  # e.g. the port is taken: Vary (Region) falls back to the cells
            logger.exception("the Vary (Region) editor cannot listen on %s:%s", web.host, web.port)
            return
        self.web = editor

    async def sync_commands(self) -> None:
        """To each configured guild (instant); globally when none is configured (slow to show,
        and Discord caps command creations per day)."""
        guild_ids = self.config.discord.guild_ids
        if not guild_ids:
            synced = await self.tree.sync()
            logger.info("synced %d global command(s)", len(synced))
            return
        for guild_id in guild_ids:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            logger.info("synced %d command(s) to guild %s", len(synced), guild_id)

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        logger.exception("error in event %s", event_method)

    async def close(self) -> None:
        """Refuse new work; let the running job finish within `[engine] shutdown_grace`; stop
        the engine (the rest stays queued in the Store for the next start, and their messages
        say the bot is restarting); let the deliveries finish their last edits; disconnect and
        close the Store."""
        if self.closing:
            return
        self.closing = True
        if self._retention is not None:
            self._retention.cancel()
        try:
            if self.web is not None:  # no new region jobs; a request still running may end
                await self.web.close()
            if self._owned_engine is not None:
                await self._owned_engine.close(self.config.engine.shutdown_grace_s)
            if hasattr(self, "deliveries"):
                await self.deliveries.close()
        finally:
            await super().close()
            if hasattr(self, "store"):
                self.store.close()


async def main(config: BotConfig, token: str) -> None:
    async with ImagineBot(config) as bot:
        # Docker stops a container with SIGTERM, which a process 1 ignores unless it says
        # otherwise; Ctrl-C is SIGINT. Both close the bot the same way: the running job may
        # finish, the rest stays queued for the next start, the Store is closed, exit 0.
        loop = asyncio.get_running_loop()
        closing: set[asyncio.Task[None]] = set()

        def on_signal(name: str) -> None:
            logger.info("%s: shutting down", name)
            task = loop.create_task(bot.close())
            closing.add(task)
            task.add_done_callback(closing.discard)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig.name)
        try:
            await bot.start(token)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await asyncio.gather(*closing)  # the Store is closed at its end


def run_bot(config: BotConfig) -> int:
    """`imagine-bot run`: the process's exit status."""
    try:
        token = require_token(config)
        check_storage(config.engine.storage)
    except (ConfigError, StorageError) as error:
        logger.error("%s", error.strerror if isinstance(error, StorageError) else error)
        return 2
    try:
        asyncio.run(main(config, token))
    except discord.LoginFailure:
        logger.error("Discord refused the token; check DISCORD_TOKEN or [discord].token")
        return 1
    except KeyboardInterrupt:
        logger.info("stopped")
    return 0
