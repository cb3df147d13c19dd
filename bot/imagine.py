"""/imagine: a prompt becomes one job (or several: permutations, --repeat) and a message each.

The interaction is answered at once with the "Waiting to start" message; nothing here waits for
the GPU. Every refusal (moderation, a bad parameter, a full queue) is private.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot import messages
from bot.fetch import FetchError
from bot.image_prompts import wants_images, with_image_prompts
from bot.interactions import LoggedView, answer_privately, reply_private
from bot.limits import admit, queue_load
from bot.prompts import Refused, read_user_prompt
from engine.intake import prompt_jobs
from engine.jobs import Job
from engine.prompt import MAX_PROMPT_CHARS, PromptError
from engine.storage import StorageError

if TYPE_CHECKING:
    from bot.app import ImagineBot

logger = logging.getLogger(__name__)

CONFIRM_TIMEOUT_S = 180.0


class ImagineCog(commands.Cog):
    def __init__(self, bot: ImagineBot) -> None:
        self.bot = bot

    @app_commands.command(name="imagine", description="Make four images from a prompt")
    @app_commands.describe(
        prompt="What to imagine; image links first, parameters like --ar 3:2 at the end",
        image="An image to start from (an image prompt); --iw 0-3 sets how much it counts",
    )
    async def imagine(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, MAX_PROMPT_CHARS],
        image: discord.Attachment | None = None,
    ) -> None:
        await imagine_text(self.bot, interaction, prompt, image)


async def imagine_text(
    bot: ImagineBot,
    interaction: discord.Interaction,
    prompt: str,
    image: discord.Attachment | None = None,
) -> None:
    """What /imagine does with a prompt, for every way in (the command, a /describe's 1…4
    buttons and its box): the user's preferences and the moderation rules apply, image prompts
    are fetched, several jobs ask first; the interaction is answered (or deferred) within
    Discord's 3 s."""
    owner = str(interaction.user.id)
    if image is not None:
        # Its link leads the prompt, as Midjourney shows an image prompt: the grid's prompt
        # then names it, and pasting or remixing that prompt uses the kept image again.
        prompt = f"{image.url} {prompt}"
    try:
        reading = read_user_prompt(bot, owner, prompt)
        jobs = prompt_jobs(reading, owner, bot.config.limits.max_jobs_per_prompt)
    except Refused as refusal:
        await reply_private(interaction, refusal.message)
        return
    except PromptError as error:  # too many jobs
        await reply_private(interaction, messages.prompt_error(error))
        return
    if wants_images(jobs):
        # Fetching may take longer than Discord waits for an answer (3 s): think first.
        await interaction.response.defer(thinking=True, ephemeral=len(jobs) > 1)
        try:
            jobs = await with_image_prompts(bot, jobs, [image] if image else [])
        except FetchError as error:
            await answer_privately(interaction, str(error))
            return
        except StorageError as error:
            await answer_privately(interaction, messages.DISK_FULL)
            logger.error("could not keep an image prompt: %s", error)
            return
    if len(jobs) == 1:
        await bot.deliveries.launch(interaction, jobs, reading.notes)
        return
    admission = admit(bot.config.limits, queue_load(bot.engine, owner), len(jobs))
    if not admission.allowed:  # checked again (and the jobs queued at once) on Yes
        await answer_privately(interaction, admission.message)
        return
    view = ConfirmJobs(bot, interaction, jobs, reading.notes)
    question = f"This prompt makes **{len(jobs)} jobs** (permutations × --repeat). Run them all?"
    if interaction.response.is_done():  # deferred (privately) while its images were fetched
        await interaction.followup.send(question, view=view, ephemeral=True)
    else:
        await interaction.response.send_message(question, view=view, ephemeral=True)


class ConfirmJobs(LoggedView):
    """Yes/No before several jobs start. A plain View with a timeout, not a persistent one: the
    jobs it would start exist only in memory, so a restart rightly forgets the question."""

    def __init__(
        self,
        bot: ImagineBot,
        origin: discord.Interaction,
        jobs: list[Job],
        notes: tuple[str, ...] = (),
    ) -> None:
        super().__init__(timeout=CONFIRM_TIMEOUT_S)
        self.bot = bot
        self.origin = origin
        self.jobs = jobs
        self.notes = notes
        self._answered = False  # a quick second press (Yes+Yes, Yes+No) must do nothing

    def _first_answer(self) -> bool:
        if self._answered:
            return False
        self._answered = True
        self.stop()
        return True

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return interaction.user.id == self.origin.user.id

    @discord.ui.button(label="Yes", style=discord.ButtonStyle.success)
    async def yes(
        self, interaction: discord.Interaction, _: discord.ui.Button[ConfirmJobs]
    ) -> None:
        if not self._first_answer():
            await interaction.response.defer()  # a second quick press: already answered
            return
        deliveries = self.bot.deliveries
        # The limits again: the queue may have filled while the user was deciding.
        admission, submitted = await deliveries.submit(interaction, self.jobs)
        if not admission.allowed:
            await interaction.response.edit_message(content=admission.message, view=None)
            return
        try:
            await interaction.response.edit_message(
                content=f"Starting {len(self.jobs)} jobs.", view=None
            )
        except Exception:  # the jobs are queued: their messages must still be posted
            logger.warning("could not update the confirmation of %s", interaction.id, exc_info=True)
        for each in submitted:
            await deliveries.post(interaction, each)
        await deliveries.tell(interaction, admission.message, self.notes)

    @discord.ui.button(label="No", style=discord.ButtonStyle.secondary)
    async def no(self, interaction: discord.Interaction, _: discord.ui.Button[ConfirmJobs]) -> None:
        if not self._first_answer():
            await interaction.response.defer()
            return
        await interaction.response.edit_message(content="No jobs were started.", view=None)

    async def on_timeout(self) -> None:
        try:
            await self.origin.edit_original_response(
                content="No answer in time; no jobs were started.", view=None
            )
        except discord.HTTPException:
            logger.info(
                "could not mark the confirmation of interaction %s as timed out", self.origin.id
            )
