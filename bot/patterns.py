"""Admin moderation patterns (`[moderation] banned_patterns`) on RE2, a linear-time engine: no
pattern can stall the bot however it is written. Features that need backtracking (lookarounds,
backreferences) are refused when the config is read, not on the first prompt."""

from __future__ import annotations

import functools
from typing import Any

import re2

PatternError = re2.error


@functools.lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> Any:  # re2's compiled pattern type is not exported
    """`pattern`, matching any case; PatternError for one RE2 cannot run."""
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False  # raised (and reported by the config) instead of logged
    return re2.compile(pattern, options)


def pattern_problem(error: Exception) -> str:
    """RE2's message (bytes in its Python binding) as text."""
    message = error.args[0] if error.args else error
    return message.decode() if isinstance(message, bytes) else str(message)
