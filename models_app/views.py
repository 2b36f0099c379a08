"""Library pages: thin views over selectors and services; each renders a page or one of its partials."""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Sequence
from urllib.parse import urlencode

from django.conf import settings
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseBase,
)
from django.shortcuts import get_object_or_404, render
from django.template.defaultfilters import pluralize
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import push_url, reswap, retarget, trigger_client_event

from mmsite.toasts import with_toast
from models_app import selectors, services
from models_app.headers import training_tags
from models_app.info import stop_info
from models_app.markdown import render_markdown
from models_app.models import InfoMode, InfoTask, ModelFile, MoveTask, ScanMode, ScanTask, TrashItem
from models_app.moves import stop_move
from models_app.previews import MAX_PREVIEW_BYTES, PreviewError, fetch_image
from models_app.roots import PathOutsideRoot, UnknownRoot, get_roots, resolve_model_path
from models_app.sidecars import read_json
from models_app.tasks import stop_scan
from models_app.text import whole_number
from models_app.thumbnails import ThumbnailError, get_thumbnail

# Which partial of library.html a request's HX-Target asks for.
CARDS_PARTIAL = "library.html#cards"
LIBRARY_PARTIALS = {
    "library": "library.html#library",
    "grid": CARDS_PARTIAL,
    "grid-more": CARDS_PARTIAL,
}
# Partials a user asked for (a tab, a search, a filter): the address bar then shows their query.
PUSHED_PARTIALS = {"library", "grid"}


@require_GET
def library(request: HttpRequest) -> HttpResponse:
    return _library(request, selectors.LibraryQuery.from_params(request.GET.dict()))


def _library(
    request: HttpRequest, query: selectors.LibraryQuery, *, open_model: ModelFile | None = None
) -> HttpResponse:
    partial = LIBRARY_PARTIALS.get(request.htmx.target or "") if request.htmx else None  # type: ignore[attr-defined]
    context = {
        "page": selectors.library_page(query),
        "next_page_query": urlencode(query.params(page=query.page + query.pages)),
        "query": query,
        "scan": selectors.latest_scan(),
        "has_roots": bool(get_roots().folders),
    }
    if partial != CARDS_PARTIAL:
        # A search as you type or the next page of cards shows neither the side bar nor the menus.
        menus = selectors.library_menus(query.folder_type)
        types, empty_types = menus.types_split(query.folder_type)
        context |= {
            "total_models": sum(count for _, count in menus.type_counts),
            "types": types,
            "empty_types": empty_types,
            "sub_folders": menus.sub_folders,
            "base_models": menus.base_models,
            "labels": menus.labels,
            "updates": menus.updates,
            "older_versions": menus.older,
            "sorts": {key: label for key, (label, _) in selectors.SORTS.items()},
            "info": selectors.latest_info(),
            "move": selectors.latest_move(),
        }
    if open_model is not None:
        # Drawn with the page, its dialog open; closing it leaves the address of the library behind.
        params = urlencode(query.params())
        context |= {
            "open_model": open_model,
            "dialog_html": render_to_string(
                "models_app/model_detail.html#dialog", _detail_context(open_model), request
            ),
            "dialog_close_url": reverse("library") + (f"?{params}" if params else ""),
        }
    template = "models_app/" + (partial or "library.html")
    response = render(request, template, context)
    if request.htmx and request.htmx.target in PUSHED_PARTIALS and "refresh" not in request.GET:  # type: ignore[attr-defined]
        # The form sends every field, empty ones too: the address bar gets the same query without them.
        params = urlencode(query.params())
        push_url(response, reverse("library") + (f"?{params}" if params else ""))
    return response


def _model_or_404(folder_type: str, path_index: int, relative_path: str) -> ModelFile:
    try:
        model = selectors.model_get(folder_type, path_index, relative_path)
    except PathOutsideRoot:
        raise Http404("No such model.") from None
    if model is None:
        raise Http404("No such model.")
    return model


@require_GET
def model_detail(request: HttpRequest, folder_type: str, path_index: int, relative_path: str) -> HttpResponse:
    model = _model_or_404(folder_type, path_index, relative_path)
    if request.htmx:  # type: ignore[attr-defined]
        return _dialog(request, model)
    # A model's own address (a card opened in a new tab, a shared link) is the library showing that
    # model's card, its dialog open: every action of the dialog then works as it does from the card.
    where = {"type": model.folder_type, "folder": model.sub_folder, "q": model.name}
    query = selectors.LibraryQuery.from_params(where)
    return _library(request, query, open_model=model)


def _sidecar_path(model: ModelFile, name: str):  # type: ignore[no-untyped-def]
    if name not in model.sidecars:
        raise Http404("No such file beside this model.")
    folder = model.relative_path.rpartition("/")[0]
    try:
        return resolve_model_path(model.folder_type, model.path_index, f"{folder}/{name}" if folder else name)
    except (PathOutsideRoot, UnknownRoot):
        raise Http404("No such file beside this model.") from None


