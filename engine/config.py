"""Engine configuration: model presets and the [engine] / [storage] tables of config.toml.

Read once at start-up (see `bot.config.load_config`) and passed down. Pure Python.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from engine.prompt.flags import parse_aspect
from engine.prompt.request import LORA_WEIGHT, NAMED_STYLES, SAMPLERS, normalize_version

FAMILIES = ("sd", "sdxl")
FAMILY_NAMES = {"sd": "SD 1.x/2.x", "sdxl": "SDXL"}  # for messages
BUILTIN_PREFIX = "builtin:"
RANDOM_SDXL = "builtin:sdxl-random"  # SDXL's architecture, random weights: GPU timing offline
DEVICES = ("auto", "cuda", "cpu", "mps")
DTYPES = ("auto", "float16", "bfloat16", "float32")
# /describe's captioning model: a hub id (BLIP large: about 1.9 GB of weights, 470 M parameters),
# a local directory, or the tiny one built offline (random weights, for tests).
DEFAULT_CAPTIONER = "Salesforce/blip-image-captioning-large"
TINY_CAPTIONER = "builtin:tiny-captioner"


class ConfigError(ValueError):
    """A bad config value; the message names the key."""


@dataclass(frozen=True)
class IPAdapterFiles:
    source: str  # a hub repo, a local directory, or builtin:tiny / builtin:tiny-xl
    weights: str  # the weights file inside it
    image_encoder: str  # the image encoder's folder inside it


@dataclass(frozen=True)
class LoraPreset:
    """[loras.NAME]: a LoRA a prompt may pick with `--lora NAME[:WEIGHT]` (engine/lora.py)."""

    name: str
    source: str  # a hub id, a local .safetensors file or directory, or builtin:tiny(-xl)-lora
    weight_name: str | None = None  # the file in a hub repo or directory; None: its only one
    weight: float = 1.0  # without :WEIGHT
    trigger: str = ""  # words the LoRA was trained on, added to the prompt
    family: str | None = None  # the presets it fits ("sd", "sdxl"); None: tried on any


LORA_NAME = re.compile(r"[a-z0-9_-]{1,40}")  # what --lora reads (engine/prompt/flags.py)


def looks_like_path(source: str) -> bool:
    """Whether a model's or LoRA's `source` is meant as a local path: a hub id is "org/name";
    anything absolute, relative-looking or deeper is a path."""
    return source.startswith(("/", ".", "~", "\\")) or source.count("/") > 1 or "\\" in source


@dataclass(frozen=True)
class ModelPreset:
    name: str
    source: str  # a hub id ("org/name"), a local directory, or "builtin:tiny" / "builtin:tiny-xl"
    family: str  # "sd" (SD 1.x/2.x) or "sdxl"
    base_resolution: int  # an image at --ar 1:1 is base × base pixels
    steps: int
    guidance: float
    sampler: str
    revision: str | None = None
    variant: str | None = None  # e.g. "fp16" weights on the hub
    vae: str | None = None  # replace the VAE (e.g. an fp16-safe one)
    # On CUDA, this preset's precision ("float16" with an fp16-safe VAE, …); None: [engine] dtype
    dtype: str | None = None
    preview: str | None = (
        None  # a TAESD repo/directory for cheap previews; else a linear projection
    )
    style: str = ""  # the "house style" that --stylize weighs in; --style raw leaves it out
    # (name, text) for `--style NAME` (niji's cute, expressive, scenic, original)
    styles: tuple[tuple[str, str], ...] = ()
    draft: str | None = None  # the preset `--draft` runs on (a distilled one); None: fewer steps
    # The IP-Adapter behind image prompts, --sref and --oref. None: image prompts run as
    # img2img from the first image, references are ignored.
    ip_adapter: IPAdapterFiles | None = None
    # A dedicated inpainting model (9-channel UNet: a hub id or a local directory) for Zoom Out,
    # Pan, Make Square and Vary (Region); None: the base model inpaints (engine.edit).
    inpaint: str | None = None

    @property
    def is_builtin(self) -> bool:
        return self.source.startswith(BUILTIN_PREFIX)

    def style_text(self, name: str) -> str | None:
        """The text of `--style NAME` on this preset, or None when it has no such style."""
        return dict(self.styles).get(name)


# Each family's published IP-Adapter (h94/IP-Adapter): presets of that family get it unless they
# say otherwise. SDXL's uses the ViT-bigG image encoder, SD 1.5's the ViT-H one.
FAMILY_ADAPTERS: dict[str, IPAdapterFiles] = {
    "sdxl": IPAdapterFiles(
        "h94/IP-Adapter", "sdxl_models/ip-adapter_sdxl.safetensors", "sdxl_models/image_encoder"
    ),
    "sd": IPAdapterFiles(
        "h94/IP-Adapter", "models/ip-adapter_sd15.safetensors", "models/image_encoder"
    ),
}


def _tiny_adapter(kind: str) -> IPAdapterFiles:
    return IPAdapterFiles(f"{BUILTIN_PREFIX}{kind}", "ip-adapter.safetensors", "image_encoder")


# For `imagine-bot bench --model sdxl-random` (and `[models.NAME] source = "builtin:sdxl-random"`):
# not offered to users, since it draws noise.
RANDOM_SDXL_PRESET = ModelPreset(
    name="sdxl-random",
    source=RANDOM_SDXL,
    family="sdxl",
    base_resolution=1024,
    steps=30,
    guidance=6.0,
    sampler="euler",  # diffusers' own default for SDXL: the same work as stock diffusers
)

# The presets every install has; [models.NAME] tables add to them or override them by name.
DEFAULT_PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in (
        ModelPreset(
            name="sdxl",
            source="stabilityai/stable-diffusion-xl-base-1.0",
            family="sdxl",
            base_resolution=1024,
            steps=30,
            guidance=6.0,
            sampler="dpmpp_2m_karras",
            variant="fp16",
            vae="madebyollin/sdxl-vae-fp16-fix",
            preview="madebyollin/taesdxl",
            style="highly detailed, beautiful lighting, rich colors, masterful composition",
            ip_adapter=FAMILY_ADAPTERS["sdxl"],
        ),
        ModelPreset(
            name="sdxl-turbo",
            source="stabilityai/sdxl-turbo",
            family="sdxl",
            base_resolution=512,
            steps=4,
            guidance=0.0,
            sampler="euler_a",
            variant="fp16",
            preview="madebyollin/taesdxl",
            style="highly detailed, beautiful lighting",
            ip_adapter=FAMILY_ADAPTERS["sdxl"],
        ),
        ModelPreset(
            name="niji",
            source="cagliostrolab/animagine-xl-3.1",
            family="sdxl",
            base_resolution=1024,
            steps=28,
            guidance=7.0,
            sampler="euler_a",
            preview="madebyollin/taesdxl",
            style="masterpiece, best quality, anime illustration",
            styles=(
                ("cute", "cute, kawaii, adorable, soft pastel colors, chibi proportions"),
                ("expressive", "expressive, dynamic pose, bold lines, dramatic lighting, vivid"),
                ("scenic", "scenic, cinematic wide shot, detailed background, atmospheric light"),
                ("original", "classic anime style, cel shading, clean line art"),
            ),
            ip_adapter=FAMILY_ADAPTERS["sdxl"],
        ),
        ModelPreset(
            name="tiny",
            source="builtin:tiny",
            family="sd",
            base_resolution=128,
            steps=8,
            guidance=5.0,
            sampler="euler",
            style="highly detailed, beautiful lighting",
            ip_adapter=_tiny_adapter("tiny"),
        ),
        ModelPreset(
            name="tiny-xl",
            source="builtin:tiny-xl",
            family="sdxl",
            base_resolution=128,
            steps=8,
            guidance=5.0,
            sampler="euler",
            style="highly detailed, beautiful lighting",
            ip_adapter=_tiny_adapter("tiny-xl"),
        ),
    )
}


@dataclass(frozen=True)
class JobLimits:
    """The engine's share of [limits]: what no job may exceed, whatever its flags and buttons."""

    max_steps: int = 150  # denoising steps of one pass, --steps × --q (× --draft) included
    # pixels of any image a job makes (or draws): room for the 2× upscale of SDXL's largest
    # bucket (1.15 × 1024² pixels), not for an upscale of an upscale (4096²)
    max_pixels: int = 5_000_000


