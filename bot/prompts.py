"""The bot's one prompt intake: what a user typed (in /imagine or a remix box) becomes requests
through their preferences, the moderation rules and the engine's intake (engine/intake.py).

Every refusal is a `Refused` carrying the private message to show.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING

from bot import messages
from bot.moderation import banned_request, banned_rule
from bot.store import Store
from engine.intake import Preferences, Reading, expand_prompt, read_prompt
from engine.jobs import Job
from engine.prompt import PromptError
from engine.prompt.parser import flag_name

if TYPE_CHECKING:
    from bot.app import ImagineBot


class Refused(Exception):
    """A prompt the bot will not run; `message` is the private answer."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def preferences(store: Store, user_id: str) -> Preferences:
    """What `user_id`'s /settings and /prefer bring to their prompts."""
    settings = store.get_settings(user_id)
    profile = store.get_profile(user_id)
    return Preferences(
        suffix=settings.suffix,
        options=dict(settings.options),
        model=settings.model,
        stylize=settings.stylize,
        profile=profile.style if profile is not None else None,
        loras=settings.loras,
    )


def read_user_prompt(
    bot: ImagineBot,
    user_id: str,
    prompt: str,
    *,
    remix_of: Job | None = None,
    zoom: bool = False,
) -> Reading:
    """`prompt` as `user_id` sent it, checked by the moderation rules before and after its
    `{…}` sets expand ("{go}re" passes the first check as written).

    `remix_of`: the prompt is an edit of that job's (its box holds the whole prompt, suffix
    included, and one job: no permutations); without a --v it keeps that job's model, and
    without a --lora the LoRAs /settings gave it.
    `zoom`: the box is Custom Zoom's, where --zoom counts.
    """
    prefs = preferences(bot.store, user_id)
    if remix_of is not None:
        prefs = dataclasses.replace(prefs, suffix="", model=remix_of.model)
        if not typed_loras(remix_of):  # its LoRAs came from /settings: the box does not show them
            prefs = dataclasses.replace(prefs, loras=tuple(u.name for u in remix_of.request.loras))
    moderation = bot.config.moderation
    try:
        text = expand_prompt(prompt, prefs)
        rule = banned_rule(moderation, text)
        if rule is not None:
            raise Refused(messages.banned(rule))
        reading = read_prompt(
            text,
            bot.config.engine,
            prefs,
            limit=bot.config.limits.max_jobs_per_prompt,
            permutations=remix_of is None,
            find_profile=bot.store.profile_style,
            zoom=zoom,
        )
    except PromptError as error:
        raise Refused(messages.prompt_error(error)) from None
    for each in reading.prompts:
        rule = banned_request(moderation, each.request)
        if rule is not None:
            raise Refused(messages.banned(rule))
    return reading


def typed_loras(job: Job) -> bool:
    """Whether `job`'s prompt names its LoRAs (`--lora`), or they came from /settings."""
    return any(flag_name(word) == "lora" for word in job.request.raw.split())


def check_addition(bot: ImagineBot, text: str, options: Mapping[str, str]) -> None:
    """A suffix or a custom option's value, checked when it is saved (with the moderation rules
    too) so that it cannot break every later prompt. Refused names the problem."""
    if not text:
        return
    rule = banned_rule(bot.config.moderation, text)
    if rule is not None:
        raise Refused(messages.banned(rule))
    try:
        expanded = expand_prompt("x", Preferences(suffix=text, options=options))
        read_prompt(expanded, bot.config.engine)
    except PromptError as error:
        raise Refused(messages.prompt_error(error)) from None