@require_GET
def model_thumbnail(
    request: HttpRequest, folder_type: str, path_index: int, relative_path: str
) -> HttpResponseBase:
    model = _model_or_404(folder_type, path_index, relative_path)
    if not model.preview or model.preview_is_video:
        raise Http404("This model has no preview image.")
    try:
        thumbnail = get_thumbnail(_sidecar_path(model, model.preview))
    except (ThumbnailError, FileNotFoundError):
        raise Http404("The preview image cannot be read.") from None
    response = FileResponse(thumbnail.open("rb"), content_type="image/webp")
    # The URL carries the model's mtime, so a changed preview gets a new URL.
    response["Cache-Control"] = "private, max-age=86400"
    return response


@require_GET
def model_sidecar(
    request: HttpRequest, folder_type: str, path_index: int, relative_path: str
) -> HttpResponseBase:
    """One sidecar file as it is on disk (video previews, the .civitai.info JSON…), shown as text or media."""
    model = _model_or_404(folder_type, path_index, relative_path)
    path = _sidecar_path(model, request.GET.get("name", ""))
    content_type = mimetypes.guess_type(path.name)[0] or "text/plain"
    if not content_type.startswith(("image/", "video/")):
        content_type = "text/plain; charset=utf-8"  # never let a sidecar run as HTML
    if not path.is_file():  # gone, or a folder or a pipe under a sidecar's name
        raise Http404("The file is gone; scan again.")
    try:
        return FileResponse(path.open("rb"), content_type=content_type)
    except FileNotFoundError:
        raise Http404("The file is gone; scan again.") from None


@require_POST
def scan_start(request: HttpRequest) -> HttpResponse:
    mode = request.POST.get("mode", "diff")
    try:
        scan, created = services.scan_start(mode=mode)
    except ValueError as exc:
        return HttpResponseBadRequest(str(exc))
    response = render(request, "models_app/scan_progress.html", {"scan": scan})
    if created:
        return with_toast(
            response, "Full rescan started." if scan.mode == ScanMode.FULL else "Scan started.", level="info"
        )
    return with_toast(response, "A scan is already running.", level="info")


@require_POST
def scan_stop(request: HttpRequest, scan_id: int) -> HttpResponse:
    scan = get_object_or_404(ScanTask, pk=scan_id)
    stop_scan(scan)
    return render(request, "models_app/scan_progress.html", {"scan": scan})


@require_POST
def scan_forget(request: HttpRequest, scan_id: int, index: int) -> HttpResponse:
    """Forget the models a scan kept in a place it could not reach (see services.forget_kept_models)."""
    scan = get_object_or_404(ScanTask, pk=scan_id)
    try:
        count = services.forget_kept_models(scan=scan, index=index)
    except (services.ModelEditError, UnknownRoot) as exc:
        return with_toast(HttpResponse(status=204), str(exc), level="error")
    response = trigger_client_event(HttpResponse(status=204), "libraryChanged")
    if not count:
        return with_toast(
            response, "Nothing to forget: their files are back. Scan to read them.", level="info"
        )
    return with_toast(response, f"Forgot {count} model{pluralize(count)} whose files are gone.")


# -- editing from the model dialog -----------------------------------------------------------------------


def _civitai_images(model: ModelFile) -> list[str]:
    """Image URLs of the model's .civitai.info, offered as previews (and the only URLs fetched for one)."""
    name = next((n for n in model.sidecars if n.endswith(".civitai.info")), "")
    if not name:
        return []
    try:
        images = read_json(_sidecar_path(model, name)).get("images")
    except (OSError, Http404):
        return []
    return [
        i["url"]
        for i in (images if isinstance(images, list) else [])
        if isinstance(i, dict) and isinstance(i.get("url"), str) and i.get("type", "image") == "image"
    ][:8]


def _detail_context(model: ModelFile, *, error: str = "") -> dict[str, object]:
    """What the model dialog and the model page show (the same template, whole or as a partial)."""
    model = selectors.model_with_update(model)  # after an edit it comes from a service, without them
    try:
        absolute_path = services.model_path(model)
    except (PathOutsideRoot, UnknownRoot):  # its folder is no longer configured
        absolute_path = None
    return {
        "model": model,
        "absolute_path": absolute_path,
        "civitai_url": settings.MM_CIVITAI_URL.rstrip("/"),
        **_update_links(model),
        "other_versions": selectors.other_versions(model),
        "description_html": render_markdown(model.description),
        "training_tags": training_tags(model.metadata),
        "civitai_images": _civitai_images(model),
        "folders": selectors.folders_to_write(),
        "error": error,
    }


