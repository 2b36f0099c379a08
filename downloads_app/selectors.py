"""Reads of downloads for the pages and the API."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Case, Q, Value, When

from downloads_app import hub_updates, services
from downloads_app.events import render_summary, render_task_row
from downloads_app.models import ApiKey, DownloadedFile, DownloadSettings, DownloadTask, Platform
from downloads_app.sources import Keys, RemoteFile, RemoteVersion, Resolution, resolve
from downloads_app.workflows import WorkflowModel
from mmsite.models import TaskStatus
from models_app.civitai_api import IN_A_REQUEST, CivitaiUnavailable, LookupFailed, RateLimited, ask
from models_app.extensions import MODEL_EXTENSIONS
from models_app.models import ModelFile
from models_app.roots import UnknownRoot, get_roots
from models_app.selectors import models_with_sha256

RESOLUTION_TTL = 600


def tasks() -> list[DownloadTask]:
    return list(DownloadTask.objects.order_by("-created_at", "-pk")[:500])


def unfinished_rows_fragment() -> str:
    """The rows that may have changed while a page's socket was away."""
    unfinished = DownloadTask.objects.exclude(status__in=[TaskStatus.DONE, TaskStatus.CANCELLED])
    return "".join(render_task_row(task) for task in unfinished[:200]) + render_summary(oob=True)


def resolution_get(url: str, keys: Keys | None = None, *, fresh: bool = False) -> Resolution:
    """Resolves a link, remembered for ten minutes per link and keys (picking a version or a folder
    re-renders the form without asking the service again); `fresh` asks the service all the same. Given
    the keys, it reads no database."""
    keys = keys or services.keys()
    cache_key = (
        "resolution:" + hashlib.sha256(f"{url}|{keys.civitai}|{keys.huggingface}".encode()).hexdigest()
    )
    found = None if fresh else cache.get(cache_key)
    if found is None:
        found = resolve(url, endpoints=services.endpoints(), keys=keys)
        cache.set(cache_key, found, RESOLUTION_TTL)
    return found


def older_version_to_replace(model_id: str, version: RemoteVersion, remote: RemoteFile) -> ModelFile | None:
    """The library model `model_id` when the download of `remote` can replace it (the model dialog
    offered its update): another version of the same Civitai model, or another file of the same
    Hugging Face path."""
    if not model_id.isdecimal():
        return None
    models = ModelFile.objects.filter(pk=int(model_id)).only(
        "folder_type", "path_index", "relative_path", "sha256", "civitai_model_id", "civitai_version_id"
    )
    civitai_model_id = version.info.get("modelId")
    if type(civitai_model_id) is int:
        if not version.id.isdecimal():
            return None
        return (
            models.filter(civitai_model_id=civitai_model_id)
            .exclude(civitai_version_id=int(version.id))
            .first()
        )
    model = models.first()
    source = downloaded_from(model.sha256) if model is not None else None
    if source is None or source.sha256 == remote.sha256 or source.platform != Platform.HUGGINGFACE:
        return None
    return model if hub_updates.same_path(source.page_url, remote.download_url) else None


def downloaded_from(sha256: str) -> DownloadedFile | None:
    """Where the file with that SHA256 was downloaded from, if it was downloaded here."""
    return DownloadedFile.objects.filter(sha256=sha256).first() if sha256 else None


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
    """A model a workflow (or an image) needs, and what the library has of it."""

    model: WorkflowModel
    have: ModelFile | None = None  # where ComfyUI finds it: in its folder, under the workflow's name
    elsewhere: ModelFile | None = None  # the same file (by SHA256, else by name) at another place
    similar: ModelFile | None = None  # in its folder, a name that differs only in case, - _ . and extension
    downloading: bool = False
    no_folder: bool = False  # its folder type is not among the model folders
    on_civitai: str = ""  # what Civitai calls the version an image's hash names
    not_on_civitai: str = ""  # why Civitai gave no link for it

    @property
    def ticked(self) -> bool:
        """Whether it is offered ticked for download: a link, and no file of its name (or of a similar
        one) in the library."""
        return bool(self.model.url) and self.elsewhere is None and self.similar is None

    @property
    def state(self) -> str:
        if self.have:
            return "have"
        if self.downloading:
            return "queued"
        return "no_folder" if self.no_folder else "missing"


