"""Reads of the model library, shared by the pages and the JSON API."""

from __future__ import annotations

import hashlib
import re
import shutil
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

from django.core.cache import cache
from django.db.models import Count, Exists, F, Max, OuterRef, Q, QuerySet, StringAgg, Subquery, Sum, Value

from downloads_app.models import DownloadedFile, Platform
from models_app.models import CivitaiModel, InfoTask, LibraryVersion, ModelFile, MoveTask, ScanTask
from models_app.roots import (
    PathOutsideRoot,
    RootNotThere,
    UnknownRoot,
    clean_relative_path,
    get_roots,
    model_path,
    root_to_write,
)

PAGE_SIZE = 60
# A refresh draws again as many cards as the page showed, so that the user keeps their place; this many
# pages at most (the cards further down arrive again by infinite scroll).
MAX_PAGES_AT_ONCE = 20
SORTS = {
    "name": ("Name A–Z", ("name", "pk")),
    "-name": ("Name Z–A", ("-name", "-pk")),
    "-size": ("Largest first", ("-size", "pk")),
    "size": ("Smallest first", ("size", "pk")),
    "-modified": ("Recently modified", ("-modified_at", "pk")),
    "modified": ("Oldest modified", ("modified_at", "pk")),
    "-created": ("Recently added", ("-created_at", "pk")),
    "created": ("First added", ("created_at", "pk")),
}


