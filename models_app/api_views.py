"""The JSON API of the library under /model-manager/ (the seed plugin's contract)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.http.multipartparser import MultiPartParser
from django.shortcuts import get_object_or_404
from django.urls import reverse

from downloads_app.selectors import downloaded_from
from mmsite.api import ApiError, api_ok, api_view, json_body, number_field, refuse_nul, text_field
from models_app import selectors, services
from models_app.examples import examples_of
from models_app.info import info_task_data, stop_info
from models_app.models import InfoMode, InfoTask, ModelFile, ScanTask, TrashItem
from models_app.previews import MAX_PREVIEW_BYTES, PreviewError
from models_app.roots import PathOutsideRoot, UnknownRoot, get_roots
from models_app.tasks import announce_library_changed, scan_task_data, stop_scan


def preview_url(model: ModelFile) -> str | None:
    if not model.preview:
        return None
    args = [model.folder_type, model.path_index, model.relative_path]
    if model.preview_is_video:
        return reverse("model_sidecar", args=args) + f"?name={model.preview}"
    return reverse("model_thumbnail", args=args) + f"?v={model.mtime_ns}-{model.sidecar_signature[:8]}"


SUMMARY_FIELDS = (
    "folder_type", "path_index", "sub_folder", "name", "extension", "relative_path", "size", "created_at",
    "modified_at", "preview", "mtime_ns", "sidecar_signature", "base_model", "description",
)  # fmt: skip


def model_summary(model: ModelFile) -> dict[str, Any]:
    return {
        "type": model.folder_type,
        "pathIndex": model.path_index,
        "subFolder": model.sub_folder,
        "basename": model.name,
        "extension": model.extension,
        "fullname": model.relative_path,
        "sizeBytes": model.size,
        "createdAt": model.created_at.timestamp(),
        "updatedAt": model.modified_at.timestamp(),
        "preview": preview_url(model),
        "baseModel": model.base_model,
        "description": model.description,
    }


def model_details(model: ModelFile) -> dict[str, Any]:
    newer = selectors.newer_version(model)
    source = downloaded_from(model.sha256)
    return {
        **model_summary(model),
        "isFolder": model.is_dir,
        "sha256": model.sha256,
        "trainedWords": model.trained_words,
        "tags": model.tags,
        "notes": model.notes,
        "civitai": {
            "modelId": model.civitai_model_id,
            "versionId": model.civitai_version_id,
            "name": model.civitai_name,
            "nsfwLevel": model.nsfw_level,
            # Civitai's newest version, when the library does not hold it (selectors.with_update).
            "newerVersion": dict(zip(("id", "name"), newer, strict=True)) if newer else None,
            # Its version's images with what they were made with, from the info saved beside it.
            "examples": [
                {
                    "url": image.url,
                    "nsfwLevel": image.nsfw_level,
                    "prompt": image.prompt,
                    "negativePrompt": image.negative_prompt,
                    "settings": dict(image.settings),
                    "resources": image.resources,
                }
                for image in examples_of(model)
            ],
        },
        "downloadedFrom": source
        and {
            "platform": source.platform,
            "url": source.page_url,
            "title": source.title,
            "downloadedAt": source.downloaded_at.isoformat(),
            # The file the Hugging Face branch holds at its path now, when that is another one that
            # the library does not hold (selectors.with_update).
            "newerFile": {"sha256": source.hub_sha256, "checkedAt": source.hub_checked_at.isoformat()}
            if getattr(model, "newer_on_hub", False) and source.hub_checked_at
            else None,
        },
        "metadata": model.metadata,
        "headerError": model.header_error,
        "sidecars": model.sidecars,
    }


@api_view("GET")
def folders(request: HttpRequest) -> HttpResponse:
    return api_ok(
        {folder_type: [str(p) for p in paths] for folder_type, paths in get_roots().folders.items()}
    )


@api_view("GET")
def models_of_type(request: HttpRequest, folder_type: str) -> HttpResponse:
    if (
        folder_type not in get_roots().folders
        and not ModelFile.objects.filter(folder_type=folder_type).exists()
    ):
        raise ApiError(f"Unknown model type {folder_type!r}.", status=404)
    # ?q= searches as the library page does: names, folders, words, the start of the SHA256.
    search = selectors.LibraryQuery(folder_type=folder_type, search=request.GET.get("q", "").strip()[:200])
    models = (
        selectors.filtered_models(search)
        .order_by("path_index", "relative_path")
        .only(*SUMMARY_FIELDS)  # not the metadata: 14 KB of JSON for each kohya LoRA
    )
    return api_ok([model_summary(m) for m in models])


@api_view("POST")
def scan(request: HttpRequest) -> HttpResponse:
    mode = text_field(json_body(request), "mode", "diff")
    try:
        task, created = services.scan_start(mode=mode)
    except ValueError as exc:
        raise ApiError(str(exc)) from None
    return api_ok({**scan_task_data(task), "created": created}, status=202 if created else 200)


def model_address(model: ModelFile) -> dict[str, Any]:
    """How the API names a model in a request or an answer."""
    return {"type": model.folder_type, "pathIndex": model.path_index, "fullname": model.relative_path}


def model_at(address: object, *, what: str = "Each model") -> ModelFile:
    """The model a request names as {type, pathIndex, fullname}: 400 for another shape, 404 for none."""
    if not isinstance(address, dict) or not address.get("type") or not address.get("fullname"):
        raise ApiError(f"{what} is {{type, pathIndex, fullname}}.")
    return _model_or_error(
        text_field(address, "type"), number_field(address, "pathIndex", 0), text_field(address, "fullname")
    )


def _model_or_error(folder_type: str, path_index: int, relative_path: str) -> ModelFile:
    get_roots().get(folder_type, path_index)  # unknown type or index: 404
    found = selectors.model_get(folder_type, path_index, relative_path)
    if found is None:
        raise ApiError("Model not found.", status=404)
    return found


def _put_data(request: HttpRequest) -> tuple[dict[str, Any], Any]:
    """JSON, or multipart (Django parses multipart for POST only, so PUT bodies are parsed here)."""
    if request.content_type == "multipart/form-data":
        # The request itself is the stream: reading request.body would refuse images over 2.5 MB.
        data, files = MultiPartParser(
            request.META, request, request.upload_handlers, request.encoding
        ).parse()
        refuse_nul(dict(data.lists()))
        return data.dict(), files.get("previewFile")
    return json_body(request), None


@api_view("GET", "PUT", "DELETE")
def model(request: HttpRequest, folder_type: str, path_index: int, relative_path: str) -> HttpResponse:
    found = _model_or_error(folder_type, path_index, relative_path)
    if request.method == "GET":
        return api_ok(model_details(found))
    if request.method == "DELETE":
        try:
            item = services.model_trash(model=found)
        except services.ModelEditError as exc:
            raise ApiError(str(exc), status=409) from None
        return api_ok({"trashed": item.files, "trashId": item.pk})
    data, upload = _put_data(request)
    try:
        if "description" in data:
            found = services.description_set(model=found, text=text_field(data, "description"))
        if upload is not None:
            if upload.size and upload.size > MAX_PREVIEW_BYTES:
                raise PreviewError("The image is larger than 20 MB.")
            found = services.preview_set(model=found, data=upload.read())
        if {"type", "pathIndex", "fullname"} & set(data):
            fullname = text_field(data, "fullname") or found.relative_path
            sub_folder, _, name = fullname.strip("/").rpartition("/")
            found = services.model_move(
                model=found,
                folder_type=text_field(data, "type") or found.folder_type,
                path_index=number_field(data, "pathIndex", found.path_index),
                sub_folder=sub_folder,
                name=name,
            )
    except (services.ModelEditError, PreviewError) as exc:
        raise ApiError(str(exc)) from None
    return api_ok(model_details(found))


@api_view("GET")
def preview(request: HttpRequest, folder_type: str, path_index: int, relative_path: str) -> HttpResponseBase:
    found = _model_or_error(folder_type, path_index, relative_path)
    if not found.preview or found.preview_is_video:
        raise ApiError("This model has no preview image.", status=404)
    from models_app.views.library import model_thumbnail

    return model_thumbnail(request, folder_type, path_index, found.relative_path)


@api_view("POST")
def fetch(request: HttpRequest) -> HttpResponse:
    """`{"models": "all"}` or `{"models": [{"type", "pathIndex", "fullname"}, …]}`: a Civitai info job,
    or with `"mode": "updates"` a check for newer versions."""
    body = json_body(request)
    mode, wanted = body.get("mode", "fetch"), body.get("models", "all")
    if mode not in (InfoMode.FETCH, InfoMode.UPDATES):
        raise ApiError('mode must be "fetch" or "updates".')
    ids: list[int] = []
    if wanted != "all":
        if not isinstance(wanted, list) or not wanted:
            raise ApiError('models must be "all" or a list of {type, pathIndex, fullname}.')
        ids = [model_at(item).pk for item in wanted]
    task = services.info_start(mode=mode, model_ids=ids)
    return api_ok(info_task_data(task), status=202)


def _stop_wanted(request: HttpRequest) -> bool:
    """GET reads a job, `PUT {"status": "stop"}` stops it, as downloads are paused."""
    if request.method == "GET":
        return False
    if json_body(request).get("status") != "stop":
        raise ApiError('status must be "stop".')
    return True


@api_view("GET", "PUT")
def scan_task(request: HttpRequest, task_id: int) -> HttpResponse:
    """A scan's state, for a script that missed its last event on /ws/events/ (they are sent once)."""
    task = get_object_or_404(ScanTask, pk=task_id)
    if _stop_wanted(request):
        stop_scan(task)  # the rows it wrote stay
    return api_ok(scan_task_data(task))


