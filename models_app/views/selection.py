"""What Select does with the picked models: move them into one folder, or to the trash."""

from __future__ import annotations

import json
from collections.abc import Sequence

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.defaultfilters import pluralize
from django.views.decorators.http import require_POST
from django_htmx.http import trigger_client_event

from mmsite.toasts import with_toast
from models_app import selectors, services
from models_app.models import ModelFile
from models_app.views.common import chosen_folder, picked_ids
from models_app.views.jobs import move_queued


def _picked_models(request: HttpRequest) -> list[ModelFile]:
    # Thousands may be picked: their safetensors metadata, the largest column, is not needed to move them.
    picked = ModelFile.objects.filter(pk__in=picked_ids(request, "ids")).defer("metadata")
    return list(picked.order_by("relative_path"))


def _selection_done(
    request: HttpRequest,
    heading: str,
    errors: list[str],
    *,
    removed: Sequence[int] = (),
    to_trash: bool = False,
) -> HttpResponse:
    context = {"heading": heading, "errors": errors, "removed": removed, "to_trash": to_trash}
    response = render(request, "models_app/selection_done.html", context)
    # The picking is over, and the grid with the counts beside it is read again.
    response["HX-Trigger-After-Settle"] = json.dumps({"libraryChanged": True, "selectionDone": True})
    if errors:
        return with_toast(response, f"{heading}. {len(errors)} could not be moved.", level="error")
    return with_toast(response, f"{heading}.")


@require_POST
def selection_move(request: HttpRequest) -> HttpResponse:
    """The models picked in the library: where to move them, then (`confirm`) moved there."""
    models = _picked_models(request)
    if "confirm" not in request.POST or not models:  # none left: the form says so
        first = models[0] if models else None
        context = {
            "models": models,
            "folders": selectors.folders_to_write(),
            "folder_type": first.folder_type if first else "",
            "path_index": first.path_index if first else 0,
        }
        return render(request, "models_app/selection_move.html#form", context)
    folder_type, path_index = chosen_folder(request, "", 0)
    sub_folder = request.POST.get("sub_folder", "")
    try:
        task = services.move_start(
            model_ids=[model.pk for model in models],
            folder_type=folder_type,
            path_index=path_index,
            sub_folder=sub_folder,
        )
    except services.ModelEditError as exc:
        context = {"models": models, "folders": selectors.folders_to_write(), "folder_type": folder_type}
        context |= {"sub_folder": sub_folder, "path_index": path_index, "error": str(exc)}
        return render(request, "models_app/selection_move.html#form", context)
    return trigger_client_event(move_queued(request, task), "selectionDone", after="settle")


@require_POST
def selection_trash(request: HttpRequest) -> HttpResponse:
    """The models picked in the library: first what would move to the trash, then (`confirm`) moved."""
    models = _picked_models(request)
    if "confirm" not in request.POST:
        files = sum(1 + len(model.sidecars) for model in models)
        return render(request, "models_app/selection_trash.html#confirm", {"models": models, "files": files})
    items, errors = services.models_trash(models=models)
    still_there = set(ModelFile.objects.filter(pk__in=[m.pk for m in models]).values_list("pk", flat=True))
    removed = [m.pk for m in models if m.pk not in still_there]
    heading = f"{len(items)} model{pluralize(len(items))} moved to the trash"
    return _selection_done(request, heading, errors, removed=removed, to_trash=True)
