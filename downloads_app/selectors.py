"""Reads of downloads for the pages and the API."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from django.core.cache import cache
from django.db.models import Case, Q, Value, When

from downloads_app import services
from downloads_app.events import render_task_row
from downloads_app.models import ApiKey, DownloadSettings, DownloadTask
from downloads_app.sources import Keys, RemoteVersion, Resolution, resolve
from downloads_app.workflows import WorkflowModel
from mmsite.models import TaskStatus
from models_app.models import ModelFile
from models_app.roots import UnknownRoot, get_roots
from models_app.selectors import models_with_sha256

RESOLUTION_TTL = 600


def tasks() -> list[DownloadTask]:
    return list(DownloadTask.objects.order_by("-created_at", "-pk")[:500])


def unfinished_rows_fragment() -> str:
    """The rows that may have changed while a page's socket was away."""
    unfinished = DownloadTask.objects.exclude(status__in=[TaskStatus.DONE, TaskStatus.CANCELLED])
    return "".join(render_task_row(task) for task in unfinished[:200])


def resolution_get(url: str, keys: Keys | None = None) -> Resolution:
    """Resolves a link, remembered for ten minutes per link and keys (picking a version or a folder
    re-renders the form without asking the service again). Given the keys, it reads no database."""
    keys = keys or services.keys()
    cache_key = (
        "resolution:" + hashlib.sha256(f"{url}|{keys.civitai}|{keys.huggingface}".encode()).hexdigest()
    )
    found = cache.get(cache_key)
    if found is None:
        found = resolve(url, endpoints=services.endpoints(), keys=keys)
        cache.set(cache_key, found, RESOLUTION_TTL)
    return found


def older_version_to_replace(model_id: str, version: RemoteVersion) -> ModelFile | None:
    """The library model `model_id` when the download of `version` can replace it: another version of
    the same Civitai model (the one whose update the model dialog offered)."""
    civitai_model_id = version.info.get("modelId")
    if not (model_id.isdecimal() and version.id.isdecimal() and type(civitai_model_id) is int):
        return None
    return (
        ModelFile.objects.filter(pk=int(model_id), civitai_model_id=civitai_model_id)
        .exclude(civitai_version_id=int(version.id))
        .only("folder_type", "path_index", "relative_path")
        .first()
    )


def existing_sub_folders(folder_type: str, path_index: int, *, depth: int = 3, limit: int = 300) -> list[str]:
    """Folders already inside a model root, to offer as subfolders."""
    try:
        root = get_roots().get(folder_type, path_index)
    except UnknownRoot:
        return []
    found: list[str] = []
    for dirpath, dirnames, _ in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        relative = Path(dirpath).relative_to(root)
        if len(relative.parts) >= depth:
            dirnames[:] = []
        if relative.parts:
            found.append(relative.as_posix())
        if len(found) >= limit:
            break
    return found


def api_keys() -> dict[str, ApiKey]:
    return {key.service: key for key in ApiKey.objects.all()}


def speed_limit() -> int:
    """Bytes a second for all downloads together, as the settings say now; 0 for no limit."""
    return DownloadSettings.current().speed_limit


@dataclass(frozen=True)
class NeededModel:
    """A model file a workflow loads, and what the library has of it."""

    model: WorkflowModel
    have: ModelFile | None = None  # where ComfyUI finds it: in its folder, under the workflow's name
    elsewhere: ModelFile | None = None  # the same file (by SHA256, else by file name) at another place
    downloading: bool = False
    no_folder: bool = False  # its folder type is not among the model folders

    @property
    def state(self) -> str:
        if self.have:
            return "have"
        if self.downloading:
            return "queued"
        return "no_folder" if self.no_folder else "missing"


def workflow_needs(models: list[WorkflowModel]) -> list[NeededModel]:
    types = set(get_roots().types())
    return [_needed(model, types) for model in models]


def _needed(model: WorkflowModel, types: set[str]) -> NeededModel:
    files = ModelFile.objects.filter(is_dir=False).only("folder_type", "path_index", "relative_path")
    in_its_folder = files.filter(folder_type=model.folder_type) if model.folder_type else files
    if have := in_its_folder.filter(relative_path=model.name).order_by("folder_type", "path_index").first():
        return NeededModel(model, have=have)
    if model.folder_type and model.folder_type not in types:
        return NeededModel(model, no_folder=True)
    downloads = DownloadTask.objects.filter(sub_folder=model.sub_folder, filename=model.filename).exclude(
        status__in=(TaskStatus.DONE, TaskStatus.CANCELLED, TaskStatus.FAILED)
    )
    if model.folder_type:
        downloads = downloads.filter(folder_type=model.folder_type)
    if downloads.exists():
        return NeededModel(model, downloading=True)
    same_file = models_with_sha256(model.sha256, limit=1)
    same_name = (
        files.filter(Q(relative_path=model.filename) | Q(relative_path__endswith=f"/{model.filename}"))
        .order_by(
            Case(When(folder_type=model.folder_type, then=Value(0)), default=Value(1)),
            "folder_type",
            "path_index",
            "relative_path",
        )
        .first()
    )
    return NeededModel(model, elsewhere=same_file[0] if same_file else same_name)
