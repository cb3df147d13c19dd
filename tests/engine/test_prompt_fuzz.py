"""Property-based tests: the parser only ever returns requests or raises PromptError."""

from __future__ import annotations

import contextlib
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import EngineConfig
from engine.intake import Preferences, expand_prompt, read_prompt
from engine.prompt import (
    SEED_MAX,
    ImagineRequest,
    PromptError,
    count_permutations,
    expand_permutations,
    parse_prompt,
    parse_prompts,
)
from engine.prompt.parser import FLAGS
from engine.prompt.permutations import escape
from engine.prompt.request import MAX_ASPECT

FAST = settings(max_examples=200, deadline=None)

# Pieces that exercise every branch: flags (known, misspelt, dashed), values, braces, escapes,
# multi-prompt weights, URLs and some unicode.
PIECES = [
    *(f"--{name}" for name in FLAGS),
    "--",
    "—",
    "–",
    "—ar",
    "–ar",
    "--chaoss",
    "--AR",
    "x--y",
    "16:9",
    "4:1",
    "0:0",
    "1.5",
    ".25",
    "-3",
    "99999999999999999999",
    "raw",
    "dpm++_2m",
    "niji",
    "6.1",
    "8.2",
    "--v6.1",
    "—niji6",
    "cute",
    "random",
    "https://x.com/a.png::2",
    "--mine",
    "{",
    "}",
    ",",
    "\\",
    "\\,",
    "\\{",
    "\\}",
    "{a, b}",
    "{a, b {c, d}}",
    "::",
    "::2",
    "::-0.5",
    "::.5",
    "::-1",
    "https://x.com/a.png",
    "http://",
    "ftp://x",
    "<https://x.com/a.png>",
    "http://[::1",
    "cat",
    "ünïcödé",
    "🐱",
    "\u200b",
    "\n",
]

words = st.one_of(st.sampled_from(PIECES), st.text(max_size=6))
prompts = st.lists(words, max_size=14).flatmap(
    lambda items: st.lists(
        st.sampled_from([" ", "", "  ", "\t"]), min_size=len(items), max_size=len(items)
    ).map(lambda seps: "".join(s + w for s, w in zip(seps, items, strict=True)))
)


@FAST
@given(prompts, st.integers(min_value=1, max_value=40))
def test_parse_prompts_returns_requests_or_raises_prompt_error(text: str, limit: int) -> None:
    try:
        requests = parse_prompts(text, limit=limit)
    except PromptError as error:
        assert error.message and error.title
        return
    assert 1 <= len(requests) <= limit
    assert all(isinstance(request, ImagineRequest) for request in requests)


@FAST
@given(prompts)
def test_parse_prompt_returns_a_request_or_raises_prompt_error(text: str) -> None:
    try:
        request = parse_prompt(text, models=("sdxl", "niji"))
    except PromptError:
        return
    assert request.parts or request.image_urls
    assert sum(part.weight for part in request.parts) > 0 or not request.parts


@FAST
@given(prompts)
def test_each_raw_parses_back_to_its_request(text: str) -> None:
    try:
        requests = parse_prompts(text)
    except PromptError:
        return
    for request in requests:
        assert parse_prompt(request.raw) == request


@FAST
@given(st.text(max_size=40))
def test_arbitrary_text_never_crashes(text: str) -> None:
    with contextlib.suppress(PromptError):
        parse_prompts(text)


@FAST
@given(st.lists(st.sampled_from(["{", "}", ",", "a", " ", "\\"]), max_size=30).map("".join))
def test_count_equals_the_number_of_expansions(text: str) -> None:
    try:
        count = count_permutations(text)
    except PromptError:
        return
    assert len(expand_permutations(text, limit=max(count, 1))) == count


@FAST
@given(st.text(max_size=30))
def test_escaped_text_expands_to_itself(text: str) -> None:
    assert expand_permutations(escape(text)) == (" ".join(text.split()),)


@FAST
@given(st.integers(min_value=0, max_value=SEED_MAX), st.sampled_from(["--seed", "—seed", "--SEED"]))
def test_any_valid_seed_parses_to_itself(seed: int, flag: str) -> None:
    assert parse_prompt(f"a cat {flag} {seed}").seed == seed


@FAST
@given(st.one_of(st.integers(max_value=-1), st.integers(min_value=SEED_MAX + 1)))
def test_any_out_of_range_seed_is_refused(seed: int) -> None:
    try:
        parse_prompt(f"a cat --seed {seed}")
    except PromptError as error:
        assert error.flag == "--seed"
        assert str(seed) in error.message
    else:
        raise AssertionError("accepted an out-of-range seed")


@FAST
@given(st.integers(min_value=1, max_value=10_000), st.integers(min_value=1, max_value=10_000))
def test_aspect_ratio_is_reduced_or_refused(width: int, height: int) -> None:
    text = f"a cat --ar {width}:{height}"
    if width > MAX_ASPECT * height or height > MAX_ASPECT * width:
        try:
            parse_prompt(text)
        except PromptError as error:
            assert error.flag == "--ar" and f"{width}:{height}" in error.message
        else:
            raise AssertionError("accepted a ratio outside 1:8 … 8:1")
        return
    divisor = math.gcd(width, height)
    assert parse_prompt(text).aspect == (width // divisor, height // divisor)


@FAST
@given(st.integers(min_value=0, max_value=100))
def test_any_valid_chaos_parses_to_itself(chaos: int) -> None:
    assert parse_prompt(f"cat --c {chaos}").chaos == chaos


@FAST
@given(
    st.lists(
        st.tuples(
            st.text(alphabet="abc xyz", min_size=1, max_size=8).filter(str.strip),
            st.integers(min_value=-9, max_value=9),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_multi_prompt_weights_round_trip(parts: list[tuple[str, int]]) -> None:
    text = " ".join(f"{words}::{weight}" for words, weight in parts)
    try:
        request = parse_prompt(text)
    except PromptError as error:
        assert sum(weight for _, weight in parts) <= 0
        assert "add up to more than 0" in error.message
        return
    assert [(p.text, p.weight) for p in request.parts] == [
        (" ".join(words.split()), float(weight)) for words, weight in parts
    ]


CONFIG = EngineConfig(versions={"6.1": "tiny"})
PREFS = Preferences(
    suffix="--s 250", options={"mine": "soft light --ar 3:2", "bad": "--chaos 900"}, profile="x"
)


@FAST
@given(prompts, st.booleans())
def test_the_intake_returns_prompts_or_raises_prompt_error(text: str, permutations: bool) -> None:
    """Custom options, the suffix, versions and --p on top of the parser: still one error type."""
    try:
        reading = read_prompt(
            expand_prompt(text, PREFS),
            CONFIG,
            PREFS,
            permutations=permutations,
            find_profile={"abc": "style"}.get,
        )
    except PromptError as error:
        assert error.message and error.title
        return
    assert all(prompt.model in CONFIG.presets for prompt in reading.prompts)
