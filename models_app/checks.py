"""System checks, which `migrate`, `serve`, `worker` and `scan` run first: a typo in where the models are
stops the start with one clear line, rather than failing every scan and page later."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from models_app.roots import RootsConfigError, comfyui_folder, get_roots


@checks.register()
def check_model_roots(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    try:
        get_roots()
    except RootsConfigError as exc:
        return [
            checks.Error(
                f"Where the models are cannot be read: {exc}",
                hint="Fix that file or setting (README.md, 'How it reads your model folders').",
                id="models_app.E001",
            )
        ]
    comfyui = settings.MM_COMFYUI_PATH
    if comfyui and not (comfyui_folder(comfyui) / "models").is_dir():
        return [
            checks.Warning(
                f"MM_COMFYUI_PATH={comfyui} has no models folder.",
                hint="It should name the ComfyUI folder itself, the one holding main.py and models/.",
                id="models_app.W001",
            )
        ]
    return []
