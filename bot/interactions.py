"""Small helpers every interaction handler uses: who is asking, may they, and private replies.

Error replies never carry a traceback: the traceback goes to the log, the user gets one plain
sentence.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import discord

from bot.config import BotConfig
from bot.messages import RESTARTING, SOMETHING_WENT_WRONG
from bot.moderation import access_denied, is_admin

if TYPE_CHECKING:
    from bot.app import ImagineBot

logger = logging.getLogger(__name__)

# Discord's upload limit for servers without boosts; used when the payload does not say.
DEFAULT_ATTACHMENT_LIMIT = 10 * 1024 * 1024
MAX_MODAL_TEXT = 4000  # Discord's cap on a text input


def role_ids(user: discord.User | discord.Member) -> Sequence[int]:
    """The member's role ids as the interaction payload lists them. Not `Member.roles`: that
    looks each id up in the guild cache and drops the ones it lacks (an uncached guild)."""
    return list(user._roles) if isinstance(user, discord.Member) else ()


def rules_channel(channel: object, channel_id: int | None) -> int | None:
    """The channel the access rules look at: a thread counts as its parent channel."""
    if isinstance(channel, discord.Thread) and channel.parent_id is not None:
        return channel.parent_id
    return channel_id


def access_refusal(config: BotConfig, interaction: discord.Interaction) -> str | None:
    """Why this user may not use the bot here (plain words), or None."""
    return access_denied(
        config.permissions,
        guild_id=interaction.guild_id,
        channel_id=rules_channel(interaction.channel, interaction.channel_id),
        user_id=interaction.user.id,
        role_ids=role_ids(interaction.user),
    )


def refusal(interaction: discord.Interaction) -> str | None:
    """Why the bot will not act on this interaction (shutting down, or the access rules)."""
    bot = cast("ImagineBot", interaction.client)
    if bot.closing:
        return RESTARTING
    return access_refusal(bot.config, interaction)


async def admitted(interaction: discord.Interaction) -> bool:
    """True when the bot may act on `interaction`; else the user is told why, privately."""
    reason = refusal(interaction)
    if reason is None:
        return True
    await reply_private(interaction, reason)
    return False


def user_is_admin(config: BotConfig, interaction: discord.Interaction) -> bool:
    user = interaction.user
    return is_admin(config.permissions, user_id=user.id, role_ids=role_ids(user))


def attachment_limit(interaction: discord.Interaction | None) -> int:
    """The largest file this interaction may upload (it depends on the server's boosts)."""
    limit = getattr(interaction, "filesize_limit", None)
    return limit if isinstance(limit, int) and limit > 0 else DEFAULT_ATTACHMENT_LIMIT


async def reply_private(interaction: discord.Interaction, text: str) -> None:
    """An ephemeral answer, whether or not the interaction was answered already."""
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True)
    else:
        await interaction.response.send_message(text, ephemeral=True)


async def answer_privately(interaction: discord.Interaction, text: str) -> None:
    """The private answer of an interaction that posted nothing yet, even one deferred with a
    public "thinking…" message (which the first followup would fill in, ephemeral or not: it is
    deleted first)."""
    if interaction.response.type is discord.InteractionResponseType.deferred_channel_message:
        with contextlib.suppress(discord.HTTPException):
            await interaction.delete_original_response()
    await reply_private(interaction, text)


async def report_error(interaction: discord.Interaction, error: BaseException, where: str) -> None:
    """Log `error` with its traceback; tell the user privately that something went wrong."""
    logger.error(
        "error in %s (interaction %s by user %s)",
        where,
        interaction.id,
        interaction.user.id if interaction.user else "?",
        exc_info=error,
    )
    try:
        await answer_privately(interaction, SOMETHING_WENT_WRONG)
    except discord.HTTPException:  # e.g. the token expired: the log has it all
        logger.warning("could not tell the user about the error", exc_info=True)


class GuardedItem:
    """A mixin for the bot's `DynamicItem`s (put it first in the bases): their callback checks
    the access rules (and shutdown) first, and logs and answers any error."""

    custom_id: str

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        try:
            if await admitted(interaction):
                await self.run(interaction)
        except Exception as error:
            await report_error(interaction, error, f"{type(self).__name__} {self.custom_id}")

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        raise NotImplementedError


class LoggedView(discord.ui.View):
    """A View whose callback errors are logged and answered privately."""

    async def on_error(
        self,
        interaction: discord.Interaction,
        error: Exception,
        item: discord.ui.Item[discord.ui.View],
        /,
    ) -> None:
        await report_error(interaction, error, f"{type(self).__name__} item {item!r}")


class LoggedModal(discord.ui.Modal):
    """A Modal that checks the access rules (and shutdown) and whose submit errors are logged
    and answered privately."""

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        return await admitted(interaction)

    async def on_error(  # type: ignore[override]  # Modal.on_error takes no item
        self, interaction: discord.Interaction, error: Exception, /
    ) -> None:
        await report_error(interaction, error, f"modal {type(self).__name__}")
