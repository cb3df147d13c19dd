"""The built-in tiny models: built offline, deterministic, small, and not degenerate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline

from engine.config import DEFAULT_PRESETS
from engine.random_sdxl import build_random_sdxl
from engine.tiny import KINDS, build_tiny, ensure_tiny

CLASSES = {"tiny": StableDiffusionPipeline, "tiny-xl": StableDiffusionXLPipeline}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    # Tiny models are fastest single-threaded, and torch's thread pool slows down ~10-100x when
    # another process holds the CPU cores (parallel test runs on a 2-core machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def built(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny(kind, tmp_path_factory.mktemp(kind))


@pytest.fixture(scope="module")
def pipe(built: Path) -> DiffusionPipeline:
    pipe = DiffusionPipeline.from_pretrained(built)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe: DiffusionPipeline, prompt: str, seed: int) -> np.ndarray:
    result = pipe(
        prompt,
        height=128,
        width=128,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
    )
    return np.asarray(result.images[0])


def safetensors_bytes(directory: Path) -> dict[str, bytes]:
    files = sorted(directory.rglob("*.safetensors"))
    return {str(p.relative_to(directory)): p.read_bytes() for p in files}


def test_build_writes_a_complete_safetensors_pipeline(built: Path) -> None:
    assert (built / "model_index.json").is_file()
    for part in ("unet", "vae", "text_encoder"):
        assert list((built / part).glob("*.safetensors")), part
    assert not list(built.rglob("*.bin"))


def test_build_is_small(built: Path) -> None:
    size = sum(p.stat().st_size for p in built.rglob("*") if p.is_file())
    assert size < 2 * 1024 * 1024


def test_loads_as_the_family_pipeline_with_vae_factor_8(kind: str, pipe: DiffusionPipeline) -> None:
    assert type(pipe) is CLASSES[kind]
    assert pipe.vae_scale_factor == 8


def test_tokenizer_knows_every_character(pipe: DiffusionPipeline) -> None:
    tokenizer = pipe.tokenizer
    assert len(tokenizer) == 514
    assert tokenizer.model_max_length == 77
    ids = tokenizer("a café 🐱 — ✨ 日本", truncation=True)["input_ids"]
    assert tokenizer.unk_token_id not in ids[1:-1]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id


def test_images_are_not_constant(pipe: DiffusionPipeline) -> None:
    image = generate(pipe, "a cat", seed=1)
    assert image.shape == (128, 128, 3)
    assert image.std() > 0.01


def test_images_depend_on_the_prompt(pipe: DiffusionPipeline) -> None:
    assert not np.array_equal(generate(pipe, "a cat", 1), generate(pipe, "a red house", 1))


def test_images_depend_on_the_seed(pipe: DiffusionPipeline) -> None:
    assert not np.array_equal(generate(pipe, "a cat", 1), generate(pipe, "a cat", 2))


def test_same_prompt_and_seed_give_the_same_image(pipe: DiffusionPipeline) -> None:
    np.testing.assert_array_equal(generate(pipe, "a cat", 3), generate(pipe, "a cat", 3))


@pytest.mark.parametrize("kind", KINDS)
def test_two_builds_are_byte_identical(kind: str, tmp_path: Path) -> None:
    first = safetensors_bytes(build_tiny(kind, tmp_path / "a"))
    second = safetensors_bytes(build_tiny(kind, tmp_path / "b"))
    assert first and first == second


def test_ensure_tiny_builds_once_then_reuses(tmp_path: Path) -> None:
    first = ensure_tiny("tiny", tmp_path)
    stamp = (first / "model_index.json").stat().st_mtime_ns
    second = ensure_tiny("tiny", tmp_path)
    assert second == first == tmp_path / "tiny"
    assert (second / "model_index.json").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]  # no staging folder left behind


def test_ensure_tiny_replaces_an_incomplete_folder(tmp_path: Path) -> None:
    (tmp_path / "tiny-xl" / "unet").mkdir(parents=True)
    target = ensure_tiny("tiny-xl", tmp_path)
    assert (target / "model_index.json").is_file()


def test_unknown_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tiny-xl"):
        build_tiny("huge", tmp_path)


def test_sdxl_random_has_sdxls_full_architecture() -> None:
    # Built on the meta device: shapes only, no memory, in seconds.
    pipe = build_random_sdxl("meta", torch.float16)

    def millions(model: torch.nn.Module) -> int:
        return round(sum(p.numel() for p in model.parameters()) / 1e6)

    # stabilityai/stable-diffusion-xl-base-1.0's parameter counts
    assert millions(pipe.unet) == 2567
    assert (millions(pipe.text_encoder), millions(pipe.text_encoder_2)) == (123, 695)
    assert millions(pipe.vae) == 84
    with torch.device("meta"):
        latents = torch.zeros(2, 4, 128, 128, dtype=torch.float16)
        conds = {"text_embeds": torch.zeros(2, 1280), "time_ids": torch.zeros(2, 6)}
        text = torch.zeros(2, 77, 2048, dtype=torch.float16)
        out = pipe.unet(latents, 10, encoder_hidden_states=text, added_cond_kwargs=conds)
    assert out.sample.shape == (2, 4, 128, 128)
    assert "sdxl-random" not in DEFAULT_PRESETS  # noise: never offered to users
