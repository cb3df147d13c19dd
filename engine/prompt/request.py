"""The typed result of parsing an /imagine prompt, and the one error type the parser raises.

Pure Python (no torch): the Discord front-end imports this.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Ranges shared by the parser, the engine and the README.
SEED_MAX = 4_294_967_295
QUALITY_VALUES = (0.25, 0.5, 1.0, 2.0)
SAMPLERS = (
    "euler",
    "euler_a",
    "dpmpp_2m",
    "dpmpp_2m_karras",
    "dpmpp_sde",
    "heun",
    "lms",
    "ddim",
    "unipc",
    "lcm",
)
SPEEDS = ("fast", "relax", "turbo")


class PromptError(ValueError):
    """An invalid prompt. `message` is safe to show a user as it is.

    `title` follows Midjourney's wording: "Invalid parameter" for a bad flag or value,
    "Invalid prompt" for a problem with the text itself.
    """

    def __init__(self, message: str, *, flag: str | None = None, title: str | None = None):
        super().__init__(message)
        self.message = message
        self.flag = flag
        self.title = title or ("Invalid parameter" if flag else "Invalid prompt")


@dataclass(frozen=True)
class PromptPart:
    """One piece of a multi-prompt: `a::2 b::-0.5` gives ("a", 2.0) and ("b", -0.5)."""

    text: str
    weight: float = 1.0


@dataclass(frozen=True)
class ImagineRequest:
    """Everything one /imagine prompt asks for, after permutations are expanded.

    `None` means "not given": the model preset's default applies (steps, cfg, sampler, model).
    """

    prompt: str  # the text as the user wrote it, parameters removed, whitespace folded
    parts: tuple[PromptPart, ...] = ()  # multi-prompt parts; one part of weight 1 for plain text
    negative: tuple[str, ...] = ()  # from --no, split on commas
    image_urls: tuple[str, ...] = ()
    aspect: tuple[int, int] = (1, 1)
    seed: int | None = None
    chaos: int = 0
    stylize: int = 100
    quality: float = 1.0
    stop: int = 100
    tile: bool = False
    weird: int = 0
    repeat: int = 1
    image_weight: float = 1.0  # --iw
    model: str | None = None  # --v / --version NAME; --niji gives "niji"
    style_raw: bool = False
    steps: int | None = None
    cfg: float | None = None
    sampler: str | None = None
    speed: str | None = None  # --fast / --relax / --turbo: accepted, no effect on one GPU
    raw: str = field(default="", compare=False)  # the full prompt text, parameters included

    @property
    def positive_parts(self) -> tuple[PromptPart, ...]:
        return tuple(p for p in self.parts if p.weight > 0)

    @property
    def negative_parts(self) -> tuple[PromptPart, ...]:
        return tuple(p for p in self.parts if p.weight < 0)
