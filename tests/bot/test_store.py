import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import fields, replace
from pathlib import Path

import pytest

from bot.store import (
    MIGRATIONS,
    PROFILE_CODE_LENGTH,
    SCHEMA_VERSION,
    JobStatus,
    Store,
    StoredJob,
    UserSettings,
    job_from_json,
    job_to_json,
    request_from_dict,
    request_to_dict,
    result_from_json,
    result_to_json,
    settings_from_json,
    settings_to_json,
)
from engine.jobs import (
    Direction,
    Edit,
    ImageRef,
    Job,
    JobKind,
    JobResult,
    Strength,
    Tool,
    imagine_job,
    vary_job,
)
from engine.prompt.request import ImagineRequest, LoraUse, PromptPart

# Every field differs from its default, so a field the serializer forgets fails the round trip.
FULL_REQUEST = ImagineRequest(
    prompt="a red bird::2 sky::-0.5",
    parts=(PromptPart("a red bird", 2.0), PromptPart("sky", -0.5)),
    negative=("blur", "text, watermark"),
    image_urls=("https://example.com/a.png",),
    image_inputs=("ab" * 32,),
    style_inputs=("cd" * 32, "ef" * 32),
    style_input_weights=(2.0, 1.0),
    object_inputs=("ef" * 32,),
    aspect=(16, 9),
    seed=4_294_967_295,
    chaos=30,
    stylize=750,
    quality=0.25,
    stop=80,
    tile=True,
    weird=250,
    repeat=3,
    image_weight=1.5,
    model="niji",
    version="6.1",
    style_raw=True,
    style="cute",
    experimental=25,
    draft=True,
    hd=True,
    zoom=1.5,
    personalize=("abc1234",),
    personal_styles=("muted film colours",),
    style_refs=("https://example.com/s.png::2", "123"),
    style_ref_weight=300,
    style_ref_version=4,
    object_refs=("https://example.com/o.png",),
    object_ref_weight=250,
    character_weight=50,
    steps=12,
    cfg=4.5,
    sampler="euler_a",
    speed="relax",
    loras=(LoraUse("ink", 0.8, "ink wash"), LoraUse("pixel", -0.5)),
    raw="https://example.com/a.png a red bird::2 sky::-0.5 --ar 16:9 …",
    notes=("`--v 6.1` is a Midjourney model; here it ran on **niji**",),
)
FULL_JOB = Job(
    id="f" * 32,
    kind=JobKind.VARY,
    request=FULL_REQUEST,
    model="niji",
    seed=7,
    owner="1234",
    source=ImageRef("e" * 32, 3),
    strength=Strength.SUBTLE,
)
FULL_RESULT = JobResult(
    job_id="f" * 32,
    images=(Path("/data/images/a-0.png"), Path("/elsewhere/a-1.png")),
    grid=Path("/data/images/a-grid.png"),
    seeds=(7, 8),
    width=1344,
    height=768,
    model="niji",
    steps=12,
    elapsed_s=3.25,
)
FULL_SETTINGS = UserSettings(
    model="niji",
    stylize=250,
    variation=Strength.SUBTLE,
    remix=True,
    suffix="--ar 3:2",
    options=(("mine", "--s 250"), ("wide", "--ar 21:9")),
    loras=("ink", "pixel"),
)


def assert_not_defaults(value: object, default: object) -> None:
    for f in fields(value):  # type: ignore[arg-type]
        assert getattr(value, f.name) != getattr(default, f.name), f"set {f.name} in the test"


def test_test_values_set_every_field() -> None:
    assert_not_defaults(FULL_REQUEST, ImagineRequest(prompt=""))
    assert_not_defaults(FULL_SETTINGS, UserSettings())
    assert set(request_to_dict(FULL_REQUEST)) == {f.name for f in fields(ImagineRequest)}


def test_request_round_trip_keeps_every_field() -> None:
    back = request_from_dict(request_to_dict(FULL_REQUEST))
    assert back == FULL_REQUEST
    assert back.raw == FULL_REQUEST.raw  # raw and notes are left out of ==
    assert back.notes == FULL_REQUEST.notes
    assert isinstance(back.aspect, tuple) and isinstance(back.parts[0], PromptPart)


