"""The load scenario (issue 6 §8): many users each send several /imagine at once, in rounds.

The real bot (bot.app.ImagineBot) and a real engine process with the tiny model, against the
fake Discord on 127.0.0.1. Shared by tests/discord/test_load.py, which asserts the outcomes
(every interaction acked, refusals private and naming the limit, turns taken, every accepted job
delivered), and `imagine-bot bench --load`, which prints the figures (ack latency, jobs/min, RSS).
It lives beside the tests because it needs the fake Discord (a source checkout with the dev
extra).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.app import ImagineBot
from bot.config import BotConfig, DiscordConfig, LimitsConfig, PermissionsConfig
from bot.store import JobStatus
from engine.client import EngineClient
from engine.config import EngineConfig
from engine.jobs import Job, JobEvent, JobHandle, JobResult, Started, imagine_job
from engine.prompt import parse_prompt
from tests.fake_discord import FakeDiscord, FakeInteraction, RecordedRequest
from tests.fake_discord.fixtures import BotRunner, patch_discord
from tests.fake_discord.payloads import FLAG_EPHEMERAL

PROMPT = "a lighthouse at dusk --steps 2"
EDIT_INTERVAL_S = 0.5  # the bot's edit throttle (2 s in production): a shorter run, same shape


@dataclass(frozen=True)
class LoadReport:
    users: int
    jobs_per_user: int
    rounds: int
    sent: int  # /imagine interactions
    acks_s: tuple[float, ...]  # each acked interaction: sent → its callback accepted
    uploads_s: tuple[float, ...]  # each delivered job: its /imagine sent → its grid uploaded
    unacked: int  # interactions Discord would have shown as "did not respond"
    accepted: tuple[str, ...]  # job ids, in the order they were queued
    refusals: tuple[str, ...]  # the private answers of the refused interactions
    started_by: tuple[str, ...]  # owners, in the order their jobs started on the engine
    delivered: int  # accepted jobs whose grid reached Discord
    elapsed_s: float
    rss_mb: tuple[tuple[float, float], ...]  # (bot, engine) before the first round, after each
    # what the fake Discord (in the bot's process) holds of uploads and request bodies then
    fake_mb: tuple[float, ...] = ()
    requests: int = 0  # every HTTP request the bot made to Discord
    queue_edits: int = 0  # … of which edits that only moved a "(Queued: position N)"

    def ack_percentile(self, share: float) -> float:
        return _percentile(self.acks_s, share)

    def figures(self) -> dict[str, Any]:
        """What `bench --load --json` prints: the table's figures, times in ms (acks) and s."""
        minutes = self.elapsed_s / 60
        return {
            "users": self.users,
            "jobs_per_user": self.jobs_per_user,
            "rounds": self.rounds,
            "sent": self.sent,
            "acked": len(self.acks_s),
            "unacked": self.unacked,
            **{f"ack_{q}_ms": self.ack_percentile(share) * 1000 for q, share in _QUANTILES},
            **{f"upload_{q}_s": _percentile(self.uploads_s, share) for q, share in _QUANTILES},
            "accepted": len(self.accepted),
            "refused": len(self.refusals),
            "delivered": self.delivered,
            "jobs_per_minute": self.delivered / minutes if minutes else None,
            "elapsed_s": self.elapsed_s,
            "requests": self.requests,
            "queue_edits": self.queue_edits,
            # before the first round, then after each: the bot's and the engine's RSS, and
            # how much of the bot's is the fake Discord's kept data
            "rss_mb": [
                {"bot": bot_mb, "fake_discord": self._fake_mb(i), "engine": engine_mb}
                for i, (bot_mb, engine_mb) in enumerate(self.rss_mb)
            ],
        }

    def _fake_mb(self, index: int) -> float:
        return self.fake_mb[index] if index < len(self.fake_mb) else 0.0

    def table(self) -> str:
        f = self.figures()
        per_minute = f["jobs_per_minute"]
        rows = [
            ("users × jobs × rounds", f"{self.users} × {self.jobs_per_user} × {self.rounds}"),
            ("interactions sent", str(self.sent)),
            ("acked / not acked", f"{f['acked']} / {f['unacked']}"),
            (
                "ack p50 / p99 / max",
                " / ".join(f"{f[f'ack_{q}_ms']:.0f} ms" for q, _ in _QUANTILES),
            ),
            (
                "/imagine → grid upload p50 / p99 / max",
                " / ".join(f"{f[f'upload_{q}_s']:.1f} s" for q, _ in _QUANTILES),
            ),
            ("jobs accepted / refused", f"{f['accepted']} / {f['refused']}"),
            ("jobs delivered", str(self.delivered)),
            ("jobs per minute", "-" if per_minute is None else f"{per_minute:.1f}"),
            ("elapsed", f"{self.elapsed_s:.1f} s"),
            ("HTTP requests to Discord", f"{self.requests} ({self.queue_edits} queue positions)"),
        ]
        for i, rss in enumerate(f["rss_mb"]):
            label = "RSS before" if i == 0 else f"RSS after round {i}"
            rows.append(
                (
                    label,
                    f"bot {rss['bot']:.0f} MB (of which the fake Discord's data "
                    f"{rss['fake_discord']:.0f} MB), engine {rss['engine']:.0f} MB",
                )
            )
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


