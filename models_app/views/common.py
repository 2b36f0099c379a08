"""What the library's views share: finding the model an address names, and reading the picks and
folders a form sends."""

from __future__ import annotations

from django.http import Http404, HttpRequest

from models_app import selectors
from models_app.models import ModelFile
from models_app.roots import PathOutsideRoot, UnknownRoot, resolve_model_path
from models_app.text import whole_number

MAX_PICKED = 5000  # models one Select action takes


def model_or_404(folder_type: str, path_index: int, relative_path: str) -> ModelFile:
    """The model an address names; a path that leaves its root names none."""
    try:
        model = selectors.model_get(folder_type, path_index, relative_path)
    except PathOutsideRoot:
        raise Http404("No such model.") from None
    if model is None:
        raise Http404("No such model.")
    return model


def sidecar_path(model: ModelFile, name: str):  # type: ignore[no-untyped-def]
    """The path of one of the files the scan found beside `model`; no other name is served."""
    if name not in model.sidecars:
        raise Http404("No such file beside this model.")
    folder = model.relative_path.rpartition("/")[0]
    try:
        return resolve_model_path(model.folder_type, model.path_index, f"{folder}/{name}" if folder else name)
    except (PathOutsideRoot, UnknownRoot):
        raise Http404("No such file beside this model.") from None


def chosen_folder(request: HttpRequest, folder_type: str, path_index: int) -> tuple[str, int]:
    """The model folder a move form chose: `folder` ("<index>:<type>", from folder_choice.html), or
    `folder_type` and `path_index` (scripts); a number that is not one names no folder (-1)."""
    if "folder" in request.POST:
        index, _, folder_type = request.POST["folder"].partition(":")
    else:
        folder_type = request.POST.get("folder_type", folder_type)
        index = request.POST.get("path_index", str(path_index)).strip() or "0"
    number = whole_number(index)
    return folder_type, -1 if number is None else number


def picked_ids(request: HttpRequest, field: str) -> list[int]:
    """The model ids a form sent in `field`; what is not one is left out."""
    numbers = (whole_number(value) for value in request.POST.getlist(field))
    return [number for number in numbers if number is not None][:MAX_PICKED]
