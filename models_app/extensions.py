"""The file extensions ComfyUI loads models from. Free of Django, so that the download sources, which
know nothing of it, check files against the same list as the scanner."""

from __future__ import annotations

MODEL_EXTENSIONS = frozenset(
    {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft", ".gguf"}
)
