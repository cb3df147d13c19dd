"""Editing one job's Discord message: what it should look like (`MessageState`), the ways to
reach it (`MessageTarget`), and a throttle that always sends the newest state (`LatestOnly`).

Edits go through the interaction's webhook while its token lives (15 minutes) and through the
channel with the bot's own token after that, or whenever the webhook refuses (401/404). A message
someone deleted is posted again in its channel; when the channel itself is gone (or closed to the
bot) a finished job is sent to its owner in a direct message. The last state of a job is retried
with backoff until it is shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import discord

from bot.attachments import Upload, shrunk
from engine.jobs import Job

if TYPE_CHECKING:
    from bot.app import ImagineBot

logger = logging.getLogger(__name__)

EDIT_INTERVAL_S = 2.0  # at most one edit per message this often (Discord rate-limits edits)
TOKEN_MARGIN = datetime.timedelta(seconds=30)  # stop using a token this long before it expires
WEBHOOK_GONE = (401, 403, 404)  # an expired token (50027) or unknown webhook/message (10015/10008)
# A job's last state is tried again after these pauses, then every last one, until it is shown
# (while the bot runs; the store keeps it undelivered for the next start otherwise).
FINAL_RETRY_DELAYS_S = (1.0, 3.0, 9.0, 27.0, 60.0, 120.0, 300.0)
# A change of queue position alone, past the first few places, waits until this many edit
# intervals (10 s) have passed since the last position shown (LatestOnly), the newest shown
# then; with the bot token (a channel's shared rate limit) this long.
POSITION_EDIT_FRONT = 5
POSITION_EDIT_EVERY = 5
POSITION_EDIT_INTERVAL_S = 30.0
# An edit through the webhook can fail at the HTTP level or below it (connection, timeout).
WEBHOOK_ERRORS = (discord.HTTPException, aiohttp.ClientError, OSError)
CHANNEL_GONE = (discord.NotFound, discord.Forbidden)  # 10003 Unknown Channel, 50001 Missing Access
SENT_BY_DM = "-# Sent to you here: the channel of this job is gone, or closed to the bot."

WebhookMessage = discord.InteractionMessage | discord.WebhookMessage


class Undeliverable(Exception):
    """Neither the job's channel nor its owner's direct messages take the message: retrying
    cannot help. (The job stays in /info's history and /show.)"""


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
    """One job message, and the ways to edit it."""

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
    ) -> None:
        self._bot = bot
        self._job_id = job.id
        self._owner = int(job.owner)
        self._mentions = owner_mentions(job)
        self.channel_id = channel_id
        self.message_id = message.id if message is not None else message_id
        self._webhook_message = message
        self._token_expires = token_expires
        self.size_limit = size_limit

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

    def position_every_s(self, interval_s: float) -> float:
        """How long a queue position far back waits after the last one shown (LatestOnly)."""
        return (
            POSITION_EDIT_EVERY * interval_s if self._webhook_usable() else POSITION_EDIT_INTERVAL_S
        )

    async def _show_with_bot_token(self, state: MessageState) -> None:
        if self.channel_id is not None:
            channel = self._bot.get_partial_messageable(self.channel_id)
            if self.message_id is not None:
                try:
                    await channel.get_partial_message(self.message_id).edit(
                        **self._edit_kwargs(state)
                    )
                    return
                except CHANNEL_GONE as error:  # the message, or its channel, is gone
                    logger.info(
                        "job %s: cannot edit message %s (%s); posting it again",
                        self._job_id,
                        self.message_id,
                        error.status,
                    )
            try:
                message = await channel.send(
                    state.content,
                    file=state.upload.file() if state.upload else discord.utils.MISSING,
                    view=state.view or discord.utils.MISSING,
                    allowed_mentions=self._mentions,
                )
            except CHANNEL_GONE as error:
                logger.warning(
                    "job %s: channel %s refuses messages (%s %s)",
                    self._job_id,
                    self.channel_id,
                    error.status,
                    error.code,
                )
                if not state.final:  # only the result is worth a direct message
                    return
            else:
                self._moved_to(self.channel_id, message.id)
                return
        await self._send_to_owner(state)

    async def _send_to_owner(self, state: MessageState) -> None:
        """The job's channel is gone: its owner gets the message directly."""
        permissions = self._bot.config.permissions
        try:
            dm = await self._bot.create_dm(discord.Object(self._owner))
            message = await dm.send(
                f"{state.content}\n{SENT_BY_DM}",
                file=state.upload.file() if state.upload else discord.utils.MISSING,
                # Buttons pressed in a DM only work where the bot answers DMs.
                view=(state.view or discord.utils.MISSING)
                if permissions.allow_dms
                else discord.utils.MISSING,
                allowed_mentions=self._mentions,
            )
        except discord.HTTPException as error:
            if error.status in (400, 403, 404):  # e.g. 50007: the user takes no DMs from it
                raise Undeliverable(f"user {self._owner} takes no direct messages") from error
            raise
        self._moved_to(dm.id, message.id)

    def _moved_to(self, channel_id: int, message_id: int) -> None:
        self.channel_id, self.message_id = channel_id, message_id
        self._bot.store.set_message(self._job_id, channel_id, message_id)


