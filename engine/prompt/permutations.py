"""Permutation prompts: `a {red, blue} bird` is two prompts, `a red bird` and `a blue bird`.

Sets multiply, may nest (`{a, b {c, d}}` gives `a`, `b c`, `b d`) and work anywhere, parameters
included (`--ar {3:2, 1:1}`). `\\,` is a literal comma inside an option, `\\{` and `\\}` literal
braces and `\\\\` a literal backslash. Options are stripped, so `x{1, 2}y` gives `x1y` and `x2y`.

Both passes below walk the text with an explicit stack, never recursion, so deep nesting cannot
hit Python's recursion limit, and the count is computed without expanding anything: 30 sets of
two options are counted (and refused) at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from engine.prompt.request import PromptError

DEFAULT_LIMIT = 40  # Midjourney's largest plan cap
ESCAPABLE = "\\,{}"
_NEEDS_ESCAPE = re.compile(r"[{}]|\\(?=[\\,{}])")

# Tokens: "{", "}" and "," are structure; anything else arrives as ("", text).
_OPEN, _CLOSE, _COMMA = "{", "}", ","


def _tokens(text: str) -> Iterator[tuple[str, str]]:
    """(kind, text) pairs; kind is "{", "}", "," or "" for a run of literal text (escapes resolved).

    A comma is structural only inside a set; outside one it stays literal text.
    """
    depth = 0
    run: list[str] = []
    chars = iter(text)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            # Not an escape: keep the backslash (Windows paths, kaomoji…).
            run.append(nxt if nxt and nxt in ESCAPABLE else ch + nxt)
            continue
        if ch not in "{}," or (ch == _COMMA and depth == 0):
            run.append(ch)
            continue
        if ch == _CLOSE and depth == 0:
            raise PromptError(
                "unbalanced braces: a `}` has no matching `{` (write `\\}` for a literal brace)"
            )
        if run:
            yield "", "".join(run)
            run.clear()
        depth += {_OPEN: 1, _CLOSE: -1, _COMMA: 0}[ch]
        yield ch, ch
    if depth:
        raise PromptError(
            "unbalanced braces: a `{` is never closed (write `\\{` for a literal brace)"
        )
    if run:
        yield "", "".join(run)


def has_sets(text: str) -> bool:
    """Whether `text` contains a `{…}` set; PromptError on unbalanced braces."""
    found = False
    for kind, _ in _tokens(text):  # consume all, so unbalanced braces still raise
        found = found or kind == _OPEN
    return found


def count_permutations(text: str) -> int:
    """How many prompts `text` expands to, without expanding it.

    A sequence counts the product of its sets; a set counts the sum of its options.
    """
    # One frame per open set: [sum of finished options, product of the current option].
    stack: list[list[int]] = [[0, 1]]
    for kind, _ in _tokens(text):
        if kind == _OPEN:
            stack.append([0, 1])
        elif kind == _COMMA:
            frame = stack[-1]
            frame[0], frame[1] = frame[0] + frame[1], 1
        elif kind == _CLOSE:
            total, current = stack.pop()
            stack[-1][1] *= total + current
    return stack[0][1]


def expand_permutations(text: str, limit: int = DEFAULT_LIMIT) -> tuple[str, ...]:
    """Every prompt `text` stands for, in order, whitespace folded.

    Counts first: more than `limit` raises PromptError naming both numbers.
    """
    count = count_permutations(text)
    if count > limit:
        raise PromptError(
            f"this prompt makes {count} permutations; the limit is {limit}",
            title="Too many permutations",
        )
    # One frame per open set: (finished options' strings, current option's partial strings).
    # Every list stays no longer than the final count, which is already known to be small.
    stack: list[tuple[list[str], list[str]]] = [([], [""])]
    for kind, value in _tokens(text):
        done, current = stack[-1]
        if kind == _OPEN:
            stack.append(([], [""]))
        elif kind == _COMMA:
            done.extend(current)
            current[:] = [""]
        elif kind == _CLOSE:
            stack.pop()
            options = [option.strip() for option in done + current]  # `x{1, 2}y`: x1y, x2y
            parent = stack[-1][1]
            parent[:] = [head + option for head in parent for option in options]
        else:
            current[:] = [head + value for head in current]
    return tuple(" ".join(result.split()) for result in stack[0][1])


def escape(text: str) -> str:
    """`text` escaped so that expanding it gives back `text` (folded), and no longer than needed.

    Braces always; a backslash only where it would otherwise start an escape.
    """
    return _NEEDS_ESCAPE.sub(lambda match: "\\" + match[0], text)
