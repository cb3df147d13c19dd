"""Midjourney's two reactions on the bot's job messages. Discord sends a reaction to the bot as a
gateway event, not an interaction: there is nobody to answer in the channel, so each one acts
or is ignored, and the log says which.

- ✉️ sends the job to the reacting user's direct messages: the grid (or, on a U post, that one
  image), its prompt, seeds, model, steps, size and job id, and a link back to the message.
  Anyone who may use the bot in the channel may: the images are public there already.
- ❌ on your own job (an admin: on anyone's): cancels it while it is queued or running, as the ❌
  button does; once it is finished, deletes its message. The job and its images stay: /info and
  /show still have them. On a U post, the one it was posted for may delete it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot import messages
from bot.attachments import Upload, fit_image
from bot.buttons import presses_in
from bot.delivery import describing, finished_state
from bot.interactions import DEFAULT_ATTACHMENT_LIMIT, role_ids, rules_channel
from bot.moderation import access_denied, banned_request, is_admin
from bot.store import UNFINISHED, JobStatus, StoredJob

if TYPE_CHECKING:
    from bot.app import ImagineBot

logger = logging.getLogger(__name__)

ENVELOPE = frozenset({"\u2709\ufe0f", "\u2709"})  # ✉️, with or without the emoji presentation
CROSS = "\u274c"  # ❌
# ✉️ taken off and put back sends the same DM (up to a 10 MB upload) again: once per user and
# message in this long is enough
ENVELOPE_AGAIN_S = 60.0


@dataclass(frozen=True)
class Reacted:
    """The job a reaction is on, and which of the bot's messages about it."""

    stored: StoredJob
    number: int  # on a U post, the image it shows (1-4); 0 on a message about the whole job
    posted_for: int | None  # who the message was posted for (U, /show), when not the job's own
    recorded: bool  # the job's own message (the store's): its progress, then its result


