"""Jobs: how seeds are chosen, and what each button's job starts from."""

from __future__ import annotations

import pytest

from engine.jobs import (
    ImageRef,
    Job,
    JobKind,
    Strength,
    imagine_job,
    reroll_job,
    upscale_job,
    vary_job,
)
from engine.prompt import parse_prompt
from engine.prompt.request import SEED_MAX


def test_the_prompts_seed_wins_and_images_count_up_from_it() -> None:
    job = imagine_job(parse_prompt("a fox --seed 7"), model="tiny", seed=99)

    assert job.seeds == (7, 8, 9, 10)


def test_seeds_wrap_around_at_the_top_of_the_range() -> None:
    job = imagine_job(parse_prompt(f"a fox --seed {SEED_MAX}"), model="tiny")

    assert job.seeds == (SEED_MAX, 0, 1, 2)


def test_each_repeat_of_a_seeded_prompt_draws_new_images() -> None:
    request = parse_prompt("a fox --seed 10 --repeat 3")
    jobs = [imagine_job(request, model="tiny", repeat=run) for run in range(request.repeat)]

    assert [job.seed for job in jobs] == [10, 14, 18]
    assert len({seed for job in jobs for seed in job.seeds}) == 12


def test_without_a_seed_every_job_gets_a_random_one() -> None:
    request = parse_prompt("a fox")

    assert len({imagine_job(request, model="tiny").seed for _ in range(5)}) == 5


def test_reroll_keeps_the_prompt_and_changes_seed_id_and_owner() -> None:
    job = imagine_job(parse_prompt("a fox --seed 7"), model="tiny", owner="a")
    again = reroll_job(job, owner="b")

    assert (again.request.prompt, again.model, again.owner) == ("a fox", "tiny", "b")
    assert again.id != job.id and again.request.seed is None and again.seed != job.seed


def test_vary_and_upscale_start_from_the_pressed_image() -> None:
    job = imagine_job(parse_prompt("a fox --seed 7"), model="tiny", owner="a")
    vary = vary_job(job, 2, Strength.SUBTLE, owner="b")
    upscale = upscale_job(job, 2, Strength.CREATIVE, owner="b")

    assert vary.source == upscale.source == ImageRef(job.id, 2)
    assert (vary.kind, vary.image_count, vary.owner) == (JobKind.VARY, 4, "b")
    assert (upscale.kind, upscale.image_count, upscale.seed) == (JobKind.UPSCALE, 1, 9)


@pytest.mark.parametrize(
    ("kind", "source", "strength", "message"),
    [
        (JobKind.VARY, None, Strength.SUBTLE, "needs source"),
        (JobKind.IMAGINE, ImageRef("a" * 32, 0), None, "takes no source"),
        (JobKind.VARY, ImageRef("a" * 32, 0), Strength.CREATIVE, "takes strength"),
        (JobKind.UPSCALE, ImageRef("a" * 32, 0), Strength.STRONG, "takes strength"),
    ],
)
def test_inconsistent_jobs_are_refused(
    kind: JobKind, source: ImageRef | None, strength: Strength | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Job("b" * 32, kind, parse_prompt("a fox"), "tiny", 1, source=source, strength=strength)
