"""Midjourney's tools under one image (bot/buttons.py draws them): 🔍 Zoom Out 2x / 1.5x,
🔍 Custom Zoom, ↔️ Make Square, the pan arrows ⬅️ ➡️ ⬆️ ⬇️ and 🖌️ Vary (Region) (bot/region.py).

Each makes an edit job (engine/jobs.py) of the pressed image: a new grid, the image's pixels kept.
What cannot be drawn (a pan past 8:1, a square made square) is refused before it is queued, in
the engine's own words (engine/canvas.py).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import discord

from bot import messages
from bot.buttons import PAN_OPS, ZOOM_OPS, Op, Press
from bot.interactions import MAX_MODAL_TEXT, reply_private
from bot.prompts import Refused
from bot.region import start_region
from bot.store import StoredJob
from engine.canvas import CanvasError, layout
from engine.intake import Prompt
from engine.jobs import ZOOM_MAX, ZOOM_MIN, Edit, Job, Tool, edit_job
from engine.prompt import PromptError

if TYPE_CHECKING:
    from bot.presses import Presses

CUSTOM_ZOOM_DEFAULT = 2.0  # what Custom Zoom's box ends in, as on Midjourney
_ZOOM_FLAG = re.compile(r"\s*(?:--|—|–)zoom(?:\s+\S+)?", re.IGNORECASE)
NOTHING_TO_ZOOM = (
    f"--zoom must be above {ZOOM_MIN:g} (up to {ZOOM_MAX:g}), or, with --zoom 1, "
    "come with a new --ar to extend the canvas to"
)


async def press_tool(
    presses: Presses, interaction: discord.Interaction, stored: StoredJob, press: Press
) -> None:
    """A tool button under image `press.index` of a finished job (checked by the caller)."""
    assert stored.result is not None
    size = (stored.result.width, stored.result.height)
    if press.op is Op.VARY_REGION:
        await start_region(presses, interaction, stored, press.index)
        return
    if press.op is Op.CUSTOM_ZOOM:
        await _custom_zoom(presses, interaction, stored, press.index, size)
        return
    edit = _button_edit(press.op)
    refusal = canvas_refusal(presses, stored.job, edit, size)
    if refusal is not None:
        await reply_private(interaction, refusal)
        return
    presser = str(interaction.user.id)
    job = stored.job
    await presses.maybe_remix(
        interaction,
        job,
        lambda prompt: edit_job(
            job,
            press.index,
            edit,
            owner=presser,
            request=None if prompt is None else prompt.request,
        ),
    )


def _button_edit(op: Op) -> Edit:
    if op in ZOOM_OPS:
        return Edit(Tool.ZOOM, zoom=ZOOM_OPS[op])
    if op in PAN_OPS:
        return Edit(Tool.PAN, direction=PAN_OPS[op])
    assert op is Op.MAKE_SQUARE, op
    return Edit(Tool.SQUARE)


def canvas_refusal(presses: Presses, job: Job, edit: Edit, size: tuple[int, int]) -> str | None:
    """Why `edit` of an image of `size` cannot be drawn (e.g. a pan past 8:1), or None."""
    engine = presses.bot.config.engine
    try:
        layout(edit, size, engine.preset(job.model), engine.limits)
    except CanvasError as error:
        return str(error)
    return None


def custom_zoom_text(job: Job) -> str:
    """Custom Zoom's box: the job's prompt (any --zoom of its own dropped), then `--zoom 2`."""
    raw = _ZOOM_FLAG.sub("", job.request.raw or job.request.prompt).strip()
    return f"{raw} --zoom {CUSTOM_ZOOM_DEFAULT:g}"


async def _custom_zoom(
    presses: Presses,
    interaction: discord.Interaction,
    stored: StoredJob,
    index: int,
    size: tuple[int, int],
) -> None:
    """Custom Zoom always opens the prompt box (remix mode or not), as on Midjourney."""
    from bot.presses import TOO_LONG_TO_REMIX, RemixModal  # presses imports this module

    job = stored.job
    text = custom_zoom_text(job)
    if len(text) > MAX_MODAL_TEXT:
        await reply_private(interaction, TOO_LONG_TO_REMIX)
        return
    presser = str(interaction.user.id)

    def make(prompt: Prompt | None) -> Job:
        assert prompt is not None  # the box always opens
        edit = zoom_edit(job, prompt)
        refusal = canvas_refusal(presses, job, edit, size)
        if refusal is not None:
            raise Refused(refusal)
        return edit_job(job, index, edit, owner=presser, request=prompt.request)

    modal = RemixModal(presses, job, make, title="Custom Zoom", default=text, zoom=True)
    await interaction.response.send_modal(modal)


def zoom_edit(job: Job, prompt: Prompt) -> Edit:
    """Custom Zoom's edit from its box: --zoom (1 when left out), and the canvas shape when the
    box's --ar differs from the job's (else the image's own shape). Refused: nothing to zoom."""
    request = prompt.request
    zoom = request.zoom if request.zoom is not None else ZOOM_MIN
    aspect = request.aspect if request.aspect != job.request.aspect else None
    if zoom <= ZOOM_MIN and aspect is None:
        error = PromptError(NOTHING_TO_ZOOM, flag="--zoom")
        raise Refused(messages.prompt_error(error))
    return Edit(Tool.ZOOM, zoom=zoom, aspect=aspect)