_QUANTILES = (("p50", 0.5), ("p99", 0.99), ("max", 1.0))


def _percentile(values: tuple[float, ...], share: float) -> float:
    """The value `share` of the way up the sorted values (nearest rank); 0 for none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))] if ordered else 0.0


class _RecordedHandle:
    def __init__(self, handle: JobHandle, started_by: list[str]) -> None:
        self.job = handle.job
        self._handle = handle
        self._started_by = started_by

    async def events(self) -> AsyncIterator[JobEvent]:
        async for event in self._handle.events():
            if isinstance(event, Started):
                self._started_by.append(self.job.owner)
            yield event

    async def result(self) -> JobResult:
        return await self._handle.result()


class RecordingEngine:
    """The engine, noting whose job starts when (to check that owners take turns)."""

    def __init__(self, inner: EngineClient) -> None:
        self.inner = inner
        self.started_by: list[str] = []
        self.accepted: list[str] = []

    async def submit(self, job: Job) -> JobHandle:
        handle = await self.inner.submit(job)
        self.accepted.append(job.id)
        return _RecordedHandle(handle, self.started_by)

    def __getattr__(self, name: str) -> Any:  # cancel, position, jobs, unavailable
        return getattr(self.inner, name)


def rss_mb(pid: int | None) -> float:
    """Resident memory of a process, from /proc (Linux); 0 when unknown."""
    if pid is None:
        return 0.0
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def engine_config(storage: Path) -> EngineConfig:
    return EngineConfig(model="tiny", device="cpu", storage=storage, preview_every=1)


async def run_load(
    *,
    users: int = 50,
    jobs_per_user: int = 5,
    rounds: int = 2,
    limits: LimitsConfig | None = None,
    prompt: str = PROMPT,
    storage: Path | None = None,
    timeout_s: float = 1800.0,
) -> LoadReport:
    """Start a fake Discord, an engine and the bot; send the bursts; wait for every accepted
    job's grid; stop everything; report."""
    with tempfile.TemporaryDirectory(prefix="imagine-load-") as scratch:
        root = storage or Path(scratch)
        fake = FakeDiscord()
        await fake.start()
        patch = pytest.MonkeyPatch()
        engine = EngineClient(engine_config(root))
        try:
            patch_discord(patch, fake)
            await engine.start()
            recording = RecordingEngine(engine)
            config = BotConfig(
                discord=DiscordConfig(token="unused", guild_ids=(fake.guild_id,)),
                engine=engine.config,
                limits=limits or LimitsConfig(max_queued_total=users * jobs_per_user),
                permissions=PermissionsConfig(),
            )
            bot = ImagineBot(config, engine=recording, edit_interval_s=EDIT_INTERVAL_S)
            runner = BotRunner(fake)
            await runner.start(bot)
            try:
                return await asyncio.wait_for(
                    _bursts(fake, bot, recording, users, jobs_per_user, rounds, prompt), timeout_s
                )
            finally:
                await runner.stop_all()
        finally:
            await engine.close()
            await fake.stop()
            patch.undo()


