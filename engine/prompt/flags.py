"""Every `--parameter` the prompt language knows: what field it sets, how its value is read, and
what the user is told when it is rounded, ignored or not available here.

Midjourney's own parameters are all known by name (current ones and those of older versions that
still appear in pasted prompts), so none of them is ever "unknown" or "did you mean" another one.
Pure Python.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from engine.prompt.request import (
    LORA_WEIGHT,
    MAX_ASPECT,
    MAX_LORAS,
    NAMED_STYLES,
    QUALITY_VALUES,
    SAMPLERS,
    SEED_MAX,
    LoraUse,
    PromptError,
)

# Digit runs are capped: int() refuses strings past 4300 digits with a plain ValueError.
_INT = re.compile(r"-?0*[0-9]{1,30}")
DECIMAL = r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"  # 2, -0.5, .5, 1. (no exponents, nan or inf)
_NUMBER = re.compile(DECIMAL)
_ASPECT = re.compile(r"0*([0-9]{1,30}):0*([0-9]{1,30})")
_NAME = re.compile(r"[a-z0-9._-]+")
_CODE = re.compile(rf"[a-z0-9_-]{{1,64}}(?:::{DECIMAL})?", re.IGNORECASE)  # --p / --sref codes
_WEIGHTED = re.compile(rf"(.+?)(::{DECIMAL})?")  # a reference with its `::weight`


@dataclass(frozen=True)
class Noted:
    """A value parser's result that comes with a note for the user (`--q 3` ran as `--q 4`)."""

    value: Any
    note: str


# A value parser turns the flag's value into the field's value (maybe Noted), or raises ValueError.
ValueParser = Callable[[str], Any]


@dataclass(frozen=True)
class Flag:
    field: str  # the ImagineRequest field it sets; flags sharing a field conflict
    # "none" (a switch), "one" (one word), "optional" (zero or one), "text" (the rest, at least
    # one word), "many" (one or more words), "any" (zero or more words)
    arity: str
    parse: ValueParser
    accepts: str = ""  # for messages: "--chaos must be {accepts}, got …"

    @property
    def ignored(self) -> bool:
        """A Midjourney parameter that has nothing to act on here: its field is not kept."""
        return self.field.startswith("_")


def _whole(field: str, low: int, high: int) -> Flag:
    def parse(value: str) -> int:
        if not _INT.fullmatch(value) or not low <= int(value) <= high:
            raise ValueError(value)
        return int(value)

    return Flag(field, "one", parse, f"a whole number from {low} to {high}")


def _number(field: str, low: float, high: float) -> Flag:
    def parse(value: str) -> float:
        if not _NUMBER.fullmatch(value) or not low <= float(value) <= high:
            raise ValueError(value)
        return float(value)

    return Flag(field, "one", parse, f"a number from {low:g} to {high:g}")


def _switch(field: str, result: object) -> Flag:
    return Flag(field, "none", lambda value: result)