COMPILE_MODES = ("off", "regional")
PNG_ENCODERS = ("fast", "compact")  # [storage] png: engine.storage says what each costs


@dataclass(frozen=True)
class SpeedConfig:
    """The CUDA speed switches of [engine] (engine/speed.py says what each does)."""

    tf32: bool = True
    channels_last: bool = True
    fuse_qkv: bool = False
    compile: str = "off"  # one of COMPILE_MODES
    # With compile on: the aspect ratios (W, H) of the default preset compiled in the background
    # after start-up, while no job waits (so the first job at one of them does not compile)
    warm_up: tuple[tuple[int, int], ...] = ((1, 1), (16, 9), (9, 16), (3, 2), (2, 3))


@dataclass(frozen=True)
class EngineConfig:
    model: str = "sdxl"  # the default preset
    device: str = "auto"
    dtype: str = "auto"  # auto: bfloat16 on CUDA, float32 on CPU
    speed: SpeedConfig = field(default_factory=SpeedConfig)  # CUDA only
    storage: Path = Path("./data")  # images under storage/images, SQLite at storage/bot.sqlite3
    keep_days: float = 0.0  # images older than this are deleted (0: kept forever)
    max_gb: float = 0.0  # the oldest images are deleted past this many GB in all (0: no limit)
    png: str = "fast"  # [storage] png, one of PNG_ENCODERS
    cache_dir: Path | None = None  # hub downloads and built-in models; None: storage/models
    preload: bool = True  # load the default preset when the engine process starts
    preview_every: int = 1  # a preview may come on every N-th step (0: never)…
    preview_interval_s: float = 2.0  # …and at most once this often (the bot's edit interval)
    job_timeout_s: float = 900.0  # a job running longer is failed and the process restarted
    load_timeout_s: float = 1800.0  # loading a job's model (a download, even) may take this long
    # On SIGTERM the running job may finish for this long (Docker kills after 10 s by default)
    shutdown_grace_s: float = 8.0
    upscaler: Path | None = None  # a GAN upscaler's weights (needs the `gan` extra)
    captioner: str = DEFAULT_CAPTIONER  # /describe's model (engine/describe.py), loaded lazily
    threads: int = 0  # torch CPU threads in the engine process; 0: torch's default
    # Queued imagine jobs alike enough (engine.batching) are drawn in one batch of at most this
    # many pixels in all (images × width × height); 0 (the default): one job at a time. It pays
    # for small images (CPU, tiny model: 8 grids 2.7× faster at 128², 2× at 256², with 1 Mpx);
    # the presets' grids (4 × 512² and up) already fill 1 Mpx alone: measure before raising it.
    batch_pixels: int = 0
    # presets kept loaded at once; the least recently used goes. 1: two SDXL presets need
    # ~14 GB of GPU memory, more than most single GPUs have beside the work itself
    max_loaded_models: int = 1
    # LoRAs kept loaded per preset; the least recently used goes (each takes GPU memory: an
    # SDXL one of rank 32 about 0.1–0.2 GB)
    max_loaded_loras: int = 8
    presets: Mapping[str, ModelPreset] = field(default_factory=lambda: dict(DEFAULT_PRESETS))
    # [versions]: a Midjourney version ("6.1") → the preset `--v 6.1` runs on; unlisted: default
    versions: Mapping[str, str] = field(default_factory=dict)
    loras: Mapping[str, LoraPreset] = field(default_factory=dict)  # [loras.NAME]
    limits: JobLimits = field(default_factory=JobLimits)

    @property
    def images_dir(self) -> Path:
        return self.storage / "images"

    @property
    def inputs_dir(self) -> Path:
        """Image prompts users gave, by content (engine.storage.InputStore)."""
        return self.storage / "inputs"

    @property
    def models_dir(self) -> Path:
        return self.cache_dir or self.storage / "models"

    def preset(self, name: str | None) -> ModelPreset:
        """The preset called `name` (the default when None); ConfigError names the choices."""
        key = (name or self.model).lower()
        if key not in self.presets:
            raise ConfigError(
                f"unknown model {key!r}; the presets are: {', '.join(sorted(self.presets))}"
            )
        return self.presets[key]

    def with_model(self, name: str) -> EngineConfig:
        self.preset(name)  # validate
        return replace(self, model=name.lower())


