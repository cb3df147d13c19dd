"""Who may use the bot, and which prompts it refuses. Pure functions over the config.

Refusals name the rule that applied: vague moderation messages are a common complaint about
Midjourney, and a self-hosted bot's operators chose these rules themselves.

Prompts are matched after folding away the usual disguises: Unicode compatibility forms (NFKC:
ｆｕｌｌｗｉｄｔｈ, 𝐛𝐨𝐥𝐝), invisible format characters (zero-width spaces and joiners, soft
hyphens, bidi marks), letters of other scripts that look like Latin ones (Cyrillic "gоrе"), and
case. Admin patterns run on RE2, a linear-time engine: no pattern can stall the bot however it
is written (features that need backtracking, such as lookarounds and backreferences, are refused
when the config is read).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Collection
from typing import Protocol

from confusable_homoglyphs import confusables

from bot.config import ModerationConfig, PermissionsConfig
from bot.patterns import compile_pattern


def access_denied(
    perms: PermissionsConfig,
    *,
    guild_id: int | None,
    channel_id: int | None,
    user_id: int,
    role_ids: Collection[int],
) -> str | None:
    """Why this user may not use the bot here, in plain words; None when they may.

    `guild_id` None means a direct message. Admins skip the channel and role rules (and may use
    DMs) but not the guild list: that one decides which servers the bot serves at all.
    """
    admin = is_admin(perms, user_id=user_id, role_ids=role_ids)
    if guild_id is None:
        return None if perms.allow_dms or admin else "Direct messages are turned off for this bot."
    if perms.allowed_guilds and guild_id not in perms.allowed_guilds:
        return "This bot is not enabled in this server."
    if admin:
        return None
    if perms.allowed_channels and channel_id not in perms.allowed_channels:
        return "This bot is not enabled in this channel."
    if perms.allowed_roles and not set(role_ids) & set(perms.allowed_roles):
        roles = ", ".join(f"<@&{r}>" for r in perms.allowed_roles)
        return f"You need one of the roles {roles} to use this bot."
    return None


def is_admin(perms: PermissionsConfig, *, user_id: int, role_ids: Collection[int]) -> bool:
    return user_id in perms.admins or bool(set(role_ids) & set(perms.admin_roles))


def banned_rule(mod: ModerationConfig, text: str) -> str | None:
    """The first rule `text` breaks, worded for the refusal message; None when it breaks none.
    Both the text and the rules are folded (see the module docstring) before they are compared."""
    folded = fold(text)
    for word in mod.banned_words:
        if _word_regex(fold(word)).search(folded):
            return f'the banned word "{word}"'
    for pattern in mod.banned_patterns:
        if compile_pattern(pattern).search(folded):
            return f"the pattern /{pattern}/"
    return None


def fold(text: str) -> str:
    """`text` as moderation reads it: NFKC, without format characters, look-alike letters of
    other scripts replaced by their Latin twins, case-folded."""
    text = unicodedata.normalize("NFKC", text)
    return "".join(_latin(ch) for ch in text if unicodedata.category(ch) != "Cf").casefold()


@functools.lru_cache(maxsize=4096)
def _latin(ch: str) -> str:
    if ch.isascii():
        return ch
    found = confusables.is_confusable(ch, preferred_aliases=["latin"]) or []
    twins = [g["c"] for entry in found for g in entry["homoglyphs"] if g["c"].isascii()]
    return twins[0] if twins else ch


def banned_request(mod: ModerationConfig, request: _Prompted) -> str | None:
    """The first rule a parsed prompt breaks (its text, a --no term, or a --p profile's text: a
    profile saved before a rule was added), after `{…}` expansion."""
    for text in (request.prompt, *request.negative, *request.personal_styles):
        rule = banned_rule(mod, text)
        if rule is not None:
            return rule
    return None


class _Prompted(Protocol):
    @property
    def prompt(self) -> str: ...
    @property
    def negative(self) -> tuple[str, ...]: ...
    @property
    def personal_styles(self) -> tuple[str, ...]: ...


@functools.lru_cache(maxsize=1024)
def _word_regex(word: str) -> re.Pattern[str]:
    # Whole words: like \b…\b, but also right for words that start or end with a symbol
    # ("c++"), where \b would need a letter next to it. Any run of spaces matches a space.
    # (Python's re is safe here: the word is a literal, nothing can backtrack.)
    body = r"\s+".join(re.escape(w) for w in word.split())
    return re.compile(rf"(?<!\w){body}(?!\w)")
