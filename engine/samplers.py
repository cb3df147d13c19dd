"""Sampler names (the --sampler values) → diffusers schedulers.

A new scheduler object every call: schedulers keep per-run state (step index, solver history), so a
pipeline's own scheduler must never be shared between runs (see field notes §4).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import Any

from diffusers.configuration_utils import ConfigMixin

# Imported from their modules: the top-level `diffusers` names are lazy and opaque to mypy.
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from diffusers.schedulers.scheduling_dpmsolver_multistep import DPMSolverMultistepScheduler
from diffusers.schedulers.scheduling_euler_ancestral_discrete import (
    EulerAncestralDiscreteScheduler,
)
from diffusers.schedulers.scheduling_euler_discrete import EulerDiscreteScheduler
from diffusers.schedulers.scheduling_heun_discrete import HeunDiscreteScheduler
from diffusers.schedulers.scheduling_lcm import LCMScheduler
from diffusers.schedulers.scheduling_lms_discrete import LMSDiscreteScheduler
from diffusers.schedulers.scheduling_unipc_multistep import UniPCMultistepScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import is_scipy_available

from engine.prompt.request import SAMPLERS

logger = logging.getLogger(__name__)

# name → (class, settings that define the sampler whatever the model's shipped config says)
_TABLE: dict[str, tuple[type[ConfigMixin], dict[str, Any]]] = {
    "euler": (EulerDiscreteScheduler, {"use_karras_sigmas": False}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "dpmpp_2m": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False},
    ),
    "dpmpp_2m_karras": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "dpmpp_sde": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": False},
    ),
    "heun": (HeunDiscreteScheduler, {"use_karras_sigmas": False}),
    "lms": (LMSDiscreteScheduler, {"use_karras_sigmas": False}),
    # Latent diffusion never clips x0 to [-1, 1]; DDIM's defaults are for pixel-space models.
    "ddim": (DDIMScheduler, {"clip_sample": False, "set_alpha_to_one": False}),
    "unipc": (UniPCMultistepScheduler, {"use_karras_sigmas": False}),
    "lcm": (LCMScheduler, {}),
}


def make_scheduler(name: str, base_config: Mapping[str, Any]) -> SchedulerMixin:
    """A fresh scheduler for sampler `name`, from the pipeline's scheduler config.

    ValueError names the choices for an unknown name; ImportError for "lms" without scipy.
    """
    if name not in _TABLE:
        raise ValueError(f"unknown sampler {name!r}; the choices are: {', '.join(SAMPLERS)}")
    cls, overrides = _TABLE[name]
    if cls is LMSDiscreteScheduler and not is_scipy_available():
        raise ImportError("the lms sampler needs scipy: pip install scipy")
    # Keep only what `cls` accepts: diffusers logs a warning for every foreign key otherwise
    # (an Euler config carries keys that DDIM or LCM do not know, and the other way round).
    accepted = inspect.signature(cls.__init__).parameters
    config = {k: v for k, v in base_config.items() if k in accepted}
    config.update((k, v) for k, v in overrides.items() if k in accepted)
    scheduler = cls.from_config(config)
    assert isinstance(scheduler, SchedulerMixin)  # for mypy: from_config's union return type
    return scheduler