T = TypeVar("T")


def take(table: Mapping[str, Any], key: str, kind: type[T], default: T, where: str) -> T:
    """table[key] checked against `kind`; the error names `where.key`."""
    if key not in table:
        return default
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}.{key} must be {kind.__name__}, got {value!r}")
    return value


def check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown key {where}.{unknown[0]}; "
            f"the keys of [{where}] are: {', '.join(sorted(allowed))}"
        )


def _choice(value: str, choices: tuple[str, ...], where: str) -> str:
    if value not in choices:
        raise ConfigError(f"{where} must be one of {', '.join(choices)}, got {value!r}")
    return value


def parse_preset(name: str, table: Mapping[str, Any], base: ModelPreset | None) -> ModelPreset:
    where = f"models.{name}"
    fields = {
        "source", "family", "base_resolution", "steps", "guidance", "sampler",
        "revision", "variant", "vae", "dtype", "preview", "style", "styles", "draft",
        "ip_adapter", "ip_adapter_weights", "image_encoder", "inpaint",
    }  # fmt: skip
    check_keys(table, fields, where)
    if base is None and "source" not in table:
        raise ConfigError(
            f"{where}.source is required (a hub id, a local directory or builtin:tiny)"
        )
    if base is None and "family" not in table:
        raise ConfigError(f"{where}.family is required: one of {', '.join(FAMILIES)}")
    if base is None:  # a new preset gets its family's published adapter unless it says
        family = _choice(take(table, "family", str, "", where), FAMILIES, f"{where}.family")
        base = ModelPreset(name, "", family, 512, 30, 7.0, "dpmpp_2m_karras")
        base = replace(base, ip_adapter=FAMILY_ADAPTERS[family])

    def opt(key: str, current: str | None) -> str | None:
        return take(table, key, str, current or "", where) or None

    preset = ModelPreset(
        name=name,
        source=take(table, "source", str, base.source, where),
        family=_choice(take(table, "family", str, base.family, where), FAMILIES, f"{where}.family"),
        base_resolution=take(table, "base_resolution", int, base.base_resolution, where),
        steps=take(table, "steps", int, base.steps, where),
        guidance=take(table, "guidance", float, base.guidance, where),
        sampler=_choice(
            take(table, "sampler", str, base.sampler, where), SAMPLERS, f"{where}.sampler"
        ),
        revision=opt("revision", base.revision),
        variant=opt("variant", base.variant),
        vae=opt("vae", base.vae),
        dtype=_preset_dtype(opt("dtype", base.dtype), where),
        preview=opt("preview", base.preview),
        style=take(table, "style", str, base.style, where),
        styles=_styles(table, base.styles, where),
        draft=(opt("draft", base.draft) or "").lower() or None,
        ip_adapter=_ip_adapter(table, base.ip_adapter, where),
        inpaint=opt("inpaint", base.inpaint),
    )
    if preset.base_resolution < 64 or preset.base_resolution % 64:
        raise ConfigError(
            f"{where}.base_resolution must be a multiple of 64, got {preset.base_resolution}"
        )
    if not 1 <= preset.steps <= 150:
        raise ConfigError(f"{where}.steps must be from 1 to 150, got {preset.steps}")
    if not 0 <= preset.guidance <= 30:
        raise ConfigError(f"{where}.guidance must be from 0 to 30, got {preset.guidance}")
    return preset


