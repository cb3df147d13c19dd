"""What the job buttons do when pressed (bot/buttons.py says how they look).

Anyone who may use the bot in the channel may press a job's buttons and the new job is theirs,
as on Midjourney; `permissions.buttons_owner_only` keeps them to the job's owner. ❌ is always
the owner's (or an admin's).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import discord
from PIL import Image

from bot import messages
from bot.attachments import fit_image
from bot.buttons import DESCRIBE_OPS, TOOL_OPS, Op, Press, single_view
from bot.describe import press_described
from bot.fetch import FetchError
from bot.image_prompts import same_images, with_image_prompts
from bot.interactions import (
    MAX_MODAL_TEXT,
    LoggedModal,
    answer_privately,
    attachment_limit,
    reply_private,
    user_is_admin,
)
from bot.moderation import banned_request
from bot.prompts import Refused, read_user_prompt
from bot.store import JobStatus, StoredJob
from bot.tools import press_tool
from engine.intake import Prompt
from engine.jobs import Job, JobKind, Strength, reroll_job, upscale_job, vary_job

if TYPE_CHECKING:
    from bot.app import ImagineBot

MAX_UPSCALE_SOURCE = 4096  # an image this wide or tall is not upscaled again (2× would be huge)
FULL_SIZE = "This image is already at full size."
OTHER_SERVER = "That job belongs to another server."
TOO_LONG_TO_REMIX = "This prompt is too long to edit in Discord's box; run /imagine with the edit."
_VARY_STRENGTH = {Op.VARY_SUBTLE: Strength.SUBTLE, Op.VARY_STRONG: Strength.STRONG}
_UPSCALE_STRENGTH = {Op.UPSCALE_SUBTLE: Strength.SUBTLE, Op.UPSCALE_CREATIVE: Strength.CREATIVE}


class Presses:
    def __init__(self, bot: ImagineBot) -> None:
        self.bot = bot

    async def handle(self, interaction: discord.Interaction, press: Press) -> None:
        """A job button's press (the access rules were checked by the button)."""
        stored = self.bot.store.get_job(press.job_id)
        if stored is None:
            await reply_private(interaction, "This job is not in the bot's records any more.")
            return
        if not in_its_server(stored, interaction):  # a forged press, or a copied custom_id
            await reply_private(interaction, OTHER_SERVER)
            return
        if press.op is Op.CANCEL:
            await self.cancel(interaction, stored)
            return
        if not self._may_press(interaction, stored):
            await reply_private(
                interaction,
                f"Only {messages.mention(stored.job.owner)}, who made this job, may use its "
                "buttons.",
            )
            return
        # The rules in force now, not when the job was made: an old grid cannot be re-rolled
        # (or posted again) past a word banned since.
        rule = banned_request(self.bot.config.moderation, stored.job.request)
        if rule is not None:
            await reply_private(interaction, messages.banned(rule))
            return
        await self._run(interaction, stored, press)

    def _may_press(self, interaction: discord.Interaction, stored: StoredJob) -> bool:
        return (
            not self.bot.config.permissions.buttons_owner_only
            or stored.job.owner == str(interaction.user.id)
            or user_is_admin(self.bot.config, interaction)
        )

    async def _run(self, interaction: discord.Interaction, stored: StoredJob, press: Press) -> None:
        presser = str(interaction.user.id)
        job = stored.job
        if job.kind is JobKind.DESCRIBE or press.op in DESCRIBE_OPS:  # 1…4, 🔄, Imagine all
            await press_described(self.bot, interaction, stored, press)
            return
        if press.op is Op.REROLL:
            await self.maybe_remix(interaction, job, lambda prompt: _reroll(job, presser, prompt))
            return
        if not await self._image_available(interaction, stored, press.index):
            return
        if press.op in TOOL_OPS:
            await press_tool(self, interaction, stored, press)
        elif press.op is Op.PICK:
            await self.pick(interaction, stored, press.index)
        elif press.op in _UPSCALE_STRENGTH:
            assert stored.result is not None
            if max(await _image_size(stored.result.images[press.index])) >= MAX_UPSCALE_SOURCE:
                await reply_private(interaction, FULL_SIZE)
                return
            strength = _UPSCALE_STRENGTH[press.op]
            await self.start(interaction, upscale_job(job, press.index, strength, owner=presser))
        else:  # V1…V4 follow the presser's /settings; 🪄 Vary says which
            variation = (
                _VARY_STRENGTH.get(press.op) or self.bot.store.get_settings(presser).variation
            )
            await self.maybe_remix(
                interaction,
                job,
                lambda prompt: vary_job(
                    job,
                    press.index,
                    variation,
                    owner=presser,
                    request=None if prompt is None else prompt.request,
                ),
            )

    async def _image_available(
        self, interaction: discord.Interaction, stored: StoredJob, index: int
    ) -> bool:
        result = stored.result
        if stored.status is not JobStatus.DONE or result is None:
            await reply_private(
                interaction, f"This job has no images to use (it is {stored.status.value})."
            )
            return False
        if not 0 <= index < len(result.images):
            await reply_private(interaction, "This job has no such image.")
            return False
        if not result.images[index].exists():
            await reply_private(interaction, messages.expired(self.bot.config.engine))
            return False
        return True

    async def pick(self, interaction: discord.Interaction, stored: StoredJob, index: int) -> None:
        """U1…U4: the image on its own at full size; no GPU work, it is in storage."""
        assert stored.result is not None
        number = index + 1
        await interaction.response.defer(thinking=True)
        upload = await asyncio.to_thread(
            fit_image,
            stored.result.images[index],
            attachment_limit(interaction),
            f"{stored.job.id}_{number}",
        )
        await interaction.followup.send(
            messages.single_image(stored.job, number, interaction.user.id, stored.result),
            file=upload.file(),
            view=single_view(stored.job.id, number, (stored.result.width, stored.result.height)),
            allowed_mentions=discord.AllowedMentions(
                everyone=False, roles=False, users=[interaction.user]
            ),
        )

    async def maybe_remix(
        self,
        interaction: discord.Interaction,
        job: Job,
        make: Callable[[Prompt | None], Job],
    ) -> None:
        """In remix mode the presser edits the prompt first; else the job starts at once."""
        if self.bot.store.get_settings(str(interaction.user.id)).remix:
            if len(job.request.raw or job.request.prompt) > MAX_MODAL_TEXT:
                # The box would cut it, and the parameters at its end with it.
                await reply_private(interaction, TOO_LONG_TO_REMIX)
                return
            await interaction.response.send_modal(RemixModal(self, job, make))
        else:
            await self.start(interaction, make(None))

    async def start(
        self, interaction: discord.Interaction, job: Job, notes: tuple[str, ...] = ()
    ) -> None:
        await self.bot.deliveries.launch(interaction, [job], notes)

    async def cancel(self, interaction: discord.Interaction, stored: StoredJob) -> None:
        """❌ and /cancel: the job's owner or an admin (of the job's server) may cancel it."""
        if not in_its_server(stored, interaction):
            await reply_private(interaction, OTHER_SERVER)
            return
        is_owner = stored.job.owner == str(interaction.user.id)
        if not is_owner and not user_is_admin(self.bot.config, interaction):
            await reply_private(interaction, "Only the job's owner or an admin may cancel it.")
            return
        if await self.bot.engine.cancel(stored.job.id):
            await reply_private(interaction, f"Cancelling job `{stored.job.id}`.")
        else:
            await reply_private(interaction, "That job is not queued or running any more.")


