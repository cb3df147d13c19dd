"""The starting noise of each image (with --chaos), and the truncated schedule of --stop."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from engine.plan import Plan

CHAOS_LATENT_SCALE = 1.0  # --chaos 100 gives the composition field as much variance as the noise
_COMPOSITION_SALT = 0x636F6D70


def initial_noise(
    shape: tuple[int, int, int],
    seeds: Sequence[int],
    generators: Sequence[torch.Generator],
    chaos: int,
) -> torch.Tensor:
    """Each image's starting noise, drawn exactly as diffusers draws it from a list of generators
    (so chaos 0 changes nothing), in float32 on the CPU (so it is the same on every device).

    --chaos mixes in a per-image low-frequency field: the coarse layout and colours of a picture
    come from the low frequencies of its starting noise, so the four images drift apart in
    composition. Its own seeded stream (seed ^ salt) keeps each image reproducible alone.
    """
    noise = torch.cat([torch.randn((1, *shape), generator=g) for g in generators])
    if chaos == 0:
        return noise
    amount = chaos / 100 * CHAOS_LATENT_SCALE
    fields = [
        torch.randn(
            (1, shape[0], 2, 2), generator=torch.Generator("cpu").manual_seed(s ^ _COMPOSITION_SALT)
        )
        for s in seeds
    ]
    low = torch.nn.functional.interpolate(
        torch.cat(fields), size=shape[1:], mode="bicubic", align_corners=False
    )
    return (noise + amount * low) / math.sqrt(1 + amount**2)


def stop_sigmas(scheduler: Any, plan: Plan) -> list[float]:
    """--stop: the first `stop_at` noise levels of the full schedule, then 0, so the last step
    jumps to the clean image the model predicts: a softer, less finished picture."""
    scheduler.set_timesteps(plan.steps)
    sigmas: list[float] = scheduler.sigmas[: plan.stop_at].tolist()
    return [*sigmas, 0.0]
