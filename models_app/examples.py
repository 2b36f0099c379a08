"""The example images of a model's Civitai version, read from the info saved beside it: each with the
prompt and settings it was made with, the way to learn how a LoRA is meant to be used."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from models_app.models import ModelFile
from models_app.roots import PathOutsideRoot, UnknownRoot, model_path
from models_app.sidecars import mapping, read_json

MAX_EXAMPLES = 12
MAX_TEXT = 4000  # characters of a prompt: a pasted wall of tags is cut, not the dialog

# Civitai's `meta` keys shown, in this order, under the user's words for them.
SETTINGS = (
    ("Model", "Model"),
    ("sampler", "Sampler"),
    ("scheduler", "Scheduler"),
    ("steps", "Steps"),
    ("cfgScale", "CFG scale"),
    ("seed", "Seed"),
    ("Size", "Size"),
    ("clipSkip", "Clip skip"),
    ("Clip skip", "Clip skip"),
    ("denoise", "Denoise"),
    ("Denoising strength", "Denoise"),
)


@dataclass(frozen=True)
class ExampleImage:
    url: str
    nsfw_level: int
    width: int | None = None
    height: int | None = None
    prompt: str = ""
    negative_prompt: str = ""
    settings: list[tuple[str, str]] = field(default_factory=list)
    resources: list[str] = field(default_factory=list)  # "detail_tweaker (LoRA, 0.8)"

    @property
    def has_meta(self) -> bool:
        return bool(self.prompt or self.negative_prompt or self.settings or self.resources)


def examples_of(model: ModelFile) -> list[ExampleImage]:
    """From the model's .civitai.info (Civitai Helper, and Fetch info here), else from the Civitai part
    of its .metadata.json (Lora-Manager)."""
    try:
        folder = model_path(model).parent
    except (PathOutsideRoot, UnknownRoot):  # its folder is no longer configured
        return []
    for suffix, version_in in ((".civitai.info", None), (".metadata.json", "civitai")):
        name = next((n for n in model.sidecars if n.endswith(suffix)), "")
        try:
            data = read_json(folder / name) if name else {}
        except OSError:
            continue
        if found := example_images(mapping(data.get(version_in)) if version_in else data):
            return found
    return []


def example_images(version: dict[str, Any]) -> list[ExampleImage]:
    """The images of a Civitai model version (as `/model-versions/…` answers), videos left out."""
    images = version.get("images")
    found = []
    for image in images if isinstance(images, list) else []:
        image = mapping(image)
        url = image.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            continue
        if image.get("type", "image") != "image":
            continue
        found.append(_example(url, image))
        if len(found) == MAX_EXAMPLES:
            break
    return found


def _example(url: str, image: dict[str, Any]) -> ExampleImage:
    meta = mapping(image.get("meta"))
    settings, named = [], set()
    for key, label in SETTINGS:
        value = _shown(meta.get(key))
        if value and label not in named:
            settings.append((label, value))
            named.add(label)
    return ExampleImage(
        url=url,
        nsfw_level=_number(image.get("nsfwLevel")) or 0,
        width=_number(image.get("width")),
        height=_number(image.get("height")),
        prompt=_text(meta.get("prompt")),
        negative_prompt=_text(meta.get("negativePrompt")),
        settings=settings,
        resources=_resources(meta),
    )


# Civitai's resource types, as the library names them.
RESOURCE_TYPES = {
    "lora": "LoRA",
    "lycoris": "LyCORIS",
    "checkpoint": "Checkpoint",
    "model": "Checkpoint",
    "embed": "Embedding",
}


def _resources(meta: dict[str, Any]) -> list[str]:
    """The models and LoRAs it names, with their kind and weight, each once."""
    listed = []
    for key in ("resources", "additionalResources", "civitaiResources"):
        value = meta.get(key)
        for resource in value if isinstance(value, list) else []:
            resource = mapping(resource)
            name = _shown(resource.get("name") or resource.get("modelName"))
            if not name:
                continue
            kind = _shown(resource.get("type"))
            weight = _shown(resource.get("weight", resource.get("strength")))
            details = ", ".join(filter(None, [RESOURCE_TYPES.get(kind.lower(), kind), weight]))
            entry = f"{name} ({details})" if details else name
            if entry not in listed:
                listed.append(entry)
    return listed[:20]


def _number(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _shown(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return ""
    return str(value).strip()[:200]


def _text(value: object) -> str:
    return value.strip()[:MAX_TEXT] if isinstance(value, str) else ""
