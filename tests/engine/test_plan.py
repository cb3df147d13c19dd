"""The plan arithmetic: steps, guidance and the --hd pass, without a model (engine.plan is pure)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

from engine.config import DEFAULT_PRESETS, ModelPreset
from engine.jobs import Job, Strength, imagine_job, upscale_job, vary_job
from engine.plan import (
    DRAFT_STEPS_FACTOR,
    EXP_GUIDANCE,
    HD_SCALE,
    HD_STRENGTH,
    hd_size,
    make_plan,
    planned_steps,
)
from engine.prompt import parse_prompt
from engine.prompt.request import MAX_STEPS, ImagineRequest

TINY = DEFAULT_PRESETS["tiny"]  # 8 steps, guidance 5, euler, 128²
SDXL = DEFAULT_PRESETS["sdxl"]  # 30 steps, guidance 6


def request(prompt: str = "a red fox", **changes: object) -> ImagineRequest:
    return replace(parse_prompt(prompt), **changes)  # type: ignore[arg-type]


def imagine(req: ImagineRequest, preset: ModelPreset = TINY) -> Job:
    return imagine_job(req, model=preset.name, seed=1)


def test_the_documented_constants() -> None:
    assert (DRAFT_STEPS_FACTOR, EXP_GUIDANCE, HD_SCALE, HD_STRENGTH) == (0.25, 0.5, 1.5, 0.45)
    assert MAX_STEPS == 150


@pytest.mark.parametrize(
    ("prompt", "changes", "expected"),
    [
        ("a fox", {}, (8, False)),
        ("a fox --q .5", {}, (4, False)),
        ("a fox --q 2", {}, (16, False)),
        ("a fox", {"quality": 4.0}, (32, False)),
        ("a fox", {"draft": True}, (2, False)),
        ("a fox --q 2", {"draft": True}, (4, False)),
        ("a fox --q .5", {"draft": True}, (1, False)),  # 8 × .5 × .25 = 1
        ("a fox --steps 2 --q .25", {"draft": True}, (1, False)),  # never below one
        ("a fox --steps 75 --q 2", {}, (150, False)),
        ("a fox --steps 150 --q 2", {}, (150, True)),
        ("a fox --steps 100", {"quality": 4.0}, (150, True)),
        ("a fox --steps 150 --q 2", {"draft": True}, (75, False)),  # the draft factor comes first
    ],
)
def test_planned_steps(prompt: str, changes: dict[str, object], expected: tuple[int, bool]) -> None:
    assert planned_steps(request(prompt, **changes), TINY) == expected


def test_draft_on_a_real_preset_rounds_to_the_nearest_step() -> None:
    assert planned_steps(request(draft=True), SDXL) == (8, False)  # 30 × 0.25 = 7.5


def test_make_plan_runs_the_planned_steps() -> None:
    for req in (request("a fox --steps 150 --q 2"), request(draft=True), request(quality=4.0)):
        assert make_plan(imagine(req), TINY, (128, 128)).steps == planned_steps(req, TINY)[0]


@pytest.mark.parametrize(("exp", "guidance"), [(0, 6.0), (25, 6.75), (50, 7.5), (100, 9.0)])
def test_exp_raises_the_preset_guidance(exp: int, guidance: float) -> None:
    plan = make_plan(imagine(request(experimental=exp), SDXL), SDXL, (1024, 1024))

    assert plan.guidance == pytest.approx(guidance)


def test_an_explicit_cfg_wins_over_exp() -> None:
    plan = make_plan(imagine(request("a fox --cfg 4", experimental=100)), TINY, (128, 128))

    assert plan.guidance == 4.0


def test_hd_plans_a_second_img2img_pass_at_one_and_a_half_times_the_size() -> None:
    plan = make_plan(imagine(request("a fox --ar 2:1", hd=True)), TINY, (192, 128))

    assert plan.hd is not None and plan.hd.hd is None
    assert (plan.hd.width, plan.hd.height) == (320, 192)  # 288 rounds to 320 on the 64 grid
    assert plan.hd.strength == HD_STRENGTH
    assert (plan.hd.steps, plan.hd.guidance, plan.hd.sampler) == (8, 5.0, "euler")
    assert plan.hd.denoise_steps == int(8 * HD_STRENGTH) == 3
    assert plan.total_steps == 8 + 3


def test_hd_pass_runs_at_least_one_step_on_a_one_step_schedule() -> None:
    plan = make_plan(imagine(request("a fox --steps 1", hd=True)), TINY, (128, 128))

    assert plan.hd is not None and plan.hd.denoise_steps == 1
    assert plan.total_steps == 2


def test_hd_pass_keeps_the_first_pass_sampler_and_guidance() -> None:
    req = request("a fox --sampler dpmpp_2m --cfg 9", hd=True)
    plan = make_plan(imagine(req), TINY, (128, 128))

    assert plan.hd is not None
    assert (plan.hd.sampler, plan.hd.guidance) == ("dpmpp_2m", 9.0)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((128, 128), (192, 192)),
        ((1024, 1024), (1536, 1536)),
        ((1344, 768), (2048, 1152)),
        ((832, 1216), (1280, 1856)),
        ((64, 64), (128, 128)),  # 96 rounds up
    ],
)
def test_hd_size_is_one_and_a_half_times_on_the_64_grid(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert hd_size(*size) == expected
    for side, before in zip(expected, size, strict=True):
        assert side % 64 == 0 and abs(side - HD_SCALE * before) <= 32


def test_variations_and_upscales_of_an_hd_image_plan_no_second_pass() -> None:
    source = imagine(request(hd=True))

    vary = make_plan(vary_job(source, 0, Strength.SUBTLE, owner="u"), TINY, (192, 192))
    upscale = make_plan(upscale_job(source, 0, Strength.SUBTLE, owner="u"), TINY, (128, 128))

    assert vary.hd is None and (vary.width, vary.height) == (192, 192)
    assert upscale.hd is None


def test_plan_module_imports_no_torch() -> None:
    code = "import sys, engine.plan; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
