"""The JSON API of downloads under /model-manager/ (the seed plugin's contract)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import PurePosixPath

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404

from downloads_app import selectors, services
from downloads_app.engine import HttpError
from downloads_app.events import task_data
from downloads_app.models import DownloadTask
from downloads_app.sources import RemoteFile, RemoteVersion, SourceError
from downloads_app.workflows import MAX_WORKFLOW_BYTES, WorkflowError, models_in_workflow
from mmsite.api import ApiError, api_ok, api_view, json_body, number_field, text_field
from models_app.api_views import model_address, model_at
from models_app.models import ModelFile


def _resolution(url: str):  # type: ignore[no-untyped-def]
    if not url:
        raise ApiError("Give the link of a model page or file.")
    try:
        return selectors.resolution_get(url)
    except SourceError as exc:
        raise ApiError(str(exc), status=422) from None
    except HttpError as exc:
        raise ApiError(f"The address answered HTTP {exc.status}.", status=502) from None


@api_view("GET", "PUT")
def tasks(request: HttpRequest) -> HttpResponse:
    """The list; a PUT of `{"status": "pause"|"resume"|"retry"}` pauses all, resumes all the paused, or
    retries all the failed, as the Downloads page's buttons do, and says how many it changed."""
    if request.method == "PUT":
        status = text_field(json_body(request), "status")
        if status not in services.EVERY_TASK_ACTIONS:
            raise ApiError('status must be "pause", "resume" or "retry".')
        return api_ok({"count": services.EVERY_TASK_ACTIONS[status]()})
    return api_ok([task_data(t) for t in selectors.tasks()])


@api_view("GET")
def model_info(request: HttpRequest) -> HttpResponse:
    resolution = _resolution(request.GET.get("model-page", "").strip())
    return api_ok(asdict(resolution))


@api_view("POST")
def create(request: HttpRequest) -> HttpResponse:
    """`downloadUrl, type, pathIndex, fullname[, subFolder][, replaces]`: the file at downloadUrl (a model
    page picks its primary file) saved as `fullname` (which may carry the subfolder, as in the seed).
    `replaces` `{type, pathIndex, fullname}` names the older version that goes to the Trash once it is in."""
    data = json_body(request) if request.content_type == "application/json" else request.POST.dict()
    resolution = _resolution(text_field(data, "downloadUrl").strip())
    fullname = PurePosixPath(text_field(data, "fullname").strip().lstrip("/"))
    parent = fullname.parent.as_posix()
    sub_folder = text_field(data, "subFolder") or ("" if parent == "." else parent)
    try:
        task = services.download_as_linked(
            resolution,
            folder_type=text_field(data, "type"),
            path_index=number_field(data, "pathIndex", 0),
            sub_folder=sub_folder,
            filename=fullname.name,
            replaces=_older_version(data.get("replaces")),
        )
    except services.FolderTypeUnknown:
        raise ApiError(
            'Which folder type? The link does not say: give "type" (checkpoints, loras, …).'
        ) from None
    except services.DownloadRequestError as exc:
        raise ApiError(str(exc)) from None
    return api_ok(task_data(task), status=201)


def _older_version(address: object) -> Callable[[RemoteVersion, RemoteFile], ModelFile] | None:
    """What `replaces` names, checked once the file is known: another version of its Civitai model, or
    another file of its Hugging Face path."""
    if address is None:
        return None
    model = model_at(address, what="replaces")

    def older(version: RemoteVersion, remote: RemoteFile) -> ModelFile:
        if (found := selectors.older_version_to_replace(str(model.pk), version, remote)) is None:
            other = (
                "another version of this Civitai model"
                if version.info.get("modelId")
                else "another file of this Hugging Face path"
            )
            raise services.DownloadRequestError(
                f"{model.relative_path} is not {other}: it cannot be replaced by it."
            )
        return found

    return older


API_TASK_ACTIONS = ("pause", "resume", "cancel", "next")  # the seed's three, and next: first in the queue


@api_view("PUT", "DELETE")
def task(request: HttpRequest, task_id: int) -> HttpResponse:
    found = get_object_or_404(DownloadTask, pk=task_id)
    if request.method == "DELETE":
        services.download_delete(task=found)
        return api_ok({"taskId": task_id})
    status = text_field(json_body(request), "status")
    if status not in API_TASK_ACTIONS:
        raise ApiError('status must be "pause", "resume", "cancel" or "next".')
    return api_ok(task_data(services.TASK_ACTIONS[status](task=found)))


@api_view("POST")
def setting(request: HttpRequest) -> HttpResponse:
    """An API key (`civitai`, `huggingface`), or the speed limit (`speedLimit`, bytes a second, 0: none)."""
    data = json_body(request)
    if data.get("key") == "speedLimit":
        try:
            limit = services.speed_limit_set(bytes_per_second=number_field(data, "value", 0))
        except services.DownloadRequestError as exc:
            raise ApiError(str(exc)) from None
        return api_ok({"key": "speedLimit", "value": limit})
    try:
        service = text_field(data, "key")
        key = services.api_key_set(service=service, value=text_field(data, "value"))
    except services.DownloadRequestError as exc:
        raise ApiError(str(exc)) from None
    return api_ok({"key": service, "value": key.masked if key else ""})


@api_view("POST")
def workflow_models(request: HttpRequest) -> HttpResponse:
    """The models a ComfyUI workflow loads (or an image names), each with what the library has of it:
    the workflow's JSON as the body, or a `workflow` file (JSON, or an image made by ComfyUI, A1111,
    Forge or on Civitai)."""
    upload = request.FILES.get("workflow")
    data = upload.read(MAX_WORKFLOW_BYTES + 1) if upload else request.body
    try:
        needs = selectors.workflow_needs(models_in_workflow(data))
    except WorkflowError as exc:
        raise ApiError(str(exc)) from None
    return api_ok([_need_data(need) for need in needs])


def _need_data(need: selectors.NeededModel) -> dict[str, object]:
    return {
        "name": need.model.name,
        "type": need.model.folder_type,
        "url": need.model.url,
        "sha256": need.model.sha256,
        "autov2": need.model.autov2,
        "state": need.state,
        "model": need.have and model_address(need.have),
        "elsewhere": need.elsewhere and model_address(need.elsewhere),
        "similar": need.similar and model_address(need.similar),
    }
