"""`{a, b}` permutations: counting, expansion, escapes, the cap, and parse_prompts."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from engine.prompt import (
    PromptError,
    count_permutations,
    expand_permutations,
    parse_prompt,
    parse_prompts,
)

EXPANSIONS = [
    ("a cat", ("a cat",)),
    ("a {red, blue} bird", ("a red bird", "a blue bird")),
    ("{a, b} {c, d}", ("a c", "a d", "b c", "b d")),
    ("{a, b {c, d}}", ("a", "b c", "b d")),
    ("{a, {b, {c, d}}} x", ("a x", "b x", "c x", "d x")),
    ("{a}", ("a",)),
    ("{}", ("",)),
    ("a {big, } cat", ("a big cat", "a cat")),  # an empty option drops the words
    ("a  {b,   c }  d", ("a b d", "a c d")),  # whitespace folded after expanding
    ("x{1, 2 }y", ("x1y", "x2y")),  # options are stripped
    ("cat --ar {3:2, 1:1}", ("cat --ar 3:2", "cat --ar 1:1")),
    ("{a\\, b, c}", ("a, b", "c")),  # `\,` is a literal comma inside an option
    ("red, blue", ("red, blue",)),  # a comma outside a set is text
    ("a\\, b", ("a, b",)),
    ("\\{a, b\\}", ("{a, b}",)),
    ("{\\{x\\}, y}", ("{x}", "y")),
    ("a\\\\{b, c}", ("a\\b", "a\\c")),  # `\\` is a backslash, so the set is real
    ("c:\\dir", ("c:\\dir",)),  # other backslashes stay
    ("end\\", ("end\\",)),
]


@pytest.mark.parametrize(("text", "expected"), EXPANSIONS)
def test_expand(text: str, expected: tuple[str, ...]) -> None:
    assert expand_permutations(text) == expected


@pytest.mark.parametrize(("text", "expected"), EXPANSIONS)
def test_count_matches_expansion(text: str, expected: tuple[str, ...]) -> None:
    assert count_permutations(text) == len(expected)


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("{a, b} {c, d, e}", 6),
        ("{a, b {c, d} {e, f}}", 5),
        ("{a, b}" * 30, 2**30),
        ("{" * 500 + "x" + "}" * 500, 1),  # deep nesting needs no recursion
        ("{a,b,c,d,e,f,g,h,i,j}" * 600, 10**600),
    ],
)
@pytest.mark.timeout(2)
def test_count_without_expanding(text: str, count: int) -> None:
    assert count_permutations(text) == count


@pytest.mark.parametrize("function", [count_permutations, expand_permutations, parse_prompts])
@pytest.mark.parametrize("text", ["{a", "a}", "{a, {b}", "}{", "{a}}", "\\{a}", "{a\\}"])
def test_unbalanced_braces(function: Callable[[str], object], text: str) -> None:
    with pytest.raises(PromptError, match="unbalanced braces"):
        function(text)


def test_cap_names_the_count_and_the_limit() -> None:
    with pytest.raises(PromptError) as info:
        expand_permutations("{a, b, c} {d, e, f, g, h, i, j, k, l, m, n, o, p, q}")
    assert info.value.message == "this prompt makes 42 permutations; the limit is 40"


@pytest.mark.parametrize(("limit", "allowed"), [(4, True), (3, False), (10, True), (1, False)])
def test_custom_limit(limit: int, allowed: bool) -> None:
    text = "{a, b} {c, d}"
    if allowed:
        assert len(expand_permutations(text, limit)) == 4
        assert len(parse_prompts(text, limit=limit)) == 4
    else:
        with pytest.raises(PromptError, match=f"makes 4 permutations; the limit is {limit}"):
            parse_prompts(text, limit=limit)


def test_exactly_the_limit_is_allowed() -> None:
    options = ", ".join(str(n) for n in range(40))
    assert len(expand_permutations(f"cat {{{options}}}")) == 40


@pytest.mark.timeout(2)
def test_thirty_sets_of_two_are_refused_at_once() -> None:
    with pytest.raises(PromptError, match=f"makes {2**30} permutations"):
        parse_prompts("a {b, c}" * 30)


def test_parse_prompts_in_parameters() -> None:
    requests = parse_prompts("a {red, blue} cat --ar {3:2, 1:1} --seed {1, 2}")
    assert len(requests) == 8
    assert [r.prompt for r in requests[:2]] == ["a red cat", "a red cat"]
    assert [(r.aspect, r.seed) for r in requests[:4]] == [
        ((3, 2), 1),
        ((3, 2), 2),
        ((1, 1), 1),
        ((1, 1), 2),
    ]
    assert requests[-1].raw == "a blue cat --ar 1:1 --seed 2"


def test_parse_prompts_reports_a_bad_permutation() -> None:
    with pytest.raises(PromptError) as info:
        parse_prompts("cat --chaos {10, 250}")
    assert info.value.message == "--chaos must be a whole number from 0 to 100, got 250"


def test_parse_prompts_negative_from_a_set() -> None:
    requests = parse_prompts("cat --no {dog\\, bird, fish}")
    assert [r.negative for r in requests] == [("dog", "bird"), ("fish",)]


@pytest.mark.parametrize(
    "text",
    [
        "a {red, blue} cat",
        "a {\\{x\\}, y} --no {a\\, b, c}",
        "a\\\\{b, c}",
        "https://x.com/a.png {a, b} --ar {2:1, 1:1}",
    ],
)
def test_raw_of_each_permutation_parses_back_to_it(text: str) -> None:
    for request in parse_prompts(text):
        assert parse_prompt(request.raw) == request
        assert parse_prompts(request.raw) == (request,)


def test_literal_braces_reach_the_prompt() -> None:
    (request,) = parse_prompts("a \\{not a set\\} cat")
    assert request.prompt == "a {not a set} cat"


def test_unbalanced_error_is_an_invalid_prompt() -> None:
    with pytest.raises(PromptError) as info:
        parse_prompts("a {b, c")
    assert (info.value.title, info.value.flag) == ("Invalid prompt", None)
