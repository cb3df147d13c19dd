"""A job's Discord message, from "Waiting to start" to the finished grid.

`Deliveries.launch` saves a job, hands it to the engine and posts its message at once (the
interaction never waits for the GPU); a background task then follows the job's events, keeps the
Store up to date and edits the message: throttled, always the latest state, never a backlog.

Edits go through the interaction's webhook while its token lives (15 minutes) and through the
channel with the bot's own token after that, or whenever the webhook refuses (401/404).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import discord

from bot import messages
from bot.attachments import Upload, fit_image, preview_upload
from bot.buttons import cancel_view, grid_view, upscaled_view
from bot.interactions import attachment_limit, reply_private
from bot.limits import Admission, admit, queue_load
from bot.store import JobStatus, StoredJob
from engine.jobs import (
    Cancelled,
    Done,
    Failed,
    Job,
    JobEvent,
    JobHandle,
    JobKind,
    JobResult,
    Progress,
    Queued,
    Started,
)

if TYPE_CHECKING:
    from bot.app import ImagineBot

logger = logging.getLogger(__name__)

EDIT_INTERVAL_S = 2.0  # at most one edit per message this often (Discord rate-limits edits)
TOKEN_MARGIN = datetime.timedelta(seconds=30)  # stop using a token this long before it expires
WEBHOOK_GONE = (401, 403, 404)  # an expired token (50027) or unknown webhook/message (10015/10008)
SHUTDOWN_GRACE_S = 5.0
FINAL_RETRY_DELAYS_S = (1.0, 3.0, 9.0)  # a failed last edit is tried again after these pauses
# With the bot token (a channel's shared rate limit), a change of queue position alone is shown
# only near the front of the queue or this seldom.
POSITION_EDIT_FRONT = 5
POSITION_EDIT_INTERVAL_S = 30.0
# An edit through the webhook can fail at the HTTP level or below it (connection, timeout).
WEBHOOK_ERRORS = (discord.HTTPException, aiohttp.ClientError, OSError)

WebhookMessage = discord.InteractionMessage | discord.WebhookMessage


@dataclass(frozen=True)
class MessageState:
    """What a job's message should look like now."""

    content: str
    view: discord.ui.View | None = None  # None removes the buttons
    upload: Upload | None = None  # replaces the attachments
    clear_attachments: bool = False  # drop the preview (a failed or cancelled job)
    final: bool = False  # the last state: sent without waiting for the throttle
    position: int | None = None  # set when the state only says the job's place in the queue

    def edit_kwargs(self) -> dict[str, Any]:
        """Fresh keyword arguments for one edit request (a File can be sent only once)."""
        kwargs: dict[str, Any] = {"content": self.content, "view": self.view}
        if self.upload is not None:
            kwargs["attachments"] = [self.upload.file()]
        elif self.clear_attachments:
            kwargs["attachments"] = []
        return kwargs


def owner_mentions(job: Job) -> discord.AllowedMentions:
    """A job message may ping its owner and nobody else, whatever the prompt says."""
    return discord.AllowedMentions(
        everyone=False, roles=False, users=[discord.Object(int(job.owner))]
    )


