"""What a job runs with: steps, guidance, sampler, size and img2img strength, after the preset's
defaults and --steps, --quality, --draft, --stop, --cfg, --exp and --hd are applied.

Pure Python (no torch): the intake imports `planned_steps` to tell a user what their job will run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from engine.config import JobLimits, ModelPreset
from engine.jobs import Job, JobKind, Strength
from engine.prompt.request import ImagineRequest
from engine.resolution import AREA_TOLERANCE, fit_pixels, image_size, within_pixels

# img2img strength: Fooocus' values for a Midjourney-like UI (field notes §4).
STRENGTHS = {
    (JobKind.VARY, Strength.SUBTLE): 0.5,
    (JobKind.VARY, Strength.STRONG): 0.85,
    (JobKind.UPSCALE, Strength.SUBTLE): 0.3,
    (JobKind.UPSCALE, Strength.CREATIVE): 0.5,
}
# Zoom Out, Pan, Make Square, Vary (Region): the mask is redrawn from pure noise (the kept pixels
# are the source's, pasted back), as inpainting pipelines do by default.
EDIT_STRENGTH = 1.0
# An image prompt without an IP-Adapter: img2img from the first image at 1 - --iw/4 (--iw 0 → 1.0,
# the image barely counts; the default 1 → 0.75; 2 → 0.5; 3 → 0.25, close to the image).
IMAGE_WEIGHT_STRENGTH = 0.25
DRAFT_STEPS_FACTOR = 0.25  # --draft runs a quarter of the steps (with --quality, before the cap)
EXP_GUIDANCE = 0.5  # --exp 100 raises the preset's guidance by half (6 → 9) unless --cfg is given
HD_SCALE = 1.5  # --hd: the second pass draws at 1.5× the sides (up to the 8-px grid)…
HD_STRENGTH = 0.45  # …redrawing 45% of the schedule over the Lanczos-enlarged first pass
UPSCALE_FACTOR = 2  # an upscale doubles both sides (within [limits] max_pixels)


@dataclass(frozen=True)
class Plan:
    """What one diffusion pass runs with; `hd` is the second pass of an `--hd` imagine job."""

    steps: int  # the schedule's length
    stop_at: int  # the last step of the schedule that runs (before `steps` with --stop)
    guidance: float
    sampler: str
    width: int
    height: int
    strength: float | None  # img2img only
    chaos: int = 0
    hd: Plan | None = None  # --hd: img2img at HD_SCALE × the size, run after this pass

    @property
    def denoise_steps(self) -> int:
        """The steps that actually run: img2img skips the first (1 - strength) of the schedule."""
        return self.stop_at if self.strength is None else int(self.steps * self.strength)

    @property
    def total_steps(self) -> int:
        """The steps of this pass and of its --hd pass, if any: what progress counts to."""
        return self.denoise_steps + (0 if self.hd is None else self.hd.denoise_steps)


def planned_steps(
    request: ImagineRequest, preset: ModelPreset, limits: JobLimits
) -> tuple[int, bool]:
    """The schedule's length for `request` on `preset`, and whether `limits.max_steps` cut it.

    (--steps or the preset's steps) × --quality (× DRAFT_STEPS_FACTOR with --draft), rounded, at
    least 1, at most max_steps. An --hd job runs a second, shorter pass on top (see `hd_plan`).
    """
    steps = (request.steps or preset.steps) * request.quality
    if request.draft:
        steps *= DRAFT_STEPS_FACTOR
    wanted = max(1, round(steps))
    return min(wanted, limits.max_steps), wanted > limits.max_steps


def imagine_size(
    request: ImagineRequest, preset: ModelPreset, limits: JobLimits
) -> tuple[int, int]:
    """The size an imagine job draws at: its --ar's on the preset, within max_pixels."""
    return within_pixels(image_size(request.aspect, preset), limits.max_pixels)


def final_size(request: ImagineRequest, preset: ModelPreset, limits: JobLimits) -> tuple[int, int]:
    """The size of an imagine job's images: its first pass's, or with --hd its second's."""
    size = imagine_size(request, preset, limits)
    return within_pixels(hd_size(*size), limits.max_pixels) if request.hd else size


def planned_guidance(request: ImagineRequest, preset: ModelPreset) -> float:
    """--cfg as given; else the preset's guidance, raised by --exp (× 1 + EXP_GUIDANCE × E/100)."""
    if request.cfg is not None:
        return request.cfg
    return preset.guidance * (1 + EXP_GUIDANCE * request.experimental / 100)


def hd_size(width: int, height: int) -> tuple[int, int]:
    """The --hd size: at most HD_SCALE² × the pixels (÷ 1.15 of that at the least, but for
    near-square shapes on tiny bases: see `fit_pixels`), the ratio kept within 2%.

    `fit_pixels`, not each side rounded on its own: 1.5 × a side that is an odd multiple of 8 is
    4 px off the grid, up to 7% of a small side, and the first pass is fitted (cropped) to this.
    """
    return fit_pixels((width, height), round(width * height * HD_SCALE**2))


def variation_size(
    size: tuple[int, int], preset: ModelPreset, limits: JobLimits
) -> tuple[int, int]:
    """The size a variation is drawn at: its source's, up to an --hd image's; a larger source
    (an upscale) at the model's own size for its shape, as Midjourney does, so that a chain of
    Vary and Upscale never grows past what the model and the GPU are sized for."""
    width, height = size
    largest = (preset.base_resolution * HD_SCALE) ** 2 * (1 + AREA_TOLERANCE)
    drawn = size if width * height <= largest else image_size(size, preset)
    return within_pixels(drawn, limits.max_pixels)


def upscale_size(size: tuple[int, int], limits: JobLimits) -> tuple[int, int]:
    """An upscale's size: UPSCALE_FACTOR × the source's sides, within max_pixels."""
    width, height = size
    return within_pixels((width * UPSCALE_FACTOR, height * UPSCALE_FACTOR), limits.max_pixels)


def make_plan(job: Job, preset: ModelPreset, size: tuple[int, int], limits: JobLimits) -> Plan:
    """The plan of `job` on `preset`; `size` is the image's (imagine), the source's (vary), a
    tile's (upscale) or the drawn canvas's (edit: engine.canvas.Layout.drawn), so variations
    and upscales of an --hd image work from its larger size."""
    req = job.request
    strength = STRENGTHS.get((job.kind, job.strength)) if job.strength else None
    if job.kind is JobKind.EDIT:
        strength = EDIT_STRENGTH
    if job.kind is JobKind.IMAGINE and req.image_inputs and preset.ip_adapter is None:
        strength = image_prompt_strength(req.image_weight)  # img2img stands in for an adapter
    steps, _ = planned_steps(req, preset, limits)
    if strength is not None:
        steps = _runnable(steps, strength)
    stop = req.stop if job.kind is JobKind.IMAGINE else 100
    stop_at = max(1, math.ceil(steps * stop / 100))
    # Only Euler takes a truncated schedule ending in a jump to the clean image
    # (engine.noise.stop_sigmas).
    sampler = "euler" if stop_at < steps else (req.sampler or preset.sampler)
    guidance = planned_guidance(req, preset)
    plan = Plan(steps, stop_at, guidance, sampler, size[0], size[1], strength, req.chaos)
    if job.kind is JobKind.IMAGINE and req.hd:
        return replace(plan, hd=hd_plan(plan, limits))
    return plan


def image_prompt_strength(image_weight: float) -> float:
    """The img2img strength of an image prompt of weight `--iw` (0–3)."""
    return 1.0 - IMAGE_WEIGHT_STRENGTH * image_weight


def hd_plan(first: Plan, limits: JobLimits) -> Plan:
    """--hd ("hires fix"): img2img over the enlarged first pass with its sampler, guidance and
    schedule length (lengthened to the few steps HD_STRENGTH needs to run at least one)."""
    width, height = within_pixels(hd_size(first.width, first.height), limits.max_pixels)
    steps = _runnable(first.steps, HD_STRENGTH)
    return Plan(
        steps, steps, first.guidance, first.sampler, width, height, HD_STRENGTH, first.chaos
    )


def _runnable(steps: int, strength: float) -> int:
    """img2img runs int(steps × strength) steps, and crashes below one (field notes §4)."""
    return max(steps, math.ceil(1 / strength))