class LatestOnly:
    """Sends the newest state of one message at most once per `interval_s`; states that arrive
    in between replace each other (no backlog), and a final state goes out without waiting (and
    is tried again with backoff until it is shown, or close() gives up on it). A new queue
    position far from the front (past POSITION_EDIT_FRONT) waits until `position_every_s` has
    passed since the last position shown: in a burst of 250 jobs, every finished one moves every
    waiting one, and those edits were 4 of every 5 requests to Discord. Any other state goes out
    at the usual pace, and the newest position is always shown in the end.
    """

    def __init__(
        self,
        show: Callable[[MessageState], Awaitable[None]],
        interval_s: float,
        name: str,
        retry_delays_s: Sequence[float] = FINAL_RETRY_DELAYS_S,
        position_every_s: Callable[[], float] | None = None,
    ) -> None:
        self._show = show
        self._interval_s = interval_s
        # how long a far-back position waits (MessageTarget.position_every_s); by default
        # POSITION_EDIT_EVERY intervals
        self._position_every_s = position_every_s or (lambda: POSITION_EDIT_EVERY * interval_s)
        self._name = name
        self._retry_delays_s = retry_delays_s
        self._latest: MessageState | None = None
        self._changed = asyncio.Event()
        self._hurry = asyncio.Event()  # a final state arrived, or close() was called
        self._closing = False
        self._position_shown = -math.inf  # the event loop's clock when a position was last shown

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

    async def run(self) -> bool:
        """Until the final state is shown (True) or the editor is closed without one (False)."""
        loop = asyncio.get_running_loop()
        while True:
            await self._changed.wait()
            self._changed.clear()
            if await self._held(self._latest, loop.time()):
                continue  # a newer state came meanwhile: that one is next
            state, self._latest = self._latest, None
            if state is not None:
                if state.final:
                    return await self._show_final(state)
                if state.position is not None:
                    self._position_shown = loop.time()
                try:
                    await self._show(state)
                except Exception:
                    logger.exception("could not update the message of %s", self._name)
            if self._closing and self._latest is None:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hurry.wait(), self._interval_s)

    async def _held(self, state: MessageState | None, now: float) -> bool:
        """Waits while `state` is a queue position far back that is not due yet; True when a
        newer state (or close()) came before it was due."""
        if state is None or state.position is None or state.position <= POSITION_EDIT_FRONT:
            return False
        due = self._position_shown + self._position_every_s()
        if self._closing or now >= due:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), due - now)
            return True
        return False

    async def _show_final(self, state: MessageState) -> bool:
        """True once shown, or settled as undeliverable (nothing more can be done)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._show(state)
                return True
            except Undeliverable as error:
                logger.warning("gave up on the message of %s: %s", self._name, error)
                return True
            except discord.HTTPException as error:
                if _too_large(error) and state.upload is not None:
                    # The upload limit was a guess (a job delivered after a restart): shrink.
                    smaller = await asyncio.to_thread(shrunk, state.upload)
                    if smaller is not None:
                        logger.warning(
                            "%s: Discord refused %d bytes as too large; sending %d",
                            self._name,
                            len(state.upload.data),
                            len(smaller.data),
                        )
                        state = dataclasses.replace(state, upload=smaller)
                        continue
                if _too_large(error) or _refused_for_good(error):
                    # The same request would be refused again: retrying helps nobody (the job
                    # stays in /info and /show).
                    logger.exception(
                        "gave up on the message of %s: Discord refused it (%s, code %s)",
                        self._name,
                        error.status,
                        error.code,
                    )
                    return True
                self._log_retry(attempt)
            except Exception:
                self._log_retry(attempt)
            delays = self._retry_delays_s
            await asyncio.sleep(delays[min(attempt, len(delays)) - 1])

    def _log_retry(self, attempt: int) -> None:
        delays = self._retry_delays_s
        logger.warning(
            "could not send the last state of %s (try %d); again in %.0f s",
            self._name,
            attempt,
            delays[min(attempt, len(delays)) - 1],
            exc_info=True,
        )


def _too_large(error: discord.HTTPException) -> bool:
    return error.status == 413 or error.code == 40005  # Request entity too large


def _refused_for_good(error: discord.HTTPException) -> bool:
    """A 4xx that no retry changes: a malformed request (400). Not 401/403/404 (the target
    falls back to the channel, then to a DM, before they get here), 408 or 429."""
    return 400 <= error.status < 500 and error.status not in (401, 403, 404, 408, 429)