def test_request_with_defaults_round_trips() -> None:
    request = ImagineRequest(prompt="cat", parts=(PromptPart("cat"),))
    assert request_from_dict(request_to_dict(request)) == request


@pytest.mark.parametrize(
    "job",
    [
        FULL_JOB,
        imagine_job(ImagineRequest(prompt="cat"), model="sdxl", owner="1", seed=0),
        replace(FULL_JOB, kind=JobKind.UPSCALE, strength=Strength.CREATIVE),
        replace(FULL_JOB, kind=JobKind.EDIT, strength=None, edit=Edit(Tool.ZOOM, 1.5, (16, 9))),
        replace(
            FULL_JOB, kind=JobKind.EDIT, strength=None, edit=Edit(Tool.PAN, direction=Direction.UP)
        ),
        replace(FULL_JOB, kind=JobKind.EDIT, strength=None, edit=Edit(Tool.REGION, mask="ab" * 32)),
    ],
)
def test_job_round_trip(job: Job) -> None:
    back = job_from_json(job_to_json(job))
    assert back == job
    assert back.request.raw == job.request.raw
    assert back.kind is job.kind and back.strength is job.strength
    assert back.edit == job.edit and (job.edit is None or back.edit.tool is job.edit.tool)


def test_result_round_trip() -> None:
    assert result_from_json(result_to_json(FULL_RESULT)) == FULL_RESULT
    upscale = replace(FULL_RESULT, grid=None, images=(Path("x.png"),), seeds=(7,))
    assert result_from_json(result_to_json(upscale)) == upscale


def test_settings_round_trip() -> None:
    assert settings_from_json(settings_to_json(FULL_SETTINGS)) == FULL_SETTINGS
    assert settings_from_json(settings_to_json(UserSettings())) == UserSettings()


def test_settings_saved_by_an_older_version_load_with_defaults() -> None:
    assert settings_from_json('{"remix": true}') == UserSettings(remix=True)


def test_a_request_saved_before_the_new_parameters_loads_with_their_defaults() -> None:
    saved = request_to_dict(ImagineRequest(prompt="cat", parts=(PromptPart("cat"),)))
    for key in ("version", "style", "experimental", "draft", "hd", "personalize", "notes"):
        del saved[key]
    assert request_from_dict(saved) == ImagineRequest(prompt="cat", parts=(PromptPart("cat"),))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "db" / "bot.sqlite3") as s:
        yield s


def new_job(owner: str = "1", prompt: str = "cat") -> Job:
    return imagine_job(ImagineRequest(prompt=prompt), model="sdxl", owner=owner)


def test_add_and_get_job(store: Store) -> None:
    store.add_job(FULL_JOB, channel_id=5, message_id=6)
    stored = store.get_job(FULL_JOB.id)
    assert stored is not None
    assert stored.job == FULL_JOB
    assert (stored.status, stored.channel_id, stored.message_id) == (JobStatus.QUEUED, 5, 6)
    assert (stored.result, stored.error) == (None, None)
    assert stored.job.source == ImageRef("e" * 32, 3)
    assert stored.created_at > 0


def test_unknown_job_is_none(store: Store) -> None:
    assert store.get_job("nope") is None


def test_duplicate_job_id_is_refused(store: Store) -> None:
    store.add_job(FULL_JOB)
    with pytest.raises(sqlite3.IntegrityError):
        store.add_job(FULL_JOB)


def test_set_message(store: Store) -> None:
    job = new_job()
    store.add_job(job)
    store.set_message(job.id, 10, 2**62)  # Discord ids are 64-bit
    stored = store.get_job(job.id)
    assert stored is not None and (stored.channel_id, stored.message_id) == (10, 2**62)


def test_status_lifecycle(store: Store) -> None:
    store.add_job(FULL_JOB)
    store.set_status(FULL_JOB.id, JobStatus.RUNNING)
    store.set_status(FULL_JOB.id, JobStatus.DONE, result=FULL_RESULT)
    stored = store.get_job(FULL_JOB.id)
    assert stored is not None
    assert (stored.status, stored.result, stored.error) == (JobStatus.DONE, FULL_RESULT, None)