def _update_links(model: ModelFile) -> dict[str, str]:
    """The Civitai page of the newer version of `model`, and the new-download dialog's choices for it:
    that version, beside the model in its folder."""
    newer = selectors.newer_version(model)
    if newer is None:
        return {}
    version = newer[0]
    page = f"{settings.MM_CIVITAI_URL.rstrip('/')}/models/{model.civitai_model_id}?modelVersionId={version}"
    choices = {
        "url": page,
        "version": version,
        "folder_type": model.folder_type,
        "path_index": model.path_index,
        "sub_folder": model.sub_folder,
    }
    return {"update_page": page, "update_download_query": urlencode(choices)}


def _dialog(
    request: HttpRequest,
    model: ModelFile,
    *,
    error: str = "",
    toast: str = "",
    partial: str = "dialog",
    typed_description: str | None = None,
    refresh_card: bool = False,
) -> HttpResponse:
    """The dialog, or one of its forms; a form shown again after an error keeps what was typed in it.
    `refresh_card`: the model's card behind the dialog is drawn again too (a new preview)."""
    context = _detail_context(model, error=error)
    context["typed_description"] = model.description if typed_description is None else typed_description
    context["refresh_card"] = refresh_card
    response = render(request, f"models_app/model_detail.html#{partial}", context)
    if error:
        return with_toast(response, error, level="error")
    return with_toast(response, toast) if toast else response


@require_GET
def model_edit(
    request: HttpRequest, folder_type: str, path_index: int, relative_path: str, form: str
) -> HttpResponse:
    if form not in {"description", "move", "delete", "preview"}:
        raise Http404("No such form.")
    return _dialog(request, _model_or_404(folder_type, path_index, relative_path), partial=f"{form}_form")


@require_POST
def markdown_preview(request: HttpRequest) -> HttpResponse:
    return HttpResponse(render_markdown(request.POST.get("description", "")[:200_000]))


@require_POST
def description_save(
    request: HttpRequest, folder_type: str, path_index: int, relative_path: str
) -> HttpResponse:
    model = _model_or_404(folder_type, path_index, relative_path)
    text = request.POST.get("description", "")[:200_000]
    try:
        model = services.description_set(model=model, text=text)
    except services.ModelEditError as exc:
        return _dialog(request, model, error=str(exc), partial="description_form", typed_description=text)
    return _dialog(request, model, toast="Description saved.")


@require_POST
def preview_save(request: HttpRequest, folder_type: str, path_index: int, relative_path: str) -> HttpResponse:
    model = _model_or_404(folder_type, path_index, relative_path)
    upload = request.FILES.get("previewFile")
    image_url = request.POST.get("image_url", "")
    try:
        if upload is not None:
            if upload.size and upload.size > MAX_PREVIEW_BYTES:
                raise PreviewError(
                    f"The image is {upload.size / 1048576:.0f} MB; previews may be 20 MB at most."
                )
            data = upload.read()
        elif image_url and image_url in _civitai_images(model):
            data = fetch_image(image_url)
        else:
            raise PreviewError("Choose an image file, or one of the Civitai images.")
        model = services.preview_set(model=model, data=data)
    except (PreviewError, services.ModelEditError) as exc:
        return _dialog(request, model, error=str(exc), partial="preview_form")
    return _dialog(request, model, toast="Preview saved.", refresh_card=True)


@require_POST
def model_move(request: HttpRequest, folder_type: str, path_index: int, relative_path: str) -> HttpResponse:
    model = _model_or_404(folder_type, path_index, relative_path)
    to_type, to_index = _chosen_folder(request, folder_type, path_index)
    sub_folder, name = request.POST.get("sub_folder", ""), request.POST.get("name", "")
    try:
        plan = services.move_plan(
            model=model, folder_type=to_type, path_index=to_index, sub_folder=sub_folder, name=name
        )
        if plan is not None and plan.is_copy:
            task = services.move_start(
                model_ids=[model.pk],
                folder_type=to_type,
                path_index=to_index,
                sub_folder=sub_folder,
                name=name,
            )
            return _move_queued(request, task)
        moved = services.model_move(
            model=model, folder_type=to_type, path_index=to_index, sub_folder=sub_folder, name=name
        )
    except services.ModelEditError as exc:
        return _dialog(request, model, error=str(exc), partial="move_form")
    response = _dialog(request, moved, toast=f"Moved to {moved.folder_type}/{moved.relative_path}.")
    response["HX-Trigger-After-Settle"] = "libraryChanged"
    return response


@require_POST
def model_delete(request: HttpRequest, folder_type: str, path_index: int, relative_path: str) -> HttpResponse:
    model = _model_or_404(folder_type, path_index, relative_path)
    try:
        item = services.model_trash(model=model)
    except services.ModelEditError as exc:
        return _dialog(request, model, error=str(exc), partial="delete_form")
    response = render(request, "models_app/model_detail.html#deleted", {"item": item, "model_pk": model.pk})
    # Its card goes at once; the counts beside it follow with the library read again.
    response["HX-Trigger-After-Settle"] = "libraryChanged"
    return with_toast(response, f"{item.name} moved to the trash.")


