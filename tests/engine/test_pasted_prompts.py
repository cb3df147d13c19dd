"""Prompts as people paste them from Midjourney's gallery, prompt sites and their own history:
each runs, with the request it should give and what the user is told about it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from engine.config import DEFAULT_PRESETS, EngineConfig
from engine.intake import Preferences, expand_prompt, read_prompt
from engine.prompt import PromptError, PromptPart, parse_prompt, suggest_flag

# A server that maps the versions people paste most to its presets.
CONFIG = EngineConfig(
    model="tiny",
    presets={**DEFAULT_PRESETS, "sdxl": replace(DEFAULT_PRESETS["sdxl"], draft="sdxl-turbo")},
    versions={"6.1": "sdxl", "7": "sdxl", "6": "sdxl", "5.2": "sdxl-turbo"},
)


@dataclass(frozen=True)
class Pasted:
    text: str
    model: str
    fields: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # a piece of each note, in order; () means no notes


TABLE = [
    Pasted(
        "ethereal forest spirit, bioluminescent mushrooms, volumetric fog, cinematic lighting "
        "--ar 16:9 --v 6.1 --style raw --s 250",
        "sdxl",
        {"aspect": (16, 9), "version": "6.1", "style_raw": True, "stylize": 250},
        ("`--v 6.1` is a Midjourney model; here it ran on **sdxl**",),
    ),
    Pasted(
        "portrait of an old fisherman, weathered skin, kodak portra 400 --ar 2:3 --v 7 --q 2",
        "sdxl",
        {"aspect": (2, 3), "version": "7", "quality": 2.0},
        ("`--v 7`",),
    ),
    Pasted(
        "isometric cozy bedroom, low poly, soft shadows —ar 1:1 —v 5.2 —q .5",  # phone dashes
        "sdxl-turbo",
        {
            "version": "5.2",
            "quality": 0.5,
            "prompt": "isometric cozy bedroom, low poly, soft shadows",
        },
        ("`--v 5.2`",),
    ),
    Pasted(
        "vintage travel poster of Kyoto –ar 9:16 –v 6.0 –c 20",  # en dashes, a version "6.0"
        "sdxl",
        {"aspect": (9, 16), "version": "6", "chaos": 20},
        ("`--v 6`",),
    ),
    Pasted(
        "a mossy stone golem in a misty valley --v 5.1 --ar 3:2",  # not in [versions]
        "tiny",
        {"version": "5.1", "aspect": (3, 2)},
        ("`--v 5.1` is a Midjourney model; here it ran on **tiny**",),
    ),
    Pasted(
        "cute corgi astronaut floating in space, pastel colors --niji 6 --style cute --ar 3:4",
        "niji",
        {"model": "niji", "style": "cute", "aspect": (3, 4)},
        ("`--niji 6` ran on **niji**",),
    ),
    Pasted(
        "a samurai cat --niji 7 --style expressive --s 400",
        "niji",
        {"style": "expressive", "stylize": 400},
        ("`--niji 7`",),
    ),
    Pasted(
        "a dragon made of smoke::2 fire::1.5 ash::-.5 --ar 21:9 --v 6.1 --s 750",
        "sdxl",
        {
            "parts": (
                PromptPart("a dragon made of smoke", 2.0),
                PromptPart("fire", 1.5),
                PromptPart("ash", -0.5),
            ),
            "aspect": (7, 3),
            "stylize": 750,
        },
        ("`--v 6.1`",),
    ),
    Pasted(
        "https://s.mj.run/abc123 https://cdn.example.com/b.png a watercolor fox --iw 1.5 --v 6",
        "sdxl",
        {
            "image_urls": ("https://s.mj.run/abc123", "https://cdn.example.com/b.png"),
            "image_weight": 1.5,
            "prompt": "a watercolor fox",
        },
        ("`--v 6`",),
    ),
    Pasted(
        "minimal logo of a mountain, flat vector --no text, gradient --v 6.1 --style raw "
        "--stylize 50",
        "sdxl",
        {"negative": ("text", "gradient"), "style_raw": True, "stylize": 50},
        ("`--v 6.1`",),
    ),
    Pasted(
        "cinematic still of a lone samurai in the rain --ar 4:1 --v 7 --exp 25 --raw",
        "sdxl",
        {"aspect": (4, 1), "experimental": 25, "style_raw": True},
        ("`--v 7`",),
    ),
    Pasted(
        "sprawling cyberpunk skyline --ar 1:4 --v 8.1 --q 4 --hd",
        "tiny",
        {"aspect": (1, 4), "version": "8.1", "quality": 4.0, "hd": True},
        ("`--v 8.1` is a Midjourney model; here it ran on **tiny**",),
    ),
    Pasted(
        "rough idea of a castle --v 7 --draft",
        "sdxl-turbo",  # sdxl's draft preset on this server
        {"draft": False},
        ("`--v 7`", "`--draft` ran on **sdxl-turbo**"),
    ),
    Pasted(
        "a banner of koi fish --ar 8:1 --draft",  # tiny has no draft preset: fewer steps
        "tiny",
        {"aspect": (8, 1), "draft": True},
    ),
    Pasted(
        "a dreamy lavender field at golden hour --p --v 7",
        "sdxl",
        {"personalize": (), "personal_styles": ()},
        ("`--v 7`", "you have no personalization profile yet"),
    ),
    Pasted(
        "a dreamy lavender field --personalize 0tngo8r --v 7",
        "sdxl",
        {"personalize": ("0tngo8r",)},
        ("`--v 7`", "`--p 0tngo8r` is not a profile code on this server"),
    ),
    Pasted(
        "a ceramic cat sculpture --sref https://x.com/s.png::2 123456 --sw 300 --sv 4 --v 7",
        "sdxl",
        {
            "style_refs": ("https://x.com/s.png::2",),  # the URL is used, the code is not
            "style_ref_weight": 300,
            "style_ref_version": 4,
        },
        (
            "style codes are Midjourney's own: `--sref 123456` ignored",
            "`--sv` picks one of Midjourney's style models: ignored",
            "`--v 7`",
        ),
    ),
    Pasted(
        "a knight portrait --cref https://x.com/c.png --cw 50 --v 6",
        "sdxl",
        {"object_refs": ("https://x.com/c.png",), "character_weight": 50},
        ("`--v 6`",),
    ),
    Pasted(
        "a robot barista --oref https://x.com/o.png --ow 250 --v 7",
        "sdxl",
        {"object_refs": ("https://x.com/o.png",), "object_ref_weight": 250},
        ("`--v 7`",),
    ),
    Pasted(
        "a fox in the snow --sw 200 --v 7",  # a weight without its reference
        "sdxl",
        {"style_ref_weight": 200},
        ("`--sw` weighs a style reference (`--sref`), and this prompt has none", "`--v 7`"),
    ),
    Pasted(
        "a neon jellyfish drifting --video --motion high --loop --bs 2 --v 7",
        "sdxl",
        {},
        (
            "video is not available on this server: `--video`, `--motion`, `--loop`, `--bs` "
            "ignored, and images were made",
            "`--v 7`",
        ),
    ),
    Pasted(
        "abstract shapes --tile --weird 500 --seed 42 --v 6.1 --stop 80 --chaos 10 --r 2",
        "sdxl",
        {"tile": True, "weird": 500, "seed": 42, "stop": 80, "chaos": 10, "repeat": 2},
        ("`--v 6.1`",),
    ),
    Pasted(
        "an old-school test prompt --testp --creative --upbeta --stealth",
        "tiny",
        {},
        ("`--testp`", "`--creative`", "`--upbeta`", "`--stealth`"),
    ),
    Pasted(
        "a lighthouse at dusk --q 3 --fast",
        "tiny",
        {"quality": 4.0, "speed": "fast"},
        ("`--q 3` is not a quality here, so it ran as `--q 4`",),
    ),
    Pasted(
        "a robot --style random-32 --v6.1",  # a glued version, an unavailable style
        "sdxl",
        {"style": None, "version": "6.1"},
        ("`--style random-32` is not available on this server", "`--v 6.1`"),
    ),
    Pasted(
        "a bowl of ramen --v 7 --style cute",  # a niji style on a preset without it
        "sdxl",
        {"style": "cute"},
        ("`--v 7`", "`--style cute` is a niji style, and **sdxl** has none"),
    ),
    Pasted(
        "A Photo Of A Red Fox --AR 3:2 --V 6.1 --SEED 7",  # any case
        "sdxl",
        {"aspect": (3, 2), "seed": 7, "prompt": "A Photo Of A Red Fox"},
        ("`--v 6.1`",),
    ),
]


@pytest.mark.parametrize("pasted", TABLE, ids=[p.text[:40] for p in TABLE])
def test_a_pasted_prompt_runs_with_its_meaning_and_says_what_changed(pasted: Pasted) -> None:
    # No user preferences: as `imagine-bot local` reads them (tests/discord has the bot's).
    reading = read_prompt(expand_prompt(pasted.text, Preferences()), CONFIG, limit=40)
    prompt = reading.prompts[0]
    assert prompt.model == pasted.model
    for name, value in pasted.fields.items():
        assert getattr(prompt.request, name) == value, name
    assert len(prompt.request.notes) == len(pasted.notes), prompt.request.notes
    for note, piece in zip(prompt.request.notes, pasted.notes, strict=True):
        assert piece in note


def test_permutations_of_a_pasted_prompt_each_run() -> None:
    reading = read_prompt("a {red, blue} vintage car at dusk --ar 3:2 --v {6.1, 5.1}", CONFIG)
    assert [(p.request.prompt, p.model) for p in reading.prompts] == [
        ("a red vintage car at dusk", "sdxl"),
        ("a red vintage car at dusk", "tiny"),
        ("a blue vintage car at dusk", "sdxl"),
        ("a blue vintage car at dusk", "tiny"),
    ]


# --- all problems at once, each naming its flag -----------------------------------------------


def test_every_problem_of_a_prompt_is_reported_in_one_message() -> None:
    with pytest.raises(PromptError) as info:
        parse_prompt("a fox --chaos 250 --ar 16x9 --sw 5000 --foo --v 9")
    error = info.value
    assert error.title == "Invalid parameter"
    assert [p.flag for p in error.problems] == ["--chaos", "--ar", "--sw", "--foo", "--v"]
    lines = error.message.split("\n")
    assert lines == [
        "• --chaos must be a whole number from 0 to 100, got 250",
        "• --ar must be W:H in whole numbers from 1:8 to 8:1 (like 16:9; not 1.5:1), got 16x9",
        "• --sw must be a whole number from 0 to 1000, got 5000",
        "• unknown parameter --foo; known parameters include --ar, --seed, --no, --chaos, "
        "--stylize, --v, --steps",
        "• --v must be a Midjourney version from 1 to 8.1 (like 6.1) or a model preset name, got 9",
    ]


def test_a_problem_with_the_text_and_one_with_a_flag_come_together() -> None:
    with pytest.raises(PromptError) as info:
        parse_prompt("a::-1 --seed x")
    assert [p.message for p in info.value.problems] == [
        "--seed must be a whole number from 0 to 4294967295, got x",
        "the weights of a multi-prompt must add up to more than 0, got -1",
    ]
    assert info.value.title == "Invalid prompt"  # one of each kind


def test_one_problem_reads_as_before() -> None:
    with pytest.raises(PromptError) as info:
        parse_prompt("a fox --chaos 250 --v 6.1")
    assert info.value.message == "--chaos must be a whole number from 0 to 100, got 250"


# --- Midjourney's parameters are all known ------------------------------------------------------

MIDJOURNEY_FLAGS = [
    "--ar 2:3", "--aspect 2:3", "--chaos 5", "--c 5", "--no x", "--q 1", "--quality 2",
    "--repeat 2", "--r 2", "--seed 1", "--stop 50", "--s 100", "--stylize 100", "--tile",
    "--weird 10", "--w 10", "--iw 1", "--v 7", "--version 6.1", "--niji 6", "--style raw",
    "--raw", "--exp 10", "--draft", "--hd", "--p", "--personalize", "--profile abc",
    "--sref https://x.com/a.png", "--sw 100", "--sv 6", "--oref https://x.com/a.png",
    "--ow 100", "--cref https://x.com/a.png", "--cw 100", "--video", "--motion low", "--loop",
    "--end https://x.com/a.png", "--bs 2", "--fast", "--relax", "--turbo", "--stealth",
    "--public", "--test", "--testp", "--creative", "--uplight", "--upbeta", "--upanime",
    "--sameseed 5",
]  # fmt: skip


@pytest.mark.parametrize("flag", MIDJOURNEY_FLAGS)
def test_every_midjourney_parameter_is_accepted(flag: str) -> None:
    parse_prompt(f"a cat {flag}")  # raises on an unknown parameter


@pytest.mark.parametrize("name", ["cw", "sw", "sv", "ow", "bs", "hd", "iw", "exp", "raw"])
def test_no_suggestion_turns_a_midjourney_flag_into_another(name: str) -> None:
    assert suggest_flag(name) == f"--{name}"


@pytest.mark.parametrize("typed", ["--xw", "--cx", "--zw"])
def test_short_typos_get_no_suggestion_of_a_short_flag(typed: str) -> None:
    with pytest.raises(PromptError) as info:
        parse_prompt(f"a cat {typed} 5")
    assert "did you mean" not in info.value.message
