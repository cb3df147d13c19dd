"""Jobs drawn together (engine.batching): which jobs go together, each job's images as drawn
alone, previews and cancel per job, and the client sending them as one batch to a real engine
process."""

from __future__ import annotations

import asyncio
import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.batching import take_together
from engine.client import EngineClient
from engine.config import EngineConfig
from engine.generate import Generator
from engine.jobs import Cancelled, Done, Job, Progress, Started, Strength, imagine_job, vary_job
from engine.prompt import parse_prompt
from engine.queue import FairQueue
from tests.engine.conftest import Recorder, run
from tests.engine.test_client import collect, kill_engine, wait_for

TINY_GRID = 4 * 128 * 128  # the pixels of one tiny 128² grid's four images


def job(prompt: str, owner: str = "u") -> Job:
    return imagine_job(parse_prompt(prompt), model="tiny", owner=owner)


def queued(*jobs: Job) -> FairQueue:
    queue = FairQueue()
    for one in jobs:
        queue.put(one)
    return queue


def taken(queue: FairQueue, config: EngineConfig) -> list[Job]:
    first = queue.get_nowait()
    assert first is not None
    return take_together(first, queue, config)


def test_alike_jobs_next_in_the_queue_go_together_within_the_pixel_budget(
    engine_config: EngineConfig,
) -> None:
    config = replace(engine_config, batch_pixels=3 * TINY_GRID)
    jobs = [job(f"a fox number {i} --seed {i} --chaos 0", owner=f"user{i}") for i in range(5)]
    queue = queued(*jobs)

    assert taken(queue, config) == jobs[:3]  # different prompts and seeds; 3 grids fit
    assert taken(queue, config) == jobs[3:]
    assert len(queue) == 0


def test_batching_stops_at_the_first_job_that_differs_and_never_reorders(
    engine_config: EngineConfig,
) -> None:
    config = replace(engine_config, batch_pixels=8 * TINY_GRID)
    a, b = job("a fox --seed 1", "ann"), job("a fox --seed 2", "bob")
    wide = job("a fox --ar 16:9", "cid")  # another size
    c = job("a cat --seed 3", "dan")
    queue = queued(a, b, wide, c)

    assert taken(queue, config) == [a, b]
    assert taken(queue, config) == [wide]  # c would go with a and b, but may not overtake it
    assert taken(queue, config) == [c]


def test_a_batch_holds_one_job_per_owner(engine_config: EngineConfig) -> None:
    # Ann sent three before anyone else: drawn together they would all start at once, past
    # [limits] max_running_per_user, and Bob, arriving a moment later, would wait for all three.
    config = replace(engine_config, batch_pixels=8 * TINY_GRID)
    ann = [job(f"a fox --seed {i}", "ann") for i in range(3)]
    queue = queued(*ann)

    assert taken(queue, config) == ann[:1]
    bob = job("a fox --seed 9", "bob")
    queue.put(bob)
    assert taken(queue, config) == [bob, ann[1]]  # a turn each, in the queue's order
    assert taken(queue, config) == [ann[2]]


@pytest.mark.parametrize(
    "flags", ["--steps 4", "--chaos 20", "--stop 50", "--tile", "--q .5", "--cfg 9", "--hd"]
)
def test_a_job_whose_plan_differs_is_drawn_apart(engine_config: EngineConfig, flags: str) -> None:
    config = replace(engine_config, batch_pixels=8 * TINY_GRID)
    queue = queued(job("a fox", "ann"), job(f"a fox {flags}", "bob"))

    assert len(taken(queue, config)) == 1


def test_variations_and_a_zero_budget_go_one_at_a_time(
    engine_config: EngineConfig, generator: Generator
) -> None:
    source = job("a fox --seed 5")
    result = run(generator, source)
    assert result.grid is not None
    vary = vary_job(source, 0, Strength.STRONG, owner="bob")
    big = replace(engine_config, batch_pixels=8 * TINY_GRID)
    assert len(taken(queued(vary, replace(vary, id="b" * 32)), big)) == 1

    off = replace(engine_config, batch_pixels=0)
    assert len(taken(queued(job("a fox", "ann"), job("a fox", "bob")), off)) == 1


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


