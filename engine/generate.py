"""Runs one job on a loaded pipeline: imagine (text → 4 images), vary (img2img → 4 images),
upscale (2× resize, then tiled img2img). Used inside the engine process (engine.worker) and,
in tests, directly.

Every image has its own CPU `torch.Generator` (seed, seed+1, …), so an image depends only on its
seed and the request, not on its place in the batch: image 3 of a grid is image 1 of the grid
drawn from seed + 2. (Across batch sizes, e.g. when an out-of-memory retry splits the batch, a
few pixels may differ by one level: floating-point sums run in another order.)
"""

from __future__ import annotations

import gc
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
import torch
from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image
from PIL import Image

from engine import conditioning
from engine.config import EngineConfig, ModelPreset
from engine.gan import Upscaler, load_gan
from engine.grid import make_grid
from engine.jobs import Job, JobKind, JobResult, Strength
from engine.loader import load_pipeline, model_revision
from engine.preview import PreviewDecoder, load_taesd
from engine.prompt.request import SEED_MAX
from engine.resolution import image_size
from engine.samplers import make_scheduler
from engine.storage import ImageStore

logger = logging.getLogger(__name__)

# img2img strength: Fooocus' values for a Midjourney-like UI (field notes §4).
STRENGTHS = {
    (JobKind.VARY, Strength.SUBTLE): 0.5,
    (JobKind.VARY, Strength.STRONG): 0.85,
    (JobKind.UPSCALE, Strength.SUBTLE): 0.3,
    (JobKind.UPSCALE, Strength.CREATIVE): 0.5,
}
CHAOS_LATENT_SCALE = 1.0  # --chaos 100 gives the composition field as much variance as the noise
_COMPOSITION_SALT = 0x636F6D70
UPSCALE_FACTOR = 2
TILE_OVERLAP = 8  # 1/8 of a tile's side overlaps its neighbour, blended linearly

ProgressFn = Callable[[int, int, bytes | None], None]
CancelFn = Callable[[], bool]


class GenerationError(RuntimeError):
    """A job failed for a reason a user can act on; the message is safe to show."""


class JobCancelledError(Exception):
    pass


@dataclass
class LoadedModel:
    preset: ModelPreset
    pipe: Any  # a family's DiffusionPipeline; diffusers types its components only dynamically
    revision: str
    preview: PreviewDecoder


@dataclass(frozen=True)
class Plan:
    """What a job runs with, after presets, --quality and --stop are applied."""

    steps: int  # the schedule's length
    stop_at: int  # the last step of the schedule that runs (before `steps` with --stop)
    guidance: float
    sampler: str
    width: int
    height: int
    strength: float | None  # img2img only
    chaos: int = 0

    @property
    def denoise_steps(self) -> int:
        """The steps that actually run: img2img skips the first (1 - strength) of the schedule."""
        return self.stop_at if self.strength is None else int(self.steps * self.strength)


@dataclass(frozen=True)
class Batch:
    """Images drawn together for one job: their seeds, start images (img2img) and conditioning."""

    model: LoadedModel
    plan: Plan
    seeds: Sequence[int]
    inits: Sequence[Image.Image] | None
    cond: conditioning.Conditioning
    tile: bool
    progress: ProgressFn
    cancelled: CancelFn

    def rows(self, rows: slice) -> Batch:
        inits = None if self.inits is None else self.inits[rows]
        return replace(self, seeds=self.seeds[rows], inits=inits, cond=self.cond.select(rows))