def _ip_adapter(
    table: Mapping[str, Any], base: IPAdapterFiles | None, where: str
) -> IPAdapterFiles | None:
    """ip_adapter (a hub repo, a directory; "" for none), ip_adapter_weights, image_encoder."""
    source = take(table, "ip_adapter", str, base.source if base else "", where)
    weights = take(table, "ip_adapter_weights", str, base.weights if base else "", where)
    encoder = take(table, "image_encoder", str, base.image_encoder if base else "", where)
    if not source:
        return None
    if not (weights and encoder):
        raise ConfigError(
            f"{where}.ip_adapter needs ip_adapter_weights (its weights file) and image_encoder "
            '(its image encoder\'s folder); set ip_adapter = "" to go without'
        )
    return IPAdapterFiles(source, weights, encoder)


def _styles(
    table: Mapping[str, Any], current: tuple[tuple[str, str], ...], where: str
) -> tuple[tuple[str, str], ...]:
    """`styles = { cute = "…", … }`: the texts of `--style NAME`, for niji's style names."""
    styles = take(table, "styles", dict, dict(current), where)
    for name, text in styles.items():
        if name not in NAMED_STYLES:
            raise ConfigError(
                f"{where}.styles.{name} is not a style name; they are: {', '.join(NAMED_STYLES)}"
            )
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"{where}.styles.{name} must be a non-empty string, got {text!r}")
    return tuple(sorted(styles.items()))