def test_jobs_drawn_together_get_the_images_each_gets_alone(generator: Generator) -> None:
    jobs = [job("a red fox --seed 11", "ann"), job("a blue whale in the sea --seed 90", "bob")]
    alone = [run(generator, one) for one in jobs]
    recorders = [Recorder(), Recorder()]

    drawings = generator.draw_together(
        [replace(one, id=f"{i}" * 32) for i, one in enumerate(jobs)],
        [r.progress for r in recorders],
        [r.cancelled for r in recorders],
    )

    for drawing, expected, recorder in zip(drawings, alone, recorders, strict=True):
        assert drawing is not None
        together = generator.save(drawing)
        assert together.seeds == expected.seeds
        for mine, theirs in zip(together.images, expected.images, strict=True):
            # as across batch sizes: float sums in another order, at most a level here and there
            difference = np.abs(pixels(mine) - pixels(theirs))
            assert difference.max() <= 1 and difference.mean() < 0.01
        # each job its own progress and previews (of its own four images)
        assert [step for step, _, _ in recorder.steps] == list(range(1, 9))
        previews = [p for _, _, p in recorder.steps if p is not None]
        assert previews and Image.open(io.BytesIO(previews[0])).size[0] > 0


def test_a_job_cancelled_while_drawn_with_others_ends_alone(generator: Generator) -> None:
    jobs = [job("a red fox --seed 11", "ann"), job("a red fox --seed 12", "bob")]
    keep, cancel = Recorder(), Recorder(cancel_at=3)

    drawings = generator.draw_together(
        jobs, [keep.progress, cancel.progress], [keep.cancelled, cancel.cancelled]
    )

    assert drawings[0] is not None and drawings[1] is None
    assert len(drawings[0].images) == 4
    assert keep.steps[-1][0] == 8


async def test_the_client_sends_alike_queued_jobs_to_the_engine_as_one_batch(
    engine_config: EngineConfig,
) -> None:
    config = replace(engine_config, batch_pixels=3 * TINY_GRID)
    async with EngineClient(config) as engine:
        await (await engine.submit(job("warm up"))).result()
        handles = [
            await engine.submit(job(f"a fox number {i} --seed {i}", owner=f"user{i}"))
            for i in range(3)
        ]
        events = await asyncio.gather(*(collect(handle) for handle in handles))

    results = [e[-1].result for e in events if isinstance(e[-1], Done)]
    assert len(results) == 3
    # One drawing: the same drawing time for all three, and each job's own progress.
    assert len({result.elapsed_s for result in results}) == 1
    for job_events in events:
        assert any(isinstance(event, Started) for event in job_events)
        steps = [event.step for event in job_events if isinstance(event, Progress)]
        assert steps == list(range(1, 9))
    assert [result.seeds[0] for result in results] == [0, 1, 2]


async def test_jobs_drawn_together_whose_engine_dies_run_again_alone(
    engine_config: EngineConfig,
) -> None:
    config = replace(engine_config, batch_pixels=2 * TINY_GRID)
    async with EngineClient(config) as engine:
        handles = [
            await engine.submit(job(f"a red fox --steps 150 --seed {i}", owner=f"u{i}"))
            for i in range(2)
        ]
        await wait_for(handles[0], Progress)
        assert {engine.position(h.job.id) for h in handles} == {0}  # both running
        first = kill_engine(engine)

        events = await asyncio.gather(*(collect(handle) for handle in handles))

        assert engine._process is not first
    results = [e[-1].result for e in events if isinstance(e[-1], Done)]
    assert len(results) == 2
    assert results[0].elapsed_s != results[1].elapsed_s  # drawn apart the second time


async def test_one_job_of_a_batch_can_be_cancelled_and_the_other_finishes(
    engine_config: EngineConfig,
) -> None:
    config = replace(engine_config, batch_pixels=2 * TINY_GRID)
    async with EngineClient(config) as engine:
        keep, drop = [
            await engine.submit(job(f"a red fox --steps 60 --seed {i}", owner=f"u{i}"))
            for i in range(2)
        ]
        await wait_for(drop, Progress)

        assert engine.position(drop.job.id) == 0
        assert await engine.cancel(drop.job.id)
        dropped, kept = await asyncio.gather(collect(drop), collect(keep))

    assert isinstance(dropped[-1], Cancelled)
    assert isinstance(kept[-1], Done) and len(kept[-1].result.images) == 4
    assert [e.step for e in kept if isinstance(e, Progress)][-1] == 60