def test_failed_job_keeps_its_error(store: Store) -> None:
    job = new_job()
    store.add_job(job)
    store.set_status(job.id, JobStatus.FAILED, error="out of GPU memory")
    stored = store.get_job(job.id)
    assert stored is not None
    assert (stored.status, stored.error) == (JobStatus.FAILED, "out of GPU memory")


def test_updating_an_unknown_job_raises(store: Store) -> None:
    with pytest.raises(KeyError):
        store.set_status("nope", JobStatus.DONE)
    with pytest.raises(KeyError):
        store.set_message("nope", 1, 2)


def add(store: Store, jobs: list[Job], statuses: list[JobStatus]) -> None:
    for job, status in zip(jobs, statuses, strict=True):
        store.add_job(job)
        if status is not JobStatus.QUEUED:
            store.set_status(job.id, status)


def test_user_jobs_newest_first_filtered_and_limited(store: Store) -> None:
    mine = [new_job("me", f"p{i}") for i in range(4)]
    add(store, mine, [JobStatus.DONE, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.FAILED])
    store.add_job(new_job("someone else"))

    def ids(jobs: list[StoredJob]) -> list[str]:
        return [s.job.id for s in jobs]

    newest_first = [j.id for j in reversed(mine)]
    assert ids(store.user_jobs("me")) == newest_first
    assert ids(store.user_jobs("me", limit=2)) == newest_first[:2]
    running_or_queued = store.user_jobs("me", {JobStatus.QUEUED, JobStatus.RUNNING})
    assert ids(running_or_queued) == [mine[2].id, mine[1].id]
    assert store.user_jobs("me", []) == []
    assert store.user_jobs("nobody") == []


def test_unfinished_jobs_oldest_first(store: Store) -> None:
    jobs = [new_job(str(i)) for i in range(5)]
    statuses = [JobStatus.RUNNING, JobStatus.DONE, JobStatus.QUEUED, JobStatus.CANCELLED]
    add(store, jobs, [*statuses, JobStatus.QUEUED])
    assert [s.job.id for s in store.unfinished_jobs()] == [jobs[0].id, jobs[2].id, jobs[4].id]


def test_settings_default_then_saved_then_replaced(store: Store) -> None:
    assert store.get_settings("1") == UserSettings()
    store.save_settings("1", FULL_SETTINGS)
    assert store.get_settings("1") == FULL_SETTINGS
    store.save_settings("1", UserSettings(remix=True))
    assert store.get_settings("1") == UserSettings(remix=True)
    assert store.get_settings("2") == UserSettings()


def test_everything_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    job = vary_job(FULL_JOB, 1, Strength.STRONG, owner="2")
    with Store(path) as store:
        store.add_job(job, channel_id=1, message_id=2)
        store.set_status(job.id, JobStatus.RUNNING)
        store.save_settings("2", FULL_SETTINGS)
    with Store(path) as store:
        stored = store.get_job(job.id)
        assert stored is not None and stored.job == job and stored.status is JobStatus.RUNNING
        assert [s.job.id for s in store.unfinished_jobs()] == [job.id]
        assert store.get_settings("2") == FULL_SETTINGS


def schema_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT version FROM schema_version").fetchone()[0])
    finally:
        db.close()


