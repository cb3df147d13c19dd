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
from bot.interactions import LoggedView, reply_private
from bot.limits import admit, queue_load
from bot.moderation import banned_request, banned_rule
from bot.settings import apply_stylize, job_model, with_suffix
from bot.store import UserSettings
from engine.config import EngineConfig
from engine.jobs import Job, imagine_job
from engine.prompt import MAX_PROMPT_CHARS, PromptError, parse_prompts

if TYPE_CHECKING:
    from bot.app import ImagineBot

logger = logging.getLogger(__name__)

CONFIRM_TIMEOUT_S = 180.0


def imagine_jobs(
    text: str, settings: UserSettings, engine: EngineConfig, owner: str, limit: int
) -> list[Job]:
    """One job per permutation per --repeat; PromptError for a bad prompt or too many jobs."""
    requests = parse_prompts(text, limit=limit, models=engine.presets.keys())
    jobs = [
        imagine_job(
            apply_stylize(request, text, settings),
            model=job_model(request, settings, engine),
            owner=owner,
            repeat=run,
        )
        for request in requests
        for run in range(request.repeat)
    ]
    if len(jobs) > limit:
        raise PromptError(
            f"this prompt makes {len(jobs)} jobs (permutations × --repeat); the limit is {limit}",
            title="Too many jobs",
        )
    return jobs


class ImagineCog(commands.Cog):
    def __init__(self, bot: ImagineBot) -> None:
        self.bot = bot

    @app_commands.command(name="imagine", description="Make four images from a prompt")
    @app_commands.describe(prompt="What to imagine; parameters like --ar 3:2 go at the end")
    async def imagine(
        self, interaction: discord.Interaction, prompt: app_commands.Range[str, 1, MAX_PROMPT_CHARS]
    ) -> None:
        bot = self.bot
        owner = str(interaction.user.id)
        settings = bot.store.get_settings(owner)
        text = with_suffix(prompt, settings)
        rule = banned_rule(bot.config.moderation, text)
        if rule is not None:
            await reply_private(interaction, messages.banned(rule))
            return
        try:
            jobs = imagine_jobs(
                text, settings, bot.config.engine, owner, bot.config.limits.max_jobs_per_prompt
            )
        except PromptError as error:
            await reply_private(interaction, messages.prompt_error(error))
            return
        # Each expanded prompt too: "{go}re" passes the check above as written.
        rule = next(
            (r for job in jobs if (r := banned_request(bot.config.moderation, job.request))),
            None,
        )
        if rule is not None:
            await reply_private(interaction, messages.banned(rule))
            return
        if len(jobs) == 1:
            await bot.deliveries.launch(interaction, jobs)
            return
        admission = admit(bot.config.limits, queue_load(bot.engine, owner), len(jobs))
        if not admission.allowed:  # checked again (and the jobs queued at once) on Yes
            await reply_private(interaction, admission.message)
            return
        view = ConfirmJobs(bot, interaction, jobs)
        await interaction.response.send_message(
            f"This prompt makes **{len(jobs)} jobs** (permutations × --repeat). Run them all?",
            view=view,
            ephemeral=True,
        )


class ConfirmJobs(LoggedView):
    """Yes/No before several jobs start. A plain View with a timeout, not a persistent one: the
    jobs it would start exist only in memory, so a restart rightly forgets the question."""

    def __init__(self, bot: ImagineBot, origin: discord.Interaction, jobs: list[Job]) -> None:
        super().__init__(timeout=CONFIRM_TIMEOUT_S)
        self.bot = bot
        self.origin = origin
        self.jobs = jobs
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
        if admission.message:
            await interaction.followup.send(admission.message, ephemeral=True)

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
