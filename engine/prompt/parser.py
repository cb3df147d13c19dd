"""Parse one /imagine prompt into an ImagineRequest, the way Midjourney reads it.

A prompt is image URLs, then text, then parameters: `https://a.png a cat::2 dog --ar 16:9 --no hat`.
Every problem in a prompt is found and reported at once (one PromptError listing them all);
what was rounded or ignored lands in the request's `notes`. Which parameters exist and how
their values read is in engine/prompt/flags.py. Pure Python: the Discord front-end validates
prompts before anything heavy is imported.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Collection
from typing import Any

from engine.prompt.flags import (
    DECIMAL,
    FLAGS,
    GLUED,
    VERSION_ACCEPTS,
    Flag,
    Noted,
    flag_error,
    is_image_url,
    split_reference,
    video_note,
)
from engine.prompt.permutations import (
    DEFAULT_LIMIT,
    escape,
    expand_permutations,
    has_sets,
)
from engine.prompt.request import (
    ImagineRequest,
    PromptError,
    PromptPart,
    normalize_version,
)

__all__ = ["FLAGS", "MAX_PROMPT_CHARS", "parse_prompt", "parse_prompts", "suggest_flag"]

MAX_PROMPT_CHARS = 6000
# Two or more images and no text are a blend (what Midjourney's /blend sends, so its prompts
# paste): with no text to weigh them against, they count as /blend's do unless --iw says.
BLEND_IMAGE_WEIGHT = 2.0  # the adapter at scale 1
# `::` ends a part; a number right after it (up to whitespace, the end or the next `::`) weighs
# the part before it.
_WEIGHT_SPLIT = re.compile(rf"::({DECIMAL}(?=\s|$|::))?")
# Short aliases (--w, --c, --sw…) are never suggested for a typo: one letter off a two-letter
# name is another parameter, not a misspelling (`--cw` is not `--w`).
_SUGGESTIBLE = [name for name in FLAGS if len(name) >= 3]
_KNOWN_EXAMPLES = "--ar, --seed, --no, --chaos, --stylize, --v, --steps"


def flag_name(token: str) -> str | None:
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
    if bare in FLAGS:
        return f"--{bare}"
    matches = difflib.get_close_matches(bare, _SUGGESTIBLE, n=1, cutoff=0.6)
    return f"--{matches[0]}" if matches else None


def _unknown_flag(flag: str) -> PromptError:
    suggestion = suggest_flag(flag)
    hint = (
        f"did you mean {suggestion}?"
        if suggestion
        else f"known parameters include {_KNOWN_EXAMPLES}"
    )
    return PromptError(f"unknown parameter {flag}; {hint}", flag=flag)


class _Reading:
    """What parsing one prompt found so far: problems and notes, in prompt order."""

    def __init__(self) -> None:
        self.problems: list[PromptError] = []
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def _split_urls(words: list[str], reading: _Reading) -> tuple[tuple[str, ...], list[str]]:
    """Leading image URLs, validated, and the words after them."""
    urls: list[str] = []
    count = 0
    for word in words:
        if "://" not in word:
            break
        count += 1
        url = word.removeprefix("<").removesuffix(">")  # Discord's `<url>` hides the embed
        if is_image_url(url):
            urls.append(url)
        else:
            reading.problems.append(
                PromptError(f"{word} is not a valid image URL (http:// or https://)")
            )
    return tuple(urls), words[count:]


def _group_flags(words: list[str]) -> list[tuple[str, list[str]]]:
    """[(flag as `--name`, its value words)] for the parameter words, which start with a flag.
    A version glued to its flag (`--v6.1`, `--niji6`) is read as `--v 6.1`."""
    groups: list[tuple[str, list[str]]] = []
    for word in words:
        name = flag_name(word)
        if name is None:
            groups[-1][1].append(word)
        elif name not in FLAGS and (glued := GLUED.fullmatch(name)):
            groups.append((f"--{glued[1]}", [glued[2]]))
        else:
            groups.append((f"--{name}", []))
    return groups


def _check_arity(flag: str, spec: Flag, values: list[str]) -> None:
    if spec.arity == "none" and values:
        raise PromptError(f"{flag} takes no value, got {' '.join(values)}", flag=flag)
    if spec.arity in ("one", "text", "many") and not values:
        raise PromptError(f"{flag} needs a value: {spec.accepts}", flag=flag)
    if spec.arity in ("one", "optional") and len(values) > 1:
        raise PromptError(
            f"{flag} takes one value, got {' '.join(values)} "
            "(parameters go at the end of the prompt)",
            flag=flag,
        )


def _given_twice(first: str, second: str) -> PromptError:
    if first == second:
        return PromptError(f"{second} is given more than once", flag=second)
    return PromptError(f"{first} and {second} cannot be used together", flag=second)


def _parse_flags(
    words: list[str], models: Collection[str] | None, reading: _Reading
) -> tuple[dict[str, Any], dict[str, str]]:
    """(ImagineRequest field values, which flag set each field) for the parameter words; each
    problem is recorded and the next flag read on."""
    fields: dict[str, Any] = {}
    set_by: dict[str, str] = {}
    for flag, values in _group_flags(words):
        try:
            if flag == "--":
                raise PromptError("a parameter name is missing after --", flag=flag)
            spec = FLAGS.get(flag[2:])
            if spec is None:
                raise _unknown_flag(flag)
            if spec.field in set_by:
                raise _given_twice(set_by[spec.field], flag)
            _check_arity(flag, spec, values)
            value = " ".join(values)
            try:
                parsed = spec.parse(value)
            except ValueError:
                raise flag_error(flag, spec, value) from None
            if isinstance(parsed, Noted):
                reading.note(parsed.note)
                parsed = parsed.value
            set_by[spec.field] = flag
            if spec.field == "model":
                fields.update(_model_or_version(flag, parsed, models, reading))
            elif not spec.ignored and parsed is not None:
                fields[spec.field] = parsed
        except PromptError as problem:
            reading.problems.append(problem)
    return fields, set_by


def _model_or_version(
    flag: str, value: str, models: Collection[str] | None, reading: _Reading
) -> dict[str, str]:
    """`--v NAME` picks a preset; `--v 6.1` a Midjourney version (mapped to a preset by the
    server's [versions] table); `--niji [N]` the niji preset. A preset name wins over a version
    it looks like."""
    known = None if models is None else sorted(name.lower() for name in models)
    if flag == "--niji":
        version = value.removeprefix("niji").strip()
        if version and normalize_version(version) is None:
            raise PromptError(f"--niji takes a niji version (like 6), got {version}", flag=flag)
        if known is not None and "niji" not in known:
            raise PromptError(
                f"--niji is not available here; the models are: {', '.join(known)}", flag=flag
            )
        if version:
            reading.note(f"this server has one niji model: `--niji {version}` ran on **niji**")
        return {"model": "niji"}
    if known is not None and value in known:
        return {"model": value}
    mj_version = normalize_version(value)
    if mj_version is not None:
        return {"version": mj_version}
    if known is None and not re.fullmatch(r"[0-9.]+", value):
        return {"model": value}
    presets = f" ({', '.join(known)})" if known else ""
    raise PromptError(f"{flag} must be {VERSION_ACCEPTS}{presets}, got {value}", flag=flag)


def _reference_notes(fields: dict[str, Any], set_by: dict[str, str], reading: _Reading) -> None:
    """Reference URLs are used (through the preset's adapter); say what is not: Midjourney's
    style codes, --sv, and weights of references the prompt does not have."""
    refs = fields.get("style_refs", ())
    codes = [ref for ref in refs if not is_image_url(split_reference(ref)[0])]
    if codes:
        shown = " ".join(codes)
        reading.note(
            f"style codes are Midjourney's own: `{set_by['style_refs']} {shown}` ignored "
            "(a style reference here is an image URL)"
        )
        fields["style_refs"] = tuple(r for r in fields["style_refs"] if r not in codes)
    if "style_ref_version" in set_by and fields.get("style_refs"):
        reading.note(
            f"`{set_by['style_ref_version']}` picks one of Midjourney's style models: ignored"
        )
    weighs = {
        "style_ref_weight": ("style_refs", "a style reference (`--sref`)"),
        "style_ref_version": ("style_refs", "a style reference (`--sref`)"),
        "object_ref_weight": ("object_refs", "an object reference (`--oref`)"),
        "character_weight": ("object_refs", "a character reference (`--cref`)"),
    }
    for weight, (refs, what) in weighs.items():
        if weight in set_by and not fields.get(refs):
            flag = set_by[weight]
            reading.note(f"`{flag}` weighs {what}, and this prompt has none: it was ignored")


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


def _parse_expanded(
    text: str, raw: str, models: Collection[str] | None, given: int = 0
) -> ImagineRequest:
    """Parse one prompt whose permutations are already expanded (braces are literal here).
    `given`: image prompts given beside the text (files), which count as its links do."""
    reading = _Reading()
    # 1. split: image URLs, then text, then parameters from the first word that is a flag
    image_urls, rest = _split_urls(text.split(), reading)
    first_flag = next((i for i, word in enumerate(rest) if flag_name(word) is not None), None)
    cut = len(rest) if first_flag is None else first_flag
    prompt = " ".join(rest[:cut])
    # 2. parameters, then the multi-prompt text; every problem is collected
    fields, set_by = _parse_flags(rest[cut:], models, reading)
    parts: tuple[PromptPart, ...] = ()
    try:
        parts = _parse_parts(prompt)
    except PromptError as problem:
        reading.problems.append(problem)
    images = len(image_urls) + given
    blend = not parts and images >= 2
    if blend and "image_weight" not in set_by:
        fields["image_weight"] = BLEND_IMAGE_WEIGHT
    weights_refused = any(p.message.startswith("the weights") for p in reading.problems)
    if not parts and not blend and not weights_refused:
        reading.problems.append(
            PromptError("an image prompt needs text too: add words that describe the image")
            if images
            else PromptError("the prompt is empty")
        )
    if reading.problems:
        raise PromptError.combined(reading.problems)
    # 3. what has nothing to act on here yet, in words
    if fields.get("style") == "raw":  # --style raw is --raw; other styles are named ones
        del fields["style"]
        fields["style_raw"] = True
    if not images and "image_weight" in set_by:
        reading.note(f"`{set_by['image_weight']}` weighs image prompts, and this prompt has none")
    _reference_notes(fields, set_by, reading)
    video = [flag for field, flag in set_by.items() if field.startswith("_video_")]
    if video:
        reading.note(video_note(video))
    return ImagineRequest(
        prompt=prompt,
        parts=parts,
        image_urls=image_urls,
        raw=raw,
        notes=tuple(reading.notes),
        **fields,
    )


def parse_prompt(
    text: str, *, models: Collection[str] | None = None, images: int = 0
) -> ImagineRequest:
    """Parse one prompt. `{a, b}` sets are refused: use `parse_prompts` for those.

    `models`, when given, are the names `--v` / `--niji` may choose (case-insensitive).
    `images`: image prompts given beside the text (files before its links): with them, no
    text is needed when there are two images in all (a blend), and --iw has images to weigh.
    Raises PromptError with a message fit for the user.
    """
    _check_length(text.strip())
    if has_sets(text):
        raise PromptError(
            "this prompt has {…} permutations: send it as permutations, or write `\\{` and `\\}` "
            "for literal braces"
        )
    (expanded,) = expand_permutations(text)  # resolves escapes like `\,`
    return _parse_expanded(expanded, text.strip(), models, images)


def parse_prompts(
    text: str,
    *,
    limit: int = DEFAULT_LIMIT,
    models: Collection[str] | None = None,
    images: int = 0,
) -> tuple[ImagineRequest, ...]:
    """Expand `{a, b}` permutations (at most `limit`), then parse each prompt (`images` as
    for `parse_prompt`).

    Each request's `raw` re-parses to the same request with `parse_prompt`.
    """
    _check_length(text.strip())
    if not has_sets(text):
        return (parse_prompt(text, models=models, images=images),)
    return tuple(
        _parse_expanded(expanded, escape(expanded), models, images)
        for expanded in expand_permutations(text, limit)
    )
