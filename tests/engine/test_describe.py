"""/describe in the engine: the tiny captioner built offline, four prompts in Midjourney's form
(`… --ar W:H` of the image), cleaned of prompt syntax, and a describe job through EngineClient."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from engine import describe, tiny_captioner
from engine.client import EngineClient
from engine.config import TINY_CAPTIONER, EngineConfig
from engine.describe import (
    CaptionerLoadError,
    Describer,
    aspect_ratio,
    clean_caption,
    load_captioner,
)
from engine.generate import GenerationError, JobCancelledError
from engine.jobs import Done, Job, JobEvent, Progress, Started, describe_job
from engine.prompt import parse_prompt
from engine.storage import InputStore, png_bytes
from engine.tiny_captioner import ensure_tiny_captioner


@pytest.fixture
def config(tmp_path: Path, models_dir: Path) -> EngineConfig:
    return EngineConfig(
        model="tiny",
        device="cpu",
        storage=tmp_path / "data",
        cache_dir=models_dir,
        captioner=TINY_CAPTIONER,
    )


@pytest.fixture
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> str:
        raise AssertionError(f"tried to download {args}")

    monkeypatch.setattr(describe, "snapshot_download", refuse)


@pytest.fixture
def describer(config: EngineConfig, no_downloads: None) -> Iterator[Describer]:
    yield Describer(config)


def picture(size: tuple[int, int]) -> bytes:
    return png_bytes(Image.new("RGB", size, (40, 90, 200)))


def job_for(config: EngineConfig, size: tuple[int, int] = (64, 48), seed: int = 7) -> Job:
    digest = InputStore(config.inputs_dir).put(picture(size))
    job = describe_job(owner="u", seed=seed)
    request = dataclasses.replace(job.request, image_inputs=(digest,))
    return dataclasses.replace(job, request=request)


def never() -> bool:
    return False


def ignore(*_: Any) -> None:
    return None


# --- the shape of a prompt


@pytest.mark.parametrize(
    ("size", "ratio"),
    [
        ((64, 48), (4, 3)),
        ((48, 64), (3, 4)),
        ((1200, 800), (3, 2)),
        ((1000, 667), (3, 2)),  # no small exact ratio: the nearest
        ((1366, 768), (16, 9)),
        ((1920, 1080), (16, 9)),
        ((512, 512), (1, 1)),
        ((5000, 100), (8, 1)),  # past 8:1, the widest --ar takes
        ((100, 5000), (1, 8)),
    ],
)
def test_the_aspect_ratio_is_reduced_small_and_within_ar_limits(
    size: tuple[int, int], ratio: tuple[int, int]
) -> None:
    assert aspect_ratio(*size) == ratio


@pytest.mark.parametrize(
    ("caption", "cleaned"),
    [
        ("a lighthouse on a cliff at dusk", "a lighthouse on a cliff at dusk"),
        ("arafed dog sitting on a couch", "dog sitting on a couch"),  # BLIP's invented word
        ("there is a cat on a roof", "a cat on a roof"),
        ("a fox --ar 16:9 in snow", "a fox ar 16:9 in snow"),  # no parameters from a caption
        ("a fox — the —v 6 look", "a fox the v 6 look"),
        ("a fox – v 6", "a fox v 6"),
        ("a {red, blue} bird", "a red, blue bird"),  # no permutations
        ("hot dog::2 bun", "hot dog 2 bun"),  # no multi-prompt weights
        ("https://example.com/a.png a cat", "a cat"),  # no image prompts
        ("a cat\x00\u200b\ufffd on a mat", "a cat on a mat"),
        ("  , a misty lake .  ", "a misty lake"),
        ("a dog , sitting - on grass", "a dog, sitting on grass"),
        ("--", ""),
        ("0 3 , .", ""),
    ],
)
def test_a_caption_is_cleaned_of_prompt_syntax(caption: str, cleaned: str) -> None:
    assert clean_caption(caption) == cleaned


def test_a_long_caption_is_cut_at_a_word() -> None:
    caption = " ".join(["lighthouse"] * 100)
    cleaned = clean_caption(caption, limit=50)
    assert len(cleaned) <= 50 and cleaned.endswith("lighthouse") and "  " not in cleaned


# --- the tiny captioner


def test_the_tiny_captioner_builds_offline_once(
    tmp_path: Path, no_downloads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[Path] = []
    build = tiny_captioner.build_tiny_captioner
    monkeypatch.setattr(
        tiny_captioner, "build_tiny_captioner", lambda d: builds.append(d) or build(d)
    )
    folder = ensure_tiny_captioner(tmp_path)
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert sum(f.stat().st_size for f in folder.iterdir()) < 1_000_000
    assert ensure_tiny_captioner(tmp_path) == folder
    assert len(builds) == 1  # not built again
    config = EngineConfig(device="cpu", storage=tmp_path, captioner=TINY_CAPTIONER)
    assert load_captioner(config).source == TINY_CAPTIONER


@pytest.mark.parametrize(("size", "ar"), [((64, 48), "4:3"), ((90, 160), "9:16")])
def test_four_different_prompts_in_midjourneys_form(
    describer: Describer, config: EngineConfig, size: tuple[int, int], ar: str
) -> None:
    progress: list[tuple[int, int]] = []
    result = describer.run(job_for(config, size), lambda s, t, _: progress.append((s, t)), never)

    assert len(result.prompts) == 4 and len(set(result.prompts)) == 4
    for prompt in result.prompts:
        text, _, ratio = prompt.rpartition(" --ar ")
        assert ratio == ar and text.strip() and "--" not in text and "{" not in text, prompt
        assert parse_prompt(prompt).aspect == tuple(int(n) for n in ar.split(":"))
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert (result.width, result.height, result.images, result.grid) == (*size, (), None)
    assert result.model == TINY_CAPTIONER


def test_the_same_seed_gives_the_same_prompts_and_another_seed_others(
    describer: Describer, config: EngineConfig
) -> None:
    first = describer.run(job_for(config, seed=11), ignore, never)
    again = Describer(config).run(job_for(config, seed=11), ignore, never)
    other = describer.run(job_for(config, seed=12345), ignore, never)
    assert first.prompts == again.prompts and first.seeds == (11, 12, 13, 14)
    assert not set(first.prompts) & set(other.prompts)


def test_a_caption_that_repeats_or_is_empty_is_drawn_again(
    describer: Describer, config: EngineConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    captions = iter(["a red barn", "a red barn", "--", "a blue barn", "a green barn", "a barn"])
    monkeypatch.setattr(describe, "_caption", lambda *_: next(captions))
    result = describer.run(job_for(config, seed=100), ignore, never)
    assert [p.removesuffix(" --ar 4:3") for p in result.prompts] == [
        "a red barn",
        "a blue barn",
        "a green barn",
        "a barn",
    ]
    assert result.seeds == (100, 109, 102, 103)  # the 2nd tried 101, then 105, then 109


def test_a_captioner_that_always_repeats_itself_fails_with_a_message(
    describer: Describer, config: EngineConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(describe, "_caption", lambda *_: "a red barn")
    with pytest.raises(GenerationError, match="four different descriptions"):
        describer.run(job_for(config), ignore, never)


def test_a_cancelled_describe_stops(describer: Describer, config: EngineConfig) -> None:
    with pytest.raises(JobCancelledError):
        describer.run(job_for(config), ignore, lambda: True)


def test_an_image_no_longer_in_storage_fails_with_a_message(
    describer: Describer, config: EngineConfig
) -> None:
    job = job_for(config)
    InputStore(config.inputs_dir).path(job.request.image_inputs[0]).unlink()
    with pytest.raises(FileNotFoundError, match="the image to describe is no longer in storage"):
        describer.run(job, ignore, never)


def test_a_captioner_that_cannot_load_says_which_and_what_to_do(
    config: EngineConfig, tmp_path: Path
) -> None:
    missing = replace_captioner(config, str(tmp_path / "no-such-captioner"))
    with pytest.raises(CaptionerLoadError) as raised:
        Describer(missing).run(job_for(missing), ignore, never)
    message = str(raised.value)
    assert message.startswith("could not load the captioner local: no transformers model")
    assert "[engine] captioner" in message


def replace_captioner(config: EngineConfig, source: str) -> EngineConfig:
    return dataclasses.replace(config, captioner=source)


# --- through the engine process


@pytest.mark.asyncio(loop_scope="session")
async def test_a_describe_job_runs_through_the_engine_client(tiny_engine: EngineClient) -> None:
    job = job_for(tiny_engine.config, (120, 80), seed=3)
    handle = await tiny_engine.submit(job)

    async def every() -> list[JobEvent]:
        return [event async for event in handle.events()]

    events = await asyncio.wait_for(every(), 120)
    assert any(isinstance(e, Started) for e in events)
    assert [(e.step, e.total) for e in events if isinstance(e, Progress)] == [
        (1, 4),
        (2, 4),
        (3, 4),
        (4, 4),
    ]
    done = events[-1]
    assert isinstance(done, Done), events
    prompts = done.result.prompts
    assert len(set(prompts)) == 4 and all(p.endswith(" --ar 3:2") for p in prompts)
    assert len(set(done.result.seeds)) == 4
