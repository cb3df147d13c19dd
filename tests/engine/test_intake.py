"""engine.intake: preferences (suffix, custom options, model, stylize, profile), the preset each
request runs on, and the notes that say what was mapped, rounded or ignored."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from engine.config import DEFAULT_PRESETS, EngineConfig, JobLimits
from engine.intake import (
    Preferences,
    Prompt,
    expand_prompt,
    is_option_name,
    prompt_jobs,
    read_prompt,
)
from engine.prompt import PromptError

PRESETS = {
    **DEFAULT_PRESETS,
    "sdxl": replace(DEFAULT_PRESETS["sdxl"], draft="sdxl-turbo"),
}
CONFIG = EngineConfig(model="tiny", presets=PRESETS, versions={"6.1": "sdxl", "5.2": "niji"})


def one(
    text: str,
    prefs: Preferences | None = None,
    *,
    find_profile: Callable[[str], str | None] | None = None,
    model_override: str | None = None,
) -> Prompt:
    """The one prompt `text` makes, read as the bot reads it."""
    expanded = expand_prompt(text, prefs or Preferences())
    reading = read_prompt(
        expanded, CONFIG, prefs, find_profile=find_profile, model_override=model_override
    )
    (prompt,) = reading.prompts
    return prompt


# --- which preset runs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "model"),
    [
        ("a cat", "tiny"),  # the server's default
        ("a cat --v 6.1", "sdxl"),  # [versions]
        ("a cat --v 5.2", "niji"),
        ("a cat --v 7", "tiny"),  # not listed: the default
        ("a cat --v tiny-xl", "tiny-xl"),  # a preset by name
        ("a cat --niji 6", "niji"),
        ("a cat --niji", "niji"),
    ],
)
def test_the_preset_that_runs(text: str, model: str) -> None:
    assert one(text).model == model


def test_an_unlisted_version_runs_on_the_users_model_and_says_so() -> None:
    prompt = one("a cat --v 7", Preferences(model="tiny-xl"))
    assert prompt.model == "tiny-xl"
    assert prompt.request.notes == ("`--v 7` is a Midjourney model; here it ran on **tiny-xl**",)


def test_a_listed_version_wins_over_the_users_model() -> None:
    assert one("a cat --v 6.1", Preferences(model="tiny-xl")).model == "sdxl"


def test_a_removed_user_model_falls_back_to_the_servers() -> None:
    assert one("a cat", Preferences(model="gone")).model == "tiny"


def test_the_local_commands_model_wins_over_v_and_says_so() -> None:
    prompt = one("a cat --v 6.1", model_override="tiny-xl")
    assert prompt.model == "tiny-xl"
    assert prompt.request.notes == ("`--v 6.1` gave way to the command's --model: **tiny-xl** ran",)
    assert one("a cat", model_override="tiny-xl").request.notes == ()


def test_draft_runs_on_the_presets_draft_preset_with_its_own_steps() -> None:
    prompt = one("a cat --v 6.1 --draft")
    assert prompt.model == "sdxl-turbo"
    assert prompt.request.draft is False  # the draft preset's own few steps, not a quarter
    assert "`--draft` ran on **sdxl-turbo**, the fast preset for sdxl" in prompt.request.notes


def test_draft_without_a_draft_preset_keeps_the_preset_and_the_flag() -> None:
    prompt = one("a cat --draft")
    assert (prompt.model, prompt.request.draft) == ("tiny", True)


def test_a_named_style_the_preset_lacks_is_noted() -> None:
    assert one("a cat --niji --style cute").request.notes == ()
    notes = one("a cat --style cute").request.notes
    assert notes == ("`--style cute` is a niji style, and **tiny** has none: it was ignored",)


def test_steps_past_the_cap_are_noted() -> None:
    assert one("a cat --steps 150 --q 2").request.notes == (
        "at most 150 steps run here (--steps × --q): 150 ran",
    )
    assert one("a cat --steps 75 --q 2").request.notes == ()


def test_limits_of_the_server_cut_steps_and_pixels_and_say_so() -> None:
    limits = JobLimits(max_steps=40, max_pixels=120_000)
    config = replace(CONFIG, limits=limits)
    reading = read_prompt("a cat --steps 50 --ar 2:1 --v sdxl", config, Preferences())
    assert reading.prompts[0].request.notes == (
        "at most 40 steps run here (--steps × --q): 40 ran",
        "images here have at most 120,000 pixels: drawn at 480×240 instead of 1408×704",
    )
    small = read_prompt("a cat --ar 2:1", config, Preferences())  # tiny: 176×88, within
    assert small.prompts[0].request.notes == ()


# --- stylize, suffix, custom options ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "stylize"),
    [("a cat", 750), ("a cat --s 50", 50), ("a cat —stylize 0", 0), ("a cat –s 20", 20)],
)
def test_the_users_stylize_applies_when_the_prompt_has_no_s(text: str, stylize: int) -> None:
    assert one(text, Preferences(stylize=750)).request.stylize == stylize


def test_the_suffix_goes_at_the_end() -> None:
    prefs = Preferences(suffix="--ar 3:2 --s 250")
    assert expand_prompt("a cat --seed 1", prefs) == "a cat --seed 1 --ar 3:2 --s 250"
    assert one("a cat", prefs).request.aspect == (3, 2)


def test_a_custom_option_stands_for_its_value_text_and_parameters() -> None:
    prefs = Preferences(options={"mine": "soft light --chaos 5", "wide": "--ar 21:9"})
    text = expand_prompt("a cat --mine --seed 1 --wide", prefs)
    assert text == "a cat soft light --seed 1 --chaos 5 --ar 21:9"
    request = one("a cat --mine --seed 1 --wide", prefs).request
    assert (request.prompt, request.chaos, request.aspect, request.seed) == (
        "a cat soft light",
        5,
        (7, 3),  # 21:9 reduced
        1,
    )
    assert request.raw == text  # the message shows what ran


def test_a_custom_option_in_the_suffix_expands_too() -> None:
    prefs = Preferences(suffix="--mine", options={"mine": "--s 20"})
    assert one("a cat", prefs).request.stylize == 20


def test_a_prompt_without_custom_options_is_left_as_written() -> None:
    text = "a  cat\n--ar 2:1"
    assert expand_prompt(text, Preferences(options={"mine": "--s 1"})) == text


def test_a_custom_option_takes_no_value() -> None:
    with pytest.raises(PromptError, match=r"--mine is your own option .* takes no value, got x"):
        expand_prompt("a cat --mine x", Preferences(options={"mine": "--s 1"}))


def test_without_options_a_custom_name_is_an_unknown_parameter() -> None:
    with pytest.raises(PromptError, match="unknown parameter --mine"):
        one("a cat --mine")


@pytest.mark.parametrize(
    ("name", "allowed"),
    [("mine", True), ("my-style_2", True), ("ar", False), ("v", False), ("sref", False),
     ("video", False), ("Mine", False), ("-x", False), ("a" * 33, False), ("", False)],
)  # fmt: skip
def test_option_names(name: str, allowed: bool) -> None:
    assert is_option_name(name) is allowed


# --- personalization ------------------------------------------------------------------------

PROFILES = {"abc1234": "muted film colours", "zz99": "neon noir"}


def test_p_applies_the_users_own_profile() -> None:
    request = one("a cat --p", Preferences(profile="pastel watercolour")).request
    assert request.personal_styles == ("pastel watercolour",)
    assert request.notes == ()


def test_p_without_a_profile_is_noted() -> None:
    request = one("a cat --p").request
    assert request.personal_styles == ()
    assert request.notes == (
        "you have no personalization profile yet (make one with /prefer personalize): "
        "`--p` was ignored",
    )


def test_p_codes_find_profiles_and_unknown_ones_are_noted() -> None:
    request = one("a cat --p abc1234 nope zz99::2", find_profile=PROFILES.get).request
    assert request.personal_styles == ("muted film colours", "neon noir")
    assert request.notes == ("`--p nope` is not a profile code on this server: it was ignored",)


def test_no_p_no_personal_styles() -> None:
    assert one("a cat", Preferences(profile="x")).request.personal_styles == ()


# --- jobs -----------------------------------------------------------------------------------


def test_one_job_per_permutation_and_repeat_with_its_model() -> None:
    reading = read_prompt("a {red, blue} cat --v {6.1, 7} --r 2", CONFIG)
    jobs = prompt_jobs(reading, "1", limit=10)
    assert [job.model for job in jobs] == ["sdxl", "sdxl", "tiny", "tiny"] * 2
    assert {job.owner for job in jobs} == {"1"}


def test_too_many_jobs() -> None:
    reading = read_prompt("a {red, blue} cat --r 3", CONFIG)
    with pytest.raises(PromptError, match=r"makes 6 jobs .* the limit is 5") as info:
        prompt_jobs(reading, "1", limit=5)
    assert info.value.title == "Too many jobs"


def test_a_remix_box_refuses_permutations() -> None:
    with pytest.raises(PromptError, match="permutations"):
        read_prompt("a {red, blue} cat", CONFIG, permutations=False)


def test_notes_of_every_request_once_in_order() -> None:
    reading = read_prompt("a {red, blue} cat --v 7 --q 3", CONFIG)
    assert reading.notes == (
        "`--q 3` is not a quality here, so it ran as `--q 4` (the values are .25, .5, 1, 2, 4)",
        "`--v 7` is a Midjourney model; here it ran on **tiny**",
    )


def test_a_preset_without_an_image_adapter_says_what_it_did_with_the_images() -> None:
    bare = replace(DEFAULT_PRESETS["tiny"], name="bare", ip_adapter=None)
    config = replace(CONFIG, presets={**PRESETS, "bare": bare})
    text = "https://x.com/a.png https://x.com/b.png a fox --sref https://x.com/s.png --v bare"
    reading = read_prompt(expand_prompt(text, Preferences()), config)

    notes = reading.notes
    assert any("the first image prompt was the starting image" in n for n in notes), notes
    assert any("no image adapter: `--sref` ignored" in n for n in notes), notes
    with_adapter = read_prompt(expand_prompt(text.replace("bare", "tiny"), Preferences()), config)
    assert not any("image adapter" in n for n in with_adapter.notes)
