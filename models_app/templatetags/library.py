from __future__ import annotations

import re

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from models_app.models import ModelFile
from models_app.roots import get_roots

register = template.Library()

TYPE_LABELS = {
    "checkpoints": "Checkpoints",
    "loras": "LoRAs",
    "vae": "VAE",
    "text_encoders": "Text encoders",
    "diffusion_models": "Diffusion models",
    "clip_vision": "CLIP vision",
    "style_models": "Style models",
    "embeddings": "Embeddings",
    "diffusers": "Diffusers",
    "vae_approx": "VAE approx",
    "controlnet": "ControlNet",
    "gligen": "GLIGEN",
    "upscale_models": "Upscalers",
    "latent_upscale_models": "Latent upscalers",
    "hypernetworks": "Hypernetworks",
    "photomaker": "PhotoMaker",
    "classifiers": "Classifiers",
    "model_patches": "Model patches",
    "audio_encoders": "Audio encoders",
}


@register.filter
def type_label(folder_type: str) -> str:
    return TYPE_LABELS.get(folder_type, folder_type.replace("_", " ").capitalize())


@register.filter
def type_and_folder(model: ModelFile) -> str:
    """The model's type, and which of its type's folders holds it when there are several: "LoRAs",
    or "LoRAs (folder 2 of 3)", counted as extra_model_paths.yaml lists them."""
    folders = len(get_roots().folders.get(model.folder_type, []))
    label = type_label(model.folder_type)
    return f"{label} (folder {model.path_index + 1} of {folders})" if folders > 1 else label


# After a separator, or between a lower-case letter or digit and a capital: juggernaut|XL_|v9|Rundiffusion;
# never inside a version number (animagine-|xl-|3.1).
_NAME_BREAKS = re.compile(r"(?<=[_\-])(?=.)|(?<=\.)(?=\D)|(?<=[a-z0-9])(?=[A-Z])")


@register.filter
def breakable(name: str) -> SafeString:
    """`name` escaped, with a line-break opportunity at each of its word boundaries: model names have
    no spaces, and a card shows two lines of its name rather than cut it in the middle of a word."""
    return mark_safe("<wbr>".join(escape(part) for part in _NAME_BREAKS.split(name)))


@register.filter
def initials(name: str) -> str:
    """Two letters for a card without a preview."""
    words = [w for w in name.replace("-", " ").replace("_", " ").replace(".", " ").split() if w]
    if not words:
        return "?"
    return (words[0][0] + (words[1][0] if len(words) > 1 else words[0][1:2])).upper()


@register.filter
def is_long(value: object) -> bool:
    return len(str(value)) > 120