def in_its_server(stored: StoredJob, interaction: discord.Interaction) -> bool:
    """Jobs belong to the server they were made in: nobody acts on them from another one, so an
    admin role of one server counts there only. (Jobs stored before servers were recorded, and
    direct-message jobs, have none.)"""
    return stored.guild_id is None or stored.guild_id == interaction.guild_id


async def _image_size(path: Path) -> tuple[int, int]:
    def read() -> tuple[int, int]:
        with Image.open(path) as image:  # reads the header only
            return image.size

    return await asyncio.to_thread(read)


def _reroll(job: Job, owner: str, prompt: Prompt | None) -> Job:
    """🔄: new seeds; a remixed imagine prompt may also change the model (--v)."""
    if prompt is None:
        return reroll_job(job, owner=owner)
    new = reroll_job(job, owner=owner, request=prompt.request)
    return dataclasses.replace(new, model=prompt.model) if job.kind is JobKind.IMAGINE else new


class RemixModal(LoggedModal):
    """The prompt box of remix mode (and of Custom Zoom): `make` turns the edited prompt into
    the job, or raises Refused with the private answer."""

    def __init__(
        self,
        presses: Presses,
        job: Job,
        make: Callable[[Prompt | None], Job],
        *,
        title: str = "Remix prompt",
        default: str | None = None,
        zoom: bool = False,
    ) -> None:
        super().__init__(title=title, timeout=900)
        self._presses = presses
        self._job = job
        self._make = make
        self._zoom = zoom
        self.prompt: discord.ui.TextInput[RemixModal] = discord.ui.TextInput(
            label="New prompt",
            style=discord.TextStyle.paragraph,
            # ≤ MAX_MODAL_TEXT: checked before
            default=default if default is not None else job.request.raw or job.request.prompt,
            max_length=MAX_MODAL_TEXT,
        )
        self.add_item(self.prompt)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        user_id = str(interaction.user.id)
        bot = self._presses.bot
        try:  # the presser's options, stylize and profile apply, as for /imagine
            reading = read_user_prompt(
                bot, user_id, self.prompt.value, remix_of=self._job, zoom=self._zoom
            )
            (prompt,) = reading.prompts
            request = same_images(prompt.request, self._job.request)
            made = self._make(
                prompt if request is None else dataclasses.replace(prompt, request=request)
            )
        except Refused as refusal:
            await reply_private(interaction, refusal.message)
            return
        if request is not None:  # the same images: no fetch again
            job = made
        else:  # new image links: fetched as for /imagine
            await interaction.response.defer(thinking=True)
            try:
                (job,) = await with_image_prompts(bot, [made])
            except FetchError as error:
                await answer_privately(interaction, str(error))
                return
        await self._presses.start(interaction, job, reading.notes)
