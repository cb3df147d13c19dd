"""/settings: a private panel of per-user defaults, and how those defaults shape a prompt.

The panel's controls are `DynamicItem`s like the job buttons (`mjset:<key>[:<value>]`): the panel
is the presser's own ephemeral message, so the presser is the user whose settings change, and the
controls keep working after a restart.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.interactions import GuardedItem, LoggedModal, reply_private
from bot.prompts import Refused, check_addition
from bot.store import UserSettings
from engine.config import EngineConfig
from engine.jobs import Strength
from engine.prompt.request import MAX_LORAS

if TYPE_CHECKING:
    from bot.app import ImagineBot

# Midjourney's /settings stylize presets.
STYLIZE_PRESETS: dict[str, int] = {"low": 50, "med": 100, "high": 250, "very high": 750}
MAX_SUFFIX = 500


def stylize_name(value: int) -> str:
    return next((name for name, v in STYLIZE_PRESETS.items() if v == value), str(value))


# --- the panel -------------------------------------------------------------------------------


def panel_text(settings: UserSettings, engine: EngineConfig) -> str:
    model = settings.model or f"{engine.model} (server default)"
    # Inside a code span nothing needs escaping but the backtick itself.
    suffix = f"`{settings.suffix.replace('`', 'ˋ')}`" if settings.suffix else "none"
    remix = "on" if settings.remix else "off"
    return (
        "**Your settings** (only you see this panel)\n"
        f"Model: **{model}** · Stylize: **{stylize_name(settings.stylize)}** ({settings.stylize})"
        f" · Variations: **{settings.variation.value}** · Remix: **{remix}**"
        f"\nSuffix: {suffix}"
        + (f" · LoRAs: **{', '.join(settings.loras) or 'none'}**" if engine.loras else "")
    )


def panel_view(settings: UserSettings, engine: EngineConfig) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    current_model = settings.model or engine.model
    model_options = [
        discord.SelectOption(label=name, value=name, default=name == current_model)
        for name in sorted(engine.presets)[:25]  # a select holds 25 options
    ]
    view.add_item(SettingsSelect("model", model_options, "Model", row=0))
    stylize_options = [
        discord.SelectOption(
            label=f"Stylize {name} ({value})", value=str(value), default=value == settings.stylize
        )
        for name, value in STYLIZE_PRESETS.items()
    ]
    view.add_item(SettingsSelect("stylize", stylize_options, "Stylize", row=1))

    def style(on: bool) -> discord.ButtonStyle:
        return discord.ButtonStyle.success if on else discord.ButtonStyle.secondary

    strong = settings.variation is Strength.STRONG
    view.add_item(SettingsButton("var", "strong", "Strong Variation Mode", style(strong), row=2))
    view.add_item(
        SettingsButton("var", "subtle", "Subtle Variation Mode", style(not strong), row=2)
    )
    view.add_item(SettingsButton("remix", "", "Remix mode", style(settings.remix), row=2))
    view.add_item(
        SettingsButton("suffix", "", "Prompt suffix…", discord.ButtonStyle.primary, row=3)
    )
    view.add_item(SettingsButton("reset", "", "Reset settings", discord.ButtonStyle.danger, row=3))
    if engine.loras:  # the LoRAs a prompt without --lora gets; none chosen: none
        lora_options = [
            discord.SelectOption(
                label=name,
                value=name,
                description=(lora.trigger or None) and lora.trigger[:100],
                default=name in settings.loras,
            )
            for name, lora in sorted(engine.loras.items())[:25]
        ]
        most = min(MAX_LORAS, len(lora_options))
        view.add_item(
            SettingsSelect("lora", lora_options, "LoRAs (none)", row=4, least=0, most=most)
        )
    return view


async def show_panel(interaction: discord.Interaction, settings: UserSettings) -> None:
    """Redraw the panel the interaction came from."""
    bot = cast("ImagineBot", interaction.client)
    engine = bot.config.engine
    await interaction.response.edit_message(
        content=panel_text(settings, engine), view=panel_view(settings, engine)
    )


def _owner(interaction: discord.Interaction) -> tuple[ImagineBot, str, UserSettings]:
    bot = cast("ImagineBot", interaction.client)
    user_id = str(interaction.user.id)
    return bot, user_id, bot.store.get_settings(user_id)


class SettingsSelect(
    GuardedItem,
    discord.ui.DynamicItem[discord.ui.Select[Any]],
    template=r"mjset:(?P<key>model|stylize|lora)",
):
    def __init__(
        self,
        key: str,
        options: list[discord.SelectOption] | None = None,
        placeholder: str | None = None,
        row: int | None = None,
        least: int = 1,
        most: int = 1,
    ) -> None:
        super().__init__(
            discord.ui.Select(
                custom_id=f"mjset:{key}",
                options=options or [discord.SelectOption(label=key)],
                placeholder=placeholder,
                min_values=least,
                max_values=most,
            ),
            row=row,
        )
        self.key = key

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> SettingsSelect:
        return cls(match["key"], row=item.row)

    async def run(self, interaction: discord.Interaction) -> None:
        bot, user_id, settings = _owner(interaction)
        if self.key == "lora":  # a forged name is dropped
            chosen = [str(name) for name in self.item.values if name in bot.config.engine.loras]
            settings = dataclasses.replace(settings, loras=tuple(chosen[:MAX_LORAS]))
            bot.store.save_settings(user_id, settings)
            await show_panel(interaction, settings)
            return
        value = str(self.item.values[0])
        if self.key == "model":
            bot.config.engine.preset(value)  # ConfigError (logged) if someone forged the value
            settings = dataclasses.replace(settings, model=value)
        else:
            settings = dataclasses.replace(settings, stylize=int(value))
        bot.store.save_settings(user_id, settings)
        await show_panel(interaction, settings)


class SettingsButton(
    GuardedItem,
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"mjset:(?P<key>var|remix|suffix|reset)(?::(?P<value>strong|subtle))?",
):
    def __init__(
        self,
        key: str,
        value: str,
        label: str = "",
        style: discord.ButtonStyle = discord.ButtonStyle.secondary,
        row: int | None = None,
    ) -> None:
        custom_id = f"mjset:{key}:{value}" if value else f"mjset:{key}"
        super().__init__(
            discord.ui.Button(label=label or key, style=style, custom_id=custom_id), row=row
        )
        self.key = key
        self.value = value

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> SettingsButton:
        return cls(match["key"], match["value"] or "", row=item.row)

    async def run(self, interaction: discord.Interaction) -> None:
        bot, user_id, settings = _owner(interaction)
        if self.key == "suffix":
            await interaction.response.send_modal(SuffixModal(settings.suffix))
            return
        if self.key == "var":
            settings = dataclasses.replace(settings, variation=Strength(self.value))
        elif self.key == "remix":
            settings = dataclasses.replace(settings, remix=not settings.remix)
        else:  # reset the panel's settings; custom options (/prefer option) stay
            settings = UserSettings(options=settings.options)
        bot.store.save_settings(user_id, settings)
        await show_panel(interaction, settings)


class SuffixModal(LoggedModal, title="Prompt suffix"):
    def __init__(self, current: str) -> None:
        super().__init__(timeout=600)
        self.suffix: discord.ui.TextInput[SuffixModal] = discord.ui.TextInput(
            label="Added to the end of every prompt",
            placeholder="--ar 3:2 --s 250",
            default=current,
            required=False,
            max_length=MAX_SUFFIX,
        )
        self.add_item(self.suffix)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        bot, user_id, settings = _owner(interaction)
        suffix = " ".join(self.suffix.value.split())
        try:  # a suffix that breaks every prompt is refused now, not on each /imagine
            check_addition(bot, suffix, dict(settings.options))
        except Refused as refusal:
            await reply_private(interaction, refusal.message)
            return
        settings = dataclasses.replace(settings, suffix=suffix)
        bot.store.save_settings(user_id, settings)
        await show_panel(interaction, settings)


class SettingsCog(commands.Cog):
    def __init__(self, bot: ImagineBot) -> None:
        self.bot = bot

    @app_commands.command(name="settings", description="Your defaults: model, stylize, remix…")
    async def settings(self, interaction: discord.Interaction) -> None:
        settings = self.bot.store.get_settings(str(interaction.user.id))
        engine = self.bot.config.engine
        await interaction.response.send_message(
            panel_text(settings, engine), view=panel_view(settings, engine), ephemeral=True
        )