def _negative(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def parse_aspect(value: str) -> tuple[int, int]:
    """ "W:H" (whole numbers, from 1:8 to 8:1) → (W, H) in lowest terms; ValueError otherwise."""
    match = _ASPECT.fullmatch(value)
    if not match:
        raise ValueError(value)
    width, height = int(match[1]), int(match[2])
    # Compared in integers: no float rounding at the edges.
    if width < 1 or height < 1 or width > MAX_ASPECT * height or height > MAX_ASPECT * width:
        raise ValueError(value)
    divisor = math.gcd(width, height)
    return width // divisor, height // divisor


def _shown(value: float) -> str:
    return f"{value:g}".removeprefix("0") if 0 < value < 1 else f"{value:g}"


QUALITY_LIST = ", ".join(_shown(q) for q in QUALITY_VALUES)


def _quality(value: str) -> float | Noted:
    """Any number 0 or more; off the list it rounds to the nearest value (ties upwards), as on
    Midjourney, and says so."""
    if not _NUMBER.fullmatch(value) or float(value) < 0 or not math.isfinite(float(value)):
        raise ValueError(value)
    asked = float(value)
    if asked in QUALITY_VALUES:
        return asked
    nearest = min(QUALITY_VALUES, key=lambda q: (abs(q - asked), -q))
    return Noted(
        nearest,
        f"`--q {value}` is not a quality here, so it ran as `--q {_shown(nearest)}` "
        f"(the values are {QUALITY_LIST})",
    )


def _model_name(value: str) -> str:
    if not _NAME.fullmatch(value.lower()):
        raise ValueError(value)
    return value.lower()


def _niji(value: str) -> str:
    if value:  # `--niji 6`: the version is checked by the parser, which knows the note
        _model_name(value)
    return f"niji {value}".strip()


def _style(value: str) -> str | Noted:
    name = value.lower()
    if name == "raw" or name in NAMED_STYLES:
        return name
    return Noted(None, f"`--style {value}` is not available on this server; it was ignored")


def _sampler(value: str) -> str:
    # `DPM++ 2M` is spelled `dpm++_2m`, `dpm++-2m` or `dpmpp_2m` in the wild.
    name = value.lower().replace("++", "pp").replace("-", "_")
    if name not in SAMPLERS:
        raise ValueError(value)
    return name


def _words(value: str) -> list[str]:
    return value.split()


def _codes(value: str) -> tuple[str, ...]:
    """--p codes: letters, digits, `-` and `_`, each maybe with a `::weight`."""
    codes = _words(value)
    if not all(_CODE.fullmatch(code) for code in codes):
        raise ValueError(value)
    return tuple(code.lower() for code in codes)


_LORA = re.compile(rf"([a-z0-9_-]{{1,40}})(?:::?({DECIMAL}))?", re.IGNORECASE)
LORA_ACCEPTS = (
    f"LoRA names, each maybe with :weight (from -{LORA_WEIGHT:g} to {LORA_WEIGHT:g}), "
    f"at most {MAX_LORAS}"
)


def _loras(value: str) -> tuple[LoraUse, ...]:
    """`--lora NAME[:WEIGHT] …` (`NAME::WEIGHT` too, Midjourney's way of weighing); a name
    once. Which names exist is the intake's to check (config.toml's [loras])."""
    uses: dict[str, LoraUse] = {}
    for word in _words(value):
        match = _LORA.fullmatch(word)
        if match is None or (match[2] is not None and abs(float(match[2])) > LORA_WEIGHT):
            raise ValueError(value)
        name = match[1].lower()
        if name in uses:
            raise ValueError(value)
        uses[name] = LoraUse(name, None if match[2] is None else float(match[2]))
    if len(uses) > MAX_LORAS:
        raise ValueError(value)
    return tuple(uses.values())


def split_reference(ref: str) -> tuple[str, float]:
    """A reference as parsed (`URL` or `URL::2`) → its target and weight (1 if none)."""
    match = _WEIGHTED.fullmatch(ref)
    if match is None:
        raise ValueError(f"not a reference: {ref!r}")
    return match[1], float(match[2][2:]) if match[2] else 1.0


def is_image_url(word: str) -> bool:
    try:
        parts = urlsplit(word)
        return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. a broken IPv6 host: `http://[::1`
        return False


def _unwrap(ref: str) -> str:
    """Discord's `<url>` (which hides the embed) without its brackets; a `::weight` is kept."""
    return ref.removeprefix("<").replace(">::", "::").removesuffix(">")


def _references(codes_allowed: bool) -> ValueParser:
    """URLs (each maybe with `::weight`); for --sref also style codes and `random`."""

    def parse(value: str) -> tuple[str, ...]:
        refs = tuple(_unwrap(ref) for ref in _words(value))
        for ref in refs:
            match = _WEIGHTED.fullmatch(ref)
            if match is None:  # nothing left once unwrapped: `<`, `<>`
                raise ValueError(value)
            target = match[1]
            code = codes_allowed and (target.isdigit() or target.lower().startswith("random"))
            if not (code or is_image_url(target)):
                raise ValueError(value)
        return refs

    return parse


def _ignored(name: str, note: str) -> Flag:
    """A Midjourney parameter with nothing to act on here: accepted with any values, and noted."""
    return Flag(f"_{name}", "any", lambda value: Noted(None, note))


def _video(name: str) -> Flag:
    """Midjourney's video parameters: the parser says so once for all of them (video_note)."""
    return Flag(f"_video_{name}", "any", lambda value: None)


def video_note(flags: list[str]) -> str:
    given = ", ".join(f"`{flag}`" for flag in flags)
    return f"video is not available on this server: {given} ignored, and images were made"


_MODEL_NAME = "a model name (letters, digits, `.`, `-`, `_`)"
ASPECT_ACCEPTS = (
    f"W:H in whole numbers from 1:{MAX_ASPECT} to {MAX_ASPECT}:1 (like 16:9; not 1.5:1)"
)
_ASPECT_FLAG = Flag("aspect", "one", parse_aspect, ASPECT_ACCEPTS)
_CHAOS = _whole("chaos", 0, 100)
_STYLIZE = _whole("stylize", 0, 1000)
_QUALITY = Flag("quality", "one", _quality, "a number (rounded to one of " + QUALITY_LIST + ")")
_WEIRD = _whole("weird", 0, 3000)
_REPEAT = _whole("repeat", 2, 40)
VERSION_ACCEPTS = "a Midjourney version from 1 to 8.1 (like 6.1) or a model preset name"
_VERSION = Flag("model", "one", _model_name, VERSION_ACCEPTS)
_PERSONALIZE = Flag("personalize", "any", _codes, "profile codes (letters and digits), if any")
_OBJECT_REF = Flag("object_refs", "one", _references(False), "an image URL (https://…)")
_LEGACY_MODEL = "`--{}` chose a test model of Midjourney's that no longer exists; it was ignored"
_LEGACY_UPSCALER = "`--{}` chose an old Midjourney upscaler; it was ignored (use the U buttons)"

FLAGS: dict[str, Flag] = {
    "ar": _ASPECT_FLAG,
    "aspect": _ASPECT_FLAG,
    "seed": _whole("seed", 0, SEED_MAX),
    "no": Flag("negative", "text", _negative, "words to avoid, separated by commas"),
    "chaos": _CHAOS,
    "c": _CHAOS,
    "stylize": _STYLIZE,
    "s": _STYLIZE,
    "quality": _QUALITY,
    "q": _QUALITY,
    "stop": _whole("stop", 10, 100),
    "tile": _switch("tile", True),
    "weird": _WEIRD,
    "w": _WEIRD,
    "repeat": _REPEAT,
    "r": _REPEAT,
    "iw": _number("image_weight", 0, 3),
    "version": _VERSION,
    "v": _VERSION,
    "niji": Flag("model", "optional", _niji, "a niji version, if any (like 6)"),
    "style": Flag("style", "one", _style, "raw, or a niji style: " + ", ".join(NAMED_STYLES)),
    "raw": _switch("style_raw", True),
    "exp": _whole("experimental", 0, 100),
    "draft": _switch("draft", True),
    "hd": _switch("hd", True),
    "zoom": _number("zoom", 1, 2),
    "p": _PERSONALIZE,
    "personalize": _PERSONALIZE,
    "profile": _PERSONALIZE,
    "sref": Flag(
        "style_refs",
        "many",
        _references(True),
        "image URLs (each may end in ::weight), style codes, or random",
    ),
    "sw": _whole("style_ref_weight", 0, 1000),
    "sv": _whole("style_ref_version", 1, 8),
    "oref": _OBJECT_REF,
    "cref": Flag("object_refs", "many", _references(False), "image URLs (https://…)"),
    "ow": _whole("object_ref_weight", 1, 1000),
    "cw": _whole("character_weight", 0, 100),
    "steps": _whole("steps", 1, 150),
    "cfg": _number("cfg", 0, 30),
    "sampler": Flag("sampler", "one", _sampler, f"one of: {', '.join(SAMPLERS)}"),
    "lora": Flag("loras", "many", _loras, LORA_ACCEPTS),
    "fast": _switch("speed", "fast"),
    "relax": _switch("speed", "relax"),
    "turbo": _switch("speed", "turbo"),
    # Midjourney's video, and parameters of its past that pasted prompts still carry.
    **{name: _video(name) for name in ("video", "motion", "loop", "end", "bs")},
    **{name: _ignored(name, _LEGACY_MODEL.format(name)) for name in ("test", "testp", "creative")},
    **{
        name: _ignored(name, _LEGACY_UPSCALER.format(name))
        for name in ("uplight", "upbeta", "upanime")
    },
    "stealth": _ignored("stealth", "there is no public gallery here: `--stealth` changes nothing"),
    "public": _ignored("public", "there is no public gallery here: `--public` changes nothing"),
    "sameseed": _ignored(
        "sameseed", "`--sameseed` is not available here; it was ignored (`--seed` works)"
    ),
}

# A flag glued to its value, as people type it: `--v6.1`, `--niji6`.
GLUED = re.compile(r"(v|version|niji)([0-9][0-9.]*)")


def flag_error(flag: str, spec: Flag, value: str) -> PromptError:
    return PromptError(f"{flag} must be {spec.accepts}, got {value}", flag=flag)
