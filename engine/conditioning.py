"""From a parsed prompt to the text embeddings a pipeline is called with.

How the Midjourney parameters that act on the text land in the diffusion process:
- multi-prompt weights `a::2 b::1`: each part is encoded on its own (through compel, so prompts
  over 77 tokens work) and weighed as compel's conjunction does: empty + (part - empty) × w, the
  parts concatenated; weights are relative, so they are divided by the largest positive one
  (`a::4 b::2` is `a::2 b::1`).
- negative parts and `--no`: they form the negative prompt, which classifier-free guidance steers
  away from; `--no x` is `x::-0.5`, so a part of weight -w gets weight 2w there.
- `--stylize S` and `--exp E`: the preset's house-style text is one more part, of weight
  sqrt(S / 1000) + 0.5 × E / 100 (EXP_STYLE), at most 1.5 (STYLE_WEIGHT_MAX): without --exp,
  100 → 0.32, 250 → 0.5, 1000 → 1; `--s 0 --exp 100` → 0.5. Weight 0 (`--s 0` without --exp)
  and `--style raw` leave it out. (--exp also raises the guidance: engine.plan.planned_guidance.)
- `--style NAME` (cute, expressive, scenic, original): the preset's text for that style is one
  more part, of weight 0.6 (NAMED_STYLE_WEIGHT), beside the house style; `--style raw` does not
  remove it. On a preset without that style it adds nothing.
- `--p` (personalization): each profile's style text is one more part, of weight
  0.5 + S / 2000 (`personal_weight`: 0.55 at the default --s 100, 1 at --s 1000); `--style raw`
  does not remove it.
- `--chaos C`: each image gets its own Gaussian noise on every token of its conditioning,
  C/100 × 0.5 × the conditioning's spread, drawn from that image's seed: the four images of a
  grid drift apart from each other and from the literal prompt. (Chaos also mixes a
  low-frequency field into each image's starting noise: see engine.noise.initial_noise.)
- `--weird W`: each image's conditioning is shifted by one random direction shared by all its
  tokens, W/3000 × 1.5 × the spread, drawn from that image's seed: a coherent but unusual look.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from compel import Compel, CompelForSD, CompelForSDXL
from compel.prompt_parser import Conjunction, FlattenedPrompt, Fragment

from engine.config import ModelPreset
from engine.prompt.request import ImagineRequest

CHAOS_SCALE = 0.5
EXP_STYLE = 0.5  # --exp 100 adds 0.5 to the house style's weight
STYLE_WEIGHT_MAX = 1.5
NAMED_STYLE_WEIGHT = 0.6
WEIRD_SCALE = 1.5
_CHAOS_SALT = 0x6368616F  # separate random streams from the seeds' latent noise
_WEIRD_SALT = 0x77656972


@dataclass
class Conditioning:
    """Embeddings for a batch, one row per image; the keyword arguments of a pipeline call."""

    embeds: torch.Tensor
    negative: torch.Tensor
    pooled: torch.Tensor | None = None
    negative_pooled: torch.Tensor | None = None

    def pipeline_kwargs(self) -> dict[str, torch.Tensor]:
        kwargs = {"prompt_embeds": self.embeds, "negative_prompt_embeds": self.negative}
        if self.pooled is not None and self.negative_pooled is not None:
            kwargs["pooled_prompt_embeds"] = self.pooled
            kwargs["negative_pooled_prompt_embeds"] = self.negative_pooled
        return kwargs

    def select(self, rows: slice) -> Conditioning:
        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[rows]

        return Conditioning(
            self.embeds[rows], self.negative[rows], pick(self.pooled), pick(self.negative_pooled)
        )


def concat(parts: list[Conditioning]) -> Conditioning:
    """Several batches' conditioning, one after another (their token counts must agree)."""

    def cat(tensors: list[torch.Tensor | None]) -> torch.Tensor | None:
        present = [t for t in tensors if t is not None]
        return torch.cat(present) if present else None

    embeds, negative = cat([p.embeds for p in parts]), cat([p.negative for p in parts])
    assert embeds is not None and negative is not None
    return Conditioning(
        embeds, negative, cat([p.pooled for p in parts]), cat([p.negative_pooled for p in parts])
    )