@api_view("GET", "PUT")
def fetch_task(request: HttpRequest, task_id: int) -> HttpResponse:
    task = get_object_or_404(InfoTask, pk=task_id)
    if _stop_wanted(request):
        stop_info(task)
    return api_ok(info_task_data(task))


def trash_item_data(item: TrashItem) -> dict[str, Any]:
    return {
        "trashId": item.pk,
        "type": item.folder_type,
        "pathIndex": item.path_index,
        "fullname": item.relative_path,
        "files": item.files,
        "sizeBytes": item.size,
        "trashedAt": item.trashed_at.timestamp(),
    }


def _restore_wanted(request: HttpRequest) -> None:
    if json_body(request).get("status") != "restore":
        raise ApiError('status must be "restore".')


@api_view("GET", "PUT")
def trash(request: HttpRequest) -> HttpResponse:
    """What the trash holds; `PUT {"status": "restore"}` puts back all it can, as the page's Restore all."""
    if request.method == "GET":
        return api_ok([trash_item_data(item) for item in TrashItem.objects.all()])
    _restore_wanted(request)
    restored, errors = services.trash_restore_all()
    if restored:
        announce_library_changed()
    return api_ok({"restored": restored, "errors": errors})


@api_view("PUT", "DELETE")
def trash_item(request: HttpRequest, item_id: int) -> HttpResponse:
    """`PUT {"status": "restore"[, "name": "style-2.safetensors"]}` puts the model back where it was
    (its `trashId` came with the DELETE of the model), renamed with its sidecars when a name is given;
    DELETE deletes it for good."""
    item = get_object_or_404(TrashItem, pk=item_id)
    if request.method == "DELETE":
        services.trash_delete(item=item)
        return api_ok({"trashId": item_id})
    _restore_wanted(request)
    name = json_body(request).get("name") or ""
    if not isinstance(name, str):
        raise ApiError("name must be a file name.")
    try:
        restored = services.trash_restore(item=item, name=name)
    except services.NameTaken as exc:
        raise ApiError(
            f'{exc} Or restore it under another name: "name": "{exc.free_name}".', status=409
        ) from None
    except (services.ModelEditError, UnknownRoot, PathOutsideRoot) as exc:
        raise ApiError(str(exc), status=409) from None
    announce_library_changed(restored.folder_type, restored.path_index, restored.relative_path)
    return api_ok(model_summary(restored))
