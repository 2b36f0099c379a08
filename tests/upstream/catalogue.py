"""The models the fake upstream serves: shapes from ../shared/reference, files made here."""

from __future__ import annotations

import json

from tests.model_files import REFERENCE, safetensors_bytes
from tests.upstream.server import CivitaiModel, CivitaiVersion, FakeUpstream, HfRepo

KOHYA = json.loads((REFERENCE / "safetensors" / "lora_metadata.json").read_text())
REAL_MODEL = json.loads((REFERENCE / "civitai" / "model_1231067.json").read_text())


def model_bytes(seed: str, size: int = 200_000, metadata: dict[str, str] | None = None) -> bytes:
    """A valid safetensors file of about `size` bytes whose payload depends on `seed`."""
    block = (seed.encode() * 64)[:4096]
    payload = (block * (size // len(block) + 1))[: size - size % 2]
    return safetensors_bytes(metadata, payload)


def build_demo_catalogue(up: FakeUpstream, *, size: int = 200_000) -> FakeUpstream:
    real_version = REAL_MODEL["modelVersions"][0]
    lora = up.add_file("storybook", real_version["files"][0]["name"], model_bytes("storybook", size, KOHYA))
    up.add_civitai_model(
        CivitaiModel(
            id=REAL_MODEL["id"],
            name=REAL_MODEL["name"],
            type=REAL_MODEL["type"],
            description=REAL_MODEL["description"],
            tags=REAL_MODEL["tags"],
            versions=[
                CivitaiVersion(
                    id=real_version["id"],
                    name=real_version["name"],
                    base_model=real_version["baseModel"],
                    trained_words=real_version["trainedWords"],
                    files=[(lora, {"primary": True, "metadata": real_version["files"][0]["metadata"]})],
                    images=[{**real_version["images"][0], "url": f"{up.civitai_url}/images/storybook.png"}],
                )
            ],
        )
    )
    v2_fp16 = up.add_file(
        "dreamxl-v2-fp16", "dreamxl_v2_fp16.safetensors", model_bytes("dreamxl-v2-fp16", size)
    )
    v2_fp32 = up.add_file(
        "dreamxl-v2-fp32", "dreamxl_v2_fp32.safetensors", model_bytes("dreamxl-v2-fp32", size * 2)
    )
    v1 = up.add_file("dreamxl-v1", "dreamxl_v1.safetensors", model_bytes("dreamxl-v1", size))
    training = up.add_file("dreamxl-v1-training", "dreamxl_v1_training_data.zip", b"PK\x05\x06" + b"\0" * 18)
    up.add_civitai_model(
        CivitaiModel(
            id=4201,
            name="DreamXL",
            type="Checkpoint",
            description="<p>A checkpoint. <script>alert('x')</script><b>Bold</b></p>",
            versions=[
                CivitaiVersion(
                    id=42012,
                    name="v2.0",
                    files=[
                        (
                            v2_fp16,
                            {
                                "primary": True,
                                "metadata": {"format": "SafeTensor", "size": "pruned", "fp": "fp16"},
                                "query": {"type": "Model", "format": "SafeTensor", "fp": "fp16"},
                            },
                        ),
                        (
                            v2_fp32,
                            {
                                "metadata": {"format": "SafeTensor", "size": "full", "fp": "fp32"},
                                "query": {"type": "Model", "format": "SafeTensor", "fp": "fp32"},
                            },
                        ),
                    ],
                ),
                CivitaiVersion(
                    id=42011,
                    name="v1.0",
                    files=[
                        # As many LoRAs and some checkpoints have: the images it was trained on, first.
                        (
                            training,
                            {
                                "type": "Training Data",
                                "metadata": {"format": "Other"},
                                "query": {"type": "Training Data"},
                            },
                        ),
                        (v1, {"primary": True}),
                    ],
                    base_model="SD 1.5",
                ),
            ],
        )
    )
    for model_id, version_id, name, access, model_type in (
        (5001, 50011, "Members Only LoRA", "login", "LORA"),
        (5002, 50021, "Early Bird", "early_access", "LORA"),
        (5003, 50031, "Old Archive", "archived", "Checkpoint"),
        (5004, 50041, "Crisp Upscaler", "public", "Upscaler"),
        (5005, 50051, "No Downloads", "disabled", "LORA"),
    ):
        stored = up.add_file(
            f"civitai-{version_id}",
            f"{name.lower().replace(' ', '_')}.safetensors",
            model_bytes(name, size // 4),
        )
        up.add_civitai_model(
            CivitaiModel(
                id=model_id,
                name=name,
                type=model_type,
                versions=[
                    CivitaiVersion(
                        id=version_id, name="v1", files=[(stored, {"primary": True})], access=access
                    )
                ],
            )
        )
    hf_files = {
        "flux1-schnell-fp8.safetensors": up.add_file(
            "hf-schnell", "flux1-schnell-fp8.safetensors", model_bytes("schnell", size)
        ),
        "vae/diffusion_pytorch_model.safetensors": up.add_file(
            "hf-vae", "diffusion_pytorch_model.safetensors", model_bytes("vae", size // 2)
        ),
        "README.md": up.add_file("hf-readme", "README.md", b"# Demo models\n"),
    }
    up.add_hf_repo(
        HfRepo(
            "demo-org/demo-models", "a" * 40, hf_files, revisions=("main", "v1.0"),
            downloads=12_345, likes=321, pipeline_tag="text-to-image", tags=("diffusers", "safetensors"),
        )
    )  # fmt: skip
    gguf = {
        "flux1-dev-Q4_K_S.gguf": up.add_file("hf-gguf", "flux1-dev-Q4_K_S.gguf", model_bytes("gguf", size))
    }
    up.add_hf_repo(
        HfRepo(
            "demo-org/flux-gguf",
            "c" * 40,
            gguf,
            downloads=98_765,
            likes=1_234,
            pipeline_tag="text-to-image",
            tags=("gguf",),
        )
    )
    gated = {
        "model.safetensors": up.add_file("hf-gated", "model.safetensors", model_bytes("gated", size // 2))
    }
    up.add_hf_repo(
        HfRepo("gated-org/gated-model", "b" * 40, gated, gated=True, downloads=2_500_000, likes=4_500)
    )
    return up
