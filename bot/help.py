"""/help: a private overview of what this bot does here: the commands, the parameters people reach
for first, and this server's own choices (its models, what Midjourney versions run on, its LoRAs),
which no other page can tell them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.interactions import reply_private
from bot.messages import fit_lines
from engine.config import FAMILY_NAMES, EngineConfig

if TYPE_CHECKING:
    from bot.app import ImagineBot

COMMANDS = (
    "**Commands**",
    "`/imagine` a prompt → four images · `/blend` 2–5 images · `/describe` an image → prompts",
    "`/settings` your model, stylize, variations, remix, suffix · `/prefer` options and profile",
    "`/info` your jobs · `/show` one again · `/cancel` a job",
    "",
    "**Prompts** (as on Midjourney)",
    "`<image links> text --ar 16:9 --seed 7 --no people --chaos 20 --s 250 --q 2 --tile`",
    "`{red, blue} car` makes one job each · `cat::2 dog` weighs parts · "
    "`--sref <link>` style · `--oref <link>` object",
    "Here too: `--steps`, `--cfg`, `--sampler`, `--lora`",
    "",
    "**Buttons** U1–U4 one image · V1–V4 variations · 🔄 again · under an image: Vary, "
    "Upscale, Zoom Out, ⬅️➡️⬆️⬇️ Pan, Make Square, Vary (Region)",
    "**Reactions** ✉️ the job to your DMs · ❌ cancel or delete your job",
)


def help_text(config: EngineConfig) -> str:
    """The /help answer for a server with `config`."""
    lines = [*COMMANDS, "", "**On this server**"]
    models = ", ".join(
        f"`{name}`" + (" (default)" if name == config.model else "")
        for name in sorted(config.presets)
    )
    lines.append(f"Models (`--v NAME`): {models}")
    if config.versions:
        mapped = ", ".join(f"`--v {v}` → `{name}`" for v, name in sorted(config.versions.items()))
        lines.append(f"Midjourney versions: {mapped}; others run on your /settings model")
    else:
        lines.append("Midjourney versions (`--v 7`…) run on your /settings model")
    lines[-1] += ", else the default"
    if config.loras:
        loras = ", ".join(
            f"`{lora.name}`"
            + (f" ({FAMILY_NAMES[lora.family]})" if lora.family else "")
            + (f": {lora.trigger}" if lora.trigger else "")
            for lora in sorted(config.loras.values(), key=lambda lora: lora.name)
        )
        lines.append(f"LoRAs (`--lora NAME[:WEIGHT]`): {loras}")
    return fit_lines(lines)


class HelpCog(commands.Cog):
    def __init__(self, bot: ImagineBot) -> None:
        self.bot = bot

    @app_commands.command(name="help", description="What this bot does, and this server's models")
    async def help(self, interaction: discord.Interaction) -> None:
        await reply_private(interaction, help_text(self.bot.config.engine))
