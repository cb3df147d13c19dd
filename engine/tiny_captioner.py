"""The built-in tiny captioner ("builtin:tiny-captioner"), built offline from a config.

The same architecture as the default captioner (BLIP, Salesforce/blip-image-captioning-large)
shrunk to about 200 KB, with random seeded weights and a word-level tokenizer written in code:
nothing is downloaded. Its captions are random words from a small descriptive vocabulary (and
the odd "--", "{" or "::" the prompt cleaner must take out), but every step of the real path
runs: the image processor, the vision encoder, sampling from the text decoder, decoding.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import (
    BertTokenizer,
    BlipConfig,
    BlipForConditionalGeneration,
    BlipImageProcessorPil,
    BlipProcessor,
)

logger = logging.getLogger(__name__)

NAME = "tiny-captioner"  # its folder under the models directory
SEED = 0  # the weights are drawn right after torch.manual_seed(SEED): the same files each time
HIDDEN = 32
IMAGE_SIZE = 32  # pixels the vision encoder sees (BLIP large: 384)
MAX_POSITIONS = 64  # tokens a caption may have
SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]")  # BLIP's; [DEC] starts a caption
_WORD_LIST = (
    "a an the of in on with and at by under over near from beside "
    "painting photo photograph illustration drawing portrait landscape poster sketch render "
    "dog cat bird horse fox woman man girl boy child house tree forest sky sea ocean beach "
    "lighthouse cliff mountain river lake city street bridge garden flowers field road castle "
    "dusk dawn night sunset morning winter summer rain fog snow storm "
    "red blue green golden white black purple orange pink silver "
    "soft dark bright warm cold misty glowing detailed cinematic dramatic quiet old small large "
    "sitting standing walking flying looking "
    "style light shadow colors texture"
)
WORDS = tuple(_WORD_LIST.split())
# Prompt syntax a captioner may write by chance: what engine.describe.clean_caption removes.
SYNTAX = (",", ".", "-", "--", "—", "::", "{", "}", "<", ">", "|")


def build_tiny_captioner(directory: Path) -> Path:
    """Write the tiny captioner (model, image processor, tokenizer) into `directory`."""
    directory = Path(directory)
    tokenizer = _tokenizer()
    processor = BlipProcessor(
        image_processor=BlipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
        tokenizer=tokenizer,
    )
    vocab = tokenizer.get_vocab()
    config = BlipConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": HIDDEN,
            "encoder_hidden_size": HIDDEN,  # cross-attention to the vision encoder's output
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": MAX_POSITIONS,
            "bos_token_id": vocab["[DEC]"],
            "eos_token_id": vocab["[SEP]"],
            "sep_token_id": vocab["[SEP]"],
            "pad_token_id": vocab["[PAD]"],
        },
        vision_config={
            "hidden_size": HIDDEN,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": IMAGE_SIZE,
            "patch_size": 8,
        },
        projection_dim=HIDDEN,
    )
    torch.manual_seed(SEED)
    model = BlipForConditionalGeneration(config).eval()
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def ensure_tiny_captioner(models_dir: Path) -> Path:
    """`models_dir / tiny-captioner`, built on first use.

    Built in a temporary sibling folder and renamed into place, so a crash or a concurrent build
    never leaves a half-written model that later loads would trip over.
    """
    target = Path(models_dir) / NAME
    if _complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{NAME}-", dir=target.parent))
    try:
        build_tiny_captioner(staging)
        if target.exists() and not _complete(target):
            shutil.rmtree(target)  # an incomplete leftover
        staging.rename(target)
        logger.info("built the %s model in %s", NAME, target)
    except OSError:
        if not _complete(target):
            raise
        # Another process renamed its build into place first; its copy is identical.
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "processor_config.json").is_file()


def _tokenizer() -> BertTokenizer:
    """BLIP's tokenizer type (BERT WordPiece) over a vocabulary of whole words: no merges to
    learn, nothing to download. [DEC] is the token a caption starts with, as in BLIP."""
    tokens = list(dict.fromkeys([*SPECIAL, *WORDS, *SYNTAX]))
    return BertTokenizer(vocab={token: i for i, token in enumerate(tokens)}, bos_token="[DEC]")