def _preset_dtype(value: str | None, where: str) -> str | None:
    """A preset's own precision: one of DTYPES but "auto" (what leaving it out means)."""
    if value is None:
        return None
    return _choice(value, tuple(d for d in DTYPES if d != "auto"), f"{where}.dtype")


def _aspects(values: list[Any]) -> tuple[tuple[int, int], ...]:
    """[engine] warm_up = ["1:1", "16:9"]: aspect ratios as --ar takes them."""
    aspects = []
    for value in values:
        try:
            if not isinstance(value, str):
                raise ValueError(value)
            aspects.append(parse_aspect(value))
        except ValueError:
            raise ConfigError(
                f"engine.warm_up holds {value!r}; it takes aspect ratios as --ar does, "
                'whole numbers from 1:8 to 8:1 (like ["1:1", "16:9"])'
            ) from None
    return tuple(dict.fromkeys(aspects))


def _versions(table: Mapping[str, Any], presets: Mapping[str, ModelPreset]) -> dict[str, str]:
    """[versions] "6.1" = "sdxl": which preset a Midjourney version runs on."""
    versions: dict[str, str] = {}
    for key, name in table.items():
        version = normalize_version(str(key))
        if version is None:
            raise ConfigError(
                f'versions.{key} is not a Midjourney version (a number from 1 to 8.1, like "6.1")'
            )
        if not isinstance(name, str) or name.lower() not in presets:
            raise ConfigError(
                f"versions.{key} must name a preset ({', '.join(sorted(presets))}), got {name!r}"
            )
        versions[version] = name.lower()
    return versions


def _loras(tables: Mapping[str, Any]) -> dict[str, LoraPreset]:
    """[loras.NAME] tables: source (required), weight_name, weight, trigger, family."""
    loras: dict[str, LoraPreset] = {}
    for name, table in tables.items():
        where = f"loras.{name}"
        if not isinstance(table, Mapping):
            raise ConfigError(f"[{where}] must be a table")
        key = name.lower()
        if not LORA_NAME.fullmatch(key):
            raise ConfigError(
                f"[{where}]: a LoRA's name is what --lora takes: letters, digits, - and _ "
                "(at most 40)"
            )
        check_keys(table, {"source", "weight_name", "weight", "trigger", "family"}, where)
        source = take(table, "source", str, "", where)
        if not source:
            raise ConfigError(
                f"{where}.source is required (a hub id, a local .safetensors file or directory, "
                "or builtin:tiny-lora)"
            )
        if looks_like_path(source) and not Path(source).expanduser().exists():
            raise ConfigError(f"{where}.source: there is no file or folder {source}")
        weight = take(table, "weight", float, 1.0, where)
        if abs(weight) > LORA_WEIGHT:
            raise ConfigError(
                f"{where}.weight must be from -{LORA_WEIGHT:g} to {LORA_WEIGHT:g}, got {weight:g}"
            )
        family = take(table, "family", str, "", where)
        loras[key] = LoraPreset(
            name=key,
            source=source,
            weight_name=take(table, "weight_name", str, "", where) or None,
            weight=weight,
            trigger=" ".join(take(table, "trigger", str, "", where).split()),
            family=_choice(family, FAMILIES, f"{where}.family") if family else None,
        )
    return loras


