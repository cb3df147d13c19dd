"""Message editing on its own (no Discord, no engine): the throttle, the states derived from a
job's events, and fitting uploads."""

from __future__ import annotations

import asyncio
import datetime
import io
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import discord
import numpy as np
from PIL import Image

from bot.attachments import Upload, fit_image, preview_upload
from bot.delivery import Deliveries
from bot.editing import LatestOnly, MessageState, MessageTarget, Undeliverable
from bot.store import JobStatus, Store
from engine.jobs import (
    Done,
    Job,
    JobEvent,
    JobResult,
    Progress,
    Queued,
    Started,
    imagine_job,
)
from engine.prompt import parse_prompt


class Recorder:
    """A `show` that records states and lets the test decide when each edit completes."""

    def __init__(self) -> None:
        self.shown: list[str] = []
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def show(self, state: MessageState) -> None:
        self.shown.append(state.content)
        self.started.set()
        await self.release.wait()


async def test_states_that_arrive_during_an_edit_collapse_to_the_latest() -> None:
    recorder = Recorder()
    editor = LatestOnly(recorder.show, interval_s=60.0, name="test")
    task = asyncio.create_task(editor.run())
    editor.put(MessageState("1%"))
    await recorder.started.wait()  # the first edit is in flight…
    for percent in range(2, 50):
        editor.put(MessageState(f"{percent}%"))  # …while 48 more states arrive
    editor.put(MessageState("done", final=True))  # a final state skips the 60 s wait

    recorder.release.set()
    await asyncio.wait_for(task, 5)

    assert recorder.shown == ["1%", "done"]


async def test_at_most_one_edit_per_interval() -> None:
    recorder = Recorder()
    recorder.release.set()
    editor = LatestOnly(recorder.show, interval_s=60.0, name="test")
    task = asyncio.create_task(editor.run())
    editor.put(MessageState("Waiting"))
    await recorder.started.wait()
    editor.put(MessageState("10%"))
    editor.put(MessageState("20%"))
    # Time enough for an editor that ignored its interval (or waited 1 ms) to send again.
    await asyncio.sleep(0.3)
    assert recorder.shown == ["Waiting"]

    editor.close()  # sends what is pending, then stops
    await asyncio.wait_for(task, 5)
    assert recorder.shown == ["Waiting", "20%"]


async def test_a_position_far_back_waits_five_intervals_and_shows_the_newest() -> None:
    interval = 0.2
    shown: list[tuple[float, str]] = []
    loop = asyncio.get_running_loop()

    async def show(state: MessageState) -> None:
        shown.append((loop.time(), state.content))

    def queued(position: int) -> MessageState:
        return MessageState(f"position {position}", position=position)

    editor = LatestOnly(show, interval_s=interval, name="test")
    task = asyncio.create_task(editor.run())
    started = loop.time()
    editor.put(queued(30))  # the first goes out at once
    for position in range(29, 20, -1):  # then the queue moves, a place every 50 ms
        await asyncio.sleep(0.05)
        editor.put(queued(position))
    await asyncio.sleep(started + 6 * interval - loop.time())
    # 30, and five intervals after it the newest of the nine that came meanwhile
    assert [content for _, content in shown] == ["position 30", "position 21"]
    assert shown[1][0] - shown[0][0] >= 5 * interval * 0.99
    editor.put(MessageState("Started"))  # anything else: at the usual pace
    await asyncio.sleep(interval * 1.5)
    assert shown[-1][1] == "Started"
    editor.put(queued(3))  # near the front: at the usual pace too
    await asyncio.sleep(interval * 1.5)
    assert shown[-1][1] == "position 3"
    editor.close()
    await asyncio.wait_for(task, 5)
    assert len(shown) == 4


async def test_a_failing_edit_does_not_stop_the_editor() -> None:
    shown: list[str] = []

    async def flaky(state: MessageState) -> None:
        shown.append(state.content)
        if len(shown) == 1:
            raise RuntimeError("discord is down")

    editor = LatestOnly(flaky, interval_s=0.0, name="test")
    task = asyncio.create_task(editor.run())
    editor.put(MessageState("first"))
    await asyncio.sleep(0)
    editor.put(MessageState("last", final=True))
    await asyncio.wait_for(task, 5)
    assert shown == ["first", "last"]


def noise_png(path: Path, side: int) -> Path:
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG")
    return path


def test_a_file_under_the_limit_is_sent_as_it_is(tmp_path: Path) -> None:
    path = noise_png(tmp_path / "grid.png", 64)
    upload = fit_image(path, 10 * 1024 * 1024, "job")
    assert (upload.filename, upload.data) == ("job.png", path.read_bytes())