def workflow_needs(models: list[WorkflowModel]) -> list[NeededModel]:
    """What the library has of each model; Civitai is asked for a link to each missing model that an
    image names only by its hash or its Civitai version."""
    types = set(get_roots().types())
    return _with_civitai_links(_with_similar_names([_needed(model, types) for model in models]))


def _needed(model: WorkflowModel, types: set[str]) -> NeededModel:
    files = ModelFile.objects.filter(is_dir=False).only(
        "folder_type", "path_index", "relative_path", "sha256"
    )
    in_its_folder = files.filter(folder_type=model.folder_type) if model.folder_type else files
    if model.exact:
        found = Q(relative_path=model.name)
    elif model.autov2:
        found = Q(sha256__startswith=model.autov2)
    elif model.civitai_version_id:
        found = Q(civitai_version_id=model.civitai_version_id)
    else:  # a LoRA of a prompt, by its name alone, as A1111 finds it
        found = _named(model.name)
    if have := in_its_folder.filter(found).order_by("folder_type", "path_index", "relative_path").first():
        return NeededModel(model, have=have)
    if model.folder_type and model.folder_type not in types:
        return NeededModel(model, no_folder=True)
    if _downloading(model):
        return NeededModel(model, downloading=True)
    same_file = models_with_sha256(model.sha256, limit=1)
    if model.exact:
        same_name = Q(relative_path=model.filename) | Q(relative_path__endswith=f"/{model.filename}")
    else:
        same_name = _named(model.name)
    elsewhere = (
        files.filter(same_name)
        .order_by(
            Case(When(folder_type=model.folder_type, then=Value(0)), default=Value(1)),
            "folder_type",
            "path_index",
            "relative_path",
        )
        .first()
    )
    return NeededModel(model, elsewhere=same_file[0] if same_file else elsewhere)


def _named(name: str) -> Q:
    """The models an image calls `name`: A1111 names a model by its file name, with or without its
    extension, and a LoRA of a prompt with its subfolder (`style/pepper`) or without it."""
    sub_folder, _, stem = name.rpartition("/")
    by_stem = Q(name=stem, sub_folder=sub_folder) if sub_folder else Q(name=stem)
    return by_stem | Q(relative_path=name)


def _with_similar_names(needs: list[NeededModel]) -> list[NeededModel]:
    """A missing model that the library has under a name that differs only in case, separators or
    extension (`4x-UltraSharp.pth`, `4x_ultrasharp.safetensors`): as workflows others made often name
    it. One read of the names of each folder type that needs it."""
    by_type: dict[str, dict[str, int]] = {}
    similar: dict[int, int] = {}
    for i, need in enumerate(needs):
        if need.state != "missing" or need.elsewhere or not (key := _name_key(need.model.filename)):
            continue
        folder_type = need.model.folder_type
        if folder_type not in by_type:
            files = ModelFile.objects.filter(is_dir=False).order_by("-path_index", "-relative_path")
            files = files.filter(folder_type=folder_type) if folder_type else files
            # Ordered so that, of several, the first by folder and path is kept.
            by_type[folder_type] = {_name_key(name): pk for pk, name in files.values_list("pk", "name")}
        if pk := by_type[folder_type].get(key):
            similar[i] = pk
    found = ModelFile.objects.in_bulk(similar.values())
    return [
        replace(need, similar=found[similar[i]]) if i in similar else need for i, need in enumerate(needs)
    ]


