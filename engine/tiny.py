"""The built-in tiny models ("builtin:tiny", "builtin:tiny-xl"), built offline from configs, and
their adapters and LoRAs ("builtin:tiny-lora", "builtin:tiny-xl-lora").

Nothing can be downloaded in tests or on a fresh install, so these pipelines are made from code:
random (seeded) weights, real architectures shrunk to a few hundred kilobytes. They draw noise-like
pictures, but every code path of the real SD / SDXL pipelines runs, including the VAE's factor 8.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

# Imported from their modules: the top-level `diffusers` names are lazy and opaque to mypy.
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_inpaint import (
    StableDiffusionInpaintPipeline,
)
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import (
    StableDiffusionXLPipeline,
)
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl_inpaint import (
    StableDiffusionXLInpaintPipeline,
)
from diffusers.schedulers.scheduling_euler_discrete import EulerDiscreteScheduler
from safetensors.torch import save_file
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

logger = logging.getLogger(__name__)

KINDS = ("tiny", "tiny-xl")
SEED = 0  # every component is built right after torch.manual_seed(SEED): the same files each time
TEXT_HIDDEN = 32
IMAGE_EMBED = 32  # the tiny image encoder's projection width
MAX_TOKENS = 77
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def build_tiny(kind: str, directory: Path) -> Path:
    """Write the tiny pipeline `kind` ("tiny": SD, "tiny-xl": SDXL) into `directory`; return it."""
    if kind not in KINDS:
        raise ValueError(f"unknown tiny model {kind!r}; the choices are: {', '.join(KINDS)}")
    directory = Path(directory)
    pipe = _build_sdxl() if kind == "tiny-xl" else _build_sd()
    pipe.save_pretrained(directory, safe_serialization=True)
    return directory


def build_tiny_inpaint(kind: str, directory: Path) -> Path:
    """Write a tiny dedicated inpainting pipeline for `kind` into `directory`: the tiny model's
    components with a 9-channel UNet (latents, mask, masked image), as SD-inpainting has."""
    if kind not in KINDS:
        raise ValueError(f"unknown tiny model {kind!r}; the choices are: {', '.join(KINDS)}")
    base = _build_sdxl() if kind == "tiny-xl" else _build_sd()
    unet_config = dict(base.unet.config, in_channels=9)
    torch.manual_seed(SEED)
    unet = UNet2DConditionModel.from_config(unet_config).eval()
    components: dict[str, Any] = {**base.components, "unet": unet}
    cls = StableDiffusionXLInpaintPipeline if kind == "tiny-xl" else StableDiffusionInpaintPipeline
    directory = Path(directory)
    cls(**components).save_pretrained(directory, safe_serialization=True)
    return directory


def build_tiny_adapter(kind: str, directory: Path) -> Path:
    """Write an IP-Adapter for the tiny pipeline `kind` into `directory`, laid out as the
    published ones are: `ip-adapter.safetensors` (diffusers' "image_proj." / "ip_adapter." keys)
    and `image_encoder/` (a CLIP vision model with projection)."""
    if kind not in KINDS:
        raise ValueError(f"unknown tiny model {kind!r}; the choices are: {', '.join(KINDS)}")
    directory = Path(directory)
    cross = 2 * TEXT_HIDDEN if kind == "tiny-xl" else TEXT_HIDDEN
    unet = _unet(cross_attention_dim=cross)
    torch.manual_seed(SEED)
    weights: dict[str, torch.Tensor] = {
        # ImageProjection: the image embedding → 4 tokens of the text encoder's width
        "image_proj.proj.weight": torch.randn(4 * cross, IMAGE_EMBED) * 0.2,
        "image_proj.proj.bias": torch.zeros(4 * cross),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    # diffusers numbers the cross-attention layers 1, 3, 5, … in attn_processors' order
    key = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        block = int(name.split(".")[1]) if not name.startswith("mid_block") else -1
        channels = unet.config["block_out_channels"]
        if name.startswith("up_blocks"):
            hidden = list(reversed(channels))[block]
        else:
            hidden = channels[-1] if block < 0 else channels[block]
        for which in ("to_k_ip", "to_v_ip"):
            weights[f"ip_adapter.{key}.{which}.weight"] = torch.randn(hidden, cross) * 0.5
        key += 2
    directory.mkdir(parents=True, exist_ok=True)
    save_file(weights, directory / "ip-adapter.safetensors")
    config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=37,
        projection_dim=IMAGE_EMBED,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
    )
    torch.manual_seed(SEED)
    CLIPVisionModelWithProjection(config).eval().save_pretrained(
        directory / "image_encoder", safe_serialization=True
    )
    return directory


LORA_FILE = "pytorch_lora_weights.safetensors"  # diffusers' name for a LoRA's weights


def build_tiny_lora(kind: str, directory: Path) -> Path:
    """Write a LoRA for the tiny pipeline `kind` into `directory` (LORA_FILE, in diffusers'
    layout): rank 4 on the UNet's attention and the text encoders' q/v projections, with random
    (seeded) weights large enough to change every picture."""
    if kind not in KINDS:
        raise ValueError(f"unknown tiny model {kind!r}; the choices are: {', '.join(KINDS)}")
    return write_random_lora(_build_sdxl() if kind == "tiny-xl" else _build_sd(), directory)


UNET_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")  # what LoRAs for SD / SDXL patch
TEXT_LORA_TARGETS = ("q_proj", "v_proj")


def write_random_lora(pipe: Any, directory: Path, rank: int = 4) -> Path:
    """Write a LoRA of rank `rank` with random (seeded) weights for `pipe` (either family) into
    `directory` (LORA_FILE): what real ones patch, the UNet's attention and the text encoders'
    q/v projections. `pipe` is left as it was."""
    torch.manual_seed(SEED)
    layers = {
        "unet_lora_layers": _random_lora(pipe.unet, UNET_LORA_TARGETS, rank),
        "text_encoder_lora_layers": _random_lora(pipe.text_encoder, TEXT_LORA_TARGETS, rank),
    }
    if getattr(pipe, "text_encoder_2", None) is not None:
        layers["text_encoder_2_lora_layers"] = _random_lora(
            pipe.text_encoder_2, TEXT_LORA_TARGETS, rank
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    family: Any = type(pipe)  # both families' pipelines have the class method
    family.save_lora_weights(directory, weight_name=LORA_FILE, **layers)
    return directory


def _random_lora(
    model: torch.nn.Module, targets: Sequence[str], rank: int
) -> dict[str, torch.Tensor]:
    """peft's keys (`<module>.lora_A.weight`, `.lora_B.weight`) for each Linear named `targets`,
    scaled so that the patch is about as large as what it patches."""
    weights = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name.endswith(tuple(f".{t}" for t in targets)):
            out_features, in_features = module.weight.shape
            down = torch.randn(rank, in_features) / in_features**0.5
            up = torch.randn(out_features, rank) / rank**0.5
            weights[f"{name}.lora_A.weight"] = down
            weights[f"{name}.lora_B.weight"] = up
    return weights


def ensure_tiny(kind: str, models_dir: Path) -> Path:
    """`models_dir / kind`, built on first use."""
    return _ensure(Path(models_dir) / kind, "model_index.json", lambda d: build_tiny(kind, d))


def ensure_tiny_adapter(kind: str, models_dir: Path) -> Path:
    """`models_dir / <kind>-ip-adapter`, built on first use."""
    target = Path(models_dir) / f"{kind}-ip-adapter"
    return _ensure(target, "ip-adapter.safetensors", lambda d: build_tiny_adapter(kind, d))


def ensure_tiny_lora(kind: str, models_dir: Path) -> Path:
    """`models_dir / <kind>-lora`, built on first use."""
    target = Path(models_dir) / f"{kind}-lora"
    return _ensure(target, LORA_FILE, lambda d: build_tiny_lora(kind, d))


def _ensure(target: Path, marker: str, build: Callable[[Path], Path]) -> Path:
    """`target`, built by `build` unless its `marker` file is there.

    Built in a temporary sibling folder and renamed into place, so a crash or a concurrent build
    never leaves a half-written model that later loads would trip over.
    """
    if (target / marker).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(staging)
        if target.exists() and not (target / marker).is_file():
            shutil.rmtree(target)  # an incomplete leftover of an older version
        staging.rename(target)
        logger.info("built %s", target)
    except OSError:
        if not (target / marker).is_file():
            raise
        # Another process renamed its build into place first; its copy is identical.
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _build_sd() -> DiffusionPipeline:
    # Components go in as a dict: diffusers' constructor annotations are stricter than its code
    # (e.g. `scheduler: KarrasDiffusionSchedulers`, an enum) and would fail mypy.
    components: dict[str, Any] = {
        "vae": _vae(),
        "text_encoder": _text_encoder(CLIPTextModel),
        "tokenizer": _tokenizer(),
        "unet": _unet(cross_attention_dim=TEXT_HIDDEN),
        "scheduler": _scheduler(),
        "safety_checker": None,
        "feature_extractor": None,
    }
    return StableDiffusionPipeline(**components, requires_safety_checker=False)


def _build_sdxl() -> DiffusionPipeline:
    tokenizer = _tokenizer()
    time_dim = 8
    components: dict[str, Any] = {
        "vae": _vae(),
        "text_encoder": _text_encoder(CLIPTextModel),
        "text_encoder_2": _text_encoder(CLIPTextModelWithProjection),
        "tokenizer": tokenizer,
        "tokenizer_2": tokenizer,
        "unet": _unet(
            # SDXL concatenates the penultimate hidden states of both encoders...
            cross_attention_dim=2 * TEXT_HIDDEN,
            # ...and adds encoder 2's pooled embedding plus 6 size/crop numbers, each embedded
            # with `time_dim` sinusoids.
            addition_embed_type="text_time",
            addition_time_embed_dim=time_dim,
            projection_class_embeddings_input_dim=TEXT_HIDDEN + 6 * time_dim,
        ),
        "scheduler": _scheduler(),
    }
    return StableDiffusionXLPipeline(**components)


def _tokenizer() -> CLIPTokenizer:
    """A byte-level CLIP tokenizer without merges: every character is a token, none is unknown."""
    with tempfile.TemporaryDirectory() as tmp:
        return CLIPTokenizer.from_pretrained(_write_tokenizer_files(Path(tmp)))


def _write_tokenizer_files(files: Path) -> Path:
    symbols = list(_bytes_to_unicode())
    vocab = symbols + [s + "</w>" for s in symbols] + [BOS, EOS]  # CLIP's order: specials last
    (files / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (files / "merges.txt").write_text("#version: 0.2\n")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    config = {"model_max_length": MAX_TOKENS, **special}
    (files / "tokenizer_config.json").write_text(json.dumps(config))
    return files


def _bytes_to_unicode() -> dict[str, int]:
    """CLIP / GPT-2's map from each of the 256 bytes to a printable character (symbol → byte).

    Printable bytes stand for themselves; the others get the code points from 256 on.
    """
    byte_values = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    byte_values += range(ord("®"), ord("ÿ") + 1)
    code_points = list(byte_values)
    unprintable = [b for b in range(256) if b not in byte_values]
    byte_values += unprintable
    code_points += range(256, 256 + len(unprintable))
    return {chr(c): b for b, c in zip(byte_values, code_points, strict=True)}


def _text_encoder(cls: type[CLIPTextModel] | type[CLIPTextModelWithProjection]) -> torch.nn.Module:
    config = CLIPTextConfig(
        vocab_size=514,
        hidden_size=TEXT_HIDDEN,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        projection_dim=TEXT_HIDDEN,
        bos_token_id=512,
        eos_token_id=513,  # the pooled output is read at the first EOS token
        pad_token_id=513,
        hidden_act="gelu",
    )
    torch.manual_seed(SEED)
    return cls(config).eval()


def _unet(cross_attention_dim: int, **extra: Any) -> UNet2DConditionModel:
    torch.manual_seed(SEED)
    return UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        norm_num_groups=2,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=2,
        cross_attention_dim=cross_attention_dim,
        **extra,
    ).eval()


def _vae() -> AutoencoderKL:
    torch.manual_seed(SEED)
    # 4 blocks: the latents are 1/8 of the image as in real models (and code assuming 8 is tested).
    return AutoencoderKL(
        block_out_channels=(4, 4, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        sample_size=128,
    ).eval()


def _scheduler() -> EulerDiscreteScheduler:
    # The scheduler config that SD 1.5 / SDXL ship with.
    return EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        timestep_spacing="leading",
        steps_offset=1,
    )