async def _bursts(
    fake: FakeDiscord,
    bot: ImagineBot,
    engine: RecordingEngine,
    users: int,
    jobs_per_user: int,
    rounds: int,
    prompt: str,
) -> LoadReport:
    user_ids = [fake.add_user(f"user{i}") for i in range(users)]
    # One job first, past the bot: memory "before" is a started engine with its model loaded.
    warm_up = imagine_job(parse_prompt(prompt), model="tiny", owner="warm-up")
    await (await engine.inner.submit(warm_up)).result()
    engine_pid = engine.inner._process.process.pid if engine.inner._process else None
    memory = [(rss_mb(os.getpid()), rss_mb(engine_pid))]
    held = [_fake_mb(fake)]
    sent: list[FakeInteraction] = []
    started = time.monotonic()
    for _ in range(rounds):
        burst: list[FakeInteraction] = []
        for user in user_ids:  # each user sends all theirs at once, one user after another
            for _ in range(jobs_per_user):
                burst.append(
                    await fake.push_slash_command(
                        "imagine",
                        {"prompt": f"{prompt} --seed {len(sent) + len(burst)}"},
                        user_id=user,
                    )
                )
        sent.extend(burst)
        await _until_all_answered(fake, bot, burst, engine)
        engine_pid = engine.inner._process.process.pid if engine.inner._process else None
        memory.append((rss_mb(os.getpid()), rss_mb(engine_pid)))
        held.append(_fake_mb(fake))
    elapsed = time.monotonic() - started
    acks = [i.acked_at - i.dispatched_at for i in sent if i.acked_at is not None]
    refusals = tuple(_private_text(fake, i) for i in sent if _refused(i))
    delivered = sum(
        1
        for job_id in engine.accepted
        if (stored := bot.store.get_job(job_id)) is not None and stored.delivered
    )
    return LoadReport(
        users=users,
        jobs_per_user=jobs_per_user,
        rounds=rounds,
        sent=len(sent),
        acks_s=tuple(acks),
        uploads_s=_upload_times(fake, sent, engine.accepted),
        unacked=sum(1 for i in sent if i.acked_at is None),
        accepted=tuple(engine.accepted),
        refusals=refusals,
        started_by=tuple(engine.started_by),
        delivered=delivered,
        elapsed_s=elapsed,
        rss_mb=tuple(memory),
        fake_mb=tuple(held),
        requests=sum(1 for request in fake.requests if not request.injected),
        queue_edits=sum(1 for request in fake.requests if _moves_a_place(request)),
    )


def _moves_a_place(request: RecordedRequest) -> bool:
    """An edit of a job message to a new queue position (the first answer is not an edit)."""
    content = request.payload.get("content")
    return request.method == "PATCH" and isinstance(content, str) and "(Queued: position" in content


def _upload_times(
    fake: FakeDiscord, sent: list[FakeInteraction], job_ids: Iterable[str]
) -> tuple[float, ...]:
    """For each public (accepted) /imagine: from sending it to the first upload of a grid (a
    file named for an accepted job: `<job id>.png`, or `.jpg` when shrunk) on its message, by
    its token or the message. Progress previews (`preview.*`) and anything else do not count."""
    grids = {f"{job_id}.{kind}" for job_id in job_ids for kind in ("png", "jpg")}
    first: dict[tuple[str, str], float] = {}  # ("token" | "message", value) → its first grid
    for request in fake.requests:
        if request.injected or request.status >= 300:
            continue
        if not any(part.filename in grids for part in request.files):
            continue
        token, message = request.params.get("token"), request.params.get("message_id")
        if token:
            first.setdefault(("token", token), request.answered_at)
        if message and message.isdigit():  # not "@original": that one goes by its token
            first.setdefault(("message", message), request.answered_at)
    times = []
    for interaction in sent:
        if interaction.acked_at is None or interaction.ephemeral:
            continue
        keys = [("token", interaction.token), ("message", str(interaction.original_message_id))]
        uploaded = [first[key] for key in keys if key in first]
        if uploaded:
            times.append(min(uploaded) - interaction.dispatched_at)
    return tuple(times)


def _fake_mb(fake: FakeDiscord) -> float:
    """The bytes the fake keeps: every upload, and every request's body and parts."""
    uploads = sum(len(a.data) for a in fake.attachments.values())
    bodies = sum(len(r.body) + sum(len(p.data) for p in r.parts) for r in fake.requests)
    return (uploads + bodies) / (1024 * 1024)


def _refused(interaction: FakeInteraction) -> bool:
    """Answered privately (a refusal) rather than with a public job message."""
    return interaction.acked_at is not None and interaction.ephemeral


def _private_text(fake: FakeDiscord, interaction: FakeInteraction) -> str:
    for request in fake.requests:
        if (
            request.route == "interaction_callback"
            and request.params["interaction_id"] == str(interaction.id)
            and not request.injected
        ):
            data = request.payload.get("data") or {}
            if int(data.get("flags") or 0) & FLAG_EPHEMERAL:
                return str(data.get("content", ""))
    return ""


async def _until_all_answered(
    fake: FakeDiscord, bot: ImagineBot, burst: list[FakeInteraction], engine: RecordingEngine
) -> None:
    """Until every interaction of the burst was answered (or missed its 3 s), and every job
    accepted so far has ended and been delivered."""

    def settled() -> bool | None:
        now = asyncio.get_running_loop().time()
        for interaction in burst:
            if (
                interaction.acked_at is None
                and now - interaction.dispatched_at <= fake.ack_deadline_s
            ):
                return None
        for job_id in engine.accepted:
            stored = bot.store.get_job(job_id)
            if stored is None or stored.status in (JobStatus.QUEUED, JobStatus.RUNNING):
                return None
            if not stored.delivered:
                return None
        return True

    while settled() is None:  # noqa: ASYNC110 (the store and the clock change, not one event)
        await asyncio.sleep(0.1)


__all__ = ["LoadReport", "RecordingEngine", "run_load"]