def test_a_file_over_the_limit_becomes_a_jpeg_then_shrinks_until_it_fits(tmp_path: Path) -> None:
    path = noise_png(tmp_path / "grid.png", 512)  # noise: ~790 kB as PNG, ~250 kB as JPEG
    for limit in (400_000, 50_000):
        upload = fit_image(path, limit, "job")
        assert len(upload.data) <= limit and upload.filename == "job.jpg"
        with Image.open(io.BytesIO(upload.data)) as image:
            assert image.format == "JPEG"
            assert image.width == image.height and image.width <= 512
    assert Image.open(io.BytesIO(fit_image(path, 50_000, "job").data)).width < 512


def test_previews_are_named_by_their_format() -> None:
    assert preview_upload(b"\x89PNG\r\n\x1a\nrest").filename == "preview.png"
    assert preview_upload(b"\xff\xd8\xff\xe0rest").filename == "preview.jpg"
    assert preview_upload(b"RIFF\x00\x00\x00\x00WEBPVP8 ").filename == "preview.webp"


async def test_a_newer_state_without_a_preview_keeps_the_unsent_preview() -> None:
    recorder = Recorder()
    sent: list[MessageState] = []

    async def show(state: MessageState) -> None:
        sent.append(state)
        await recorder.show(state)

    editor = LatestOnly(show, interval_s=60.0, name="test")
    task = asyncio.create_task(editor.run())
    editor.put(MessageState("Waiting"))
    await recorder.started.wait()
    preview = Upload(b"\xff\xd8preview", "preview.jpg")
    editor.put(MessageState("50%", upload=preview))
    editor.put(MessageState("75%"))  # no preview at this step
    editor.close()
    recorder.release.set()
    await asyncio.wait_for(task, 5)

    assert [(s.content, s.upload) for s in sent] == [("Waiting", None), ("75%", preview)]


class ScriptedHandle:
    """A JobHandle whose next event comes only once the previous edit was shown (lockstep), so
    the test sees every state the bot derives from the events."""

    def __init__(self, job: Job, events: list[JobEvent]) -> None:
        self.job = job
        self._events = events
        self.shown = asyncio.Event()

    async def events(self) -> AsyncIterator[JobEvent]:
        for index, event in enumerate(self._events):
            self.shown.clear()
            yield event
            if index > 0:  # the first Queued is what the posted message shows already
                await asyncio.wait_for(self.shown.wait(), 5)

    async def result(self) -> JobResult:
        raise NotImplementedError


async def test_each_event_becomes_the_matching_message_state(tmp_path: Path) -> None:
    job = imagine_job(parse_prompt("a red fox"), model="tiny", owner="42", seed=7)
    grid = noise_png(tmp_path / "grid.png", 32)
    result = JobResult(job.id, (grid,) * 4, grid, job.seeds, 16, 16, "tiny", 4, 0.5)
    preview = b"\xff\xd8\xff\xe0jpeg"
    handle = ScriptedHandle(
        job,
        [
            Queued(job.id, 1),
            Queued(job.id, 2),
            Started(job.id),
            Progress(job.id, 2, 4, preview),
            Progress(job.id, 3, 4, None),
            Done(job.id, result),
        ],
    )
    store = Store(tmp_path / "bot.sqlite3")
    store.add_job(job, channel_id=1, message_id=2)
    states: list[MessageState] = []

    class Target:
        size_limit = 10 * 1024 * 1024

        async def show(self, state: MessageState) -> None:
            states.append(state)
            handle.shown.set()

    deliveries = Deliveries(SimpleNamespace(store=store), edit_interval_s=0.0)  # type: ignore[arg-type]
    await deliveries._follow(job, handle, Target(), "**a red fox** - <@42> (Waiting to start)")  # type: ignore[arg-type]

    head = "**a red fox** - <@42>"
    assert [s.content for s in states] == [
        f"{head} (Queued: position 2)",
        f"{head} (0%)",
        f"{head} (50%)",
        f"{head} (75%)",
        f"{head} (seed 7, model tiny, 4 steps)",
    ]
    assert states[2].upload == Upload(preview, "preview.jpg")
    assert states[3].upload is None  # the preview already shown stays as it is
    assert states[-1].upload == Upload(grid.read_bytes(), f"{job.id}.png") and states[-1].final
    assert [s.view is not None for s in states] == [True] * 5
    stored = store.get_job(job.id)
    assert stored is not None and stored.status is JobStatus.DONE and stored.result == result


async def test_a_failed_final_edit_is_tried_again() -> None:
    tries: list[str] = []

    async def flaky(state: MessageState) -> None:
        tries.append(state.content)
        if len(tries) < 3:
            raise OSError("connection reset")

    editor = LatestOnly(flaky, interval_s=0.0, name="test", retry_delays_s=(0.0, 0.0, 0.0))
    task = asyncio.create_task(editor.run())
    editor.put(MessageState("done", final=True))
    await asyncio.wait_for(task, 5)
    assert tries == ["done", "done", "done"]


