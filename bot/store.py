"""Job state and per-user settings in SQLite, so grids, buttons and /settings survive restarts.

The store is synchronous on purpose: every call is one tiny transaction on a local WAL database
(measured: ~0.05 ms for a write or a lookup, under 1 ms to list 25 jobs), which blocks the event
loop less than handing the call to a thread would cost.
Jobs, requests and results live in JSON columns written by the explicit functions below.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import sqlite3
import string
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

import msgspec

from engine.jobs import Job, JobResult, Strength
from engine.prompt.request import ImagineRequest

log = logging.getLogger(__name__)


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


UNFINISHED = (JobStatus.QUEUED, JobStatus.RUNNING)
FINISHED = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass(frozen=True)
class StoredJob:
    job: Job
    status: JobStatus
    created_at: float  # time.time()
    channel_id: int | None
    message_id: int | None  # the message that shows the job (progress, then the grid)
    result: JobResult | None
    error: str | None
    guild_id: int | None = None  # None: a direct message
    interruptions: int = 0  # times a run was cut short by the bot stopping (see `interrupted`)
    delivered: bool = False  # a finished job's last message was shown to its owner

    @property
    def jump_url(self) -> str | None:
        """The Discord link to the job's message, when it has one."""
        if self.channel_id is None or self.message_id is None:
            return None
        where = self.guild_id or "@me"
        return f"https://discord.com/channels/{where}/{self.channel_id}/{self.message_id}"


@dataclass(frozen=True)
class UserSettings:
    model: str | None = None  # a preset name; None: the server's default
    stylize: int = 100
    variation: Strength = Strength.STRONG  # what V1…V4 do
    remix: bool = False  # edit the prompt before a variation or reroll runs
    suffix: str = ""  # appended to every prompt (/prefer suffix)
    options: tuple[tuple[str, str], ...] = ()  # (NAME, VALUE): --NAME stands for VALUE, by name
    loras: tuple[str, ...] = ()  # [loras] names used when a prompt has no --lora


@dataclass(frozen=True)
class Profile:
    """A personalization profile (/prefer personalize): a style text `--p` adds to prompts.
    Its owner's `--p` uses it; anyone's `--p CODE` does too, as with Midjourney's codes."""

    code: str
    style: str


# --- JSON (de)serialization -------------------------------------------------------------------
# msgspec maps the frozen dataclasses to JSON objects field by field and back, checking every
# type. Fields added since a row was written are missing from it: their defaults apply.


def _encode_path(obj: Any) -> Any:
    if isinstance(obj, Path):
        return obj.as_posix()
    raise NotImplementedError(f"cannot store {type(obj).__name__}")


def _decode_path(kind: type, obj: Any) -> Any:
    if kind is Path:
        return Path(obj)
    raise NotImplementedError(f"cannot load {kind}")


_ENCODER = msgspec.json.Encoder(enc_hook=_encode_path)


def request_to_dict(req: ImagineRequest) -> dict[str, Any]:
    return cast(dict[str, Any], msgspec.to_builtins(req))


def request_from_dict(d: Mapping[str, Any]) -> ImagineRequest:
    return msgspec.convert(d, ImagineRequest)


def job_to_json(job: Job) -> str:
    return _ENCODER.encode(job).decode()


def job_from_json(s: str) -> Job:
    return msgspec.json.decode(s, type=Job)


def result_to_json(result: JobResult, root: Path | None = None) -> str:
    """Image paths under `root` (the storage directory) are kept relative to it, so the storage
    can move (as the Docker setup's volume does) without breaking old buttons."""

    def keep(path: Path) -> Path:
        return path.relative_to(root) if root is not None and path.is_relative_to(root) else path

    grid = None if result.grid is None else keep(result.grid)
    kept = dataclasses.replace(result, images=tuple(map(keep, result.images)), grid=grid)
    return _ENCODER.encode(kept).decode()


def result_from_json(s: str, root: Path | None = None) -> JobResult:
    """Relative image paths are resolved against `root` (the storage directory)."""
    result = msgspec.json.decode(s, type=JobResult, dec_hook=_decode_path)

    def place(path: Path) -> Path:
        return root / path if root is not None and not path.is_absolute() else path

    grid = None if result.grid is None else place(result.grid)
    return dataclasses.replace(result, images=tuple(map(place, result.images)), grid=grid)


