"""Previews are decoded small: TAESD gets shrunken latents, only thumbnails leave the device."""

from __future__ import annotations

import io
from typing import Any

import torch
from diffusers import AutoencoderTiny
from PIL import Image

from engine.preview import PREVIEW_SIDE, PreviewDecoder


def _taesd(seen: list[tuple[int, ...]]) -> Any:
    """A small random TAESD that notes the shape of the latents it decodes in `seen`."""
    torch.manual_seed(0)
    model: Any = AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
    )
    taesd = model.eval()
    decode = taesd.decode

    def noted(latents: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        seen.append(tuple(latents.shape))
        return decode(latents, *args, **kwargs)

    taesd.decode = noted
    return taesd


def test_taesd_decodes_latents_shrunk_to_just_over_the_preview_size() -> None:
    seen: list[tuple[int, ...]] = []
    taesd = _taesd(seen)
    decoder = PreviewDecoder("sdxl", taesd)

    images = decoder.images(torch.randn(4, 4, 128, 96))  # SDXL's latents of a 1024×768 image

    assert seen == [(4, 4, 26, 19)]  # averaged by 5, not decoded at 128 × 96 (1024 × 768 pixels)
    assert [image.size for image in images] == [(144, PREVIEW_SIDE)] * 4  # width × height


def test_taesd_keeps_small_latents_as_they_are() -> None:
    seen: list[tuple[int, ...]] = []
    taesd = _taesd(seen)

    images = PreviewDecoder("sd", taesd).images(torch.randn(2, 4, 16, 16))

    assert seen == [(2, 4, 16, 16)] and [image.size for image in images] == [(128, 128)] * 2


def test_the_projection_works_at_latent_size_and_fits_the_preview_side() -> None:
    decoder = PreviewDecoder("sd")
    latents = torch.zeros(2, 4, 40, 64)
    latents[:, 0] = 1.0  # the first latent channel alone: a known colour

    small = decoder.images(latents)
    large = decoder.images(torch.zeros(1, 4, 300, 150))

    assert [image.size for image in small] == [(64, 40)] * 2  # width × height, at latent size
    red, green, blue = small[0].convert("RGB").getpixel((10, 10))  # type: ignore[misc]
    # (1 + factor) * 127.5 for the first row of the SD factors: 0.3512, 0.2297, 0.3227
    assert (red, green, blue) == (172, 157, 169)
    assert large[0].size == (96, PREVIEW_SIDE)  # only ever shrunk, aspect kept


def test_the_jpeg_is_a_grid_of_the_previews() -> None:
    jpeg = PreviewDecoder("sdxl").jpeg(torch.randn(4, 4, 24, 24))
    with Image.open(io.BytesIO(jpeg)) as image:
        assert image.format == "JPEG" and image.size == (48, 48)
