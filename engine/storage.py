"""Where finished images live: `<storage>/images/<job id>/<index>.png` and `grid.png`.

Every PNG carries its full generation parameters as text chunks ("parameters" in the widespread
A1111 style for other tools, "imagine-bot" as JSON for ours). Pure Python (Pillow, no torch).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

METADATA_KEY = "imagine-bot"
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


class ImageStore:
    def __init__(self, root: Path):
        self.root = root

    def job_dir(self, job_id: str) -> Path:
        if not _JOB_ID.match(
            job_id
        ):  # job ids reach here from button custom_ids: never trust a path
            raise ValueError(f"not a job id: {job_id!r}")
        return self.root / job_id

    def image_path(self, job_id: str, index: int) -> Path:
        return self.job_dir(job_id) / f"{index}.png"

    def grid_path(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "grid.png"

    def save(self, image: Image.Image, path: Path, metadata: Mapping[str, Any]) -> Path:
        """Write atomically (temp file + rename) so a crash never leaves half an image."""
        path.parent.mkdir(parents=True, exist_ok=True)
        info = PngInfo()
        info.add_text("parameters", a1111_parameters(metadata))
        info.add_text(METADATA_KEY, json.dumps(dict(metadata), sort_keys=True))
        tmp = path.with_suffix(".tmp")
        image.save(tmp, format="PNG", pnginfo=info)
        os.replace(tmp, path)
        return path

    def load(self, job_id: str, index: int) -> Image.Image:
        path = self.image_path(job_id, index)
        if not path.exists():
            raise FileNotFoundError(f"image {index + 1} of job {job_id} is not in storage")
        with Image.open(path) as image:
            return image.convert("RGB")


def read_metadata(path: Path) -> dict[str, Any]:
    with Image.open(path) as image:
        text = image.info.get(METADATA_KEY)
    return json.loads(text) if text else {}


def a1111_parameters(meta: Mapping[str, Any]) -> str:
    """The "parameters" text other tools (A1111, ComfyUI readers, civitai) understand."""
    lines = [str(meta.get("prompt", ""))]
    if meta.get("negative_prompt"):
        lines.append(f"Negative prompt: {meta['negative_prompt']}")
    hires = meta.get("hd_steps")  # --hd: A1111 counts the second ("hires") pass on its own
    steps = meta.get("steps")
    fields = {
        "Steps": steps - hires if isinstance(steps, int) and isinstance(hires, int) else steps,
        "Sampler": meta.get("sampler"),
        "CFG scale": meta.get("guidance"),
        "Seed": meta.get("seed"),
        "Size": f"{meta.get('width')}x{meta.get('height')}",
        "Model": meta.get("model"),
        "Model hash": meta.get("model_revision"),
        "Denoising strength": meta.get("strength") or meta.get("hd_strength"),
        "Hires steps": hires,
    }
    lines.append(", ".join(f"{k}: {v}" for k, v in fields.items() if v is not None))
    return "\n".join(lines)