def settings_to_json(settings: UserSettings) -> str:
    # Custom options as {NAME: VALUE}: the JSON reads as the /prefer option list does.
    data = {**msgspec.to_builtins(settings), "options": dict(settings.options)}
    return _ENCODER.encode(data).decode()


def settings_from_json(s: str) -> UserSettings:
    data = msgspec.json.decode(s)
    data["options"] = sorted(data.get("options", {}).items())
    return msgspec.convert(data, UserSettings)


# --- the database ------------------------------------------------------------------------------


def _relative_image_paths(db: sqlite3.Connection) -> None:
    """Results written with absolute paths (before version 4) get paths relative to the storage
    directory, wherever that directory was then: `/old/data/images/<job>/0.png` becomes
    `images/<job>/0.png`."""
    rows = db.execute("SELECT id, result FROM jobs WHERE result IS NOT NULL").fetchall()
    for job_id, text in rows:
        result = json.loads(text)
        result["images"] = [_relative_to_storage(p, job_id) for p in result["images"]]
        result["grid"] = _relative_to_storage(result["grid"], job_id)
        db.execute("UPDATE jobs SET result = ? WHERE id = ?", (json.dumps(result), job_id))


def _relative_to_storage(path: str | None, job_id: str) -> str | None:
    parts = None if path is None else Path(path).parts
    if parts is None or len(parts) < 3 or parts[-3:-1] != ("images", job_id):
        return path
    return "/".join(parts[-3:])


Migration = str | Callable[[sqlite3.Connection], None]
# MIGRATIONS[i] takes the schema from version i to i + 1; append, never edit a shipped one.
MIGRATIONS: tuple[tuple[Migration, ...], ...] = (
    (
        """CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            status TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            channel_id INTEGER,
            message_id INTEGER,
            job TEXT NOT NULL,
            result TEXT,
            error TEXT
        )""",
        "CREATE INDEX jobs_by_owner ON jobs (owner, created_at)",
        "CREATE INDEX jobs_by_status ON jobs (status, created_at)",
        "CREATE INDEX jobs_by_message ON jobs (message_id)",
        "CREATE TABLE user_settings (user_id TEXT PRIMARY KEY, settings TEXT NOT NULL)",
    ),
    (
        """CREATE TABLE profiles (
            user_id TEXT PRIMARY KEY,
            code TEXT NOT NULL UNIQUE,
            style TEXT NOT NULL,
            updated_at REAL NOT NULL
        )""",
    ),
    (
        "ALTER TABLE jobs ADD COLUMN guild_id INTEGER",
        "ALTER TABLE jobs ADD COLUMN interruptions INTEGER NOT NULL DEFAULT 0",
        # NULL: a finished job whose last message is still to be shown (retried until it is)
        "ALTER TABLE jobs ADD COLUMN delivered_at REAL",
        "UPDATE jobs SET delivered_at = updated_at WHERE status IN ('done', 'failed', 'cancelled')",
    ),
    (_relative_image_paths,),
    (
        # Nonces of the one-use links of the Vary (Region) editor (bot/region_tokens.py) that
        # were used: a link stays used across restarts for as long as it is valid.
        "CREATE TABLE used_tokens (nonce TEXT PRIMARY KEY, used_at REAL NOT NULL)",
    ),
    (
        # Discord CDN links the bot read an image prompt from, without their expiring signature,
        # and the kept image's digest (bot/image_prompts.py): a prompt pasted after the link
        # expired still runs, for as long as the image is kept.
        "CREATE TABLE kept_links (link TEXT PRIMARY KEY, digest TEXT NOT NULL, kept_at REAL)",
    ),
)
PROFILE_CODE_LENGTH = 7  # like Midjourney's codes: `--p 4x7kq2m`
_CODE_ALPHABET = string.ascii_lowercase + string.digits
SCHEMA_VERSION = len(MIGRATIONS)

_JOB_COLUMNS = (
    "job, status, created_at, channel_id, message_id, result, error, guild_id, interruptions,"
    " delivered_at"
)


