"""A job's Discord message, from "Waiting to start" to the finished grid, across restarts.

The Store is the queue of record. `Deliveries.launch` saves a job, hands it to the engine and
posts its message at once (the interaction never waits for the GPU); a background task then
follows the job's events, keeps the Store up to date and edits the message (bot/editing.py).

On start, `resume` hands the engine every job a previous run left queued or running (running
ones first) and follows each on its existing message with the bot's token; a job that was
running when the bot stopped twice is failed instead (no crash loop on a poison job). A finished
job whose last message was never shown (Discord down, message or channel deleted) is delivered
again, with backoff, until it is. On shutdown the engine ends unfinished jobs as `Interrupted`:
they go back to the queue, and their message says the bot is restarting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord

from bot import messages
from bot.attachments import fit_image, preview_upload
from bot.buttons import cancel_view, describe_view, grid_view, single_view
from bot.config import BotConfig, ModerationConfig
from bot.editing import (
    EDIT_INTERVAL_S,
    FINAL_RETRY_DELAYS_S,
    LatestOnly,
    MessageState,
    MessageTarget,
    WebhookMessage,
    owner_mentions,
)
from bot.interactions import (
    DEFAULT_ATTACHMENT_LIMIT,
    answer_privately,
    attachment_limit,
)
from bot.limits import Admission, admit, queue_load
from bot.moderation import banned_rule
from bot.store import JobStatus, StoredJob
from engine.jobs import (
    Cancelled,
    Done,
    Failed,
    Interrupted,
    Job,
    JobEvent,
    JobHandle,
    JobKind,
    JobResult,
    Loading,
    Progress,
    Queued,
    Started,
)
from engine.storage import InputStore

if TYPE_CHECKING:
    from bot.app import ImagineBot

logger = logging.getLogger(__name__)

__all__ = ["EDIT_INTERVAL_S", "Deliveries", "Submitted", "finished_state"]

SHUTDOWN_GRACE_S = 5.0  # deliveries get this long to show their last states when the bot stops
MAX_INTERRUPTIONS = 2  # a job cut short this often while running is failed, not run again
_TERMINAL = (Done, Failed, Cancelled)  # the events after which a job's message is its last


async def post_first(
    interaction: discord.Interaction, job: Job, content: str, view: discord.ui.View
) -> WebhookMessage:
    """The job's first message: the interaction's response, or a followup when answered."""
    mentions = owner_mentions(job)
    if not interaction.response.is_done():
        callback = await interaction.response.send_message(
            content, view=view, allowed_mentions=mentions
        )
        if isinstance(callback.resource, discord.InteractionMessage):
            return callback.resource  # Discord sends the message back: no second request
        return await interaction.original_response()
    return await interaction.followup.send(content, view=view, wait=True, allowed_mentions=mentions)


@dataclass(frozen=True)
class Submitted:
    """A job in the engine's queue whose message is not posted yet."""

    job: Job
    handle: JobHandle


