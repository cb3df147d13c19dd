"""Parse one /imagine prompt into an ImagineRequest, the way Midjourney reads it.

A prompt is image URLs, then text, then parameters: `https://a.png a cat::2 dog --ar 16:9 --no hat`.
Pure Python: the Discord front-end validates prompts before anything heavy is imported.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from engine.prompt.permutations import (
    DEFAULT_LIMIT,
    escape,
    expand_permutations,
    has_sets,
)
from engine.prompt.request import (
    QUALITY_VALUES,
    SAMPLERS,
    SEED_MAX,
    ImagineRequest,
    PromptError,
    PromptPart,
)

MAX_PROMPT_CHARS = 6000

# Digit runs are capped: int() refuses strings past 4300 digits with a plain ValueError.
_INT = re.compile(r"-?0*[0-9]{1,30}")
_DECIMAL = r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"  # 2, -0.5, .5, 1. (no exponents, nan or inf)
_NUMBER = re.compile(_DECIMAL)
_ASPECT = re.compile(r"0*([0-9]{1,30}):0*([0-9]{1,30})")
_NAME = re.compile(r"[a-z0-9._-]+")
# `::` ends a part; a number right after it (up to whitespace, the end or the next `::`) weighs
# the part before it.
_WEIGHT_SPLIT = re.compile(rf"::({_DECIMAL}(?=\s|$|::))?")


# A value parser turns the flag's value into the field's value, or raises ValueError.
ValueParser = Callable[[str], Any]


@dataclass(frozen=True)
class _Flag:
    field: str  # the ImagineRequest field it sets; flags sharing a field conflict
    arity: str  # "none" (a switch), "one" (one word), "optional" (zero or one), "text" (the rest)
    parse: ValueParser
    accepts: str = ""  # for messages: "--chaos must be {accepts}, got …"


def _whole_flag(field: str, low: int, high: int) -> _Flag:
    def parse(value: str) -> int:
        if not _INT.fullmatch(value) or not low <= int(value) <= high:
            raise ValueError(value)
        return int(value)

    return _Flag(field, "one", parse, f"a whole number from {low} to {high}")


def _number_flag(field: str, low: float, high: float) -> _Flag:
    def parse(value: str) -> float:
        if not _NUMBER.fullmatch(value) or not low <= float(value) <= high:
            raise ValueError(value)
        return float(value)

    return _Flag(field, "one", parse, f"a number from {low:g} to {high:g}")


def _switch(field: str, result: object) -> _Flag:
    return _Flag(field, "none", lambda value: result)


def _negative(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _aspect(value: str) -> tuple[int, int]:
    match = _ASPECT.fullmatch(value)
    if not match:
        raise ValueError(value)
    width, height = int(match[1]), int(match[2])
    # Compared in integers: no float rounding at the 1:3 and 3:1 edges.
    if width < 1 or height < 1 or width > 3 * height or height > 3 * width:
        raise ValueError(value)
    divisor = math.gcd(width, height)
    return width // divisor, height // divisor


def _quality(value: str) -> float:
    if not _NUMBER.fullmatch(value) or float(value) not in QUALITY_VALUES:
        raise ValueError(value)
    return float(value)


def _model_name(value: str) -> str:
    if not _NAME.fullmatch(value.lower()):
        raise ValueError(value)
    return value.lower()


def _niji(value: str) -> str:
    if value:  # `--niji 6`: a version of niji; one niji model here, so it only has to look right
        _model_name(value)
    return "niji"


def _style(value: str) -> bool:
    if value.lower() != "raw":
        raise ValueError(value)
    return True


def _sampler(value: str) -> str:
    # `DPM++ 2M` is spelled `dpm++_2m`, `dpm++-2m` or `dpmpp_2m` in the wild.
    name = value.lower().replace("++", "pp").replace("-", "_")
    if name not in SAMPLERS:
        raise ValueError(value)
    return name


_MODEL_NAME = "a model name (letters, digits, `.`, `-`, `_`)"
_ASPECT_FLAG = _Flag("aspect", "one", _aspect, "W:H in whole numbers from 1:3 to 3:1 (like 16:9)")
_CHAOS = _whole_flag("chaos", 0, 100)
_STYLIZE = _whole_flag("stylize", 0, 1000)
_QUALITY = _Flag("quality", "one", _quality, "one of .25, .5, 1, 2")
_WEIRD = _whole_flag("weird", 0, 3000)
_REPEAT = _whole_flag("repeat", 2, 40)
_VERSION = _Flag("model", "one", _model_name, _MODEL_NAME)

FLAGS: dict[str, _Flag] = {
    "ar": _ASPECT_FLAG,
    "aspect": _ASPECT_FLAG,
    "seed": _whole_flag("seed", 0, SEED_MAX),
    "no": _Flag("negative", "text", _negative, "words to avoid, separated by commas"),
    "chaos": _CHAOS,
    "c": _CHAOS,
    "stylize": _STYLIZE,
    "s": _STYLIZE,
    "quality": _QUALITY,
    "q": _QUALITY,
    "stop": _whole_flag("stop", 10, 100),
    "tile": _switch("tile", True),
    "weird": _WEIRD,
    "w": _WEIRD,
    "repeat": _REPEAT,
    "r": _REPEAT,
    "iw": _number_flag("image_weight", 0, 3),
    "version": _VERSION,
    "v": _VERSION,
    "niji": _Flag("model", "optional", _niji, f"a version, if any: {_MODEL_NAME}"),
    "style": _Flag("style_raw", "one", _style, "raw"),
    "steps": _whole_flag("steps", 1, 150),
    "cfg": _number_flag("cfg", 0, 30),
    "sampler": _Flag("sampler", "one", _sampler, f"one of: {', '.join(SAMPLERS)}"),
    "fast": _switch("speed", "fast"),
    "relax": _switch("speed", "relax"),
    "turbo": _switch("speed", "turbo"),
}


def _flag_name(token: str) -> str | None:
    """The flag name a token starts (lower-cased, maybe empty), or None if it is not a flag.

    Phones turn `--` into an em dash, so `—ar` is `--ar`.
    """
    for dash in ("--", "—"):
        if token.startswith(dash):
            return token[len(dash) :].lower()
    # An en dash is also ordinary punctuation ("1990 – 2000"): only `–ar` counts.
    if token.startswith("–") and token[1:2].isalpha():
        return token[1:].lower()
    return None


def suggest_flag(name: str) -> str | None:
    """The known flag closest to `name` (with or without its dashes), as `--flag`; None if none."""
    bare = name.lower().lstrip("-—–")
    matches = difflib.get_close_matches(bare, FLAGS, n=1, cutoff=0.6)
    return f"--{matches[0]}" if matches else None


def _unknown_flag(flag: str) -> PromptError:
    suggestion = suggest_flag(flag)
    if suggestion:
        hint = f"did you mean {suggestion}?"
    else:
        hint = "known parameters include --ar, --seed, --no, --chaos, --stylize, --v, --steps"
    return PromptError(f"unknown parameter {flag}; {hint}", flag=flag)


def _split_urls(words: list[str]) -> tuple[tuple[str, ...], list[str]]:
    """Leading image URLs, validated, and the words after them."""
    urls: list[str] = []
    for word in words:
        if "://" not in word:
            break
        urls.append(_image_url(word))
    return tuple(urls), words[len(urls) :]


def _image_url(word: str) -> str:
    url = word.removeprefix("<").removesuffix(">")  # Discord's `<url>` hides the embed
    try:
        parts = urlsplit(url)
        valid = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. a broken IPv6 host: `http://[::1`
        valid = False
    if not valid:
        raise PromptError(f"{word} is not a valid image URL (http:// or https://)")
    return url


def _group_flags(words: list[str]) -> list[tuple[str, list[str]]]:
    """[(flag as `--name`, its value words)] for the parameter words, which start with a flag."""
    groups: list[tuple[str, list[str]]] = []
    for word in words:
        name = _flag_name(word)
        if name is None:
            groups[-1][1].append(word)
        else:
            groups.append((f"--{name}", []))
    return groups


def _parse_flags(words: list[str], models: Collection[str] | None) -> dict[str, Any]:
    """ImagineRequest field values for the parameter words; PromptError names the flag."""
    fields: dict[str, Any] = {}
    set_by: dict[str, str] = {}
    for flag, values in _group_flags(words):
        if flag == "--":
            raise PromptError("a parameter name is missing after --", flag=flag)
        spec = FLAGS.get(flag[2:])
        if spec is None:
            raise _unknown_flag(flag)
        if spec.field in set_by:
            raise _given_twice(set_by[spec.field], flag)
        set_by[spec.field] = flag
        _check_arity(flag, spec, values)
        fields[spec.field] = _parse_value(flag, spec, " ".join(values))
        if spec.field == "model" and models is not None:
            _check_model(flag, fields["model"], models)
    return fields


def _given_twice(first: str, second: str) -> PromptError:
    if first == second:
        return PromptError(f"{second} is given more than once", flag=second)
    return PromptError(f"{first} and {second} cannot be used together", flag=second)


def _check_arity(flag: str, spec: _Flag, values: list[str]) -> None:
    if spec.arity == "none" and values:
        raise PromptError(f"{flag} takes no value, got {' '.join(values)}", flag=flag)
    if spec.arity in ("one", "text") and not values:
        raise PromptError(f"{flag} needs a value: {spec.accepts}", flag=flag)
    if spec.arity in ("one", "optional") and len(values) > 1:
        raise PromptError(
            f"{flag} takes one value, got {' '.join(values)} "
            "(parameters go at the end of the prompt)",
            flag=flag,
        )


def _parse_value(flag: str, spec: _Flag, value: str) -> Any:
    try:
        return spec.parse(value)
    except ValueError:
        raise PromptError(f"{flag} must be {spec.accepts}, got {value}", flag=flag) from None


def _check_model(flag: str, model: str, models: Collection[str]) -> None:
    known = sorted(name.lower() for name in models)
    if model not in known:
        raise PromptError(
            f"{flag} must be one of: {', '.join(known)}; got {model}"
            if flag != "--niji"
            else f"--niji is not available here; the models are: {', '.join(known)}",
            flag=flag,
        )


def _parse_parts(text: str) -> tuple[PromptPart, ...]:
    """Multi-prompt parts of the text: `a::2 b` gives ("a", 2.0), ("b", 1.0)."""
    parts: list[PromptPart] = []
    start = 0
    for match in _WEIGHT_SPLIT.finditer(text):
        weight = float(match[1]) if match[1] else 1.0
        if not math.isfinite(weight):  # a few hundred digits overflow to inf
            raise PromptError(f"the multi-prompt weight ::{match[1]} is too large")
        parts.append(PromptPart(text[start : match.start()].strip(), weight))
        start = match.end()
    parts.append(PromptPart(text[start:].strip()))
    parts = [part for part in parts if part.text]
    total = sum(part.weight for part in parts)  # not fsum: it raises on overflow
    if parts and total <= 0:
        raise PromptError(
            f"the weights of a multi-prompt must add up to more than 0, got {total:g}"
        )
    return tuple(parts)


def _check_length(text: str) -> None:
    if len(text) > MAX_PROMPT_CHARS:
        raise PromptError(
            f"the prompt is {len(text)} characters long; the limit is {MAX_PROMPT_CHARS}"
        )


def _parse_expanded(text: str, raw: str, models: Collection[str] | None) -> ImagineRequest:
    """Parse one prompt whose permutations are already expanded (braces are literal here)."""
    # 1. split: image URLs, then text, then parameters from the first word that is a flag
    words = text.split()
    image_urls, rest = _split_urls(words)
    first_flag = next((i for i, word in enumerate(rest) if _flag_name(word) is not None), None)
    cut = len(rest) if first_flag is None else first_flag
    prompt = " ".join(rest[:cut])
    # 2. parameters, then the multi-prompt text
    fields = _parse_flags(rest[cut:], models)
    parts = _parse_parts(prompt)
    if not parts and image_urls:  # image prompts are parsed but not used for generation yet
        raise PromptError("image prompts are not supported yet: add text that describes the image")
    if not parts:
        raise PromptError("the prompt is empty")
    return ImagineRequest(prompt=prompt, parts=parts, image_urls=image_urls, raw=raw, **fields)


def parse_prompt(text: str, *, models: Collection[str] | None = None) -> ImagineRequest:
    """Parse one prompt. `{a, b}` sets are refused: use `parse_prompts` for those.

    `models`, when given, are the names `--v` / `--niji` may choose (case-insensitive).
    Raises PromptError with a message fit for the user.
    """
    _check_length(text.strip())
    if has_sets(text):
        raise PromptError(
            "this prompt has {…} permutations: send it as permutations, or write `\\{` and `\\}` "
            "for literal braces"
        )
    (expanded,) = expand_permutations(text)  # resolves escapes like `\,`
    return _parse_expanded(expanded, text.strip(), models)


def parse_prompts(
    text: str, *, limit: int = DEFAULT_LIMIT, models: Collection[str] | None = None
) -> tuple[ImagineRequest, ...]:
    """Expand `{a, b}` permutations (at most `limit`), then parse each prompt.

    Each request's `raw` re-parses to the same request with `parse_prompt`.
    """
    _check_length(text.strip())
    if not has_sets(text):
        return (parse_prompt(text, models=models),)
    return tuple(
        _parse_expanded(expanded, escape(expanded), models)
        for expanded in expand_permutations(text, limit)
    )