class MessageTarget:
    """One job message, and the two ways to edit it."""

    def __init__(
        self,
        bot: ImagineBot,
        job: Job,
        channel_id: int | None,
        message: WebhookMessage | None,
        token_expires: datetime.datetime | None,
        size_limit: int,
        *,
        message_id: int | None = None,
        repost: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bot = bot
        self._repost = repost  # post a new message when the old one is gone
        self._job_id = job.id
        self._mentions = owner_mentions(job)
        self.channel_id = channel_id
        self.message_id = message.id if message is not None else message_id
        self._webhook_message = message
        self._token_expires = token_expires
        self.size_limit = size_limit
        self._clock = clock
        self._last_position_edit: float | None = None  # with the bot token

    def _webhook_usable(self) -> bool:
        if self._webhook_message is None or self._token_expires is None:
            return False
        return discord.utils.utcnow() < self._token_expires - TOKEN_MARGIN

    def _edit_kwargs(self, state: MessageState) -> dict[str, Any]:
        return {**state.edit_kwargs(), "allowed_mentions": self._mentions}

    async def show(self, state: MessageState) -> None:
        if self._webhook_usable():
            assert self._webhook_message is not None
            try:
                await self._webhook_message.edit(**self._edit_kwargs(state))
                return
            except WEBHOOK_ERRORS as error:
                status = getattr(error, "status", None)
                if isinstance(error, discord.HTTPException) and status in WEBHOOK_GONE:
                    logger.info(
                        "job %s: the interaction webhook refused an edit (%s %s); "
                        "using the bot token from now on",
                        self._job_id,
                        status,
                        error.code,
                    )
                    self._webhook_message = None
                else:
                    logger.warning(
                        "job %s: webhook edit failed; trying the channel",
                        self._job_id,
                        exc_info=True,
                    )
        await self._show_with_bot_token(state)

    def _skip_position(self, state: MessageState) -> bool:
        """On the bot token, a queue position far from the front waits its turn."""
        if state.position is None or state.position <= POSITION_EDIT_FRONT:
            return False
        last = self._last_position_edit
        return last is not None and self._clock() - last < POSITION_EDIT_INTERVAL_S

    async def _show_with_bot_token(self, state: MessageState) -> None:
        if self.channel_id is None:
            raise RuntimeError(f"job {self._job_id}: no channel to deliver to")
        if self._skip_position(state):
            logger.debug("job %s: queue position %s not shown yet", self._job_id, state.position)
            return
        if state.position is not None:
            self._last_position_edit = self._clock()
        channel = self._bot.get_partial_messageable(self.channel_id)
        if self.message_id is not None:
            try:
                await channel.get_partial_message(self.message_id).edit(**self._edit_kwargs(state))
                return
            except (discord.NotFound, discord.Forbidden) as error:
                logger.info(
                    "job %s: cannot edit message %s (%s)",
                    self._job_id,
                    self.message_id,
                    error.status,
                )
                if not self._repost:
                    return
        message = await channel.send(
            state.content,
            file=state.upload.file() if state.upload else discord.utils.MISSING,
            view=state.view or discord.utils.MISSING,
            allowed_mentions=self._mentions,
        )
        self.message_id = message.id
        self._bot.store.set_message(self._job_id, self.channel_id, message.id)


class LatestOnly:
    """Sends the newest state of one message at most once per `interval_s`; states that arrive
    in between replace each other (no backlog), and a final state goes out without waiting (and
    is tried again a few times if it fails: it is the one that must not be lost)."""

    def __init__(
        self,
        show: Callable[[MessageState], Awaitable[None]],
        interval_s: float,
        name: str,
        retry_delays_s: Sequence[float] = FINAL_RETRY_DELAYS_S,
    ) -> None:
        self._show = show
        self._interval_s = interval_s
        self._name = name
        self._retry_delays_s = retry_delays_s
        self._latest: MessageState | None = None
        self._changed = asyncio.Event()
        self._hurry = asyncio.Event()  # a final state arrived, or close() was called
        self._closing = False

    def put(self, state: MessageState) -> None:
        pending = self._latest
        keeps_attachments = state.upload is None and not (state.final or state.clear_attachments)
        if pending is not None and pending.upload is not None and keeps_attachments:
            # A newer step without a preview must not drop the unsent one.
            state = dataclasses.replace(state, upload=pending.upload)
        self._latest = state
        self._changed.set()
        if state.final:
            self._hurry.set()

    def close(self) -> None:
        """Send what is pending, then stop."""
        self._closing = True
        self._hurry.set()
        self._changed.set()

    async def run(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            state, self._latest = self._latest, None
            if state is not None:
                if state.final:
                    await self._show_final(state)
                    return
                try:
                    await self._show(state)
                except Exception:
                    logger.exception("could not update the message of %s", self._name)
            if self._closing and self._latest is None:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hurry.wait(), self._interval_s)

    async def _show_final(self, state: MessageState) -> None:
        for delay in (*self._retry_delays_s, None):
            try:
                await self._show(state)
                return
            except Exception:
                if delay is None:
                    logger.exception("gave up updating the message of %s", self._name)
                    return
                logger.warning(
                    "could not send the last state of %s; again in %.0f s",
                    self._name,
                    delay,
                    exc_info=True,
                )
            await asyncio.sleep(delay)


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
        self._tasks: set[asyncio.Task[None]] = set()  # strong references until each is done
        self._closed = False
        self._admitting = asyncio.Lock()  # limits checked and jobs queued as one step

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        if self._closed:  # an interaction that was still being answered when the bot stopped
            logger.info("not starting %s: the bot is shutting down", name)
            coro.close()
            return
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def launch(
        self, interaction: discord.Interaction, jobs: Sequence[Job], notes: Sequence[str] = ()
    ) -> None:
        """Check the queue limits, queue `jobs`, post their messages, then the "Job queued"
        note and the prompt's notes; every refusal is private."""
        admission, submitted = await self.submit(interaction, jobs)
        if not admission.allowed:
            await reply_private(interaction, admission.message)
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
        bot = self._bot
        if bot.closing:
            return Admission(False, messages.RESTARTING), []
        owner = str(interaction.user.id)
        async with self._admitting:
            admission = admit(bot.config.limits, queue_load(bot.engine, owner), len(jobs))
            if not admission.allowed:
                return admission, []
            submitted = []
            for job in jobs:
                bot.store.add_job(job, channel_id=interaction.channel_id)
                submitted.append(Submitted(job, await bot.engine.submit(job)))
        return admission, submitted

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
        try:
            await interaction.response.send_message(messages.NOT_POSTED, ephemeral=True)
        except discord.HTTPException:
            logger.warning("job %s: could not tell the user either", job.id, exc_info=True)

    async def _follow(self, job: Job, handle: JobHandle, target: MessageTarget, shown: str) -> None:
        editor = LatestOnly(target.show, self.edit_interval_s, f"job {job.id}")
        editor_task = asyncio.create_task(editor.run(), name=f"edit-{job.id}")
        try:
            async for event in handle.events():
                self._record(job, event)
                state = await self._state_for(job, event, target.size_limit)
                if state is None or (state.content == shown and state.upload is None):
                    continue  # e.g. the first Queued event, which the posted message shows
                shown = state.content
                editor.put(state)
        except Exception:
            logger.exception("lost track of job %s", job.id)
            editor.put(
                MessageState(
                    messages.failed(job, messages.UNDELIVERED), clear_attachments=True, final=True
                )
            )
        finally:
            editor.close()
            await editor_task

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

    async def _state_for(self, job: Job, event: JobEvent, size_limit: int) -> MessageState | None:
        if isinstance(event, Queued):
            return MessageState(
                messages.waiting(job, event.position), cancel_view(job.id), position=event.position
            )
        if isinstance(event, Started):
            return MessageState(messages.running(job, 0), cancel_view(job.id))
        if isinstance(event, Progress):
            upload = preview_upload(event.preview) if event.preview else None
            return MessageState(
                messages.running(job, event.percent), cancel_view(job.id), upload=upload
            )
        if isinstance(event, Done):
            return await finished_state(job, event.result, size_limit)
        if isinstance(event, Failed):
            return MessageState(
                messages.failed(job, event.reason), clear_attachments=True, final=True
            )
        if isinstance(event, Cancelled):
            return MessageState(messages.cancelled(job), clear_attachments=True, final=True)
        return None

    def fail_unfinished(self) -> int:
        """Jobs a previous run left queued or running: mark them failed, say so on their
        messages (in the background). Resubmitting them instead is a later feature."""
        unfinished = self._bot.store.unfinished_jobs()
        for stored in unfinished:
            self._bot.store.set_status(stored.job.id, JobStatus.FAILED, error=messages.RESTARTED)
            if stored.message_id is not None:
                self._spawn(self._say_restarted(stored), f"restarted-{stored.job.id}")
        if unfinished:
            logger.warning("%d job(s) were left unfinished by the last run", len(unfinished))
        return len(unfinished)

    async def _say_restarted(self, stored: StoredJob) -> None:
        target = MessageTarget(
            self._bot,
            stored.job,
            stored.channel_id,
            None,
            None,
            0,
            message_id=stored.message_id,
            repost=False,
        )
        state = MessageState(
            messages.failed(stored.job, messages.RESTARTED), clear_attachments=True, final=True
        )
        try:
            await target.show(state)
        except Exception:
            logger.exception("could not update the message of unfinished job %s", stored.job.id)

    async def close(self) -> None:
        """Let deliveries finish their last edits (the engine has ended their jobs), briefly.
        Jobs launched from now on are not followed: the next start marks them failed."""
        self._closed = True
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=SHUTDOWN_GRACE_S)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def finished_state(job: Job, result: JobResult, size_limit: int) -> MessageState:
    """The finished message: the grid with U/V/🔄, or an upscale with its 🪄 Vary buttons (as on
    Midjourney, an upscale is not upscaled again)."""
    if job.kind is JobKind.UPSCALE or result.grid is None:
        upload = await asyncio.to_thread(fit_image, result.images[0], size_limit, job.id)
        view = upscaled_view(job.id, 1)
    else:
        upload = await asyncio.to_thread(fit_image, result.grid, size_limit, job.id)
        view = grid_view(job.id)
    return MessageState(messages.finished(job, result), view, upload=upload, final=True)
