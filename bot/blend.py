"""/blend: two to five attached images mixed into a new grid (all of them image prompts with
equal weights, no text), in one of three shapes. The grid has the usual U / V / 🔄 buttons."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot import messages
from bot.fetch import FetchError
from bot.image_prompts import with_image_prompts
from bot.interactions import answer_privately, reply_private
from bot.prompts import preferences
from engine.intake import prompt_jobs, read_blend
from engine.prompt import PromptError
from engine.storage import StorageError

if TYPE_CHECKING:
    from bot.app import ImagineBot

logger = logging.getLogger(__name__)

# Midjourney's three shapes for /blend; Square when none is chosen.
DIMENSIONS = {"Portrait": (2, 3), "Square": (1, 1), "Landscape": (3, 2)}


class BlendCog(commands.Cog):
    def __init__(self, bot: ImagineBot) -> None:
        self.bot = bot

    @app_commands.command(name="blend", description="Blend 2 to 5 images into four new ones")
    @app_commands.describe(
        image1="The first image",
        image2="The second image",
        image3="A third image (optional)",
        image4="A fourth image (optional)",
        image5="A fifth image (optional)",
        dimensions="The shape: Portrait (2:3), Square (1:1, the default) or Landscape (3:2)",
    )
    @app_commands.choices(
        dimensions=[app_commands.Choice(name=name, value=name) for name in DIMENSIONS]
    )
    async def blend(
        self,
        interaction: discord.Interaction,
        image1: discord.Attachment,
        image2: discord.Attachment,
        image3: discord.Attachment | None = None,
        image4: discord.Attachment | None = None,
        image5: discord.Attachment | None = None,
        dimensions: app_commands.Choice[str] | None = None,
    ) -> None:
        bot = self.bot
        owner = str(interaction.user.id)
        images = [i for i in (image1, image2, image3, image4, image5) if i is not None]
        aspect = DIMENSIONS[dimensions.value if dimensions else "Square"]
        links = [image.url for image in images]
        try:  # a file name the parser cannot read as a link (Discord's are tame)
            reading = read_blend(links, aspect, bot.config.engine, preferences(bot.store, owner))
        except PromptError as error:
            await reply_private(interaction, messages.prompt_error(error))
            return
        # Reading the images may take longer than Discord waits for an answer (3 s).
        await interaction.response.defer(thinking=True)
        try:
            jobs = await with_image_prompts(bot, prompt_jobs(reading, owner, 1), images)
        except FetchError as error:
            await answer_privately(interaction, str(error))
            return
        except StorageError as error:
            await answer_privately(interaction, messages.DISK_FULL)
            logger.error("could not keep a /blend image: %s", error)
            return
        await bot.deliveries.launch(interaction, jobs, reading.notes)
