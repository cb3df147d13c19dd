"""/info (your jobs in the queue), /show (re-post a finished job with working buttons) and
/cancel (stop a queued or running job). Answers are private except /show's re-post."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot import messages
from bot.delivery import describing, finished_state
from bot.interactions import attachment_limit, reply_private, user_is_admin
from bot.presses import in_its_server
from bot.store import FINISHED, UNFINISHED, JobStatus

if TYPE_CHECKING:
    from bot.app import ImagineBot

_JOB_ID = re.compile(r"[0-9a-f]{32}")
RECENT_JOBS = 10  # finished jobs /info lists


class JobCommands(commands.Cog):
    def __init__(self, bot: ImagineBot) -> None:
        self.bot = bot

    @app_commands.command(name="info", description="Your running and queued jobs, and recent ones")
    async def info(self, interaction: discord.Interaction) -> None:
        engine = self.bot.engine
        owner = str(interaction.user.id)
        jobs = engine.jobs(owner)
        limits = self.bot.config.limits
        if jobs:
            lines = [
                f"**Your jobs** ({len(jobs)} of at most "
                f"{limits.max_running_per_user + limits.max_queued_per_user})",
                *(messages.job_line(job, engine.position(job.id)) for job in jobs),
            ]
        else:
            lines = ["You have no running or queued jobs."]
        # Every finished job stays reachable: a link to its message (or /show when it has none).
        recent = self.bot.store.user_jobs(owner, FINISHED, limit=RECENT_JOBS)
        if recent:
            lines += ["", "**Recent jobs**", *(messages.history_line(each) for each in recent)]
        await reply_private(interaction, messages.fit_lines(lines))

    @app_commands.command(name="show", description="Post one of your jobs again, with its buttons")
    @app_commands.describe(job_id="The job's id (32 characters; /info and the image files show it)")
    async def show(self, interaction: discord.Interaction, job_id: str) -> None:
        job_id = job_id.strip().lower()
        stored = self.bot.store.get_job(job_id) if _JOB_ID.fullmatch(job_id) else None
        mine = stored is not None and stored.job.owner == str(interaction.user.id)
        allowed = mine or user_is_admin(self.bot.config, interaction)
        if stored is None or not allowed or not in_its_server(stored, interaction):
            await reply_private(interaction, f"You have no job with the id `{job_id[:40]}`.")
            return
        if stored.status is not JobStatus.DONE or stored.result is None:
            await reply_private(
                interaction, f"That job has no images to show (it is {stored.status.value})."
            )
            return
        if not all(path.exists() for path in (stored.result.grid, *stored.result.images) if path):
            await reply_private(interaction, messages.expired(self.bot.config.engine))
            return
        await interaction.response.defer(thinking=True)
        state = await finished_state(
            stored.job,
            stored.result,
            attachment_limit(interaction),
            describing(self.bot.config),
        )
        assert state.view is not None
        # A /describe shows its prompts even once its image is gone from storage.
        file = state.upload.file() if state.upload is not None else discord.utils.MISSING
        message = await interaction.followup.send(
            state.content, file=file, view=state.view, wait=True
        )
        self.bot.store.set_message(job_id, interaction.channel_id, message.id)

    @app_commands.command(name="cancel", description="Cancel a queued or running job")
    @app_commands.describe(job_id="Which job (default: your most recent queued or running one)")
    async def cancel(self, interaction: discord.Interaction, job_id: str | None = None) -> None:
        store = self.bot.store
        if job_id is None:
            active = store.user_jobs(str(interaction.user.id), UNFINISHED, limit=1)
            if not active:
                await reply_private(interaction, "You have no queued or running job to cancel.")
                return
            stored = active[0]
        else:
            job_id = job_id.strip().lower()
            found = store.get_job(job_id) if _JOB_ID.fullmatch(job_id) else None
            if found is None:
                await reply_private(interaction, f"There is no job with the id `{job_id[:40]}`.")
                return
            stored = found
        await self.bot.presses.cancel(interaction, stored)