class ReactionsCog(commands.Cog):
    def __init__(self, bot: ImagineBot) -> None:
        self.bot = bot
        self._sent: dict[tuple[int, int], float] = {}  # (user, message) → when ✉️ last sent it

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, event: discord.RawReactionActionEvent) -> None:
        name = event.emoji.name if event.emoji.is_unicode_emoji() else None
        me = self.bot.user
        if (name not in ENVELOPE and name != CROSS) or me is None or event.user_id == me.id:
            return
        if event.message_author_id not in (None, me.id) or self.bot.closing:
            return
        try:
            await self._handle(event, envelope=name in ENVELOPE)
        except Exception:  # nobody to tell: the log has it
            logger.exception("reaction %s on message %s failed", name, event.message_id)

    async def _handle(self, event: discord.RawReactionActionEvent, *, envelope: bool) -> None:
        roles = role_ids(event.member) if event.member is not None else ()
        refused = access_denied(
            self.bot.config.permissions,
            guild_id=event.guild_id,
            channel_id=rules_channel(self.bot.get_channel(event.channel_id), event.channel_id),
            user_id=event.user_id,
            role_ids=roles,
        )
        if refused is not None:
            logger.info("reaction by %s ignored: %s", event.user_id, refused)
            return
        reacted = await self._reacted(event)
        if reacted is None or reacted.stored.guild_id not in (None, event.guild_id):
            return
        if envelope:
            rule = banned_request(self.bot.config.moderation, reacted.stored.job.request)
            if rule is not None:  # as for buttons and /show: the rules in force now
                logger.info(
                    "✉️ by %s ignored: job %s breaks %s", event.user_id, reacted.stored.job.id, rule
                )
                return
            if self._sent_lately(event.user_id, event.message_id):
                logger.info("✉️ by %s on %s ignored: sent already", event.user_id, event.message_id)
                return
            await self._send_to_dms(event.user_id, reacted)
            return
        admin = is_admin(self.bot.config.permissions, user_id=event.user_id, role_ids=roles)
        mine = str(event.user_id) == reacted.stored.job.owner or event.user_id == reacted.posted_for
        if not mine and not admin:
            logger.info("❌ by %s ignored: not their job %s", event.user_id, reacted.stored.job.id)
            return
        await self._cross(event, reacted)

    def _sent_lately(self, user_id: int, message_id: int) -> bool:
        """Whether ✉️ sent this message to this user within ENVELOPE_AGAIN_S; marks it sent."""
        now = time.monotonic()
        self._sent = {k: t for k, t in self._sent.items() if now - t < ENVELOPE_AGAIN_S}
        if (user_id, message_id) in self._sent:
            return True
        self._sent[(user_id, message_id)] = now
        return False

    async def _reacted(self, event: discord.RawReactionActionEvent) -> Reacted | None:
        """A job's own message is in the store; a U post or a /show is not: its buttons say which
        job (all of a U post's buttons are about its one image)."""
        stored = self.bot.store.job_for_message(event.message_id)
        if stored is not None:
            return Reacted(stored, 0, None, recorded=True)
        channel = self.bot.get_partial_messageable(event.channel_id, guild_id=event.guild_id)
        try:
            message = await channel.fetch_message(event.message_id)
        except discord.NotFound:
            return None
        presses = presses_in(message.components)
        if self.bot.user is None or message.author.id != self.bot.user.id or not presses:
            return None
        stored = self.bot.store.get_job(presses[0].job_id)
        if stored is None:
            return None
        numbers = {p.number for p in presses}
        number = numbers.pop() if len(numbers) == 1 else 0
        metadata = message.interaction_metadata
        return Reacted(stored, number, metadata.user.id if metadata else None, recorded=False)

    async def _send_to_dms(self, user_id: int, reacted: Reacted) -> None:
        content, upload = await self._dm_message(reacted)
        dm = await self.bot.create_dm(discord.Object(user_id))
        files = [upload.file()] if upload is not None else []
        try:
            await dm.send(content, files=files, allowed_mentions=discord.AllowedMentions.none())
        except discord.Forbidden:  # their DMs are closed to the bot (50007)
            logger.info("✉️ by %s: their direct messages are closed", user_id)
            return
        logger.info("✉️ job %s sent to %s", reacted.stored.job.id, user_id)

    async def _dm_message(self, reacted: Reacted) -> tuple[str, Upload | None]:
        stored, number = reacted.stored, reacted.number
        job, result = stored.job, stored.result
        if result is None or stored.status is not JobStatus.DONE:
            state = {
                JobStatus.FAILED: f"failed: {stored.error or 'no reason recorded'}",
                JobStatus.CANCELLED: "cancelled",
            }.get(stored.status, f"{stored.status.value}; ✉️ it again once it has finished")
            details = messages.job_details(stored, 0)
            return messages.fit_lines([messages.headline(job), f"{details} ({state})"]), None
        if number:
            if not result.images[number - 1].exists():
                return self._expired(reacted), None
            poster = reacted.posted_for or int(job.owner)
            content = messages.single_image(job, number, poster, result)
            path, stem = result.images[number - 1], f"{job.id}_{number}"
            upload: Upload | None = await asyncio.to_thread(
                fit_image, path, DEFAULT_ATTACHMENT_LIMIT, stem
            )
        else:
            if not all(p.exists() for p in (result.grid, *result.images) if p is not None):
                return self._expired(reacted), None
            shown = await finished_state(
                job, result, DEFAULT_ATTACHMENT_LIMIT, describing(self.bot.config)
            )
            content, upload = shown.content, shown.upload
        return messages.fit_lines([content, messages.job_details(stored, number)]), upload

    def _expired(self, reacted: Reacted) -> str:
        job = reacted.stored.job
        details = messages.job_details(reacted.stored, reacted.number)
        return messages.fit_lines(
            [messages.headline(job), details, messages.expired(self.bot.config.engine)]
        )

    async def _cross(self, event: discord.RawReactionActionEvent, reacted: Reacted) -> None:
        stored = reacted.stored
        if reacted.recorded and stored.status in UNFINISHED:
            cancelled = await self.bot.engine.cancel(stored.job.id)
            logger.info("❌ by %s: job %s cancelled: %s", event.user_id, stored.job.id, cancelled)
            return
        if reacted.recorded and not stored.delivered:
            return  # its last message is still on its way: deleting now would race the edit
        message = self.bot.get_partial_messageable(event.channel_id).get_partial_message(
            event.message_id
        )
        with contextlib.suppress(discord.NotFound):  # deleted already
            await message.delete()
        if reacted.recorded:
            self.bot.store.forget_message(stored.job.id)
        logger.info(
            "❌ by %s: message %s of job %s deleted", event.user_id, message.id, stored.job.id
        )
