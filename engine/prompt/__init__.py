"""The Midjourney prompt language: `https://img.png a cat::2 {red, blue} hat --ar 16:9 --no dog`.

Pure Python (never imports torch): the Discord front-end validates prompts with it.
"""

from engine.prompt.parser import MAX_PROMPT_CHARS, parse_prompt, parse_prompts, suggest_flag
from engine.prompt.permutations import count_permutations, expand_permutations
from engine.prompt.request import (
    QUALITY_VALUES,
    SAMPLERS,
    SEED_MAX,
    SPEEDS,
    ImagineRequest,
    PromptError,
    PromptPart,
)

__all__ = [
    "MAX_PROMPT_CHARS",
    "QUALITY_VALUES",
    "SAMPLERS",
    "SEED_MAX",
    "SPEEDS",
    "ImagineRequest",
    "PromptError",
    "PromptPart",
    "count_permutations",
    "expand_permutations",
    "parse_prompt",
    "parse_prompts",
    "suggest_flag",
]
