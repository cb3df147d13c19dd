"""/prefer, as on Midjourney: custom options (`/prefer option set mine --ar 3:2 --s 250`, then
`--mine` in a prompt), the prompt suffix, remix mode, and the personalization profile `--p`
applies. Every answer is private; everything is kept in the bot's database.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot import messages
from bot.interactions import reply_private
from bot.moderation import banned_rule
from bot.prompts import Refused, check_addition
from bot.store import Profile
from engine.intake import is_option_name

if TYPE_CHECKING:
    from bot.app import ImagineBot

MAX_OPTIONS = 20
MAX_VALUE = 500  # an option's value, the suffix and a profile's text


def _code_span(text: str) -> str:
    return f"`{text.replace('`', 'ˋ')}`"  # inside a code span only a backtick needs escaping


class PreferCog(commands.GroupCog, group_name="prefer"):
    """Your prompt preferences: custom options, suffix, remix, personalization."""

    option = app_commands.Group(
        name="option", description="Custom options: --NAME stands for parameters you often use"
    )

    def __init__(self, bot: ImagineBot) -> None:
        self.bot = bot
        super().__init__()

    @option.command(name="set", description="Create or change --NAME; leave value empty to delete")
    @app_commands.describe(
        name="The option's name: you type it as --NAME",
        value="What --NAME stands for, e.g. --ar 3:2 --s 250 (empty: delete the option)",
    )
    async def option_set(
        self,
        interaction: discord.Interaction,
        name: app_commands.Range[str, 1, 40],
        value: app_commands.Range[str, 1, MAX_VALUE] | None = None,
    ) -> None:
        user_id = str(interaction.user.id)
        store = self.bot.store
        settings = store.get_settings(user_id)
        options = dict(settings.options)
        key = name.strip().lower().removeprefix("--").removeprefix("—")
        if not value or not value.strip():
            if options.pop(key, None) is None:
                await reply_private(interaction, f"You have no option `--{key[:40]}`.")
                return
            store.save_settings(user_id, dataclasses.replace(settings, options=_pairs(options)))
            await reply_private(interaction, f"Deleted your option `--{key}`.")
            return
        if not is_option_name(key):
            await reply_private(interaction, _bad_name(key))
            return
        if key not in options and len(options) >= MAX_OPTIONS:
            await reply_private(
                interaction,
                f"You have {MAX_OPTIONS} options, the most one may have; delete one first "
                "(`/prefer option set` with its name and no value).",
            )
            return
        text = " ".join(value.split())
        try:  # one level only: an option's value may not use other custom options
            check_addition(self.bot, text, {})
        except Refused as refusal:
            await reply_private(interaction, refusal.message)
            return
        options[key] = text
        store.save_settings(user_id, dataclasses.replace(settings, options=_pairs(options)))
        await reply_private(
            interaction, f"Saved: `--{key}` now stands for {_code_span(text)} in your prompts."
        )

    @option.command(name="list", description="Your custom options")
    async def option_list(self, interaction: discord.Interaction) -> None:
        options = self.bot.store.get_settings(str(interaction.user.id)).options
        if not options:
            await reply_private(
                interaction,
                "You have no custom options. Make one with `/prefer option set`, e.g. name "
                "`wide` and value `--ar 16:9 --s 250`, then add `--wide` to a prompt.",
            )
            return
        lines = [
            f"**Your options** ({len(options)} of at most {MAX_OPTIONS})",
            *(f"• `--{name}` → {_code_span(value)}" for name, value in options),
        ]
        await reply_private(interaction, messages.fit_lines(lines))

    @app_commands.command(
        name="suffix", description="Added to the end of every prompt; leave empty to remove it"
    )
    @app_commands.describe(new_value="e.g. --ar 3:2 --s 250 (empty: no suffix)")
    async def suffix(
        self,
        interaction: discord.Interaction,
        new_value: app_commands.Range[str, 1, MAX_VALUE] | None = None,
    ) -> None:  # `new_value`: Midjourney's name for the field
        user_id = str(interaction.user.id)
        store = self.bot.store
        settings = store.get_settings(user_id)
        text = " ".join((new_value or "").split())
        if not text:
            store.save_settings(user_id, dataclasses.replace(settings, suffix=""))
            was = f" (it was {_code_span(settings.suffix)})" if settings.suffix else ""
            await reply_private(interaction, f"Your prompts have no suffix now{was}.")
            return
        try:  # a suffix that breaks every prompt is refused now, not on each /imagine
            check_addition(self.bot, text, dict(settings.options))
        except Refused as refusal:
            await reply_private(interaction, refusal.message)
            return
        store.save_settings(user_id, dataclasses.replace(settings, suffix=text))
        await reply_private(interaction, f"Your suffix is now {_code_span(text)}.")

    @app_commands.command(name="remix", description="Turn remix mode on or off")
    async def remix(self, interaction: discord.Interaction) -> None:
        user_id = str(interaction.user.id)
        settings = self.bot.store.get_settings(user_id)
        settings = dataclasses.replace(settings, remix=not settings.remix)
        self.bot.store.save_settings(user_id, settings)
        state = "on: 🔄 and the Vary buttons open the prompt to edit" if settings.remix else "off"
        await reply_private(interaction, f"Remix mode is {state}.")

    @app_commands.command(
        name="personalize", description="Your personalization profile: the style --p adds"
    )
    @app_commands.describe(
        style="Words that describe your taste, e.g. muted film colours, soft light, grain",
        remove="Delete your profile (its code stops working for everyone)",
    )
    async def personalize(
        self,
        interaction: discord.Interaction,
        style: app_commands.Range[str, 1, MAX_VALUE] | None = None,
        remove: bool = False,
    ) -> None:
        user_id = str(interaction.user.id)
        store = self.bot.store
        if remove:
            deleted = store.delete_profile(user_id)
            await reply_private(
                interaction,
                "Your personalization profile is deleted." if deleted else "You have no profile.",
            )
            return
        text = " ".join((style or "").split())
        if not text:
            await reply_private(interaction, _profile_text(store.get_profile(user_id)))
            return
        rule = banned_rule(self.bot.config.moderation, text)
        if rule is not None:
            await reply_private(interaction, messages.banned(rule))
            return
        profile = store.save_profile(user_id, text)
        await reply_private(interaction, "Saved. " + _profile_text(profile))


def _pairs(options: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(options.items()))


def _bad_name(name: str) -> str:
    return (
        f"`--{name[:40]}` cannot be a custom option: a name is 1 to 32 lowercase letters, digits, "
        "`-` or `_`, starting with a letter or digit, and not one of the bot's own parameters "
        "(like --ar or --v)."
    )


def _profile_text(profile: Profile | None) -> str:
    if profile is None:
        return (
            "You have no personalization profile. Save one with `/prefer personalize style:…` "
            "(words that describe your taste); then `--p` in a prompt adds that style."
        )
    return (
        f"Your profile: {_code_span(profile.style)}\n"
        f"Add `--p` to a prompt to use it. Its code is `{profile.code}`: anyone here can use "
        f"`--p {profile.code}`."
    )