def _literal(text: str) -> Conjunction:
    """The whole text as one fragment of weight 1, instead of compel's parse of it: prompts here
    have Midjourney's syntax, not compel's (weights are `::`, handled above), and escaping compel's
    syntax could not be undone for every character (a trailing `+` reached CLIP as `\\+`, and SDXL's
    pooled embedding saw every backslash). The parse was also most of a new prompt's cost."""
    fragment = Fragment("")
    fragment.text = text  # set after: Fragment() would turn a typed `\\(` into `(`
    return Conjunction([FlattenedPrompt([fragment])])


def style_weight(request: ImagineRequest) -> float:
    """The house style's weight: 0 leaves it out."""
    if request.style_raw:
        return 0.0
    weight = math.sqrt(request.stylize / 1000) + EXP_STYLE * request.experimental / 100
    return min(STYLE_WEIGHT_MAX, weight)


def personal_weight(request: ImagineRequest) -> float:
    """The weight of each personalization profile's style text."""
    return 0.5 + request.stylize / 2000


def named_style(request: ImagineRequest, preset: ModelPreset) -> str | None:
    """The `--style NAME` that applies on `preset`, or None (none asked, or the preset has none)."""
    if request.style is None or preset.style_text(request.style) is None:
        return None
    return request.style


def personal_texts(request: ImagineRequest) -> tuple[str, ...]:
    """The personalization profiles' style texts that are weighed in (blank ones are not)."""
    return tuple(text for text in request.personal_styles if text.strip())


def style_parts(request: ImagineRequest, preset: ModelPreset) -> list[tuple[str, float]]:
    """The parts the model adds to the prompt: house style, named style, personal styles."""
    parts: list[tuple[str, float]] = []
    if preset.style and style_weight(request) > 0:
        parts.append((preset.style, style_weight(request)))
    named = preset.style_text(request.style) if request.style else None
    if named is not None:
        parts.append((named, NAMED_STYLE_WEIGHT))
    parts += [(text, personal_weight(request)) for text in personal_texts(request)]
    return parts


def _with_triggers(
    parts: list[tuple[str, float]], request: ImagineRequest
) -> list[tuple[str, float]]:
    """The --lora trigger words after the first part's text (where the subject is), or as
    the only part of a prompt without text (a blend); not those of a LoRA at weight 0."""
    triggers = ", ".join(use.trigger for use in request.loras if use.trigger and use.weight)
    if not triggers:
        return parts
    if not parts:
        return [(triggers, 1.0)]
    (text, weight), *rest = parts
    return [(f"{text}, {triggers}" if text else triggers, weight), *rest]


def weighed_parts(
    request: ImagineRequest, preset: ModelPreset
) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """The (positive, negative) prompt parts with their weights."""
    positive = request.positive_parts
    top = max((p.weight for p in positive), default=1.0)
    parts = _with_triggers([(p.text, p.weight / top) for p in positive], request)
    parts += style_parts(request, preset)
    negatives = [(text, 1.0) for text in request.negative]
    negatives += [(p.text, min(2.0, 2 * -p.weight / top)) for p in request.negative_parts]
    return parts, negatives


def plain_texts(request: ImagineRequest, preset: ModelPreset) -> tuple[str, str]:
    """The same prompts as readable text, for PNG metadata."""
    texts = [
        text for text, _ in _with_triggers([(p.text, 1.0) for p in request.positive_parts], request)
    ]
    texts += [text for text, _ in style_parts(request, preset)]
    negative = ", ".join([*request.negative, *(p.text for p in request.negative_parts)])
    return ", ".join(texts), negative


