"""🖌️ Vary (Region): the presser marks an area of an image; it is redrawn from the (editable)
prompt and the rest is kept.

- With `[web] public_url`: a private link button to the browser editor (bot/web.py); its page
  posts the mask and the prompt, and the job is queued in the job's channel as the presser's.
- Without: a private copy of the image with a labelled grid of cells (A1, B1, …), a menu to pick
  the cells to redraw, then the remix box (bot/presses.py's RemixModal).

Either way the mask is kept in the input store like an image prompt (by digest, so a restart or
a 🔄 of the result finds it) and the job is an edit job of the image.
"""

from __future__ import annotations

import asyncio
import io
import math
import string
from pathlib import Path
from typing import TYPE_CHECKING

import discord
from PIL import Image, ImageDraw

from bot.fetch import FetchError
from bot.image_prompts import same_images, with_image_prompts
from bot.interactions import MAX_MODAL_TEXT, LoggedView, reply_private
from bot.prompts import Refused, read_user_prompt
from bot.region_tokens import RegionClaim
from bot.store import StoredJob
from engine.intake import Prompt
from engine.jobs import Edit, Job, Tool, edit_job
from engine.storage import InputStore

if TYPE_CHECKING:
    from bot.app import ImagineBot
    from bot.presses import Presses

MAX_CELLS = 25  # a Discord select menu has at most 25 options
OVERLAY_SIDE = 1024  # the private copy with the cells is at most this wide or tall
EDITOR_LINK = "Open the editor"
EDITOR_TEXT = (
    "Mark the area to redraw in the editor, edit the prompt if you like, and submit: the new "
    "grid appears in this channel. The link is yours, works once, for an hour."
)
CELLS_TEXT = (
    "Pick the cells to redraw (the rest of the image is kept), then edit the prompt. "
    "This server has no web editor, so the cells are the finest choice here."
)


async def start_region(
    presses: Presses, interaction: discord.Interaction, stored: StoredJob, index: int
) -> None:
    """The press of 🖌️ Vary (Region) under image `index` (its job is done, the image kept)."""
    assert stored.result is not None
    bot = presses.bot
    job, presser = stored.job, str(interaction.user.id)
    if len(job.request.raw or job.request.prompt) > MAX_MODAL_TEXT:
        from bot.presses import TOO_LONG_TO_REMIX

        await reply_private(interaction, TOO_LONG_TO_REMIX)
        return
    if bot.web is not None:
        claim = RegionClaim(
            job_id=job.id,
            index=index,
            user_id=presser,
            channel_id=interaction.channel_id or 0,
            guild_id=interaction.guild_id,
        )
        view = discord.ui.View(timeout=None)
        view.add_item(discord.ui.Button(label=EDITOR_LINK, emoji="🖌️", url=bot.web.link(claim)))
        await interaction.response.send_message(EDITOR_TEXT, view=view, ephemeral=True)
        return
    image = stored.result.images[index]
    size = (stored.result.width, stored.result.height)
    columns, rows = cell_grid(size)
    await interaction.response.defer(ephemeral=True, thinking=True)
    overlay = await asyncio.to_thread(cell_overlay, image.read_bytes(), columns, rows)
    await interaction.followup.send(
        CELLS_TEXT,
        file=discord.File(io.BytesIO(overlay), filename=f"{job.id}_{index + 1}_cells.png"),
        view=CellsView(presses, stored, index, columns, rows),
        ephemeral=True,
    )


# --- the cells (no web editor)


def cell_grid(size: tuple[int, int]) -> tuple[int, int]:
    """(columns, rows) of about-square cells over an image of `size`, at most MAX_CELLS."""
    width, height = size
    best = (1, 1)
    for columns in range(1, MAX_CELLS + 1):
        rows = max(1, round(columns * height / width))
        if columns * rows <= MAX_CELLS and columns * rows > best[0] * best[1]:
            best = (columns, rows)
    return best


def cell_name(column: int, row: int) -> str:
    return f"{string.ascii_uppercase[column]}{row + 1}"


def cell_box(
    size: tuple[int, int], columns: int, rows: int, name: str
) -> tuple[int, int, int, int]:
    """The pixels (x0, y0, x1, y1) of cell `name` ("B3") of an image of `size`."""
    column, row = string.ascii_uppercase.index(name[0]), int(name[1:]) - 1
    width, height = size
    return (
        column * width // columns,
        row * height // rows,
        (column + 1) * width // columns,
        (row + 1) * height // rows,
    )


def cells_mask(size: tuple[int, int], columns: int, rows: int, names: list[str]) -> bytes:
    """The mask PNG of `size` that is white over the cells `names` and black elsewhere."""
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for name in names:
        x0, y0, x1, y1 = cell_box(size, columns, rows, name)
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=255)
    out = io.BytesIO()
    mask.save(out, format="PNG")
    return out.getvalue()