class Store:
    """One SQLite connection, shared by the bot; a lock makes it safe from worker threads too."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._root = path.parent  # the storage directory: image paths are kept relative to it
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL survives a crash of the bot; a power cut may lose the last write.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        with self._db:
            # One explicit transaction: sqlite3 would otherwise autocommit each CREATE on its own.
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self._db.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                self._db.execute("INSERT INTO schema_version VALUES (0)")
            version = 0 if row is None else row[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"the database is at schema version {version}, newer than this bot "
                    f"({SCHEMA_VERSION}); upgrade the bot"
                )
            for i in range(version, SCHEMA_VERSION):
                for step in MIGRATIONS[i]:
                    if isinstance(step, str):
                        self._db.execute(step)
                    else:
                        step(self._db)
                log.info("database schema migrated to version %d", i + 1)
            self._db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    def _write(self, sql: str, params: tuple[Any, ...]) -> int:
        """Run one statement in its own transaction; the number of rows it changed."""
        with self._lock, self._db:
            return self._db.execute(sql, params).rowcount

    def _read(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # --- jobs

    def add_job(
        self,
        job: Job,
        *,
        channel_id: int | None = None,
        message_id: int | None = None,
        guild_id: int | None = None,
    ) -> None:
        now = time.time()
        self._write(
            "INSERT INTO jobs (id, owner, status, created_at, updated_at, channel_id, message_id,"
            " job, guild_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (job.id, job.owner, JobStatus.QUEUED.value, now, now, channel_id, message_id,
             job_to_json(job), guild_id),
        )  # fmt: skip

    def get_job(self, job_id: str) -> StoredJob | None:
        rows = self._read(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return _stored_job(rows[0], self._root) if rows else None

    def set_message(self, job_id: str, channel_id: int | None, message_id: int) -> None:
        changed = self._write(
            "UPDATE jobs SET channel_id = ?, message_id = ?, updated_at = ? WHERE id = ?",
            (channel_id, message_id, time.time(), job_id),
        )
        _check_found(changed, job_id)

    def job_for_message(self, message_id: int) -> StoredJob | None:
        """The job this message shows (its progress, then its result)."""
        rows = self._read(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE message_id = ? ORDER BY rowid DESC LIMIT 1",
            (message_id,),
        )
        return _stored_job(rows[0], self._root) if rows else None

    def forget_message(self, job_id: str) -> None:
        """The job's message was deleted: /info offers `/show` instead of a dead link."""
        _check_found(
            self._write(
                "UPDATE jobs SET message_id = NULL, updated_at = ? WHERE id = ?",
                (time.time(), job_id),
            ),
            job_id,
        )

    def set_status(
        self,
        job_id: str,
        status: JobStatus,
        *,
        result: JobResult | None = None,
        error: str | None = None,
    ) -> None:
        # A job that ends has its last message still to show: delivered_at is cleared.
        changed = self._write(
            "UPDATE jobs SET status = ?, result = ?, error = ?, updated_at = ?,"
            " delivered_at = CASE WHEN ? THEN NULL ELSE delivered_at END WHERE id = ?",
            (status.value, None if result is None else result_to_json(result, self._root), error,
             time.time(), status in FINISHED, job_id),
        )  # fmt: skip
        _check_found(changed, job_id)

    def set_delivered(self, job_id: str) -> None:
        """The finished job's last message reached its owner: nothing is left to retry."""
        _check_found(
            self._write("UPDATE jobs SET delivered_at = ? WHERE id = ?", (time.time(), job_id)),
            job_id,
        )

    def interrupted(self, job_id: str) -> int:
        """The bot stopped while the job ran: it goes back to the queue. The number of times
        that has now happened to it."""
        self._write(
            "UPDATE jobs SET status = ?, interruptions = interruptions + 1, updated_at = ?"
            " WHERE id = ?",
            (JobStatus.QUEUED.value, time.time(), job_id),
        )
        rows = self._read("SELECT interruptions FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise KeyError(f"no job {job_id!r} in the store")
        return int(rows[0][0])

    def user_jobs(
        self, owner: str, statuses: Collection[JobStatus] | None = None, limit: int = 25
    ) -> list[StoredJob]:
        """`owner`'s jobs, newest first."""
        chosen = tuple(JobStatus) if statuses is None else tuple(statuses)
        marks = ", ".join("?" * len(chosen))
        rows = self._read(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE owner = ? AND status IN ({marks})"
            " ORDER BY created_at DESC, rowid DESC LIMIT ?",
            (owner, *(s.value for s in chosen), limit),
        )
        return [_stored_job(row, self._root) for row in rows]

    def unfinished_jobs(self) -> list[StoredJob]:
        """Running, then queued jobs, each oldest first: what a restart resubmits, in order."""
        rows = self._read(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE status IN (?, ?)"
            " ORDER BY status = 'queued', created_at, rowid",
            tuple(s.value for s in UNFINISHED),
        )
        return [_stored_job(row, self._root) for row in rows]

    def undelivered_jobs(self) -> list[StoredJob]:
        """Finished jobs whose last message has not reached their owner yet, oldest first."""
        marks = ", ".join("?" * len(FINISHED))
        rows = self._read(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE status IN ({marks}) AND delivered_at IS NULL"
            " ORDER BY created_at, rowid",
            tuple(s.value for s in FINISHED),
        )
        return [_stored_job(row, self._root) for row in rows]

    # --- image prompts read from Discord's CDN

    def keep_link(self, link: str, digest: str) -> None:
        self._write(
            "INSERT OR REPLACE INTO kept_links (link, digest, kept_at) VALUES (?, ?, ?)",
            (link, digest, time.time()),
        )

    def kept_link(self, link: str) -> str | None:
        """The digest of the image last read from `link`, if any."""
        rows = self._read("SELECT digest FROM kept_links WHERE link = ?", (link,))
        return str(rows[0][0]) if rows else None

    # --- settings

    def get_settings(self, user_id: str) -> UserSettings:
        rows = self._read("SELECT settings FROM user_settings WHERE user_id = ?", (user_id,))
        return settings_from_json(rows[0][0]) if rows else UserSettings()

    def save_settings(self, user_id: str, settings: UserSettings) -> None:
        self._write(
            "INSERT INTO user_settings (user_id, settings) VALUES (?, ?)"
            " ON CONFLICT (user_id) DO UPDATE SET settings = excluded.settings",
            (user_id, settings_to_json(settings)),
        )

    # --- personalization profiles

    def get_profile(self, user_id: str) -> Profile | None:
        rows = self._read("SELECT code, style FROM profiles WHERE user_id = ?", (user_id,))
        return Profile(*rows[0]) if rows else None

    def profile_style(self, code: str) -> str | None:
        """The style text of the profile with this `--p` code, or None."""
        rows = self._read("SELECT style FROM profiles WHERE code = ?", (code.lower(),))
        return rows[0][0] if rows else None

    def save_profile(self, user_id: str, style: str) -> Profile:
        """Set `user_id`'s profile text; its code stays what it was (shared codes keep working)."""
        for _ in range(10):
            current = self.get_profile(user_id)
            if current is not None:
                self._write(
                    "UPDATE profiles SET style = ?, updated_at = ? WHERE user_id = ?",
                    (style, time.time(), user_id),
                )
                return Profile(current.code, style)
            code = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(PROFILE_CODE_LENGTH))
            try:
                self._write(
                    "INSERT INTO profiles (user_id, code, style, updated_at) VALUES (?, ?, ?, ?)",
                    (user_id, code, style, time.time()),
                )
                return Profile(code, style)
            except sqlite3.IntegrityError:  # the code is taken (1 in 36^7), or the user's row
                continue  # was just written by another call: look again
        raise RuntimeError(f"could not save the profile of user {user_id}")

    def delete_profile(self, user_id: str) -> bool:
        return self._write("DELETE FROM profiles WHERE user_id = ?", (user_id,)) > 0

    # --- one-use links

    def use_token(self, nonce: str) -> bool:
        """Mark a link's nonce used: True the first time, False ever after."""
        return (
            self._write(
                "INSERT INTO used_tokens (nonce, used_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (nonce, time.time()),
            )
            == 1
        )

    def token_used(self, nonce: str) -> bool:
        return bool(self._read("SELECT 1 FROM used_tokens WHERE nonce = ?", (nonce,)))

    def forget_tokens(self, used_before: float) -> int:
        """Drop the nonces used before this time.time() (links that have expired by then need
        no record); how many."""
        return self._write("DELETE FROM used_tokens WHERE used_at < ?", (used_before,))


def _stored_job(row: tuple[Any, ...], root: Path) -> StoredJob:
    job, status, created_at, channel_id, message_id, result, error = row[:7]
    guild_id, interruptions, delivered_at = row[7:]
    return StoredJob(
        job=job_from_json(job),
        status=JobStatus(status),
        created_at=created_at,
        channel_id=channel_id,
        message_id=message_id,
        result=None if result is None else result_from_json(result, root),
        error=error,
        guild_id=guild_id,
        interruptions=interruptions,
        delivered=delivered_at is not None,
    )


def _check_found(changed: int, job_id: str) -> None:
    if changed == 0:
        raise KeyError(f"no job {job_id!r} in the store")
