"""The words the bot shows: job messages in Midjourney's format, and private replies.

Pure functions over engine data; nothing here talks to Discord.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence

import discord

from bot.store import StoredJob
from engine.config import EngineConfig
from engine.jobs import Edit, Job, JobKind, JobResult, Strength, Tool
from engine.prompt import PromptError

# A message's content is capped at 2000 characters and a prompt may have 6000: the prompt shown
# (after escaping, which can double it) is shortened so the status after it always fits.
MAX_CONTENT = 2000
MAX_SHOWN_PROMPT = 1500
MAX_INFO_PROMPT = 80  # /info lists many jobs: a short prompt each
# Four described prompts and their headline fit one message: each is shown cut to this (after
# escaping); the buttons use the whole prompt, from the store.
MAX_DESCRIBED_PROMPT = 350
NUMBERS = ("1️⃣", "2️⃣", "3️⃣", "4️⃣")
_URL = re.compile(r"<?(https?://[^\s<>]+)>?", re.IGNORECASE)
SOMETHING_WENT_WRONG = "Something went wrong; the error was logged."
RESTARTING = "The bot is restarting; try again in a minute."
INTERRUPTED_TWICE = (
    "the bot stopped twice while this job ran, so it was not run a third time; "
    "run the prompt again if you like"
)
NOT_POSTED = "Discord refused this job's message, so the job was not started. Please try again."
UNDELIVERED = "could not deliver the result"
DISK_FULL = "The server's disk is full, so no new job can be saved. Please tell its owner."


def mention(user_id: str | int) -> str:
    return f"<@{user_id}>"


def _escaped(text: str) -> str:
    return discord.utils.escape_mentions(discord.utils.escape_markdown(text))


def shown_prompt(job: Job, limit: int = MAX_SHOWN_PROMPT) -> str:
    """The prompt in bold, as the user wrote it (parameters included), markdown and mentions
    escaped and every link in `<…>` (so the public message never unfurls it), then cut to
    `limit` characters (escaping first: it can double the length). A describe job has no prompt:
    it is named as such."""
    if job.kind is JobKind.DESCRIBE:
        return describe_title(job, limit)
    return _shown(job.request.raw or job.request.prompt, limit)


@functools.lru_cache(maxsize=1024)  # a job's message says it on every state (each queue move)
def _shown(raw: str, limit: int) -> str:
    pieces, end = [], 0
    for match in _URL.finditer(raw):
        pieces += [_escaped(raw[end : match.start()]), f"<{match[1]}>"]
        end = match.end()
    text = "".join([*pieces, _escaped(raw[end:])])
    if len(text) > limit:
        text = text[: limit - 1]
        if text.rfind("<http") > text.rfind(">"):  # half a link: it would unfurl
            text = text[: text.rfind("<http")]
        if (len(text) - len(text.rstrip("\\"))) % 2:  # half of an escape: drop its backslash
            text = text[:-1]
        text += "…"
    return f"**{text}**"


def describe_title(job: Job, limit: int = MAX_SHOWN_PROMPT) -> str:
    """`**Describe**`, and the link of the image when it came from one (in `<…>`: no unfurl)."""
    links = [f"<{url}>" for url in job.request.image_urls if _URL.fullmatch(url)]
    return " ".join(["**Describe**", *(link for link in links if len(link) < limit)])


HIDDEN_PROMPT = "*(not shown: it breaks this server's rules)*"


def described(job: Job, result: JobResult, hides: Callable[[str], bool]) -> str:
    """A finished /describe: the four prompts, numbered 1️⃣–4️⃣ as on Midjourney, one paragraph
    each (escaped, so a caption cannot mention anyone or format the message); a prompt that
    `hides` says breaks the moderation rules is not shown (its button refuses it too)."""
    lines = [headline(job)]
    for number, prompt in zip(NUMBERS, result.prompts, strict=False):
        if hides(prompt):
            lines += ["", f"{number} {HIDDEN_PROMPT}"]
            continue
        shown = _escaped(prompt)
        if len(shown) > MAX_DESCRIBED_PROMPT:
            shown = shown[: MAX_DESCRIBED_PROMPT - 1].rstrip("\\") + "…"
        lines += ["", f"{number} {shown}"]
    return "\n".join(lines)


def strength_word(strength: Strength | None) -> str:
    return (strength or Strength.STRONG).value.title()


def headline(job: Job) -> str:
    """`**prompt** - <@owner>`, or what kind of job it is for variations and upscales."""
    who = mention(job.owner)
    if job.kind is JobKind.VARY:
        return f"{shown_prompt(job)} - Variations ({strength_word(job.strength)}) by {who}"
    if job.kind is JobKind.UPSCALE:
        return f"{shown_prompt(job)} - Upscaled ({strength_word(job.strength)}) by {who}"
    if job.edit is not None:
        return f"{shown_prompt(job)} - {tool_title(job.edit)} by {who}"
    return f"{shown_prompt(job)} - {who}"


def tool_title(edit: Edit) -> str:
    """Midjourney's words for a tool's job: Zoom Out, Pan Left…, Make Square, Vary (Region)."""
    if edit.tool is Tool.PAN:
        assert edit.direction is not None
        return f"Pan {edit.direction.value.title()}"
    return {Tool.ZOOM: "Zoom Out", Tool.SQUARE: "Make Square", Tool.REGION: "Vary (Region)"}[
        edit.tool
    ]


def waiting(job: Job, position: int) -> str:
    """Position 1 (or unknown) is next in line: Midjourney calls that "Waiting to start"."""
    status = "Waiting to start" if position <= 1 else f"Queued: position {position}"
    return f"{headline(job)} ({status})"


def loading(job: Job, model: str) -> str:
    return f"{headline(job)} (Loading model {model}…)"


def running(job: Job, percent: int) -> str:
    return f"{headline(job)} ({percent}%)"


def finished(job: Job, result: JobResult) -> str:
    seed = result.seeds[0] if result.seeds else job.seed
    return f"{headline(job)} (seed {seed}, model {result.model}, {result.steps} steps)"


def failed(job: Job, reason: str) -> str:
    return f"{headline(job)} (Failed: {reason})"


def cancelled(job: Job) -> str:
    return f"{headline(job)} (Cancelled)"


def restarting(job: Job) -> str:
    """A job the bot stopped before finishing: it runs again when the bot is back."""
    return f"{headline(job)} (Waiting: the bot is restarting)"


def single_image(job: Job, number: int, presser: int, result: JobResult) -> str:
    """U1…U4: one image of a grid on its own."""
    seed = f" (seed {result.seeds[number - 1]})" if len(result.seeds) >= number else ""
    return f"{shown_prompt(job)} - Image #{number} {mention(presser)}{seed}"


def job_details(stored: StoredJob, number: int = 0) -> str:
    """What ✉️ sends beside the images: the job id, the seeds (image `number`'s alone), the model,
    steps and size, its LoRAs and their weights, when it was made, and a link back to the job's
    message."""
    parts = [f"Job ID: `{stored.job.id}`"]
    result = stored.result
    if result is not None and result.seeds:
        seeds = result.seeds[number - 1 : number] if number else result.seeds
        parts.append(("seeds " if len(seeds) > 1 else "seed ") + ", ".join(map(str, seeds)))
        parts.append(f"model {result.model}, {result.steps} steps, {result.width}×{result.height}")
    loras = stored.job.request.loras
    if loras:
        parts.append("LoRAs " + ", ".join(f"`{use.name}` {use.weight or 0:g}" for use in loras))
    parts.append(f"made <t:{int(stored.created_at)}:f>")
    link = f"\n<{stored.jump_url}>" if stored.jump_url else ""
    return " · ".join(parts) + link


def prompt_error(error: PromptError) -> str:
    return f"**{error.title}**\n{error.message}"


def expired(engine: EngineConfig) -> str:
    """A button of a job whose images retention (or someone) deleted."""
    if engine.keep_days:
        return f"This image has expired: this server keeps images for {engine.keep_days:g} days."
    return "This image has expired: it is no longer in the bot's storage."


def prompt_notes(notes: Sequence[str]) -> str:
    """What of a prompt was mapped, rounded or ignored, for a private note ("" when nothing)."""
    if not notes:
        return ""
    return fit_lines(["**About your prompt**", *(f"• {note}" for note in notes)])


def banned(rule: str) -> str:
    return f"Banned prompt detected: your prompt matched {rule}. Please rephrase it."


def job_line(job: Job, position: int | None) -> str:
    """One line of /info."""
    where = "running" if position == 0 else f"queued, position {position or '?'}"
    return f"• `{job.id}` {shown_prompt(job, MAX_INFO_PROMPT)} ({job.kind.value}, {where})"


def history_line(stored: StoredJob) -> str:
    """One finished job in /info: its id, prompt, outcome and a link to its message."""
    where = f" <{stored.jump_url}>" if stored.jump_url else f" (`/show job_id:{stored.job.id}`)"
    outcome = stored.status.value if stored.delivered else f"{stored.status.value}, not shown yet"
    return f"• `{stored.job.id}` {shown_prompt(stored.job, MAX_INFO_PROMPT)} ({outcome}){where}"


def fit_lines(lines: list[str], limit: int = MAX_CONTENT) -> str:
    """`lines` joined, dropping whole lines from the end ("…and N more") to stay under `limit`:
    slicing would cut markdown in half."""
    for kept in range(len(lines), 0, -1):
        dropped = len(lines) - kept
        tail = [f"…and {dropped} more"] if dropped else []
        text = "\n".join([*lines[:kept], *tail])
        if len(text) <= limit:
            return text
    return lines[0][: limit - 1] + "…"