def cell_overlay(png: bytes, columns: int, rows: int) -> bytes:
    """The image (at most OVERLAY_SIDE), with the cells' lines and names drawn over it."""
    with Image.open(io.BytesIO(png)) as opened:
        image = opened.convert("RGB")
    image.thumbnail((OVERLAY_SIDE, OVERLAY_SIDE))
    draw = ImageDraw.Draw(image)
    line = max(1, math.ceil(min(image.size) / 256))
    for column in range(columns):
        for row in range(rows):
            x0, y0, x1, y1 = cell_box(image.size, columns, rows, cell_name(column, row))
            draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=(255, 255, 255), width=line)
            label = cell_name(column, row)
            box = draw.textbbox((x0 + 3 * line, y0 + 2 * line), label)
            draw.rectangle(box, fill=(0, 0, 0))
            draw.text((x0 + 3 * line, y0 + 2 * line), label, fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class CellsView(LoggedView):
    """The private menu of cells; choosing opens the prompt box."""

    def __init__(
        self, presses: Presses, stored: StoredJob, index: int, columns: int, rows: int
    ) -> None:
        super().__init__(timeout=900)
        self._presses, self._stored, self._index = presses, stored, index
        self._grid = (columns, rows)
        names = [cell_name(c, r) for r in range(rows) for c in range(columns)]
        self.cells: discord.ui.Select[CellsView] = discord.ui.Select(
            placeholder="Cells to redraw",
            min_values=1,
            max_values=len(names),
            options=[discord.SelectOption(label=name, value=name) for name in names],
        )
        self.cells.callback = self._chosen  # type: ignore[method-assign]
        self.add_item(self.cells)

    async def _chosen(self, interaction: discord.Interaction) -> None:
        """The cells become the mask (kept like an image prompt); then the remix box, titled
        for the tool, makes the job as the presser's."""
        from bot.presses import RemixModal  # presses imports this module

        assert self._stored.result is not None
        size = (self._stored.result.width, self._stored.result.height)
        mask = cells_mask(size, *self._grid, list(self.cells.values))
        store = InputStore(self._presses.bot.config.engine.inputs_dir)
        edit = Edit(Tool.REGION, mask=await asyncio.to_thread(store.put, mask))
        job, index, presser = self._stored.job, self._index, str(interaction.user.id)

        def make(prompt: Prompt | None) -> Job:
            assert prompt is not None  # the box always opens
            return edit_job(job, index, edit, owner=presser, request=prompt.request)

        modal = RemixModal(self._presses, job, make, title="Vary (Region)")
        await interaction.response.send_modal(modal)


# --- the web editor's side (bot/web.py calls these)


def region_job(
    bot: ImagineBot, source: Job, index: int, owner: str, mask: bytes, prompt: str
) -> tuple[Job, tuple[str, ...], bool]:
    """The Vary (Region) job of image `index` of `source` for `owner`, with `prompt` read as a
    remix box's (moderation, the owner's options); its notes; whether its image links changed
    (to be fetched, `with_image_prompts`). Refused for a bad prompt."""
    reading = read_user_prompt(bot, owner, prompt, remix_of=source)
    (read,) = reading.prompts
    kept = same_images(read.request, source.request)
    digest = InputStore(bot.config.engine.inputs_dir).put(mask)
    edit = Edit(Tool.REGION, mask=digest)
    job = edit_job(source, index, edit, owner=owner, request=kept or read.request)
    return job, reading.notes, kept is None


class RegionSubmissions:
    """What the browser editor needs of the bot: the image, the prompt, and queueing the job in
    the channel the button was pressed in, as the presser's (their limits apply)."""

    def __init__(self, bot: ImagineBot) -> None:
        self._bot = bot

    def _stored(self, claim: RegionClaim) -> StoredJob | None:
        stored = self._bot.store.get_job(claim.job_id)
        if stored is None or stored.result is None or claim.index >= len(stored.result.images):
            return None
        return stored

    def image_for(self, claim: RegionClaim) -> Path | None:
        stored = self._stored(claim)
        if stored is None or stored.result is None:
            return None
        path = stored.result.images[claim.index]
        return path if path.is_file() else None

    def prompt_for(self, claim: RegionClaim) -> str:
        stored = self._stored(claim)
        return "" if stored is None else stored.job.request.raw or stored.job.request.prompt

    async def submit(self, claim: RegionClaim, mask: bytes, prompt: str) -> str:
        """Queue the region job; its id. RegionRefused says why not, in plain words."""
        from bot.web import RegionRefused

        bot = self._bot
        stored = self._stored(claim)
        if stored is None:
            raise RegionRefused("This image is not in the bot's records any more.")
        try:
            job, _, new_links = region_job(
                bot, stored.job, claim.index, claim.user_id, mask, prompt
            )
            if new_links:
                (job,) = await with_image_prompts(bot, [job])
        except Refused as refusal:
            raise RegionRefused(refusal.message) from None
        except FetchError as error:
            raise RegionRefused(str(error)) from None
        admission = await bot.deliveries.launch_in_channel(job, claim.channel_id, claim.guild_id)
        if not admission.allowed:
            raise RegionRefused(admission.message)
        return job.id
