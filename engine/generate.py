"""Runs one job on a loaded pipeline: imagine (text → 4 images; with --hd, then a second img2img
pass at 1.5× the size), vary (img2img → 4 images), upscale (2× resize, then tiled img2img), edit
(inpainting a canvas: Zoom Out, Pan, Make Square, Vary (Region); engine.edit). Used
inside the engine process (engine.worker) and, in tests, directly.

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
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoPipelineForImage2Image,
    AutoPipelineForInpainting,
    AutoPipelineForText2Image,
)
from PIL import Image, ImageOps

from engine import adapter, conditioning, edit
from engine.canvas import CanvasError
from engine.config import EngineConfig, ModelPreset
from engine.gan import Upscaler, load_gan
from engine.grid import make_grid
from engine.jobs import Job, JobKind, JobResult, imagine_job
from engine.loader import load_inpaint, load_pipeline, model_revision, public_source
from engine.lora import Loras
from engine.noise import initial_noise, stop_sigmas
from engine.plan import Plan, imagine_size, make_plan, upscale_size, variation_size
from engine.preview import PreviewDecoder, load_taesd
from engine.prompt import parse_prompt
from engine.prompt.request import SEED_MAX
from engine.samplers import make_scheduler
from engine.speed import compiled
from engine.storage import ImageStore, InputStore
from engine.tiles import blend_tiles, tile_boxes

logger = logging.getLogger(__name__)


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
    text: conditioning.TextEncoder
    loras: Loras  # [loras.NAME] loaded into this pipeline, each with the first job that asks
    adapter: adapter.Adapter | None = None  # loaded with the first job that has images
    inpaint: Any = None  # the preset's dedicated inpainting pipeline, loaded with the first edit


@dataclass(frozen=True)
class Batch:
    """Images drawn together for one job: their seeds, start images (img2img; with `masks`, the
    canvases to inpaint) and conditioning."""

    model: LoadedModel
    plan: Plan
    seeds: Sequence[int]
    inits: Sequence[Image.Image] | None
    cond: conditioning.Conditioning
    refs: adapter.References | None  # with the preset's IP-Adapter loaded (even if unused)
    tile: bool
    progress: ProgressFn
    cancelled: CancelFn
    masks: Sequence[Image.Image] | None = None  # inpainting: white = redraw (with `inits`)
    # Jobs drawn together (engine.batching): each one's image count and progress, in row order.
    # Empty for one job's batch (its own `progress`).
    shares: tuple[tuple[int, ProgressFn], ...] = ()

    def rows(self, rows: slice) -> Batch:
        inits = None if self.inits is None else self.inits[rows]
        masks = None if self.masks is None else self.masks[rows]
        return replace(
            self, seeds=self.seeds[rows], inits=inits, masks=masks, cond=self.cond.select(rows)
        )


def merge(batches: Sequence[Batch]) -> Batch:
    """One batch of several jobs' batches (same model, plan and conditioning length): their rows
    one after another; it is cancelled when every job is."""
    first = batches[0]
    cancels = [batch.cancelled for batch in batches]
    return replace(
        first,
        seeds=[seed for batch in batches for seed in batch.seeds],
        cond=conditioning.concat([batch.cond for batch in batches]),
        progress=lambda *_: None,
        cancelled=lambda: all(cancelled() for cancelled in cancels),
        shares=tuple((len(batch.seeds), batch.progress) for batch in batches),
    )


@dataclass(frozen=True)
class Drawing:
    """A job's images, drawn and not yet saved (`Generator.save` makes them files). Stays in
    the engine process: it holds the loaded model."""

    job: Job
    model: LoadedModel
    plan: Plan
    images: tuple[Image.Image, ...]
    elapsed_s: float  # the drawing's time, as `JobResult.elapsed_s` reports it
    extra: dict[str, Any] = field(default_factory=dict)  # more metadata (an edit's operation)


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
        clock: Callable[[], float] = time.monotonic,
    ):
        self.config = config
        self._clock = clock
        self._last_preview = -math.inf  # when the last preview was decoded (a job's first: soon)
        self.store = ImageStore(config.images_dir, config.png)
        self.inputs = InputStore(config.inputs_dir)
        self._loader = loader
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()  # least recently used first
        self._gan: Upscaler | None = None
        self._gan_loaded = False
        self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="grid-encoder")

    def is_loaded(self, job: Job) -> bool:
        """Whether `job` can start without loading weights first (its model, its adapter)."""
        model = self._models.get(self.config.preset(job.model).name)
        if model is None:
            return False
        if model.loras.missing(job.request.loras):
            return False
        return not (self._needs_adapter(model, job) or self._needs_inpaint(model, job))

    def load(self, job: Job) -> LoadedModel:
        """The job's model, its LoRAs, its adapter if the job has images for it, and its
        dedicated inpainting model if it is an edit and the preset has one, loaded."""
        model = self.model(job.model)
        model.loras.load(job.request.loras, self.config)
        if self._needs_adapter(model, job):
            model.adapter = adapter.load_adapter(model.pipe, model.preset, self.config)
        if self._needs_inpaint(model, job):
            model.inpaint = load_inpaint(model.preset, model.pipe, self.config)
        return model

    @staticmethod
    def _needs_inpaint(model: LoadedModel, job: Job) -> bool:
        has_one = model.preset.inpaint is not None
        return has_one and model.inpaint is None and job.kind is JobKind.EDIT

    @staticmethod
    def _needs_adapter(model: LoadedModel, job: Job) -> bool:
        has_one = model.preset.ip_adapter is not None
        return has_one and model.adapter is None and adapter.uses_references(job.request)

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
                preset,
                pipe,
                model_revision(pipe),
                PreviewDecoder(preset.family, taesd),
                conditioning.TextEncoder(pipe, preset.family),
                Loras(pipe, preset),
            )
            logger.info("loaded model %s in %.1f s", preset.name, time.monotonic() - started)
        return self._models[preset.name]

    def warm_ups(self, name: str) -> list[Job]:
        """One-step grids of preset `name` at the [engine] warm_up ratios, to draw (never save)
        while no job waits, when its UNet is compiled: each compiles it for that size ahead of
        the first job there. None when the preset is not loaded or not compiled."""
        model = self._models.get(self.config.preset(name).name)
        if model is None or not compiled(model.pipe):
            return []
        request = parse_prompt("warm-up")
        return [
            imagine_job(replace(request, aspect=aspect, steps=1, seed=0), model=name, owner="")
            for aspect in self.config.speed.warm_up
        ]

    def run(self, job: Job, progress: ProgressFn, cancelled: CancelFn) -> JobResult:
        """Draw `job`, then save it: its files written, its result."""
        return self.save(self.draw(job, progress, cancelled))

    def draw(self, job: Job, progress: ProgressFn, cancelled: CancelFn) -> Drawing:
        """The device's part of `job`: everything up to its images (not yet files)."""
        started = time.monotonic()
        self._last_preview = -math.inf
        model = self.load(job)
        limits = self.config.limits
        extra: dict[str, Any] = {}
        if job.kind is JobKind.IMAGINE:
            size = imagine_size(job.request, model.preset, limits)
            plan = make_plan(job, model.preset, size, limits)
            images = self._imagine(model, job, plan, progress, cancelled)
        elif job.kind is JobKind.VARY:
            assert job.source is not None
            source = self.store.load(job.source.job_id, job.source.index)
            size = variation_size(source.size, model.preset, limits)
            if size != source.size:
                source = source.resize(size, Image.Resampling.LANCZOS)
            plan = make_plan(job, model.preset, size, limits)
            inits = [source] * len(job.seeds)
            batch = self._batch(model, job, plan, job.seeds, inits, progress, cancelled)
            images = self._generate(batch)
        elif job.kind is JobKind.EDIT:
            images, plan, extra = self._edit(model, job, progress, cancelled)
        else:
            upscaled, plan = self._upscale(model, job, progress, cancelled)
            images = [upscaled]
        return Drawing(job, model, plan, tuple(images), time.monotonic() - started, extra)

    def draw_together(
        self, jobs: Sequence[Job], progress: Sequence[ProgressFn], cancelled: Sequence[CancelFn]
    ) -> list[Drawing | None]:
        """Several imagine jobs (engine.batching says which) in one pipeline call: each job's
        images as if drawn alone (per-image seeds; within the batch-size tolerance above). A
        job cancelled meanwhile gets None (its rows were drawn with the others'). Jobs whose
        plans or prompt lengths turn out to differ, or a preset with its IP-Adapter loaded, are
        drawn in separate calls, one after another."""
        started = time.monotonic()
        model = self.load(jobs[0])
        groups: dict[Any, list[tuple[int, Batch]]] = {}
        for index, job in enumerate(jobs):
            if job.kind is not JobKind.IMAGINE or job.request.hd or job.request.stored_images:
                raise GenerationError(f"job {job.id} cannot be drawn with others")
            size = imagine_size(job.request, model.preset, self.config.limits)
            plan = make_plan(job, model.preset, size, self.config.limits)
            batch = self._batch(
                model, job, plan, job.seeds, None, progress[index], cancelled[index]
            )
            alone = model.adapter is not None  # its references are set per call
            key = (plan, batch.tile, batch.cond.embeds.shape[1:], index if alone else None)
            groups.setdefault(key, []).append((index, batch))
        drawn: dict[int, tuple[Plan, list[Image.Image]]] = {}
        for members in groups.values():
            batches = [batch for _, batch in members]
            try:
                rows = iter(self._generate(merge(batches) if len(batches) > 1 else batches[0]))
            except JobCancelledError:  # every job of this call was cancelled
                continue
            for index, batch in members:
                drawn[index] = (batch.plan, [next(rows) for _ in batch.seeds])
        elapsed = time.monotonic() - started
        out: list[Drawing | None] = []
        for index, job in enumerate(jobs):
            if index not in drawn or cancelled[index]():
                out.append(None)
            else:
                plan, images = drawn[index]
                out.append(Drawing(job, model, plan, tuple(images), elapsed))
        return out

    def _imagine(
        self, model: LoadedModel, job: Job, plan: Plan, progress: ProgressFn, cancelled: CancelFn
    ) -> list[Image.Image]:
        inits = self._image_prompt(model, job, plan)
        hd = plan.hd
        if hd is None:
            batch = self._batch(model, job, plan, job.seeds, inits, progress, cancelled)
            return self._generate(batch)
        # Progress runs once over both passes: the second pass's steps count after the first's.
        first, total = plan.denoise_steps, plan.total_steps
        on_first = _span(progress, 0, first, total)
        batch = self._batch(model, job, plan, job.seeds, inits, on_first, cancelled)
        images = self._generate(batch)
        on_second = _span(progress, first, hd.denoise_steps, total)
        return self._hires(replace(batch, plan=hd, progress=on_second), images)

    def _image_prompt(self, model: LoadedModel, job: Job, plan: Plan) -> list[Image.Image] | None:
        """Without an IP-Adapter, an image prompt's first image, cropped to the job's shape,
        as every image's start (img2img at the strength --iw sets); else None."""
        if not job.request.image_inputs or model.preset.ip_adapter:
            return None
        image = self.inputs.load(job.request.image_inputs[0])
        fitted = ImageOps.fit(image, (plan.width, plan.height), Image.Resampling.LANCZOS)
        return [fitted] * len(job.seeds)

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
        if model.loras.use(job.request.loras):  # a LoRA may patch the text encoders too
            model.text.forget()
        cond = conditioning.encode(model.text, model.preset, job.request, cond_seeds)
        # An edit's canvas has kept pixels on its edges: wrapping would tie them to new ones.
        tile = job.request.tile and job.kind not in (JobKind.UPSCALE, JobKind.EDIT)
        refs = None  # once loaded, the adapter takes part in every job (unused slots at 0)
        if model.adapter is not None:
            refs = adapter.references(model.pipe, model.adapter, job.request, self.inputs)
        return Batch(model, plan, seeds, inits, cond, refs, tile, progress, cancelled)

    # 1. diffusion, in chunks, with the out-of-memory fallback
    def _generate(self, batch: Batch) -> list[Image.Image]:
        count = len(batch.seeds)
        first = count if batch.shares else min(count, 4)  # jobs drawn together: all at once
        attempts = [(size, False) for size in (first, 4, 2, 1) if size <= count]
        attempts = [*dict.fromkeys(attempts), (1, True)]  # last: one at a time, VAE tiled
        vae = batch.model.pipe.vae
        plan = batch.plan
        done: list[Image.Image] = []  # kept across the retries: only the rest is drawn again
        for chunk, vae_tiling in attempts:
            try:
                if vae_tiling:
                    vae.enable_tiling()
                with seamless(batch.model.pipe, batch.tile):
                    self._chunks(batch, chunk, done)
                    return done
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

    def _chunks(self, batch: Batch, chunk: int, done: list[Image.Image]) -> None:
        """Draw the images after those in `done`, `chunk` at a time, appending each chunk as it
        finishes. (`done` holds a multiple of `chunk`: the sizes tried go 4, 2, 1.)"""
        steps = batch.plan.denoise_steps
        total = steps * math.ceil(len(batch.seeds) / chunk)
        for start in range(len(done), len(batch.seeds), chunk):
            on_step = partial(self._on_step, batch, steps * (start // chunk), total)
            done += self._call(batch.rows(slice(start, start + chunk)), on_step)

    def _on_step(
        self, batch: Batch, done_before: int, total: int, step_in_chunk: int, latents: torch.Tensor
    ) -> None:
        step = done_before + step_in_chunk
        every = self.config.preview_every
        due = False
        if every and (step % every == 0) and step < total:
            # Decoded only when it can be shown: the bot edits a message at most this often.
            now = self._clock()
            if now - self._last_preview >= self.config.preview_interval_s:
                due, self._last_preview = True, now
        if not batch.shares:
            batch.progress(step, total, batch.model.preview.jpeg(latents) if due else None)
            return
        # Jobs drawn together: each its own preview of its own rows (while drawn all at once;
        # after an out-of-memory split, progress only).
        whole = due and latents.shape[0] == len(batch.seeds)
        start = 0
        for count, progress in batch.shares:
            rows = latents[start : start + count]
            progress(step, total, batch.model.preview.jpeg(rows) if whole else None)
            start += count

    def _call(
        self, batch: Batch, on_step: Callable[[int, torch.Tensor], None]
    ) -> list[Image.Image]:
        """One pipeline call for a few images. Each call gets its own scheduler (from_pipe shares
        the base pipeline's, which is not safe to reuse across runs)."""
        plan, seeds, inits = batch.plan, batch.seeds, batch.inits
        scheduler = make_scheduler(plan.sampler, batch.model.pipe.scheduler.config)
        base = batch.model.pipe
        if batch.masks is not None:  # an edit: the dedicated inpainting model, or the base's
            base = batch.model.inpaint or base
            pipe = AutoPipelineForInpainting.from_pipe(base, scheduler=scheduler)
        else:
            auto = AutoPipelineForText2Image if inits is None else AutoPipelineForImage2Image
            pipe = auto.from_pipe(base, scheduler=scheduler)
        pipe.set_progress_bar_config(disable=True)

        order = getattr(scheduler, "order", 1)  # Heun & co.: 2 callbacks a step (2N - 1 timesteps)

        def callback(p: Any, index: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            if batch.cancelled():
                # Raised out of the pipeline: its `interrupt` flag would still decode the VAE
                # (seconds at 1024² on a GPU) for images nobody will see.
                raise JobCancelledError
            if index % order == 0:
                on_step(index // order + 1, kwargs["latents"])
            return {}

        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        refs: dict[str, Any] = {}
        if batch.refs is not None and base is batch.model.pipe:  # the adapter is in its UNet
            guided = plan.guidance > 1 and pipe.unet.config.time_cond_proj_dim is None
            refs = batch.refs.apply(pipe, len(seeds), guided)
        kwargs: dict[str, Any] = dict(
            batch.cond.pipeline_kwargs(),
            **refs,
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
                kwargs["sigmas"] = stop_sigmas(scheduler, plan)
            else:
                kwargs["num_inference_steps"] = plan.steps
        else:
            kwargs.update(image=list(inits), strength=plan.strength, num_inference_steps=plan.steps)
        if batch.masks is not None:  # SDXL's inpainting defaults its size to the image's: say it
            kwargs.update(mask_image=list(batch.masks), width=plan.width, height=plan.height)
        with torch.inference_mode():
            images = pipe(**kwargs).images
        if batch.cancelled():
            raise JobCancelledError
        return list(images)

    # 2. --hd ("hires fix"): enlarge each image (Lanczos), then redraw it by img2img at
    # HD_STRENGTH with its own seed and conditioning: more pixels and detail, the same picture
    def _hires(self, batch: Batch, images: list[Image.Image]) -> list[Image.Image]:
        plan = batch.plan
        size = (plan.width, plan.height)
        enlarged = [image.resize(size, Image.Resampling.LANCZOS) for image in images]
        try:
            return self._generate(replace(batch, inits=enlarged))
        except GenerationError as error:  # out of memory even one at a time
            raise GenerationError(
                f"the GPU ran out of memory for the --hd pass at {plan.width}×{plan.height}; "
                "try without --hd, or a smaller --ar"
            ) from error

    # 3. upscale: resize 2×, then img2img tile by tile to add detail without a huge UNet input
    def _upscale(
        self, model: LoadedModel, job: Job, progress: ProgressFn, cancelled: CancelFn
    ) -> tuple[Image.Image, Plan]:
        assert job.source is not None
        source = self.store.load(job.source.job_id, job.source.index)
        size = upscale_size(source.size, self.config.limits)
        big = self._enlarge(source, size, model.pipe.device)
        tile = model.preset.base_resolution
        boxes = tile_boxes(big.size, tile)
        tile_size = (boxes[0][2] - boxes[0][0], boxes[0][3] - boxes[0][1])
        plan = make_plan(job, model.preset, tile_size, self.config.limits)
        crops = [big.crop(box) for box in boxes]
        seeds = [(job.seed + i) % (SEED_MAX + 1) for i in range(len(boxes))]
        tiles = self._generate(self._batch(model, job, plan, seeds, crops, progress, cancelled))
        return blend_tiles(big.size, boxes, tiles), plan

    def _enlarge(self, image: Image.Image, size: tuple[int, int], device: Any) -> Image.Image:
        """`image` at `size`: the GAN upscaler's output when one is configured (loaded once),
        resized; else Lanczos."""
        if self.config.upscaler and not self._gan_loaded:
            self._gan, self._gan_loaded = load_gan(self.config.upscaler, device), True
        if self._gan is not None:
            try:
                return self._gan(image).resize(size, Image.Resampling.LANCZOS)
            except torch.cuda.OutOfMemoryError:
                pass  # free memory below: the traceback holds tensors until the block is left
            logger.warning("the GAN upscaler ran out of memory; upscaling with Lanczos")
            free_memory()
        return image.resize(size, Image.Resampling.LANCZOS)

    # 4. edit: inpaint the canvas at the drawn size, then paste the kept pixels back
    def _edit(
        self, model: LoadedModel, job: Job, progress: ProgressFn, cancelled: CancelFn
    ) -> tuple[list[Image.Image], Plan, dict[str, Any]]:
        assert job.source is not None and job.edit is not None
        source = self.store.load(job.source.job_id, job.source.index)
        mask = None if job.edit.mask is None else edit.mask_png(self.inputs, job.edit.mask)
        try:
            work = edit.prepare(job.edit, source, mask, model.preset, self.config.limits)
        except CanvasError as error:
            raise GenerationError(str(error)) from error
        plan = make_plan(job, model.preset, work.layout.drawn, self.config.limits)
        canvas, drawn_mask = work.drawn_inputs()
        count = len(job.seeds)
        batch = self._batch(model, job, plan, job.seeds, [canvas] * count, progress, cancelled)
        generated = self._generate(replace(batch, masks=[drawn_mask] * count))
        images = [work.finish(image) for image in generated]
        return images, plan, {"edit": edit.metadata(job.edit, work.layout)}

    # 5. save every image and the grid with full parameters
    def save(self, drawing: Drawing) -> JobResult:
        """Write a drawn job's PNGs (with metadata) and its grid. CPU only, so the engine process
        runs it beside the next job's drawing (fpng holds the GIL while it encodes: ≤ 25 ms for
        a 2048² grid; Pillow, `[storage] png = "compact"`, releases it)."""
        job, model, plan, images = drawing.job, drawing.model, drawing.plan, drawing.images
        request, preset = job.request, model.preset
        positive, negative = conditioning.plain_texts(request, preset)
        width, height = images[0].size  # the final size (--hd: the second pass's)
        steps = plan.total_steps  # both passes with --hd; "hd_steps": those of the second
        base: dict[str, Any] = {
            "job_id": job.id,
            "kind": job.kind.value,
            "prompt": positive,
            "negative_prompt": negative,
            "raw_prompt": request.raw or request.prompt,
            "steps": steps,
            "guidance": plan.guidance,
            "sampler": plan.sampler,
            "model": model.preset.name,
            "model_source": public_source(model.preset),
            "model_revision": model.revision,
            "width": width,
            "height": height,
            "strength": plan.strength,
            "source": None if job.source is None else f"{job.source.job_id}/{job.source.index}",
            "chaos": request.chaos,
            "stylize": 0 if request.style_raw else request.stylize,
            "weird": request.weird,
            "tile": request.tile,
            "experimental": request.experimental,
            "draft": request.draft,
            "hd": plan.hd is not None,  # this image got the --hd pass (an imagine job with --hd)
            "hd_steps": None if plan.hd is None else plan.hd.denoise_steps,
            "hd_strength": None if plan.hd is None else plan.hd.strength,
            "style": conditioning.named_style(request, preset),  # None: no --style NAME here
            "personal_styles": list(conditioning.personal_texts(request)),
            "image_prompts": list(request.image_inputs),  # sha256 of each image's PNG
            "image_weight": request.image_weight if request.image_inputs else None,
            # "adapter": the IP-Adapter; "img2img": from the first image (the preset has none)
            "image_prompt_mode": (
                None if not request.image_inputs else "adapter" if preset.ip_adapter else "img2img"
            ),
            "style_refs": list(request.style_inputs),
            "style_ref_weights": list(request.style_input_weights),
            "style_weight": request.style_ref_weight if request.style_inputs else None,
            "object_refs": list(request.object_inputs),
            "object_weight": adapter.object_weight(request) if request.object_inputs else None,
            "loras": [{"name": use.name, "weight": use.weight} for use in request.loras],
            "edit": None,  # an edit job's operation (engine.edit.metadata)
            **drawing.extra,
        }
        seeds = job.seeds
        grid_file: Future[Path] | None = None
        if len(images) > 1:  # as many pixels as the four images: encoded beside them
            grid_meta = {**base, "seed": job.seed}
            grid_file = self._encoder.submit(
                self.store.save, make_grid(images), self.store.grid_path(job.id), grid_meta
            )
        try:
            paths = tuple(
                self.store.save(
                    image, self.store.image_path(job.id, i), {**base, "seed": seeds[i], "index": i}
                )
                for i, image in enumerate(images)
            )
        finally:  # never return (or raise) with the grid still being written
            grid = None if grid_file is None else grid_file.result()
        return JobResult(
            job_id=job.id,
            images=paths,
            grid=grid,
            seeds=seeds,
            width=width,
            height=height,
            model=model.preset.name,
            steps=steps,
            elapsed_s=drawing.elapsed_s,
        )


def _span(progress: ProgressFn, offset: int, steps: int, total: int) -> ProgressFn:
    """The progress of one pass of `steps` steps that runs after `offset` steps of `total`."""

    def report(step: int, pass_total: int, preview: bytes | None) -> None:
        progress(offset + step * steps // max(1, pass_total), total, preview)

    return report