async def test_a_final_edit_is_retried_with_backoff_until_it_is_shown() -> None:
    tries: list[float] = []

    async def down_for_a_while(state: MessageState) -> None:
        tries.append(asyncio.get_running_loop().time())
        if len(tries) <= 10:
            raise discord.DiscordServerError(SimpleNamespace(status=503, reason="down"), "")

    editor = LatestOnly(
        down_for_a_while, interval_s=0.0, name="test", retry_delays_s=(0.01, 0.02, 0.04)
    )
    task = asyncio.create_task(editor.run())
    editor.put(MessageState("done", final=True))

    assert await asyncio.wait_for(task, 5) is True
    assert len(tries) == 11
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    assert gaps[2] >= 0.04 and gaps[-1] >= 0.04  # the last delay repeats


async def test_an_undeliverable_final_state_is_given_up_at_once() -> None:
    tries: list[str] = []

    async def nowhere(state: MessageState) -> None:
        tries.append(state.content)
        raise Undeliverable("no channel, no DMs")

    editor = LatestOnly(nowhere, interval_s=0.0, name="test", retry_delays_s=(0.01,))
    task = asyncio.create_task(editor.run())
    editor.put(MessageState("done", final=True))

    assert await asyncio.wait_for(task, 5) is True  # settled: nothing more can be done
    assert tries == ["done"]


class BrokenHandle(ScriptedHandle):
    """Reports that the job started, then fails while reading the next event."""

    async def events(self) -> AsyncIterator[JobEvent]:
        yield Started(self.job.id)
        raise ConnectionResetError("the engine went away")


async def test_losing_track_of_a_job_ends_its_message_with_a_failure(tmp_path: Path) -> None:
    job = imagine_job(parse_prompt("a red fox"), model="tiny", owner="42", seed=7)
    states: list[MessageState] = []

    class Target:
        size_limit = 10 * 1024 * 1024

        async def show(self, state: MessageState) -> None:
            states.append(state)

    store = Store(tmp_path / "bot.sqlite3")
    store.add_job(job, channel_id=1, message_id=2)
    deliveries = Deliveries(SimpleNamespace(store=store), edit_interval_s=0.0)  # type: ignore[arg-type]
    await deliveries._follow(job, BrokenHandle(job, []), Target(), "")  # type: ignore[arg-type]

    assert states[-1].final and states[-1].view is None  # no ❌ left on a dead job
    assert states[-1].content == "**a red fox** - <@42> (Failed: could not deliver the result)"


class StubChannel:
    """A partial messageable that records the contents edited through the bot token."""

    def __init__(self) -> None:
        self.edits: list[str] = []

    def get_partial_message(self, message_id: int) -> SimpleNamespace:
        async def edit(**kwargs: Any) -> None:
            self.edits.append(kwargs["content"])

        return SimpleNamespace(edit=edit)


def stub_target(channel: StubChannel, webhook: Any = None) -> MessageTarget:
    job = imagine_job(parse_prompt("a red fox"), model="tiny", owner="42", seed=7)
    bot = SimpleNamespace(get_partial_messageable=lambda channel_id: channel)
    expires = discord.utils.utcnow() + datetime.timedelta(minutes=15) if webhook else None
    return MessageTarget(
        bot,  # type: ignore[arg-type]
        job,
        1,
        webhook,
        expires,
        1024,
        message_id=None if webhook else 2,
    )


async def test_a_webhook_edit_that_fails_below_http_falls_back_to_the_bot_token() -> None:
    async def edit(**kwargs: Any) -> None:
        raise aiohttp.ClientConnectionError("connection reset by peer")

    channel = StubChannel()
    target = stub_target(channel, webhook=SimpleNamespace(id=2, edit=edit))

    await target.show(MessageState("done", final=True))

    assert channel.edits == ["done"]


async def test_queue_positions_far_back_wait_longer_with_the_bot_token() -> None:
    async def edit(**kwargs: Any) -> None:
        pass

    # the channel's shared rate limit: 30 s; the interaction's own webhook: 5 edit intervals
    assert stub_target(StubChannel()).position_every_s(2.0) == 30.0
    webhook = SimpleNamespace(id=2, edit=edit)
    assert stub_target(StubChannel(), webhook=webhook).position_every_s(2.0) == 10.0

    # …and LatestOnly waits that long, then shows the newest
    interval, every = 0.05, 0.6
    channel = StubChannel()
    target = stub_target(channel)
    editor = LatestOnly(target.show, interval, "test", position_every_s=lambda: every)
    task = asyncio.create_task(editor.run())
    for position in (9, 8, 7):
        editor.put(MessageState(f"position {position}", position=position))
        await asyncio.sleep(interval * 2)
    assert channel.edits == ["position 9"]
    await asyncio.sleep(every)
    assert channel.edits == ["position 9", "position 7"]
    editor.put(MessageState("running"))
    await asyncio.sleep(interval * 2)
    editor.close()
    await asyncio.wait_for(task, 5)
    assert channel.edits == ["position 9", "position 7", "running"]