def parse_engine_config(data: Mapping[str, Any], base_dir: Path = Path()) -> EngineConfig:
    """Build the engine's config from the whole parsed TOML document.

    Relative paths are taken from `base_dir` (the config file's folder).
    """
    engine = data.get("engine", {})
    storage = data.get("storage", {})
    models = data.get("models", {})
    versions = data.get("versions", {})
    loras = data.get("loras", {})
    limits = data.get("limits", {})
    tables = (
        ("engine", engine),
        ("storage", storage),
        ("models", models),
        ("versions", versions),
        ("loras", loras),
        ("limits", limits),
    )
    for key, value in tables:
        if not isinstance(value, Mapping):
            raise ConfigError(f"[{key}] must be a table")
    check_keys(
        engine,
        {
            "model",
            "device",
            "dtype",
            "cache_dir",
            "preload",
            "preview_every",
            "preview_interval",
            "job_timeout",
            "load_timeout",
            "shutdown_grace",
            "upscaler",
            "captioner",
            "threads",
            "batch_pixels",
            "max_loaded_models",
            "max_loaded_loras",
            "tf32",
            "channels_last",
            "fuse_qkv",
            "compile",
            "warm_up",
        },
        "engine",
    )
    check_keys(storage, {"path", "keep_days", "max_gb", "png"}, "storage")

    presets = dict(DEFAULT_PRESETS)
    for name, table in models.items():
        if not isinstance(table, Mapping):
            raise ConfigError(f"[models.{name}] must be a table")
        key = name.lower()
        presets[key] = parse_preset(key, table, presets.get(key))

    def path(value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else base_dir / p

    cache_dir = take(engine, "cache_dir", str, "", "engine")
    upscaler = take(engine, "upscaler", str, "", "engine")
    config = EngineConfig(
        model=take(engine, "model", str, "sdxl", "engine").lower(),
        device=_choice(take(engine, "device", str, "auto", "engine"), DEVICES, "engine.device"),
        dtype=_choice(take(engine, "dtype", str, "auto", "engine"), DTYPES, "engine.dtype"),
        storage=path(take(storage, "path", str, "./data", "storage")),
        keep_days=take(storage, "keep_days", float, 0.0, "storage"),
        max_gb=take(storage, "max_gb", float, 0.0, "storage"),
        png=_choice(take(storage, "png", str, "fast", "storage"), PNG_ENCODERS, "storage.png"),
        cache_dir=path(cache_dir) if cache_dir else None,
        preload=take(engine, "preload", bool, True, "engine"),
        preview_every=take(engine, "preview_every", int, 1, "engine"),
        preview_interval_s=take(engine, "preview_interval", float, 2.0, "engine"),
        job_timeout_s=take(engine, "job_timeout", float, 900.0, "engine"),
        load_timeout_s=take(engine, "load_timeout", float, 1800.0, "engine"),
        shutdown_grace_s=take(engine, "shutdown_grace", float, 8.0, "engine"),
        upscaler=path(upscaler) if upscaler else None,
        captioner=_captioner(take(engine, "captioner", str, DEFAULT_CAPTIONER, "engine")),
        threads=take(engine, "threads", int, 0, "engine"),
        batch_pixels=take(engine, "batch_pixels", int, 0, "engine"),
        speed=SpeedConfig(
            tf32=take(engine, "tf32", bool, True, "engine"),
            channels_last=take(engine, "channels_last", bool, True, "engine"),
            fuse_qkv=take(engine, "fuse_qkv", bool, False, "engine"),
            compile=_choice(
                take(engine, "compile", str, "off", "engine"), COMPILE_MODES, "engine.compile"
            ),
            warm_up=_aspects(take(engine, "warm_up", list, [], "engine"))
            if "warm_up" in engine
            else SpeedConfig.warm_up,
        ),
        max_loaded_models=take(engine, "max_loaded_models", int, 1, "engine"),
        max_loaded_loras=take(engine, "max_loaded_loras", int, 8, "engine"),
        presets=presets,
        versions=_versions(versions, presets),
        loras=_loras(loras),
        limits=_limits(limits),
    )
    if config.model not in presets:
        raise ConfigError(
            f"engine.model is {config.model!r}, which is not a preset; "
            f"the presets are: {', '.join(sorted(presets))}"
        )
    if config.preview_every < 0:
        raise ConfigError(f"engine.preview_every must be 0 or more, got {config.preview_every}")
    if config.preview_interval_s < 0:
        raise ConfigError(
            f"engine.preview_interval must be 0 or more seconds, got {config.preview_interval_s}"
        )
    if config.max_loaded_models < 1:
        raise ConfigError(
            f"engine.max_loaded_models must be 1 or more, got {config.max_loaded_models}"
        )
    if config.max_loaded_loras < 1:
        raise ConfigError(
            f"engine.max_loaded_loras must be 1 or more, got {config.max_loaded_loras}"
        )
    if config.threads < 0:
        raise ConfigError(f"engine.threads must be 0 or more, got {config.threads}")
    if config.batch_pixels < 0:
        raise ConfigError(
            f"engine.batch_pixels must be 0 (one job at a time) or more, got {config.batch_pixels}"
        )
    if config.job_timeout_s <= 0:
        raise ConfigError(f"engine.job_timeout must be positive, got {config.job_timeout_s}")
    if config.load_timeout_s <= 0:
        raise ConfigError(f"engine.load_timeout must be positive, got {config.load_timeout_s}")
    for key, value in (("keep_days", config.keep_days), ("max_gb", config.max_gb)):
        if value < 0:
            raise ConfigError(f"storage.{key} must be 0 (no limit) or more, got {value:g}")
    if config.shutdown_grace_s < 0:
        raise ConfigError(f"engine.shutdown_grace must be 0 or more, got {config.shutdown_grace_s}")
    for preset in presets.values():
        if preset.draft is not None and preset.draft not in presets:
            raise ConfigError(
                f"models.{preset.name}.draft is {preset.draft!r}, which is not a preset; "
                f"the presets are: {', '.join(sorted(presets))}"
            )
    return config


def _captioner(source: str) -> str:
    source = source.strip()
    if not source:
        raise ConfigError(
            f"engine.captioner must name a captioning model (a hub id such as {DEFAULT_CAPTIONER}, "
            f"a local directory, or {TINY_CAPTIONER})"
        )
    if source.startswith(BUILTIN_PREFIX) and source != TINY_CAPTIONER:
        raise ConfigError(
            f"engine.captioner is {source!r}; the built-in captioner is {TINY_CAPTIONER}"
        )
    return source


ENGINE_LIMITS = ("max_steps", "max_pixels")  # the keys of [limits] the engine reads
MIN_PIXELS = 256 * 256


def _limits(table: Mapping[str, Any]) -> JobLimits:
    """[limits] max_steps and max_pixels (the bot reads the table's other keys)."""
    default = JobLimits()
    limits = JobLimits(
        max_steps=take(table, "max_steps", int, default.max_steps, "limits"),
        max_pixels=take(table, "max_pixels", int, default.max_pixels, "limits"),
    )
    if not 1 <= limits.max_steps <= 1000:
        raise ConfigError(f"limits.max_steps must be from 1 to 1000, got {limits.max_steps}")
    if limits.max_pixels < MIN_PIXELS:
        raise ConfigError(
            f"limits.max_pixels must be {MIN_PIXELS} (256×256) or more, got {limits.max_pixels}"
        )
    return limits
