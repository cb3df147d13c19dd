"""`builtin:sdxl-random`: SDXL's full architecture from its published configs, random weights.

For timing on a GPU without the hub (the GPU machines here have no network): every layer and
shape of stabilityai/stable-diffusion-xl-base-1.0 (UNet 2.6 B parameters, both text encoders,
the VAE), so a grid costs what a real one does. The pictures are noise. Built in memory on the
target device (seconds on a GPU), never written to disk. The tokenizer is the tiny models'
byte-level one: prompts tokenize to the same 77 positions, which is all the timing needs.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import (
    StableDiffusionXLPipeline,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from engine.tiny import MAX_TOKENS, _scheduler, _tokenizer

SEED = 0


def build_random_sdxl(device: str, dtype: torch.dtype) -> StableDiffusionXLPipeline:
    torch.manual_seed(SEED)
    components: dict[str, Any] = {
        "tokenizer": _tokenizer(),
        "tokenizer_2": _tokenizer(),
        "scheduler": _scheduler(),
    }
    with torch.device(device):  # weights initialised where they run: seconds on a GPU
        models = {
            "unet": UNet2DConditionModel(**UNET),
            "vae": AutoencoderKL(**VAE),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**CLIP_L)),
            "text_encoder_2": CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_G)),
        }
    components.update({name: model.to(dtype).eval() for name, model in models.items()})
    return StableDiffusionXLPipeline(**components)


# The published configs (stable-diffusion-xl-base-1.0: unet/, vae/, text_encoder*/config.json).
UNET: dict[str, Any] = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
    "norm_num_groups": 32,
}
VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "force_upcast": False,  # its own float16 overflow does not matter for noise
}
_CLIP: dict[str, Any] = {
    "vocab_size": 49408,
    "max_position_embeddings": MAX_TOKENS,
    "bos_token_id": 512,  # the byte-level tokenizer's ids (engine/tiny.py)
    "eos_token_id": 513,
    "pad_token_id": 513,
}
CLIP_L: dict[str, Any] = {
    **_CLIP,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
}
CLIP_G: dict[str, Any] = {
    **_CLIP,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "projection_dim": 1280,
    "hidden_act": "gelu",
}