class Deliveries:
    """Every job message being followed; owns their background tasks."""

    def __init__(self, bot: ImagineBot, edit_interval_s: float = EDIT_INTERVAL_S) -> None:
        self._bot = bot
        self.edit_interval_s = edit_interval_s
        self.retry_delays_s: Sequence[float] = FINAL_RETRY_DELAYS_S
        self._tasks: set[asyncio.Task[None]] = set()  # strong references until each is done
        self._closed = False
        self._admitting = asyncio.Lock()  # limits checked and jobs queued as one step

    def _inputs(self, job: Job) -> Describing | None:
        """What showing a /describe needs (the config); None for other jobs."""
        if job.kind is not JobKind.DESCRIBE:
            return None
        return describing(self._bot.config)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        if self._closed:  # an interaction that was still being answered when the bot stopped
            logger.info("not starting %s: the bot is shutting down", name)
            coro.close()
            return
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- new jobs

    async def launch(
        self, interaction: discord.Interaction, jobs: Sequence[Job], notes: Sequence[str] = ()
    ) -> None:
        """Check the queue limits, queue `jobs`, post their messages, then the "Job queued"
        note and the prompt's notes; every refusal is private."""
        admission, submitted = await self.submit(interaction, jobs)
        if not admission.allowed:
            await answer_privately(interaction, admission.message)
            return
        for each in submitted:
            await self.post(interaction, each)
        await self.tell(interaction, admission.message, notes)

    async def tell(
        self, interaction: discord.Interaction, admission: str, notes: Sequence[str]
    ) -> None:
        """After the job messages: "Job queued" and what of the prompt was mapped, rounded or
        ignored, privately, in one followup."""
        text = "\n\n".join(part for part in (admission, messages.prompt_notes(notes)) if part)
        if not text:
            return
        try:
            await interaction.followup.send(text, ephemeral=True)
        except discord.HTTPException:  # the jobs run anyway; the note is a courtesy
            logger.warning("could not send the notes of interaction %s", interaction.id)

    async def submit(
        self, interaction: discord.Interaction, jobs: Sequence[Job]
    ) -> tuple[Admission, list[Submitted]]:
        """Check the limits and queue all of `jobs`, or none: two quick presses cannot both
        pass the check before either job is queued."""
        return await self._submit(
            str(interaction.user.id), interaction.channel_id, interaction.guild_id, jobs
        )

    async def _submit(
        self, owner: str, channel_id: int | None, guild_id: int | None, jobs: Sequence[Job]
    ) -> tuple[Admission, list[Submitted]]:
        bot = self._bot
        if bot.closing:
            return Admission(False, messages.RESTARTING), []
        down = bot.engine.unavailable()
        if down is not None:  # no job is accepted into a void
            return Admission(False, down), []
        async with self._admitting:
            admission = admit(bot.config.limits, queue_load(bot.engine, owner), len(jobs))
            if not admission.allowed:
                return admission, []
            submitted: list[Submitted] = []
            for job in jobs:
                try:
                    bot.store.add_job(job, channel_id=channel_id, guild_id=guild_id)
                except sqlite3.OperationalError as error:  # "database or disk is full"
                    if "full" not in str(error):
                        raise
                    logger.error("could not save job %s: %s", job.id, error)
                    for each in submitted:  # all of them, or none
                        await bot.engine.cancel(each.job.id)
                        with contextlib.suppress(sqlite3.OperationalError):
                            bot.store.set_status(each.job.id, JobStatus.CANCELLED)
                            bot.store.set_delivered(each.job.id)
                    return Admission(False, messages.DISK_FULL), []
                submitted.append(Submitted(job, await bot.engine.submit(job)))
        return admission, submitted

    async def launch_in_channel(self, job: Job, channel_id: int, guild_id: int | None) -> Admission:
        """Queue `job` (its owner's limits apply) and post its message in `channel_id` with the
        bot's token: for a job that comes from outside an interaction (the region editor's
        page). The admission says whether it was queued, and if not why."""
        admission, submitted = await self._submit(job.owner, channel_id, guild_id, [job])
        for each in submitted:
            target = MessageTarget(
                self._bot, each.job, channel_id, None, None, DEFAULT_ATTACHMENT_LIMIT
            )
            first = messages.waiting(job, self._bot.engine.position(job.id) or 1)
            editor_state = MessageState(first, cancel_view(job.id))
            self._spawn(
                self._follow(each.job, each.handle, target, "", editor_state),
                f"deliver-{job.id}",
            )
        return admission

    async def post(self, interaction: discord.Interaction, submitted: Submitted) -> None:
        """Post a queued job's message; a background task follows the job from there. When the
        message cannot be posted and the interaction is still unanswered, the job is called off
        and the user told privately (else the interaction would fail with no word)."""
        bot = self._bot
        job, channel_id = submitted.job, interaction.channel_id
        first = messages.waiting(job, bot.engine.position(job.id) or 1)
        message: WebhookMessage | None = None
        try:
            message = await post_first(interaction, job, first, cancel_view(job.id))
        except Exception:
            if not interaction.response.is_done():
                logger.exception("job %s: could not answer with its message", job.id)
                await self._call_off(interaction, job)
                return
            logger.warning("job %s: could not post its message; will post later", job.id)
        else:
            bot.store.set_message(job.id, channel_id, message.id)
        target = MessageTarget(
            bot, job, channel_id, message, interaction.expires_at, attachment_limit(interaction)
        )
        self._spawn(self._follow(job, submitted.handle, target, first), f"deliver-{job.id}")

    async def _call_off(self, interaction: discord.Interaction, job: Job) -> None:
        await self._bot.engine.cancel(job.id)
        self._bot.store.set_status(job.id, JobStatus.FAILED, error="its message was refused")
        self._bot.store.set_delivered(job.id)  # it never had a message: the user is told here
        try:
            await interaction.response.send_message(messages.NOT_POSTED, ephemeral=True)
        except discord.HTTPException:
            logger.warning("job %s: could not tell the user either", job.id, exc_info=True)

    # --- following a job

    def _editor(self, target: MessageTarget, job: Job) -> LatestOnly:
        return LatestOnly(
            target.show,
            self.edit_interval_s,
            f"job {job.id}",
            self.retry_delays_s,
            position_every_s=lambda: target.position_every_s(self.edit_interval_s),
        )

    async def _follow(
        self,
        job: Job,
        handle: JobHandle,
        target: MessageTarget,
        shown: str,
        first: MessageState | None = None,
    ) -> None:
        """Follow `job`'s events onto its message; `first`: a state to show before any (the
        job's message when it has none yet)."""
        editor = self._editor(target, job)
        if first is not None:
            editor.put(first)
            shown = first.content
        editor_task = asyncio.create_task(editor.run(), name=f"edit-{job.id}")
        last: JobEvent | None = None
        # One ❌ view for all the job's states: in a deep queue every finished job moves every
        # waiting one, and a view built per event was a quarter of the bot's CPU in a burst.
        cancel = cancel_view(job.id)
        try:
            async for event in handle.events():
                last = event
                self._record(job, event)
                state = await self._state_for(job, event, target.size_limit, cancel)
                if state is None or (state.content == shown and state.upload is None):
                    continue  # e.g. the first Queued event, which the posted message shows
                shown = state.content
                editor.put(state)
        except Exception:
            logger.exception("lost track of job %s", job.id)
            last = Failed(job.id, messages.UNDELIVERED)
            self._record(job, last)
            editor.put(
                MessageState(
                    messages.failed(job, messages.UNDELIVERED), clear_attachments=True, final=True
                )
            )
        finally:
            editor.close()
            delivered = await editor_task
        if delivered and isinstance(last, _TERMINAL):
            self._bot.store.set_delivered(job.id)

    def _record(self, job: Job, event: JobEvent) -> None:
        store = self._bot.store
        if isinstance(event, Started):
            store.set_status(job.id, JobStatus.RUNNING)
        elif isinstance(event, Done):
            store.set_status(job.id, JobStatus.DONE, result=event.result)
        elif isinstance(event, Failed):
            store.set_status(job.id, JobStatus.FAILED, error=event.reason)
        elif isinstance(event, Cancelled):
            store.set_status(job.id, JobStatus.CANCELLED)
        elif isinstance(event, Interrupted):  # the bot is stopping: the next start runs it
            store.set_status(job.id, JobStatus.QUEUED)

    async def _state_for(
        self, job: Job, event: JobEvent, size_limit: int, cancel: discord.ui.View
    ) -> MessageState | None:
        if isinstance(event, Queued):
            return MessageState(
                messages.waiting(job, event.position), cancel, position=event.position
            )
        if isinstance(event, Loading):
            return MessageState(messages.loading(job, event.model), cancel)
        if isinstance(event, Started):
            return MessageState(messages.running(job, 0), cancel)
        if isinstance(event, Progress):
            upload = preview_upload(event.preview) if event.preview else None
            return MessageState(messages.running(job, event.percent), cancel, upload=upload)
        if isinstance(event, Done):
            return await finished_state(job, event.result, size_limit, self._inputs(job))
        if isinstance(event, Failed):
            return MessageState(
                messages.failed(job, event.reason), clear_attachments=True, final=True
            )
        if isinstance(event, Cancelled):
            return MessageState(messages.cancelled(job), clear_attachments=True, final=True)
        if isinstance(event, Interrupted):
            return MessageState(
                messages.restarting(job), cancel, clear_attachments=True, final=True
            )
        return None

    # --- after a restart

    async def resume(self) -> None:
        """Run again what the last run left unfinished, on the same messages, and deliver
        what it finished without showing. Call once, at start-up, before any new job."""
        store = self._bot.store
        resumed = 0
        for stored in store.unfinished_jobs():  # running ones first, then in queue order
            job = stored.job
            # A job the bot stopped under (killed, crashed) goes back to the queue, once.
            running = stored.status is JobStatus.RUNNING
            if running and store.interrupted(job.id) >= MAX_INTERRUPTIONS:
                logger.error(
                    "job %s was cut short %d times while running; failing it",
                    job.id,
                    MAX_INTERRUPTIONS,
                )
                store.set_status(job.id, JobStatus.FAILED, error=messages.INTERRUPTED_TWICE)
                continue  # delivered below, with the other finished ones
            handle = await self._bot.engine.submit(job)
            self._spawn(self._follow(job, handle, self._target(stored), ""), f"resume-{job.id}")
            resumed += 1
        undelivered = store.undelivered_jobs()
        for stored in undelivered:
            self._spawn(self._redeliver(stored), f"redeliver-{stored.job.id}")
        if resumed or undelivered:
            logger.info(
                "resumed %d unfinished job(s); delivering %d finished one(s) again",
                resumed,
                len(undelivered),
            )

    def _target(self, stored: StoredJob) -> MessageTarget:
        """The stored message of a job, reached with the bot's token (the interaction's token
        may have expired long ago)."""
        return MessageTarget(
            self._bot,
            stored.job,
            stored.channel_id,
            None,
            None,
            DEFAULT_ATTACHMENT_LIMIT,
            message_id=stored.message_id,
        )

    async def _redeliver(self, stored: StoredJob) -> None:
        job = stored.job
        target = self._target(stored)
        if stored.status is JobStatus.DONE and stored.result is not None:
            try:
                state = await finished_state(
                    job, stored.result, target.size_limit, self._inputs(job)
                )
            except OSError:  # its images left storage before it was shown: nothing to show
                logger.warning("job %s: its images are gone; not delivered", job.id, exc_info=True)
                self._bot.store.set_delivered(job.id)
                return
        elif stored.status is JobStatus.CANCELLED:
            state = MessageState(messages.cancelled(job), clear_attachments=True, final=True)
        else:
            reason = stored.error or messages.UNDELIVERED
            state = MessageState(messages.failed(job, reason), clear_attachments=True, final=True)
        editor = self._editor(target, job)
        editor.put(state)
        if await editor.run():
            self._bot.store.set_delivered(job.id)

    async def close(self) -> None:
        """Let deliveries finish their last edits (the engine has ended their jobs), briefly.
        What is still undelivered then is delivered at the next start."""
        self._closed = True
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=SHUTDOWN_GRACE_S)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