class TextEncoder:
    """compel on one pipeline's text encoder(s), keeping the last few texts' embeddings: the
    empty prompt and the preset's style texts are part of every job, and 🔄, V and U encode
    their grid's prompt again. What it returns is shared: never changed in place."""

    KEPT = 32

    def __init__(self, pipe: Any, family: str) -> None:
        self._compel = CompelForSDXL(pipe) if family == "sdxl" else CompelForSD(pipe)
        for part in vars(self._compel).values():  # one Compel per text encoder
            if isinstance(part, Compel):
                part.parse_prompt_string = _literal
        self._kept: OrderedDict[str, Encoded] = OrderedDict()

    def __call__(self, text: str) -> Encoded:
        encoded = self._kept.get(text)
        if encoded is None:
            out = self._compel(text)
            encoded = self._kept[text] = Encoded(out.embeds, out.pooled_embeds)
            if len(self._kept) > self.KEPT:
                self._kept.popitem(last=False)
        self._kept.move_to_end(text)
        return encoded

    def forget(self) -> None:
        """Drop the kept embeddings: the encoders changed (a LoRA was switched)."""
        self._kept.clear()


def encode(
    text: TextEncoder, preset: ModelPreset, request: ImagineRequest, seeds: tuple[int, ...]
) -> Conditioning:
    """Embeddings for one image per seed, with --chaos and --weird applied per image."""
    empty = text("")
    positive, negative = weighed_parts(request, preset)
    pos = _conjunction(text, positive, empty)
    neg = _conjunction(text, negative, empty)
    length = max(pos.embeds.shape[1], neg.embeds.shape[1])
    pos, neg = _pad(pos, length, empty), _pad(neg, length, empty)
    count = len(seeds)

    def batch(t: torch.Tensor) -> torch.Tensor:
        return t.expand(count, *t.shape[1:]).clone()

    cond = Conditioning(
        batch(pos.embeds),
        batch(neg.embeds),
        None if pos.pooled is None else batch(pos.pooled),
        None if neg.pooled is None else batch(neg.pooled),
    )
    chaos = request.chaos / 100 * CHAOS_SCALE
    weird = request.weird / 3000 * WEIRD_SCALE
    for tensor in (cond.embeds, cond.pooled):
        if tensor is not None:
            _perturb(tensor, seeds, chaos, weird)
    return cond


@dataclass(frozen=True)
class Encoded:
    embeds: torch.Tensor  # (1, tokens, dim); tokens a multiple of 77 for long prompts
    pooled: torch.Tensor | None  # (1, dim), SDXL only


def _conjunction(
    encode_text: Callable[[str], Encoded], parts: list[tuple[str, float]], empty: Encoded
) -> Encoded:
    """Each part on its own, moved from the empty prompt by its weight, then concatenated along
    the tokens (compel's conjunction, done here because compel's own breaks on SDXL's pooled
    output). The pooled embedding (SDXL) is the parts' own, averaged by weight."""
    if not parts:
        return empty
    blocks, pooled = [], []
    for text, weight in parts:
        part = encode_text(text)
        base = _pad(empty, part.embeds.shape[1], empty).embeds
        blocks.append(base + (part.embeds - base) * weight)
        if part.pooled is not None:
            pooled.append(part.pooled * weight)
    total = sum(weight for _, weight in parts)
    return Encoded(torch.cat(blocks, dim=1), torch.stack(pooled).sum(0) / total if pooled else None)


def _pad(encoded: Encoded, length: int, empty: Encoded) -> Encoded:
    """Lengthen with copies of the empty prompt's tokens (a 77-token block each)."""
    missing = length - encoded.embeds.shape[1]
    if missing <= 0:
        return encoded
    block = empty.embeds
    repeats = -(-missing // block.shape[1])
    filler = block.repeat(1, repeats, 1)[:, :missing]
    return Encoded(torch.cat([encoded.embeds, filler], dim=1), encoded.pooled)


def _perturb(t: torch.Tensor, seeds: tuple[int, ...], chaos: float, weird: float) -> None:
    if chaos == 0 and weird == 0:
        return
    spread = t.float().std().item()
    for row, seed in enumerate(seeds):
        if chaos:
            g = torch.Generator("cpu").manual_seed(seed ^ _CHAOS_SALT)
            noise = torch.randn(t[row].shape, generator=g)
            t[row] += (chaos * spread * noise).to(t.device, t.dtype)
        if weird:
            g = torch.Generator("cpu").manual_seed(seed ^ _WEIRD_SALT)
            shift = torch.randn(t[row].shape[-1], generator=g)  # one direction for every token
            t[row] += (weird * spread * shift).to(t.device, t.dtype)
