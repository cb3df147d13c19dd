"""parse_prompt: flags, values, ranges, errors, multi-prompt weights, image URLs."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from engine.prompt import (
    SAMPLERS,
    SEED_MAX,
    ImagineRequest,
    PromptError,
    PromptPart,
    parse_prompt,
    parse_prompts,
    suggest_flag,
)
from engine.prompt.parser import BLEND_IMAGE_WEIGHT

QUALITY = "a number (rounded to one of .25, .5, 1, 2, 4)"
ASPECT = "W:H in whole numbers from 1:8 to 8:1 (like 16:9; not 1.5:1)"
VERSION = "a Midjourney version from 1 to 8.1 (like 6.1) or a model preset name"


def error_for(text: str, **kwargs: Any) -> PromptError:
    with pytest.raises(PromptError) as info:
        parse_prompt(text, **kwargs)
    return info.value


def test_plain_text_gives_defaults_and_one_part() -> None:
    request = parse_prompt("  a red   cat ")
    assert request == ImagineRequest(prompt="a red cat", parts=(PromptPart("a red cat", 1.0),))
    assert request.repeat == 1
    assert request.raw == "a red   cat"


def test_importing_the_parser_does_not_import_torch() -> None:
    code = "import sys, engine.prompt; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --- every flag and alias -------------------------------------------------------------------

FLAG_CASES = [
    ("--ar 16:9", "aspect", (16, 9)),
    ("--aspect 2:3", "aspect", (2, 3)),
    ("--ar 2:2", "aspect", (1, 1)),
    ("--ar 32:18", "aspect", (16, 9)),
    ("--ar 3:1", "aspect", (3, 1)),
    ("--ar 1:3", "aspect", (1, 3)),
    ("--ar 4:1", "aspect", (4, 1)),
    ("--ar 1:4", "aspect", (1, 4)),
    ("--ar 8:1", "aspect", (8, 1)),
    ("--ar 1:8", "aspect", (1, 8)),
    ("--ar 16:2", "aspect", (8, 1)),
    ("--ar 139:100", "aspect", (139, 100)),
    ("--ar 09:016", "aspect", (9, 16)),
    ("--seed 0", "seed", 0),
    ("--seed 42", "seed", 42),
    (f"--seed {SEED_MAX}", "seed", SEED_MAX),
    ("--no hat", "negative", ("hat",)),
    ("--no red hat, blue  shoe", "negative", ("red hat", "blue shoe")),
    ("--no a, , b ,", "negative", ("a", "b")),
    ("--chaos 0", "chaos", 0),
    ("--chaos 100", "chaos", 100),
    ("--c 50", "chaos", 50),
    ("--stylize 0", "stylize", 0),
    ("--stylize 1000", "stylize", 1000),
    ("--s 250", "stylize", 250),
    ("--quality .25", "quality", 0.25),
    ("--quality 0.25", "quality", 0.25),
    ("--q .5", "quality", 0.5),
    ("--q 1", "quality", 1.0),
    ("--q 1.0", "quality", 1.0),
    ("--q 2", "quality", 2.0),
    ("--q 4", "quality", 4.0),
    ("--q 3", "quality", 4.0),  # off the list: the nearest, ties upwards
    ("--q .3", "quality", 0.25),
    ("--q 100", "quality", 4.0),
    ("--q 0", "quality", 0.25),
    ("--stop 10", "stop", 10),
    ("--stop 100", "stop", 100),
    ("--tile", "tile", True),
    ("--weird 0", "weird", 0),
    ("--weird 3000", "weird", 3000),
    ("--w 7", "weird", 7),
    ("--repeat 2", "repeat", 2),
    ("--repeat 40", "repeat", 40),
    ("--r 5", "repeat", 5),
    ("--iw 0", "image_weight", 0.0),
    ("--iw 3", "image_weight", 3.0),
    ("--iw .5", "image_weight", 0.5),
    ("--iw 1.75", "image_weight", 1.75),
    ("--v 6", "version", "6"),
    ("--v 5.2", "version", "5.2"),
    ("--v 6.1", "version", "6.1"),
    ("--v 7.0", "version", "7"),
    ("--version 8.1", "version", "8.1"),
    ("--v 1", "version", "1"),
    ("--version SDXL-Turbo", "model", "sdxl-turbo"),
    ("--v my_model", "model", "my_model"),
    ("--niji", "model", "niji"),
    ("--niji 6", "model", "niji"),
    ("--style raw", "style_raw", True),
    ("--style RAW", "style_raw", True),
    ("--raw", "style_raw", True),
    ("--style cute", "style", "cute"),
    ("--style Expressive", "style", "expressive"),
    ("--style scenic", "style", "scenic"),
    ("--style original", "style", "original"),
    ("--style random", "style", None),
    ("--exp 0", "experimental", 0),
    ("--exp 100", "experimental", 100),
    ("--draft", "draft", True),
    ("--hd", "hd", True),
    ("--p", "personalize", ()),
    ("--p AbC123 x-y", "personalize", ("abc123", "x-y")),
    ("--personalize", "personalize", ()),
    ("--profile q1w2e3r", "personalize", ("q1w2e3r",)),
    ("--sref https://x.com/a.png", "style_refs", ("https://x.com/a.png",)),
    (
        "--sref https://x.com/a.png::2 123 random",
        "style_refs",
        ("https://x.com/a.png::2",),  # Midjourney's style codes are accepted, noted, dropped
    ),
    ("--sref <https://x.com/a.png>", "style_refs", ("https://x.com/a.png",)),
    ("--sw 0", "style_ref_weight", 0),
    ("--sw 1000", "style_ref_weight", 1000),
    ("--sv 4", "style_ref_version", 4),
    ("--oref https://x.com/a.png", "object_refs", ("https://x.com/a.png",)),
    (
        "--cref https://x.com/a.png https://x.com/b.png",
        "object_refs",
        ("https://x.com/a.png", "https://x.com/b.png"),
    ),
    ("--ow 1", "object_ref_weight", 1),
    ("--ow 1000", "object_ref_weight", 1000),
    ("--cw 0", "character_weight", 0),
    ("--cw 100", "character_weight", 100),
    ("--steps 1", "steps", 1),
    ("--steps 150", "steps", 150),
    ("--cfg 0", "cfg", 0.0),
    ("--cfg 30", "cfg", 30.0),
    ("--cfg 7.5", "cfg", 7.5),
    ("--sampler euler_a", "sampler", "euler_a"),
    ("--sampler DPM++_2M", "sampler", "dpmpp_2m"),
    ("--sampler dpm++-2m-karras", "sampler", "dpmpp_2m_karras"),
    ("--sampler Euler-A", "sampler", "euler_a"),
    ("--fast", "speed", "fast"),
    ("--relax", "speed", "relax"),
    ("--turbo", "speed", "turbo"),
]


@pytest.mark.parametrize(("params", "field", "expected"), FLAG_CASES)
def test_flag_sets_its_field(params: str, field: str, expected: object) -> None:
    request = parse_prompt(f"a cat {params}")
    assert getattr(request, field) == expected
    assert request.prompt == "a cat"


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_is_accepted(sampler: str) -> None:
    assert parse_prompt(f"cat --sampler {sampler}").sampler == sampler


def test_many_flags_together() -> None:
    request = parse_prompt("cat --ar 16:9 --seed 7 --no dog --c 10 --s 50 --tile --steps 20 --fast")
    assert (request.aspect, request.seed, request.negative) == ((16, 9), 7, ("dog",))
    assert (request.chaos, request.stylize, request.tile) == (10, 50, True)
    assert (request.steps, request.speed) == (20, "fast")


# --- dashes, case, where parameters start ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "prompt", "aspect"),
    [
        ("a cat —ar 16:9", "a cat", (16, 9)),  # em dash, as phones type it
        ("a cat –ar 16:9", "a cat", (16, 9)),  # en dash followed by a letter
        ("a cat --AR 16:9", "a cat", (16, 9)),
        ("a cat --Aspect 16:9", "a cat", (16, 9)),
        ("x--y --ar 2:1", "x--y", (2, 1)),  # `--` inside a word is text
        ("a—b cat", "a—b cat", (1, 1)),
        ("1990 – 2000", "1990 – 2000", (1, 1)),  # a lone en dash is punctuation
        ("well -- ar", None, None),  # a lone `--` starts parameters (and has no name)
    ],
)
def test_where_parameters_start(
    text: str, prompt: str | None, aspect: tuple[int, int] | None
) -> None:
    if prompt is None:
        assert error_for(text).flag == "--"
        return
    request = parse_prompt(text)
    assert (request.prompt, request.aspect) == (prompt, aspect)


@pytest.mark.parametrize("text", ["cat —", "cat --"])
def test_dash_without_a_name_is_an_error(text: str) -> None:
    error = error_for(text)
    assert error.message == "a parameter name is missing after --"
    assert error.title == "Invalid parameter"


def test_em_dash_no_and_keyword_case() -> None:
    request = parse_prompt("cat —no Hat —STYLE Raw —Sampler EULER")
    assert request.negative == ("Hat",)  # the negative text keeps its case
    assert (request.style_raw, request.sampler) == (True, "euler")


# --- value errors: they name the flag, the bad value and what is accepted ---------------------

BAD_VALUES = [
    ("--chaos", "250", "a whole number from 0 to 100"),
    ("--chaos", "-1", "a whole number from 0 to 100"),
    ("--chaos", "2.5", "a whole number from 0 to 100"),
    ("--c", "lots", "a whole number from 0 to 100"),
    ("--stylize", "1001", "a whole number from 0 to 1000"),
    ("--s", "-5", "a whole number from 0 to 1000"),
    ("--seed", str(SEED_MAX + 1), f"a whole number from 0 to {SEED_MAX}"),
    ("--seed", "-1", f"a whole number from 0 to {SEED_MAX}"),
    ("--seed", "1" * 5000, f"a whole number from 0 to {SEED_MAX}"),  # past int()'s digit cap
    ("--stop", "9", "a whole number from 10 to 100"),
    ("--stop", "101", "a whole number from 10 to 100"),
    ("--weird", "3001", "a whole number from 0 to 3000"),
    ("--w", "x", "a whole number from 0 to 3000"),
    ("--repeat", "1", "a whole number from 2 to 40"),
    ("--r", "41", "a whole number from 2 to 40"),
    ("--steps", "0", "a whole number from 1 to 150"),
    ("--steps", "151", "a whole number from 1 to 150"),
    ("--iw", "3.01", "a number from 0 to 3"),
    ("--iw", "-0.5", "a number from 0 to 3"),
    ("--iw", "nan", "a number from 0 to 3"),
    ("--cfg", "30.5", "a number from 0 to 30"),
    ("--cfg", "inf", "a number from 0 to 30"),
    ("--cfg", "1e3", "a number from 0 to 30"),
    ("--q", "high", QUALITY),
    ("--q", "-1", QUALITY),
    ("--quality", "1e3", QUALITY),
    ("--ar", "9:1", ASPECT),
    ("--ar", "1:9", ASPECT),
    ("--ar", "0:1", ASPECT),
    ("--ar", "1.5:1", ASPECT),
    ("--aspect", "16x9", ASPECT),
    ("--ar", "16:", ASPECT),
    ("--sampler", "foo", "one of: " + ", ".join(SAMPLERS)),
    ("--v", "a/b", VERSION),
    ("--v", "9", VERSION),
    ("--v", "0.5", VERSION),
    ("--niji", "6!", "a niji version, if any (like 6)"),
    ("--exp", "101", "a whole number from 0 to 100"),
    ("--sw", "1001", "a whole number from 0 to 1000"),
    ("--sv", "0", "a whole number from 1 to 8"),
    ("--ow", "0", "a whole number from 1 to 1000"),
    ("--cw", "101", "a whole number from 0 to 100"),
    ("--sref", "ftp://x/a.png", "image URLs (each may end in ::weight), style codes, or random"),
    ("--sref", "cat", "image URLs (each may end in ::weight), style codes, or random"),
    ("--oref", "123", "an image URL (https://…)"),
    ("--p", "a!b", "profile codes (letters and digits), if any"),
]


@pytest.mark.parametrize(("flag", "value", "accepts"), BAD_VALUES)
def test_bad_value_message_names_flag_value_and_range(flag: str, value: str, accepts: str) -> None:
    error = error_for(f"a cat {flag} {value}")
    assert error.message == f"{flag} must be {accepts}, got {value}"
    assert error.flag == flag
    assert error.title == "Invalid parameter"


def test_chaos_message_reads_like_midjourney() -> None:
    message = "--chaos must be a whole number from 0 to 100, got 250"
    assert str(error_for("cat --chaos 250")) == message


@pytest.mark.parametrize(
    ("text", "flag", "message"),
    [
        ("cat --seed", "--seed", f"--seed needs a value: a whole number from 0 to {SEED_MAX}"),
        ("cat --ar --tile", "--ar", "--ar needs a value"),
        ("cat --no", "--no", "--no needs a value"),
        ("cat --no --seed 1", "--no", "--no needs a value"),
        ("cat --tile yes", "--tile", "--tile takes no value, got yes"),
        ("cat --fast please", "--fast", "--fast takes no value, got please"),
        ("cat --ar 16:9 dog", "--ar", "--ar takes one value, got 16:9 dog"),
        ("cat --seed 1 2", "--seed", "--seed takes one value, got 1 2"),
        ("cat --niji 6 dog", "--niji", "--niji takes one value, got 6 dog"),
        ("cat --seed 1 --seed 2", "--seed", "--seed is given more than once"),
        ("cat --ar 1:1 --aspect 2:1", "--aspect", "--ar and --aspect cannot be used together"),
        ("cat --c 1 --chaos 2", "--chaos", "--c and --chaos cannot be used together"),
        ("cat --fast --relax", "--relax", "--fast and --relax cannot be used together"),
        ("cat --v 6 --niji", "--niji", "--v and --niji cannot be used together"),
        ("cat --tile --TILE", "--tile", "--tile is given more than once"),
    ],
)
def test_arity_and_duplicate_errors_name_the_flag(text: str, flag: str, message: str) -> None:
    error = error_for(text)
    assert error.message.startswith(message)
    assert error.flag == flag


# --- unknown flags and suggestions ----------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "suggestion"),
    [
        ("--chaoss", "--chaos"),
        ("--aspec", "--aspect"),
        ("--sed", "--seed"),
        ("--stylise", "--stylize"),
        ("--qualty", "--quality"),
        ("--sampelr", "--sampler"),
        ("—tiles", "--tile"),
    ],
)
def test_unknown_flag_suggests_the_nearest(typed: str, suggestion: str) -> None:
    error = error_for(f"cat {typed} 1")
    flag = "--" + typed.lstrip("-—")
    assert error.message == f"unknown parameter {flag}; did you mean {suggestion}?"
    assert error.flag == flag


def test_unknown_flag_without_a_close_match_lists_some() -> None:
    error = error_for("cat --xyzzyplugh")
    assert error.message.startswith("unknown parameter --xyzzyplugh; known parameters include")
    assert "--ar" in error.message and "--seed" in error.message


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("chaoss", "--chaos"),
        ("--CHAOSS", "--chaos"),
        ("—sede", "--seed"),
        ("steps", "--steps"),
        ("xyzzyplugh", None),
    ],
)
def test_suggest_flag(name: str, expected: str | None) -> None:
    assert suggest_flag(name) == expected


# --- models ---------------------------------------------------------------------------------

MODELS = ("sdxl", "Tiny", "niji")


@pytest.mark.parametrize(
    ("params", "model"),
    [("--v sdxl", "sdxl"), ("--v SDXL", "sdxl"), ("--v tiny", "tiny"), ("--niji", "niji")],
)
def test_model_in_the_allowed_list(params: str, model: str) -> None:
    assert parse_prompt(f"cat {params}", models=MODELS).model == model


def test_model_not_in_the_allowed_list() -> None:
    error = error_for("cat --v foo", models=MODELS)
    assert error.message == f"--v must be {VERSION} (niji, sdxl, tiny), got foo"
    assert error.flag == "--v"


def test_a_preset_name_wins_over_the_version_it_looks_like() -> None:
    request = parse_prompt("cat --v 6.1", models=("sdxl", "6.1"))
    assert (request.model, request.version) == ("6.1", None)
    assert parse_prompt("cat --v 6.1", models=("sdxl",)).version == "6.1"


def test_niji_not_in_the_allowed_list() -> None:
    error = error_for("cat --niji", models=("sdxl",))
    assert error.message == "--niji is not available here; the models are: sdxl"
    assert error.flag == "--niji"


def test_any_model_name_when_no_list_is_given() -> None:
    assert parse_prompt("cat --version whatever-1.0").model == "whatever-1.0"


# --- multi-prompts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("a cat", [("a cat", 1.0)]),
        ("a::2 b", [("a", 2.0), ("b", 1.0)]),
        ("hot dog::1.5 bun::-0.5", [("hot dog", 1.5), ("bun", -0.5)]),
        ("a::.5 b::", [("a", 0.5), ("b", 1.0)]),
        ("a:: b", [("a", 1.0), ("b", 1.0)]),
        ("a ::2 b::1", [("a", 2.0), ("b", 1.0)]),
        ("a::2::3 b", [("a", 2.0), ("b", 1.0)]),  # the empty part and its weight are dropped
        ("::2 a", [("a", 1.0)]),
        ("a::2b", [("a", 1.0), ("2b", 1.0)]),  # a weight ends at whitespace
        ("a::-0.5 b::2", [("a", -0.5), ("b", 2.0)]),
        ("a: b", [("a: b", 1.0)]),
        ("ratio 16:9 photo", [("ratio 16:9 photo", 1.0)]),
    ],
)
def test_multi_prompt_parts(text: str, parts: list[tuple[str, float]]) -> None:
    request = parse_prompt(text)
    assert request.parts == tuple(PromptPart(t, w) for t, w in parts)


def test_prompt_keeps_weights_as_written_with_whitespace_folded() -> None:
    request = parse_prompt("a   cat::2\n dog::-0.5 --ar 2:1")
    assert request.prompt == "a cat::2 dog::-0.5"
    assert request.positive_parts == (PromptPart("a cat", 2.0),)
    assert request.negative_parts == (PromptPart("dog", -0.5),)


@pytest.mark.parametrize(("text", "total"), [("a::-1", "-1"), ("a::1 b::-1", "0"), ("a::0", "0")])
def test_weights_must_add_up_to_more_than_zero(text: str, total: str) -> None:
    error = error_for(text)
    assert error.message == f"the weights of a multi-prompt must add up to more than 0, got {total}"
    assert error.flag is None
    assert error.title == "Invalid prompt"


def test_huge_weight_is_an_error_not_infinity() -> None:
    assert "too large" in error_for("a::" + "9" * 400 + " b").message


# --- image URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "urls", "prompt"),
    [
        ("https://x.com/a.png a cat", ("https://x.com/a.png",), "a cat"),
        (
            "http://x.com/a.png https://y.org/b.jpg?s=1 cat",
            ("http://x.com/a.png", "https://y.org/b.jpg?s=1"),
            "cat",
        ),
        ("<https://x.com/a.png> cat", ("https://x.com/a.png",), "cat"),
        ("HTTPS://X.com/a.png cat", ("HTTPS://X.com/a.png",), "cat"),
        ("https://x.com/a.png a cat --ar 2:1", ("https://x.com/a.png",), "a cat"),
        ("a cat https://x.com/a.png", (), "a cat https://x.com/a.png"),  # only leading ones
    ],
)
def test_leading_image_urls(text: str, urls: tuple[str, ...], prompt: str) -> None:
    request = parse_prompt(text)
    assert request.image_urls == urls
    assert request.prompt == prompt


@pytest.mark.parametrize("text", ["https://x.com/a.png", "https://x.com/a.png --ar 2:1"])
def test_one_image_url_without_text_is_refused(text: str) -> None:
    with pytest.raises(PromptError, match="an image prompt needs text too"):
        parse_prompt(text)


def test_two_images_without_text_are_a_blend_as_midjourneys_blend_prompts_are() -> None:
    """What /blend shows (`<a> <b> --ar 2:3`) pastes into /imagine, and remixes, as it ran."""
    request = parse_prompt("https://x.com/a.png https://x.com/b.png --ar 2:3")
    assert request.prompt == "" and request.parts == ()
    assert request.image_urls == ("https://x.com/a.png", "https://x.com/b.png")
    assert request.image_weight == BLEND_IMAGE_WEIGHT and request.aspect == (2, 3)
    assert parse_prompt(request.raw) == request
    assert parse_prompt("https://x.com/a.png https://x.com/b.png --iw 0.5").image_weight == 0.5
    with_text = parse_prompt("https://x.com/a.png https://x.com/b.png two cats")
    assert with_text.image_weight == ImagineRequest.image_weight  # text to weigh them against


def test_images_given_beside_the_text_count_as_its_links() -> None:
    """Files (the local command's --image) come before the prompt's links: one file and one
    link, or two files, and no text are a blend; --iw with a file has an image to weigh."""
    for text, given in (("https://x.com/a.png --ar 2:3", 1), ("--ar 2:3", 2)):
        blend = parse_prompt(text, images=given)
        assert blend.image_weight == BLEND_IMAGE_WEIGHT and blend.aspect == (2, 3)
        assert parse_prompts(text, images=given) == (blend,)
    with pytest.raises(PromptError, match="an image prompt needs text too"):
        parse_prompt("--ar 2:3", images=1)
    assert parse_prompt("a lake --iw 2", images=1).notes == ()
    assert "weighs image prompts" in parse_prompt("a lake --iw 2").notes[0]


@pytest.mark.parametrize(
    "url", ["ftp://x.com/a.png", "http://", "https:///a.png", "file:///etc/passwd", "http://[::1"]
)
def test_invalid_image_url(url: str) -> None:
    error = error_for(f"{url} a cat")
    assert error.message == f"{url} is not a valid image URL (http:// or https://)"


# --- empty, long, permutations refused ------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "--ar 16:9", "::", ":: ::2", "—no dog"])
def test_empty_prompt(text: str) -> None:
    assert error_for(text).message == "the prompt is empty"


def test_prompt_length_limit() -> None:
    assert parse_prompt("a" * 6000).prompt == "a" * 6000
    error = error_for("a" * 6001)
    assert "6000" in error.message and "6001" in error.message


def test_parse_prompt_refuses_permutations() -> None:
    assert "permutations" in error_for("a {red, blue} cat").message


@pytest.mark.parametrize(
    ("text", "prompt"),
    [("a \\{b\\} cat", "a {b} cat"), ("a\\, b", "a, b"), ("c:\\dir", "c:\\dir")],
)
def test_parse_prompt_resolves_escapes(text: str, prompt: str) -> None:
    request = parse_prompt(text)
    assert request.prompt == prompt
    assert request.raw == text


def test_parse_prompts_without_sets_is_one_request() -> None:
    assert parse_prompts("a cat --seed 1") == (parse_prompt("a cat --seed 1"),)


@pytest.mark.parametrize("value", ["<", "<>", "< >"])
def test_a_reference_that_is_only_brackets_is_refused(value: str) -> None:
    # Found by the fuzz test: `--sref <` left an empty reference once the brackets were removed.
    with pytest.raises(PromptError, match="--sref"):
        parse_prompt(f"a cat --sref {value}")
