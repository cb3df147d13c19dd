"""The buttons under job messages, as `DynamicItem`s: their custom_id carries everything a press
needs (`mj:<op>:<image or prompt number>:<job id>`), so they keep working after a restart or
months later.

Pressing one routes to `bot.presses` (bot/presses.py); this module only knows how buttons look.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, cast

import discord

from bot.interactions import GuardedItem

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


DESCRIBE_OPS = frozenset({Op.PROMPT, Op.IMAGINE_ALL})  # 🔄 of a describe job describes again
TEMPLATE = r"mj:(?P<op>u|v|r|x|vs|vt|us|uc|p|a):(?P<number>[0-4]):(?P<job>[0-9a-f]{32})"


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
        press = Press(Op(match["op"]), int(match["number"]), match["job"])
        return cls(press, row=item.row)

    async def run(self, interaction: discord.Interaction) -> None:
        bot = cast("ImagineBot", interaction.client)
        await bot.presses.handle(interaction, self.press)


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


def upscaled_view(job_id: str, number: int) -> discord.ui.View:
    """Under an upscale: vary it (an upscale is not upscaled again, as on Midjourney)."""
    view = discord.ui.View(timeout=None)
    for op in (Op.VARY_SUBTLE, Op.VARY_STRONG):
        view.add_item(JobButton(Press(op, number, job_id)))
    return view


def single_view(job_id: str, number: int) -> discord.ui.View:
    """Under one image of a grid (a U pick): vary it, or upscale it."""
    view = discord.ui.View(timeout=None)
    for row, ops in enumerate(
        ((Op.VARY_SUBTLE, Op.VARY_STRONG), (Op.UPSCALE_SUBTLE, Op.UPSCALE_CREATIVE))
    ):
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
