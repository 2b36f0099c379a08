"""Makes real model files for tests and benchmarks: valid safetensors headers, sidecars, previews."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

from PIL import Image

REFERENCE = Path(__file__).resolve().parent.parent.parent / "shared" / "reference"


def safetensors_bytes(metadata: dict[str, str] | None = None, payload: bytes = b"\0\0") -> bytes:
    """A valid safetensors file: one F16 tensor of `payload` plus `__metadata__`."""
    header: dict[str, object] = {
        "w": {"dtype": "F16", "shape": [len(payload) // 2], "data_offsets": [0, len(payload)]}
    }
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + payload


def write_model(path: Path, metadata: dict[str, str] | None = None, payload: bytes = b"\0\0") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(safetensors_bytes(metadata, payload))
    return path


def write_image(path: Path, size: tuple[int, int] = (64, 80), color: str = "#7a5cff") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def build_library(roots: dict[str, Path]) -> None:
    """A small library: a kohya LoRA with a preview and a description, a LoRA described by a
    Civitai Helper sidecar, and three SDXL checkpoints without previews."""
    loras, checkpoints = roots["loras"], roots["checkpoints"]
    (loras / "style").mkdir(parents=True, exist_ok=True)
    shutil.copy(
        REFERENCE / "safetensors" / "tiny_kohya_lora.safetensors", loras / "style" / "pepper.safetensors"
    )
    write_image(loras / "style" / "pepper.png", (300, 400))
    (loras / "style" / "pepper.md").write_text("---\nsource: civitai\n---\nWitch girl with a cat.\n")
    write_model(loras / "poses.safetensors")
    shutil.copy(next((REFERENCE / "civitai").glob("by_hash_*.json")), loras / "poses.civitai.info")
    for name in ("alpha", "beta", "gamma"):
        write_model(
            checkpoints / f"{name}_xl.safetensors", {"modelspec.architecture": "stable-diffusion-xl-v1-base"}
        )
