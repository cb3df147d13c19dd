"""/describe: an image (an attachment, or a link) becomes four prompts in Midjourney's form, with
buttons 1…4 (/imagine that prompt, through the remix box in remix mode), 🔄 (describe the image
again) and Imagine all.

The image is fetched and stored as image prompts are (bot/image_prompts.py); the job runs on the
engine's captioner (engine/describe.py) through the same queue as every job, and its message
follows it as any job's does (bot/delivery.py). The four prompts are kept with the job in the
store: the buttons need only its id, after a restart or months later.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot import messages
from bot.buttons import DESCRIBE_OPS, Op, Press
from bot.fetch import FetchError
from bot.image_prompts import kept_attachments, with_image_prompts
from bot.imagine import imagine_text
from bot.interactions import MAX_MODAL_TEXT, LoggedModal, answer_privately, reply_private
from bot.prompts import Refused, read_user_prompt
from bot.store import JobStatus, StoredJob
from engine.intake import prompt_jobs
from engine.jobs import Job, JobKind, describe_job, reroll_job
from engine.prompt import PromptError
from engine.storage import InputStore, StorageError

if TYPE_CHECKING:
    from bot.app import ImagineBot

logger = logging.getLogger(__name__)

MAX_LINK = 500  # so that the answer (its link, then four prompts) fits in one message
ONE_IMAGE = "Give /describe an image to describe, or a link to one (one of the two)."
NOT_DESCRIBED = "This job has no prompts to use."
NO_IMAGES = "This job made prompts, not images: use its buttons 1…4 to imagine them."


class DescribeCog(commands.Cog):
    def __init__(self, bot: ImagineBot) -> None:
        self.bot = bot

    @app_commands.command(name="describe", description="Four prompts that describe an image")
    @app_commands.describe(
        image="The image to describe",
        link="Or a link to the image (http or https)",
    )
    async def describe(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment | None = None,
        link: app_commands.Range[str, 1, MAX_LINK] | None = None,
    ) -> None:
        url = (link or "").strip() or None
        if (image is None) == (url is None):
            await reply_private(interaction, ONE_IMAGE)
            return
        # Fetching may take longer than Discord waits for an answer (3 s): think first, in
        # public, as the answer is (a refusal deletes it and answers privately).
        await interaction.response.defer(thinking=True)
        job = describe_job(owner=str(interaction.user.id), link=url)
        try:
            if image is not None:  # not shown in the answer, as a link would be
                digests = await kept_attachments(self.bot, [image])
                job = dataclasses.replace(
                    job, request=dataclasses.replace(job.request, image_inputs=digests)
                )
            else:
                (job,) = await with_image_prompts(self.bot, [job])
        except FetchError as error:
            await answer_privately(interaction, str(error))
            return
        except StorageError as error:
            await answer_privately(interaction, messages.DISK_FULL)
            logger.error("could not keep an image to describe: %s", error)
            return
        await self.bot.deliveries.launch(interaction, [job])


async def press_described(
    bot: ImagineBot, interaction: discord.Interaction, stored: StoredJob, press: Press
) -> None:
    """A button of a /describe (bot.presses checked the access and moderation rules)."""
    job = stored.job
    if job.kind is not JobKind.DESCRIBE:  # a forged 1…4 / Imagine all under another job
        await reply_private(interaction, NOT_DESCRIBED)
        return
    if press.op is Op.REROLL:
        await describe_again(bot, interaction, job)
        return
    if press.op not in DESCRIBE_OPS:  # U / V under a describe: a forged custom_id
        await reply_private(interaction, NO_IMAGES)
        return
    prompts = stored.result.prompts if stored.result is not None else ()
    if stored.status is not JobStatus.DONE or not prompts:
        await reply_private(
            interaction, f"This job has no prompts to use (it is {stored.status.value})."
        )
        return
    if press.op is Op.IMAGINE_ALL:
        await imagine_all(bot, interaction, prompts)
        return
    if not 0 <= press.index < len(prompts):
        await reply_private(interaction, "This job has no such prompt.")
        return
    prompt = prompts[press.index]
    if bot.store.get_settings(str(interaction.user.id)).remix:
        await interaction.response.send_modal(DescribedPromptModal(bot, prompt))
    else:
        await imagine_text(bot, interaction, prompt)


async def describe_again(bot: ImagineBot, interaction: discord.Interaction, job: Job) -> None:
    """🔄: the same stored image with new seeds, so new prompts; nothing is fetched again."""
    digests = job.request.image_inputs
    if not digests or not InputStore(bot.config.engine.inputs_dir).path(digests[0]).is_file():
        await reply_private(interaction, messages.expired(bot.config.engine))  # retention
        return
    await bot.deliveries.launch(interaction, [reroll_job(job, owner=str(interaction.user.id))])


async def imagine_all(
    bot: ImagineBot, interaction: discord.Interaction, prompts: Sequence[str]
) -> None:
    """Imagine all: one /imagine per prompt, each read as the presser's own (their suffix,
    options and model; the moderation rules), and started together or not at all."""
    owner = str(interaction.user.id)
    jobs: list[Job] = []
    notes: list[str] = []
    try:
        for prompt in prompts:
            reading = read_user_prompt(bot, owner, prompt)
            jobs += prompt_jobs(reading, owner, bot.config.limits.max_jobs_per_prompt)
            notes += reading.notes
    except Refused as refusal:
        await reply_private(interaction, refusal.message)
        return
    except PromptError as error:  # too many jobs (a suffix with --repeat)
        await reply_private(interaction, messages.prompt_error(error))
        return
    # Described prompts start with words, so none has image links to fetch.
    await bot.deliveries.launch(interaction, jobs, tuple(dict.fromkeys(notes)))


class DescribedPromptModal(LoggedModal, title="Remix prompt"):
    """Remix mode: the described prompt in a box to edit; submitted, it is an /imagine."""

    def __init__(self, bot: ImagineBot, prompt: str) -> None:
        super().__init__(timeout=900)
        self._bot = bot
        self.prompt: discord.ui.TextInput[DescribedPromptModal] = discord.ui.TextInput(
            label="New prompt",
            style=discord.TextStyle.paragraph,
            default=prompt[:MAX_MODAL_TEXT],
            max_length=MAX_MODAL_TEXT,
        )
        self.add_item(self.prompt)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await imagine_text(self._bot, interaction, self.prompt.value)