@dataclass(frozen=True)
class Describing:
    """What a /describe's message needs from the config: where its image is kept, and which
    captions it must not show (they break the server's moderation rules)."""

    inputs: InputStore
    moderation: ModerationConfig

    def hides(self, prompt: str) -> bool:
        return banned_rule(self.moderation, prompt) is not None


def describing(config: BotConfig) -> Describing:
    return Describing(InputStore(config.engine.inputs_dir), config.moderation)


def _nothing(prompt: str) -> bool:
    return False


async def finished_state(
    job: Job, result: JobResult, size_limit: int, describe: Describing | None = None
) -> MessageState:
    """The finished message: the grid with U/V/🔄, an upscale with the single-image tools (as on
    Midjourney, an upscale is not upscaled again), or a /describe's four prompts with 1…4, 🔄
    and Imagine all, under the image they describe (while it is kept)."""
    if job.kind is JobKind.DESCRIBE:
        digests = job.request.image_inputs
        source = describe.inputs.path(digests[0]) if describe and digests else None
        upload = None
        if source is not None and source.is_file():
            upload = await asyncio.to_thread(fit_image, source, size_limit, job.id)
        return MessageState(
            messages.described(job, result, describe.hides if describe else _nothing),
            describe_view(job.id),
            upload=upload,
            final=True,
        )
    if job.kind is JobKind.UPSCALE or result.grid is None:
        upload = await asyncio.to_thread(fit_image, result.images[0], size_limit, job.id)
        view = single_view(job.id, 1, (result.width, result.height), upscale=True)
    else:
        upload = await asyncio.to_thread(fit_image, result.grid, size_limit, job.id)
        view = grid_view(job.id)
    return MessageState(messages.finished(job, result), view, upload=upload, final=True)