def _name_key(filename: str) -> str:
    stem, dot, extension = filename.rpartition(".")
    if not dot or f".{extension.lower()}" not in MODEL_EXTENSIONS:
        stem = filename  # an image's name for a model has no extension, or a dot of its own
    return re.sub(r"[\W_]+", "", stem.casefold())


def _downloading(model: WorkflowModel) -> bool:
    downloads = DownloadTask.objects.exclude(
        status__in=(TaskStatus.DONE, TaskStatus.CANCELLED, TaskStatus.FAILED)
    )
    if model.exact:
        downloads = downloads.filter(sub_folder=model.sub_folder, filename=model.filename)
    elif model.autov2:
        downloads = downloads.filter(expected_sha256__istartswith=model.autov2)
    elif version := model.civitai_version_id:  # each file of a version downloads from its address
        download = f"/api/download/models/{version}"
        downloads = downloads.filter(
            Q(download_url__endswith=download) | Q(download_url__contains=f"{download}?")
        )
    else:
        return False
    if model.folder_type:
        downloads = downloads.filter(folder_type=model.folder_type)
    return downloads.exists()


def _with_civitai_links(needs: list[NeededModel]) -> list[NeededModel]:
    def wants_a_link(need: NeededModel) -> bool:
        model = need.model
        return need.state == "missing" and not model.url and bool(model.autov2 or model.civitai_version_id)

    hashes = [need.model.autov2 for need in needs if wants_a_link(need) and not need.model.civitai_version_id]
    versions = _civitai_versions(list(dict.fromkeys(hashes)))
    with_links = []
    for need in needs:
        model = need.model
        if not wants_a_link(need):
            with_links.append(need)
        elif model.civitai_version_id:
            url = f"{settings.MM_CIVITAI_URL.rstrip('/')}/api/download/models/{model.civitai_version_id}"
            with_links.append(replace(need, model=replace(model, url=url), on_civitai=model.name))
        elif isinstance(version := versions[model.autov2], Exception):
            with_links.append(replace(need, not_on_civitai=str(version)))
        else:
            url, name = _civitai_file_link(version, model.autov2)
            with_links.append(replace(need, model=replace(model, url=url), on_civitai=name))
    return with_links


def _civitai_versions(hashes: list[str]) -> dict[str, dict[str, Any] | LookupFailed | CivitaiUnavailable]:
    """Civitai's version of each hash, or why it gave none. The first hash is asked alone: when Civitai
    cannot be asked (a refused key, a wait longer than a page can), it is not asked again for the others,
    which all say so. Then the others are asked together."""
    if not hashes:
        return {}
    key = services.keys().civitai

    def by_hash(autov2: str) -> dict[str, Any] | LookupFailed | CivitaiUnavailable:
        try:
            version = ask(
                f"/api/v1/model-versions/by-hash/{autov2}", lambda: False, patience=IN_A_REQUEST, key=key
            )
        except (CivitaiUnavailable, LookupFailed) as exc:
            return exc
        return version if version is not None else LookupFailed("Civitai does not know this hash.")

    first = by_hash(hashes[0])
    if isinstance(first, CivitaiUnavailable | RateLimited):
        return dict.fromkeys(hashes, first)
    return {hashes[0]: first} | dict(
        zip(hashes[1:], services.asked_at_once(by_hash, hashes[1:]), strict=True)
    )


def _civitai_file_link(version: dict[str, Any], autov2: str) -> tuple[str, str]:
    """The download link of the version's file with that hash (a version has several: fp16, fp32, …),
    and what Civitai calls the version."""
    files = [f for f in version.get("files") or [] if isinstance(f, dict)]
    hashed = next(
        (f for f in files if str((f.get("hashes") or {}).get("SHA256", "")).lower().startswith(autov2)), {}
    )
    url = str(hashed.get("downloadUrl") or version.get("downloadUrl") or "")
    model = version.get("model")
    model = model if isinstance(model, dict) else {}
    name = " · ".join(str(part) for part in (model.get("name"), version.get("name")) if part)
    return url, name
