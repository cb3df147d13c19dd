"""The buttons under job messages, as `DynamicItem`s: their custom_id carries everything a press
needs (`mj:<op>:<image or prompt number>:<job id>`), so they keep working after a restart or
months later.

Pressing one routes to `bot.presses` (bot/presses.py); this module only knows how buttons look.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, cast

import discord

from bot.interactions import GuardedItem
from engine.jobs import Direction

if TYPE_CHECKING:
    from bot.app import ImagineBot


class Op(StrEnum):
    PICK = "u"  # U1…U4: post one image of a grid on its own
    VARY = "v"  # V1…V4: variations of one image, strength from the presser's /settings
    REROLL = "r"  # 🔄
    CANCEL = "x"  # ❌ while queued or running
    VARY_SUBTLE = "vs"  # 🪄 Vary (Subtle) under a single image
    VARY_STRONG = "vt"  # 🪄 Vary (Strong)
    UPSCALE_SUBTLE = "us"  # Upscale (Subtle)
    UPSCALE_CREATIVE = "uc"  # Upscale (Creative)
    PROMPT = "p"  # 1…4 under /describe: /imagine that prompt
    IMAGINE_ALL = "a"  # Imagine all: the four prompts of a /describe
    VARY_REGION = "vr"  # 🖌️ Vary (Region): mark an area to redraw
    ZOOM_2X = "z2"  # 🔍 Zoom Out 2x
    ZOOM_1_5X = "z1"  # 🔍 Zoom Out 1.5x
    CUSTOM_ZOOM = "zc"  # 🔍 Custom Zoom: the prompt box, ending in --zoom 2
    MAKE_SQUARE = "sq"  # ↔️ Make Square (non-square images only)
    PAN_LEFT = "pl"  # ⬅️
    PAN_RIGHT = "pr"  # ➡️
    PAN_UP = "pu"  # ⬆️
    PAN_DOWN = "pd"  # ⬇️


DESCRIBE_OPS = frozenset({Op.PROMPT, Op.IMAGINE_ALL})  # 🔄 of a describe job describes again
ZOOM_OPS = {Op.ZOOM_2X: 2.0, Op.ZOOM_1_5X: 1.5}
PAN_OPS = {
    Op.PAN_LEFT: Direction.LEFT,
    Op.PAN_RIGHT: Direction.RIGHT,
    Op.PAN_UP: Direction.UP,
    Op.PAN_DOWN: Direction.DOWN,
}
TOOL_OPS = frozenset({Op.VARY_REGION, Op.CUSTOM_ZOOM, Op.MAKE_SQUARE, *ZOOM_OPS, *PAN_OPS})
TEMPLATE = (
    r"mj:(?P<op>u|v|r|x|vs|vt|us|uc|p|a|vr|z2|z1|zc|sq|pl|pr|pu|pd)"
    r":(?P<number>[0-4]):(?P<job>[0-9a-f]{32})"
)


@dataclass(frozen=True)
class Press:
    op: Op
    number: int  # the 1-based image number the button is about; 0 for the whole job
    job_id: str

    @property
    def index(self) -> int:
        """The 0-based image (or prompt) index (-1 for buttons about the whole job)."""
        return self.number - 1

    @property
    def custom_id(self) -> str:
        return f"mj:{self.op.value}:{self.number}:{self.job_id}"

    @classmethod
    def from_match(cls, match: re.Match[str]) -> Press:
        """The press a custom_id matched by TEMPLATE stands for."""
        return cls(Op(match["op"]), int(match["number"]), match["job"])


# How each op looks: (label, emoji, style).
_LOOKS: dict[Op, tuple[str | None, str | None, discord.ButtonStyle]] = {
    Op.PICK: ("U", None, discord.ButtonStyle.secondary),
    Op.VARY: ("V", None, discord.ButtonStyle.secondary),
    Op.REROLL: (None, "🔄", discord.ButtonStyle.secondary),
    Op.CANCEL: (None, "❌", discord.ButtonStyle.secondary),
    Op.VARY_SUBTLE: ("Vary (Subtle)", "🪄", discord.ButtonStyle.secondary),
    Op.VARY_STRONG: ("Vary (Strong)", "🪄", discord.ButtonStyle.secondary),
    Op.UPSCALE_SUBTLE: ("Upscale (Subtle)", None, discord.ButtonStyle.secondary),
    Op.UPSCALE_CREATIVE: ("Upscale (Creative)", None, discord.ButtonStyle.secondary),
    Op.PROMPT: ("", None, discord.ButtonStyle.secondary),
    Op.IMAGINE_ALL: ("Imagine all", None, discord.ButtonStyle.secondary),
    Op.VARY_REGION: ("Vary (Region)", "🖌️", discord.ButtonStyle.secondary),
    Op.ZOOM_2X: ("Zoom Out 2x", "🔍", discord.ButtonStyle.secondary),
    Op.ZOOM_1_5X: ("Zoom Out 1.5x", "🔍", discord.ButtonStyle.secondary),
    Op.CUSTOM_ZOOM: ("Custom Zoom", "🔍", discord.ButtonStyle.secondary),
    Op.MAKE_SQUARE: ("Make Square", "↔️", discord.ButtonStyle.secondary),
    Op.PAN_LEFT: (None, "⬅️", discord.ButtonStyle.secondary),
    Op.PAN_RIGHT: (None, "➡️", discord.ButtonStyle.secondary),
    Op.PAN_UP: (None, "⬆️", discord.ButtonStyle.secondary),
    Op.PAN_DOWN: (None, "⬇️", discord.ButtonStyle.secondary),
}


class JobButton(GuardedItem, discord.ui.DynamicItem[discord.ui.Button[Any]], template=TEMPLATE):
    def __init__(self, press: Press, row: int | None = None) -> None:
        label, emoji, style = _LOOKS[press.op]
        if press.op in (Op.PICK, Op.VARY, Op.PROMPT):
            label = f"{label}{press.number}"
        super().__init__(
            discord.ui.Button(label=label, emoji=emoji, style=style, custom_id=press.custom_id),
            row=row,
        )
        self.press = press

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> JobButton:
        return cls(Press.from_match(match), row=item.row)

    async def run(self, interaction: discord.Interaction) -> None:
        bot = cast("ImagineBot", interaction.client)
        await bot.presses.handle(interaction, self.press)


def presses_in(components: Sequence[discord.Component]) -> list[Press]:
    """The job buttons on a message as Discord returns it (a reaction names only the message:
    its buttons say which job, and which image of it, the message shows)."""
    found = []
    for component in components:
        for child in (*getattr(component, "children", ()), component):
            custom_id = getattr(child, "custom_id", None)
            match = re.fullmatch(TEMPLATE, custom_id) if isinstance(custom_id, str) else None
            if match:
                found.append(Press.from_match(match))
    return found


def cancel_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton(Press(Op.CANCEL, 0, job_id)))
    return view


def grid_view(job_id: str) -> discord.ui.View:
    """Row 1: U1 U2 U3 U4 🔄; row 2: V1 V2 V3 V4."""
    view = discord.ui.View(timeout=None)
    for n in range(1, 5):
        view.add_item(JobButton(Press(Op.PICK, n, job_id), row=0))
    view.add_item(JobButton(Press(Op.REROLL, 0, job_id), row=0))
    for n in range(1, 5):
        view.add_item(JobButton(Press(Op.VARY, n, job_id), row=1))
    return view


def _tool_rows(square: bool, upscale: bool) -> tuple[tuple[Op, ...], ...]:
    """Midjourney's single-image buttons, in its order; an upscale is not upscaled again."""
    zoom = (Op.ZOOM_2X, Op.ZOOM_1_5X, Op.CUSTOM_ZOOM, *(() if square else (Op.MAKE_SQUARE,)))
    rows = (
        (Op.VARY_SUBTLE, Op.VARY_STRONG, Op.VARY_REGION),
        () if upscale else (Op.UPSCALE_SUBTLE, Op.UPSCALE_CREATIVE),
        zoom,
        tuple(PAN_OPS),
    )
    return tuple(row for row in rows if row)


def single_view(
    job_id: str, number: int, size: tuple[int, int], upscale: bool = False
) -> discord.ui.View:
    """Under one image (a U pick, or an upscale): vary it (also a region), upscale it (not an
    upscale), zoom out, make it square (when it is not), pan it."""
    view = discord.ui.View(timeout=None)
    width, height = size
    for row, ops in enumerate(_tool_rows(width == height, upscale)):
        for op in ops:
            view.add_item(JobButton(Press(op, number, job_id), row=row))
    return view


def describe_view(job_id: str) -> discord.ui.View:
    """Under a /describe's four prompts: row 1: 1 2 3 4 🔄; row 2: Imagine all."""
    view = discord.ui.View(timeout=None)
    for n in range(1, 5):
        view.add_item(JobButton(Press(Op.PROMPT, n, job_id), row=0))
    view.add_item(JobButton(Press(Op.REROLL, 0, job_id), row=0))
    view.add_item(JobButton(Press(Op.IMAGINE_ALL, 0, job_id), row=1))
    return view