def test_schema_version_is_recorded_and_wal_is_on(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    Store(path).close()
    assert schema_version(path) == SCHEMA_VERSION
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


def test_database_from_a_newer_bot_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    Store(path).close()
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    db.close()
    with pytest.raises(RuntimeError, match="newer than this bot"):
        Store(path)


def test_safe_to_use_from_threads(store: Store) -> None:
    def work(n: int) -> None:
        for i in range(20):
            job = new_job(str(n), f"{n}-{i}")
            store.add_job(job)
            store.set_status(job.id, JobStatus.DONE)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(len(store.user_jobs(str(n), limit=100)) == 20 for n in range(4))


def test_a_profile_gets_a_code_that_finds_it_and_keeps_it_when_changed(store: Store) -> None:
    assert store.get_profile("1") is None
    first = store.save_profile("1", "muted film colours")
    assert len(first.code) == PROFILE_CODE_LENGTH and first.code.isalnum()
    assert store.profile_style(first.code) == "muted film colours"
    assert store.profile_style(first.code.upper()) == "muted film colours"  # codes any case

    changed = store.save_profile("1", "neon noir")

    assert changed.code == first.code and store.get_profile("1") == changed
    assert store.profile_style(first.code) == "neon noir"
    other = store.save_profile("2", "pastel")
    assert other.code != first.code
    assert store.delete_profile("1") and not store.delete_profile("1")
    assert store.profile_style(first.code) is None and store.get_profile("2") == other


def test_a_database_of_the_first_schema_is_migrated_with_its_jobs(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO schema_version VALUES (1)")
    for statement in MIGRATIONS[0]:
        db.execute(statement)
    db.commit()
    db.close()
    with Store(path) as store:
        store.add_job(new_job())
        assert store.save_profile("1", "x").style == "x"
    assert sqlite3.connect(path).execute("SELECT version FROM schema_version").fetchone() == (
        SCHEMA_VERSION,
    )


def test_image_paths_are_kept_relative_so_the_storage_can_move(tmp_path: Path) -> None:
    """As the Docker setup does: the same storage directory, mounted somewhere else."""
    old_root = tmp_path / "old"
    job = new_job()
    images = tuple(old_root / "images" / job.id / f"{i}.png" for i in range(4))
    result = replace(FULL_RESULT, job_id=job.id, images=images, grid=images[0].parent / "grid.png")
    with Store(old_root / "bot.sqlite3") as store:
        store.add_job(job)
        store.set_status(job.id, JobStatus.DONE, result=result)
    raw = sqlite3.connect(old_root / "bot.sqlite3").execute("SELECT result FROM jobs").fetchone()
    assert f'"images/{job.id}/0.png"' in raw[0] and str(old_root) not in raw[0]

    new_root = tmp_path / "moved"
    old_root.rename(new_root)
    with Store(new_root / "bot.sqlite3") as store:
        stored = store.get_job(job.id)
    assert stored is not None and stored.result is not None
    assert stored.result.images[2] == new_root / "images" / job.id / "2.png"
    assert stored.result.grid == new_root / "images" / job.id / "grid.png"


def test_absolute_paths_of_an_older_database_are_migrated(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO schema_version VALUES (3)")
    for version in range(3):
        for step in MIGRATIONS[version]:
            assert isinstance(step, str)
            db.execute(step)
    job = new_job()
    old = replace(
        FULL_RESULT,
        job_id=job.id,
        images=(Path(f"/srv/old-place/images/{job.id}/0.png"),),
        grid=Path(f"/srv/old-place/images/{job.id}/grid.png"),
    )
    db.execute(
        "INSERT INTO jobs (id, owner, status, created_at, updated_at, job, result)"
        " VALUES (?, '1', 'done', 0, 0, ?, ?)",
        (job.id, job_to_json(job), result_to_json(old)),
    )
    db.commit()
    db.close()

    with Store(path) as store:
        stored = store.get_job(job.id)

    assert stored is not None and stored.result is not None
    assert stored.result.images == (tmp_path / "images" / job.id / "0.png",)
    assert stored.result.grid == tmp_path / "images" / job.id / "grid.png"


def test_a_token_is_used_once_and_stays_used_after_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    with Store(path) as store:
        assert not store.token_used("n1")
        assert store.use_token("n1")
        assert not store.use_token("n1")
        assert store.token_used("n1") and not store.token_used("n2")
    with Store(path) as store:
        assert store.token_used("n1") and not store.use_token("n1")
        assert store.use_token("n2")


def test_a_token_is_used_once_across_threads(tmp_path: Path) -> None:
    with Store(tmp_path / "bot.sqlite3") as store:
        wins: list[bool] = []
        threads = [
            threading.Thread(target=lambda: wins.append(store.use_token("n"))) for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(wins) == [False] * 7 + [True]


def test_old_used_tokens_are_forgotten(tmp_path: Path) -> None:
    with Store(tmp_path / "bot.sqlite3") as store:
        store.use_token("old")
        assert store.forget_tokens(used_before=0.0) == 0
        assert store.forget_tokens(used_before=time.time() + 1) == 1
        assert not store.token_used("old")