@require_GET
def trash(request: HttpRequest) -> HttpResponse:
    return render(
        request, "models_app/trash.html", {"items": TrashItem.objects.all(), "days": settings.MM_TRASH_DAYS}
    )


@require_POST
def trash_action(request: HttpRequest, item_id: int, action: str) -> HttpResponse:
    item = get_object_or_404(TrashItem, pk=item_id)
    if action == "restore":
        try:
            restored = services.trash_restore(item=item)
        except (services.ModelEditError, UnknownRoot) as exc:
            return with_toast(HttpResponse(status=204), str(exc), level="error")
        return with_toast(HttpResponse(""), f"{restored.file_name} is back in {restored.folder_type}.")
    if action == "delete":
        services.trash_delete(item=item)
        return with_toast(HttpResponse(""), f"{item.name} deleted for good.", level="info")
    return HttpResponseBadRequest("Unknown action.")


@require_POST
def trash_empty(request: HttpRequest) -> HttpResponse:
    count = services.trash_purge(older_than_days=0)
    return with_toast(
        render(request, "models_app/trash.html#items", {"items": []}),
        f"Trash emptied ({count} models).",
        level="info",
    )


@require_GET
def duplicates(request: HttpRequest) -> HttpResponse:
    return render(request, "models_app/duplicates.html", {"groups": selectors.duplicates()})


@require_POST
def info_start(request: HttpRequest) -> HttpResponse:
    """Fetch info (or hash) for one model (`model` = its id), for the models picked in the library (`ids`),
    or for every model that needs it."""
    mode = request.POST.get("mode", "fetch")
    model_ids = _picked_ids(request, "model") or _picked_ids(request, "ids")
    try:
        task = services.info_start(mode=mode, model_ids=model_ids or None)
    except ValueError as exc:
        return HttpResponseBadRequest(str(exc))
    response = render(request, "models_app/info_progress.html", {"info": task})
    if not model_ids:
        what = "every model with Civitai info" if mode == InfoMode.UPDATES else "every model without it"
    else:
        what = "this model" if len(model_ids) == 1 else f"{len(model_ids)} models"
    return with_toast(response, f"{task.get_mode_display()} for {what} queued.", level="info")


MAX_PICKED = 5000


def _chosen_folder(request: HttpRequest, folder_type: str, path_index: int) -> tuple[str, int]:
    """The model folder a move form chose: `folder` ("<index>:<type>", from folder_choice.html), or
    `folder_type` and `path_index` (scripts); a number that is not one names no folder (-1)."""
    if "folder" in request.POST:
        index, _, folder_type = request.POST["folder"].partition(":")
    else:
        folder_type = request.POST.get("folder_type", folder_type)
        index = request.POST.get("path_index", str(path_index)).strip() or "0"
    number = whole_number(index)
    return folder_type, -1 if number is None else number


def _picked_ids(request: HttpRequest, field: str) -> list[int]:
    numbers = (whole_number(value) for value in request.POST.getlist(field))
    return [number for number in numbers if number is not None][:MAX_PICKED]


def _picked_models(request: HttpRequest) -> list[ModelFile]:
    # Thousands may be picked: their safetensors metadata, the largest column, is not needed to move them.
    picked = ModelFile.objects.filter(pk__in=_picked_ids(request, "ids")).defer("metadata")
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
    folder_type, path_index = _chosen_folder(request, "", 0)
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
    return trigger_client_event(_move_queued(request, task), "selectionDone", after="settle")


def _move_queued(request: HttpRequest, task: MoveTask) -> HttpResponse:
    """The dialog closes; the worker's progress shows beside Scan (across disks a move is a copy of
    gigabytes, longer than a request should wait)."""
    response = render(request, "models_app/move_progress.html", {"move": task})
    response = reswap(retarget(response, "#move-progress"), "outerHTML")
    trigger_client_event(response, "closeDialog", after="settle")
    count = len(task.model_ids)
    return with_toast(response, f"Moving {count} model{pluralize(count)} to {task.place}…", level="info")


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


@require_POST
def move_stop(request: HttpRequest, move_id: int) -> HttpResponse:
    move = get_object_or_404(MoveTask, pk=move_id)
    stop_move(move)
    return render(request, "models_app/move_progress.html", {"move": move, "finished": not move.is_active})


@require_POST
def info_stop(request: HttpRequest, info_id: int) -> HttpResponse:
    info = get_object_or_404(InfoTask, pk=info_id)
    stop_info(info)
    return render(request, "models_app/info_progress.html", {"info": info})