def make_plan(job: Job, preset: ModelPreset, size: tuple[int, int]) -> Plan:
    req = job.request
    strength = STRENGTHS.get((job.kind, job.strength)) if job.strength else None
    steps = max(1, round((req.steps or preset.steps) * req.quality))
    if strength is not None:
        # img2img runs int(steps × strength) steps, and crashes below one (field notes §4)
        steps = max(steps, math.ceil(1 / strength))
    stop = req.stop if job.kind is JobKind.IMAGINE else 100
    stop_at = max(1, math.ceil(steps * stop / 100))
    # Only Euler takes a truncated schedule ending in a jump to the clean image (see _stop_sigmas).
    sampler = "euler" if stop_at < steps else (req.sampler or preset.sampler)
    guidance = preset.guidance if req.cfg is None else req.cfg
    return Plan(steps, stop_at, guidance, sampler, size[0], size[1], strength, req.chaos)


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextmanager
def seamless(pipe: Any, enabled: bool) -> Iterator[None]:
    """--tile: circular padding on every conv of the UNet and VAE makes the image wrap around."""
    convs = [
        m
        for model in (pipe.unet, pipe.vae)
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    saved = [c.padding_mode for c in convs]
    if enabled:
        for conv in convs:
            conv.padding_mode = "circular"
    try:
        yield
    finally:
        for conv, mode in zip(convs, saved, strict=True):
            conv.padding_mode = mode


class Generator:
    """Holds loaded pipelines (loaded once; the least recently used is dropped past
    `max_loaded_models`, so switching presets never fills the GPU) and runs jobs on them."""

    def __init__(
        self,
        config: EngineConfig,
        loader: Callable[[ModelPreset, EngineConfig], Any] = load_pipeline,
    ):
        self.config = config
        self.store = ImageStore(config.images_dir)
        self._loader = loader
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()  # least recently used first
        self._gan: Upscaler | None = None
        self._gan_loaded = False

    def model(self, name: str) -> LoadedModel:
        preset = self.config.preset(name)
        if preset.name in self._models:
            self._models.move_to_end(preset.name)
        else:
            while len(self._models) >= self.config.max_loaded_models:
                dropped, _ = self._models.popitem(last=False)
                logger.info("unloading model %s to make room for %s", dropped, preset.name)
                free_memory()
            started = time.monotonic()
            pipe = self._loader(preset, self.config)
            taesd = None
            if preset.preview:
                taesd = load_taesd(
                    preset.preview, self.config.models_dir / "hub", pipe.device, pipe.dtype
                )
            self._models[preset.name] = LoadedModel(
                preset, pipe, model_revision(pipe), PreviewDecoder(preset.family, taesd)
            )
            logger.info("loaded model %s in %.1f s", preset.name, time.monotonic() - started)
        return self._models[preset.name]

    def run(self, job: Job, progress: ProgressFn, cancelled: CancelFn) -> JobResult:
        started = time.monotonic()
        model = self.model(job.model)
        if job.kind is JobKind.IMAGINE:
            size = image_size(job.request.aspect, model.preset)
            plan = make_plan(job, model.preset, size)
            batch = self._batch(model, job, plan, job.seeds, None, progress, cancelled)
            images = self._generate(batch)
        elif job.kind is JobKind.VARY:
            assert job.source is not None
            source = self.store.load(job.source.job_id, job.source.index)
            plan = make_plan(job, model.preset, source.size)
            inits = [source] * len(job.seeds)
            batch = self._batch(model, job, plan, job.seeds, inits, progress, cancelled)
            images = self._generate(batch)
        else:
            upscaled, plan = self._upscale(model, job, progress, cancelled)
            images = [upscaled]
        return self._save(job, model, plan, images, time.monotonic() - started)

    def _batch(
        self,
        model: LoadedModel,
        job: Job,
        plan: Plan,
        seeds: Sequence[int],
        inits: Sequence[Image.Image] | None,
        progress: ProgressFn,
        cancelled: CancelFn,
    ) -> Batch:
        # The tiles of an upscale are one picture: one seed for their --chaos/--weird, no wrap.
        upscale = job.kind is JobKind.UPSCALE
        cond_seeds = (job.seed,) * len(seeds) if upscale else tuple(seeds)
        cond = conditioning.encode(model.pipe, model.preset, job.request, cond_seeds)
        tile = job.request.tile and not upscale
        return Batch(model, plan, seeds, inits, cond, tile, progress, cancelled)

    # 1. diffusion, in chunks, with the out-of-memory fallback
    def _generate(self, batch: Batch) -> list[Image.Image]:
        count = len(batch.seeds)
        attempts = [(size, False) for size in (min(count, 4), 2, 1) if size <= count]
        attempts = [*dict.fromkeys(attempts), (1, True)]  # last: one at a time, VAE tiled
        vae = batch.model.pipe.vae
        plan = batch.plan
        for chunk, vae_tiling in attempts:
            try:
                if vae_tiling:
                    vae.enable_tiling()
                with seamless(batch.model.pipe, batch.tile):
                    return self._chunks(batch, chunk)
            except torch.cuda.OutOfMemoryError:
                pass  # free memory below: the traceback holds tensors until the block is left
            finally:
                if vae_tiling:
                    vae.disable_tiling()
            logger.warning("out of memory at %dx%d, %d at a time", plan.width, plan.height, chunk)
            free_memory()
        raise GenerationError(
            f"the GPU ran out of memory even for one {plan.width}×{plan.height} image; "
            "try a smaller --ar, --quality .5, or a smaller model"
        )

    def _chunks(self, batch: Batch, chunk: int) -> list[Image.Image]:
        steps = batch.plan.denoise_steps
        total = steps * math.ceil(len(batch.seeds) / chunk)
        images: list[Image.Image] = []
        for start in range(0, len(batch.seeds), chunk):
            on_step = partial(self._on_step, batch, steps * (start // chunk), total)
            images += self._call(batch.rows(slice(start, start + chunk)), on_step)
        return images

    def _on_step(
        self, batch: Batch, done_before: int, total: int, step_in_chunk: int, latents: torch.Tensor
    ) -> None:
        step = done_before + step_in_chunk
        every = self.config.preview_every
        preview = None
        if every and (step % every == 0) and step < total:
            preview = batch.model.preview.jpeg(latents)
        batch.progress(step, total, preview)

    def _call(
        self, batch: Batch, on_step: Callable[[int, torch.Tensor], None]
    ) -> list[Image.Image]:
        """One pipeline call for a few images. Each call gets its own scheduler (from_pipe shares
        the base pipeline's, which is not safe to reuse across runs)."""
        plan, seeds, inits = batch.plan, batch.seeds, batch.inits
        scheduler = make_scheduler(plan.sampler, batch.model.pipe.scheduler.config)
        auto = AutoPipelineForText2Image if inits is None else AutoPipelineForImage2Image
        pipe = auto.from_pipe(batch.model.pipe, scheduler=scheduler)
        pipe.set_progress_bar_config(disable=True)

        order = getattr(scheduler, "order", 1)  # Heun & co.: 2 callbacks a step (2N - 1 timesteps)

        def callback(p: Any, index: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            if index % order == 0:
                on_step(index // order + 1, kwargs["latents"])
            if batch.cancelled():
                p._interrupt = True  # the pipeline still decodes and returns; we discard that
            return {}

        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        kwargs: dict[str, Any] = dict(
            batch.cond.pipeline_kwargs(),
            guidance_scale=plan.guidance,
            generator=generators,
            callback_on_step_end=callback,
            callback_on_step_end_tensor_inputs=["latents"],
            output_type="pil",
        )
        if inits is None:
            shape = (
                pipe.unet.config.in_channels,
                plan.height // pipe.vae_scale_factor,
                plan.width // pipe.vae_scale_factor,
            )
            latents = initial_noise(shape, seeds, generators, plan.chaos)
            kwargs.update(
                width=plan.width, height=plan.height, latents=latents.to(pipe.device, pipe.dtype)
            )
            if plan.stop_at < plan.steps:
                kwargs["sigmas"] = _stop_sigmas(scheduler, plan)
            else:
                kwargs["num_inference_steps"] = plan.steps
        else:
            kwargs.update(image=list(inits), strength=plan.strength, num_inference_steps=plan.steps)
        with torch.inference_mode():
            images = pipe(**kwargs).images
        if batch.cancelled():
            raise JobCancelledError
        return list(images)

    # 2. upscale: resize 2×, then img2img tile by tile to add detail without a huge UNet input
    def _upscale(
        self, model: LoadedModel, job: Job, progress: ProgressFn, cancelled: CancelFn
    ) -> tuple[Image.Image, Plan]:
        assert job.source is not None
        source = self.store.load(job.source.job_id, job.source.index)
        big = self._enlarge(source, model.pipe.device)
        tile = model.preset.base_resolution
        boxes = tile_boxes(big.size, tile)
        plan = make_plan(job, model.preset, (boxes[0][2] - boxes[0][0], boxes[0][3] - boxes[0][1]))
        crops = [big.crop(box) for box in boxes]
        seeds = [(job.seed + i) % (SEED_MAX + 1) for i in range(len(boxes))]
        tiles = self._generate(self._batch(model, job, plan, seeds, crops, progress, cancelled))
        return blend_tiles(big.size, boxes, tiles), plan

    def _enlarge(self, image: Image.Image, device: Any) -> Image.Image:
        """2× the size: the GAN upscaler when one is configured (loaded once), else Lanczos."""
        if self.config.upscaler and not self._gan_loaded:
            self._gan, self._gan_loaded = load_gan(self.config.upscaler, device), True
        size = (image.width * UPSCALE_FACTOR, image.height * UPSCALE_FACTOR)
        if self._gan is not None:
            try:
                return self._gan(image).resize(size, Image.Resampling.LANCZOS)
            except torch.cuda.OutOfMemoryError:
                pass  # free memory below: the traceback holds tensors until the block is left
            logger.warning("the GAN upscaler ran out of memory; upscaling with Lanczos")
            free_memory()
        return image.resize(size, Image.Resampling.LANCZOS)

    # 3. save every image and the grid with full parameters
    def _save(
        self, job: Job, model: LoadedModel, plan: Plan, images: list[Image.Image], elapsed: float
    ) -> JobResult:
        positive, negative = conditioning.plain_texts(job.request, model.preset)
        width, height = images[0].size
        steps = plan.denoise_steps
        base: dict[str, Any] = {
            "job_id": job.id,
            "kind": job.kind.value,
            "prompt": positive,
            "negative_prompt": negative,
            "raw_prompt": job.request.raw or job.request.prompt,
            "steps": steps,
            "guidance": plan.guidance,
            "sampler": plan.sampler,
            "model": model.preset.name,
            "model_source": model.preset.source,
            "model_revision": model.revision,
            "width": width,
            "height": height,
            "strength": plan.strength,
            "source": None if job.source is None else f"{job.source.job_id}/{job.source.index}",
            "chaos": job.request.chaos,
            "stylize": 0 if job.request.style_raw else job.request.stylize,
            "weird": job.request.weird,
            "tile": job.request.tile,
        }
        seeds = job.seeds
        paths = tuple(
            self.store.save(
                image, self.store.image_path(job.id, i), {**base, "seed": seeds[i], "index": i}
            )
            for i, image in enumerate(images)
        )
        grid = None
        if len(images) > 1:
            grid = self.store.save(
                make_grid(images), self.store.grid_path(job.id), {**base, "seed": job.seed}
            )
        return JobResult(
            job_id=job.id,
            images=paths,
            grid=grid,
            seeds=seeds,
            width=width,
            height=height,
            model=model.preset.name,
            steps=steps,
            elapsed_s=elapsed,
        )


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


def _stop_sigmas(scheduler: Any, plan: Plan) -> list[float]:
    """--stop: the first `stop_at` noise levels of the full schedule, then 0, so the last step
    jumps to the clean image the model predicts: a softer, less finished picture."""
    scheduler.set_timesteps(plan.steps)
    sigmas: list[float] = scheduler.sigmas[: plan.stop_at].tolist()
    return [*sigmas, 0.0]


def tile_boxes(size: tuple[int, int], tile: int) -> list[tuple[int, int, int, int]]:
    """Overlapping tile×tile boxes covering an image (one box per axis when it fits)."""

    def starts(length: int) -> list[int]:
        if length <= tile:
            return [0]
        stride = tile - tile // TILE_OVERLAP
        positions = list(range(0, length - tile, stride))
        return [*positions, length - tile]

    width, height = size
    tw, th = min(tile, width), min(tile, height)
    return [(x, y, x + tw, y + th) for y in starts(height) for x in starts(width)]


def blend_tiles(
    size: tuple[int, int], boxes: Sequence[tuple[int, int, int, int]], tiles: Sequence[Image.Image]
) -> Image.Image:
    """Average overlapping tiles with weights that fall off linearly towards each tile's edge."""
    width, height = size
    total = np.zeros((height, width, 3), np.float64)
    weight = np.zeros((height, width, 1), np.float64)
    for (x0, y0, x1, y1), tile in zip(boxes, tiles, strict=True):
        w, h = x1 - x0, y1 - y0
        ramp_x = np.minimum(np.arange(w) + 1, np.arange(w)[::-1] + 1).astype(np.float64)
        ramp_y = np.minimum(np.arange(h) + 1, np.arange(h)[::-1] + 1).astype(np.float64)
        mask = np.minimum.outer(ramp_y, ramp_x)[..., None]
        total[y0:y1, x0:x1] += np.asarray(tile.convert("RGB"), np.float64) * mask
        weight[y0:y1, x0:x1] += mask
    return Image.fromarray(np.clip(total / weight, 0, 255).round().astype(np.uint8))