@dataclass(frozen=True)
class LibraryQuery:
    folder_type: str = ""
    sub_folder: str = ""
    search: str = ""
    base_model: str = ""
    label: str = ""
    updates: bool = False  # only the models with an update on Civitai
    older: bool = False  # only the models with a newer version of theirs in the library
    sort: str = "name"
    page: int = 1
    pages: int = 1  # how many pages from `page` on; only a refresh asks for more than one

    @classmethod
    def from_params(cls, params: dict[str, str]) -> LibraryQuery:
        # Past the last page is an empty page; past this one, an offset the database refuses.
        page = min(max(1, _number(params, "page")), 1_000_000)
        shown = _number(params, "shown")
        sort = params.get("sort", "name")
        return cls(
            folder_type=params.get("type", "").strip(),
            sub_folder=params.get("folder", "").strip().strip("/"),
            search=params.get("q", "").strip()[:200],
            base_model=params.get("base", "").strip()[:100],
            label=params.get("tag", "").strip()[:200],
            updates=params.get("updates") == "1",
            older=params.get("older") == "1",
            sort=sort if sort in SORTS else "name",
            page=page,
            pages=min(MAX_PAGES_AT_ONCE, max(1, -(-shown // PAGE_SIZE))),
        )

    @property
    def filters(self) -> list[str]:
        """The filters in use besides the folder type, in words, for "no models match"."""
        return [
            text
            for value, text in (
                (self.search, f"“{self.search}”"),
                (self.sub_folder, f"folder {self.sub_folder}"),
                (self.base_model, f"base model {self.base_model}"),
                (self.label, f"tag {self.label}"),
                (self.updates, "with an update on Civitai"),
                (self.older, "with a newer version in the library"),
            )
            if value
        ]

    def params(self, **changes: object) -> dict[str, object]:
        values: dict[str, object] = {
            "type": self.folder_type,
            "folder": self.sub_folder,
            "q": self.search,
            "base": self.base_model,
            "tag": self.label,
            "updates": "1" if self.updates else "",
            "older": "1" if self.older else "",
            "sort": self.sort,
        }
        values.update(changes)
        return {k: v for k, v in values.items() if v not in ("", None) and not (k == "sort" and v == "name")}


def _number(params: dict[str, str], name: str) -> int:
    """The whole number in the address, or 0 when it is missing or not one (an edited address)."""
    try:
        return int(params.get(name, "0"))
    except ValueError:
        return 0


@dataclass(frozen=True)
class LibraryPage:
    models: list[ModelFile]
    has_next: bool
    query: LibraryQuery
    total: int | None = None  # on the first page: how many models the filters match, and their size
    total_size: int | None = None


HASH_PREFIX = re.compile(r"[0-9a-f]{10,64}")  # AutoV2 is the first 10 hex digits of the SHA256


def filtered_models(query: LibraryQuery) -> QuerySet[ModelFile]:
    models = ModelFile.objects.all()
    if query.folder_type:
        models = models.filter(folder_type=query.folder_type)
    if query.sub_folder:
        models = models.filter(
            Q(sub_folder=query.sub_folder) | Q(sub_folder__startswith=query.sub_folder + "/")
        )
    for term in query.search.lower().split():
        words = Q(search_text__contains=term)
        # A hash pasted from an image's parameters ("Model hash: 31e35c80fc", AutoV2) or from Civitai.
        if HASH_PREFIX.fullmatch(term):
            words |= Q(sha256__startswith=term)
        models = models.filter(words)
    if query.base_model:
        models = models.filter(base_model=query.base_model)
    if query.label:
        models = models.filter(labels__contains=f"\n{query.label.lower()}\n")
    if query.updates:
        models = _with_an_update(models)
    if query.older:
        models = _with_a_newer_version_here(models)
    return models


def _newer_version() -> QuerySet[CivitaiModel]:
    """For the model row outside: the newest version of its Civitai model, when that is not the version
    the model is and the library does not hold it either (then the model has an update)."""
    return (
        CivitaiModel.objects.filter(model_id=OuterRef("civitai_model_id"))
        .exclude(version_id=OuterRef("civitai_version_id"))
        .exclude(
            Exists(
                ModelFile.objects.filter(
                    civitai_model_id=OuterRef("model_id"), civitai_version_id=OuterRef("version_id")
                )
            )
        )
    )


def _changed_on_the_hub() -> QuerySet[DownloadedFile]:
    """The files downloaded from a Hugging Face branch that holds another file at their path now, when
    the library does not hold that one too (then their model has an update)."""
    return (
        DownloadedFile.objects.filter(platform=Platform.HUGGINGFACE)
        .exclude(hub_sha256="")
        .exclude(hub_sha256=F("sha256"))
        .exclude(Exists(ModelFile.objects.filter(sha256=OuterRef("hub_sha256"))))
    )


def _with_an_update(models: QuerySet[ModelFile]) -> QuerySet[ModelFile]:
    # The models of the Civitai models asked about first, by the index: most rows have no Civitai info.
    asked = CivitaiModel.objects.values("model_id")
    on_civitai = Q(civitai_model_id__in=asked) & Exists(_newer_version())
    return models.filter(on_civitai | Q(sha256__in=_changed_on_the_hub().values("sha256")))


def with_update(models: QuerySet[ModelFile]) -> QuerySet[ModelFile]:
    """The models with `newer_version_id` and `newer_version_name`: the version Civitai has out that the
    library does not hold, or None; and `newer_on_hub`: whether the Hugging Face branch the file came
    from holds another file at its path now, which the library does not hold."""
    newer = _newer_version()
    # Most libraries have no file the hub was asked about: one look then spares a subquery per card.
    on_hub = (
        Exists(_changed_on_the_hub().filter(sha256=OuterRef("sha256"))) if _hub_was_asked() else Value(False)
    )
    return models.annotate(
        newer_version_id=Subquery(newer.values("version_id")[:1]),
        newer_version_name=Subquery(newer.values("version_name")[:1]),
        newer_on_hub=on_hub,
    )


def _hub_was_asked() -> bool:
    return DownloadedFile.objects.exclude(hub_sha256="").exists()


def newer_version(model: ModelFile) -> tuple[int, str] | None:
    """The id and name of the newer version with_update found for `model`, or None."""
    version_id = getattr(model, "newer_version_id", None)
    return (version_id, getattr(model, "newer_version_name", None) or "") if version_id else None


def has_update(model: ModelFile) -> bool:
    return _with_an_update(ModelFile.objects.filter(pk=model.pk)).exists()


def _with_a_newer_version_here(models: QuerySet[ModelFile]) -> QuerySet[ModelFile]:
    """The models that a newer version of the same Civitai model in the library supersedes: Civitai
    numbers versions in the order they are published, so a larger version id is a newer version."""
    newer_here = ModelFile.objects.filter(
        civitai_model_id=OuterRef("civitai_model_id"), civitai_version_id__gt=OuterRef("civitai_version_id")
    )
    # Most rows have no Civitai info: the partial index on the Civitai ids leaves them out at once.
    known = models.filter(civitai_model_id__isnull=False, civitai_version_id__isnull=False)
    return known.filter(Exists(newer_here))


def count_with_update() -> int:
    if not CivitaiModel.objects.exists() and not _hub_was_asked():  # nobody checked for updates yet
        return 0
    return _with_an_update(ModelFile.objects.all()).count()


def base_models(folder_type: str) -> list[str]:
    models = ModelFile.objects.exclude(base_model="")
    if folder_type:
        models = models.filter(folder_type=folder_type)
    return sorted(models.order_by().values_list("base_model", flat=True).distinct(), key=str.lower)


def common_labels(folder_type: str, limit: int = 150) -> list[str]:
    """The trigger words and tags most models of that type share, for the tag filter."""
    models = ModelFile.objects.exclude(labels="")
    if folder_type:
        models = models.filter(folder_type=folder_type)
    # Each row's labels are "\nword\nword\n": joined by the database into one text, they are split and
    # counted in C, three times faster than row by row (the first page load after a change waits on it).
    every = models.aggregate(every=StringAgg("labels", Value("")))["every"] or ""
    counts = Counter(every.split("\n"))
    counts.pop("", None)
    return sorted((label for label, _ in counts.most_common(limit)), key=str.lower)


@dataclass(frozen=True)
class DuplicateGroup:
    models: list[ModelFile]
    files: int  # the distinct files on disk among them: copies that are hard links are one file

    @property
    def first(self) -> ModelFile:
        return self.models[0]

    @property
    def freed_by_keeping_one(self) -> int:
        return max(0, self.files - 1) * self.first.size


def duplicates() -> list[DuplicateGroup]:
    """Models with the same SHA256 and size, across types and roots: the group whose copies free the
    most first.

    The size is compared too because a hash may come from a sidecar rather than from the file: a
    .civitai.info copied beside the wrong model must not offer a different model for deletion.
    """
    shared = (
        ModelFile.objects.exclude(sha256="")
        .values("sha256", "size")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
        .values_list("sha256", flat=True)
    )
    groups: dict[tuple[str, int], list[ModelFile]] = {}
    for model in ModelFile.objects.filter(sha256__in=list(shared)).order_by(
        "sha256", "folder_type", "relative_path"
    ):
        groups.setdefault((model.sha256, model.size), []).append(model)
    return sorted(
        (DuplicateGroup(group, _files_on_disk(group)) for group in groups.values() if len(group) > 1),
        key=lambda group: (-group.freed_by_keeping_one, -group.first.size * len(group.models)),
    )


def _files_on_disk(models: list[ModelFile]) -> int:
    """How many files the models are: deleting one of several hard links to a file frees nothing."""
    files = set()
    for model in models:
        try:
            found = model_path(model).stat()
        except (OSError, PathOutsideRoot, UnknownRoot):  # gone since the scan, or its folder unset
            continue
        files.add((found.st_dev, found.st_ino))
    return len(files)


def library_page(query: LibraryQuery) -> LibraryPage:
    card_fields = (
        "folder_type", "path_index", "relative_path", "name", "extension", "is_dir", "size", "mtime_ns",
        "base_model", "preview", "nsfw_level", "sub_folder", "modified_at", "sidecar_signature", "header_error",
    )  # fmt: skip
    models = with_update(filtered_models(query).order_by(*SORTS[query.sort][1]).only(*card_fields))
    start, size = (query.page - 1) * PAGE_SIZE, query.pages * PAGE_SIZE
    rows = list(models[start : start + size + 1])
    page = LibraryPage(models=rows[:size], has_next=len(rows) > size, query=query)
    if query.page == 1:
        found = filtered_models(query).aggregate(total=Count("pk"), total_size=Sum("size"))
        page = replace(page, total=found["total"], total_size=found["total_size"] or 0)
    return page


@dataclass(frozen=True)
class LibraryMenus:
    """The side bar's counts and the filter menus of one folder type ("" for all)."""

    type_counts: list[tuple[str, int]]
    sub_folders: list[str]
    base_models: list[str]
    labels: list[str]
    updates: int  # models with an update on Civitai
    older: int  # models with a newer version of theirs in the library

    def types_split(self, active: str) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        """The types that hold models (and the one open), then the empty ones: a ComfyUI folder brings
        nineteen types, and most people fill a handful."""
        shown: list[tuple[str, int]] = []
        empty: list[tuple[str, int]] = []
        for kind, count in self.type_counts:
            (shown if count or kind == active else empty).append((kind, count))
        return shown, empty


MENUS_CACHE_SECONDS = 24 * 3600


def library_menus(folder_type: str) -> LibraryMenus:
    """Each menu reads the whole table (the tag counts took 140 ms of a 70,000-model page), and they
    change only when model rows do: they are kept in the cache under the library's version."""
    rows = ModelFile.objects.aggregate(count=Count("pk"), newest=Max("pk"))
    version = f"{rows['count']}.{rows['newest']}.{LibraryVersion.current()}"
    # Hashed: the folder type comes from the query string, and a cache key must stay short and plain.
    key = "library-menus:" + hashlib.sha1(f"{folder_type}\0{version}".encode()).hexdigest()
    cached = cache.get(key)
    if cached is None:
        counts = dict(ModelFile.objects.values_list("folder_type").annotate(n=Count("pk")).order_by())
        cached = (
            counts,
            sub_folders(folder_type),
            base_models(folder_type),
            common_labels(folder_type),
            count_with_update(),
            _with_a_newer_version_here(ModelFile.objects.all()).count(),
        )
        cache.set(key, cached, MENUS_CACHE_SECONDS)
    counts, folders, bases, labels, updates, older = cached
    # The configured types are joined in afresh: they come from the settings, not from the rows.
    return LibraryMenus(_with_configured_types(counts), folders, bases, labels, updates, older)


def _with_configured_types(counts: dict[str, int]) -> list[tuple[str, int]]:
    """Every configured folder type (and any type still in the database) with its number of models."""
    types = get_roots().types() + sorted(set(counts) - set(get_roots().types()))
    return [(t, counts.get(t, 0)) for t in types]


@dataclass(frozen=True)
class ModelFolder:
    """A configured folder, whether it is there now, and how many models the library knows in it."""

    folder_type: str
    path_index: int
    path: Path
    is_there: bool
    models: int
    free: int | None = None  # bytes free on its disk


def model_folders() -> list[ModelFolder]:
    counts = {
        (t, i): n
        for t, i, n in ModelFile.objects.order_by()
        .values_list("folder_type", "path_index")
        .annotate(n=Count("pk"))
    }
    return [
        ModelFolder(t, i, p, p.is_dir(), counts.get((t, i), 0), free_space(p) if p.is_dir() else None)
        for t, i, p in get_roots()
    ]


def free_space(folder: Path) -> int | None:
    """Bytes free on the disk of `folder`, or None when that cannot be told."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


class FolderToWrite(NamedTuple):
    path_index: int
    path: Path
    writable: bool  # whether a download or a move can write into it now (root_to_write)
    free: int | None  # bytes free on its disk, to choose between a full SSD and a NAS; None: unknown


def folders_to_write() -> dict[str, list[FolderToWrite]]:
    """Each folder type's folders by index, whether each can be written now, and the space free there."""
    folders: dict[str, list[FolderToWrite]] = {}
    for folder_type, index, path in get_roots():
        try:
            root = root_to_write(folder_type, index)
        except RootNotThere:
            folders.setdefault(folder_type, []).append(FolderToWrite(index, path, False, None))
            continue
        free = free_space(root if root.is_dir() else root.parent)
        folders.setdefault(folder_type, []).append(FolderToWrite(index, path, True, free))
    return folders


def sub_folders(folder_type: str) -> list[str]:
    """Every subfolder that holds models (and its parents), for the folder filter."""
    models = ModelFile.objects.exclude(sub_folder="")
    if folder_type:
        models = models.filter(folder_type=folder_type)
    found: set[str] = set()
    for sub_folder in models.order_by().values_list("sub_folder", flat=True).distinct():
        parts = sub_folder.split("/")
        found.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return sorted(found, key=str.lower)


def models_with_sha256(sha256: str, limit: int = 5) -> list[ModelFile]:
    """Library models whose file has that SHA256 (a download the user may already have)."""
    if not sha256:
        return []
    return list(
        ModelFile.objects.filter(sha256=sha256.lower())
        .only("folder_type", "path_index", "relative_path")
        .order_by("folder_type", "path_index", "relative_path")[:limit]
    )


def model_get(folder_type: str, path_index: int, relative_path: str) -> ModelFile | None:
    """The model at that address; raises PathOutsideRoot for a path that climbs out."""
    relative_path = clean_relative_path(relative_path)
    return with_update(
        ModelFile.objects.filter(folder_type=folder_type, path_index=path_index, relative_path=relative_path)
    ).first()


def model_with_update(model: ModelFile) -> ModelFile:
    """`model` with its `newer_version_*` (with_update), read again if it was read without them."""
    if hasattr(model, "newer_version_id"):
        return model
    return with_update(ModelFile.objects.filter(pk=model.pk)).first() or model


class OtherVersions(NamedTuple):
    models: list[ModelFile]  # newest version first
    newest_version_id: int | None  # the newest Civitai has published, when it was asked


def other_versions(model: ModelFile, limit: int = 20) -> OtherVersions:
    """The library's other files of the same Civitai model: its other versions, or copies of this one.
    With the newest version among them, the user can see which older file to let go."""
    if not model.civitai_model_id:
        return OtherVersions([], None)
    others = (
        ModelFile.objects.filter(civitai_model_id=model.civitai_model_id)
        .exclude(pk=model.pk)
        .only("folder_type", "path_index", "relative_path", "civitai_version_id", "civitai_name")
        .order_by(F("civitai_version_id").desc(nulls_last=True), "folder_type", "relative_path")
    )
    newest = CivitaiModel.objects.filter(model_id=model.civitai_model_id).values_list("version_id", flat=True)
    return OtherVersions(list(others[:limit]), newest.first())


def latest_info() -> InfoTask | None:
    """The job the pages show: not a check the worker started that found no update (InfoTask.is_quiet)."""
    return InfoTask.objects.filter(InfoTask.SHOWN).order_by("-created_at", "-pk").first()


def latest_move() -> MoveTask | None:
    return MoveTask.objects.order_by("-created_at", "-pk").first()


def latest_scan() -> ScanTask | None:
    return ScanTask.objects.order_by("-created_at", "-pk").first()
