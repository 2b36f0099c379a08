"""Keeps one ModelFile row per model that walk.py finds, reading headers and sidecars.

A rescan is cheap: a model whose (size, mtime_ns) and sidecar listing are unchanged is not opened;
only its folder is listed and the model stat'ed. A full scan reads every header and sidecar again.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from django.db.models import QuerySet

from models_app.hashing import hash_key
from models_app.headers import (
    InvalidHeader,
    MetadataJSON,
    base_model_from_metadata,
    metadata_json_of_header,
    read_header_bytes_at,
    read_header_bytes_from,
)
from models_app.models import HashCache, ModelFile
from models_app.read_ahead import ReadAhead, read_through, starts_are_cached
from models_app.root_moves import follow_moved_roots
from models_app.roots import ModelRoots
from models_app.row_writer import RowWriter, Writer, writer_for_scan
from models_app.sidecars import (
    MAX_SIDECAR_BYTES,
    PREVIEW_SUFFIXES,
    FolderSidecars,
    SidecarInfo,
    read_sidecars,
)
from models_app.walk import FoundModel, Unreachable, list_folder, walk_models

logger = logging.getLogger("mm.scanner")

BATCH_SIZE = 1000
HEADER_EXTENSIONS = (".safetensors", ".sft")
EMPTY_METADATA = MetadataJSON("{}")


class ScanStopped(Exception):
    """The scan was asked to stop (cancel) between two files."""


KnownRow = tuple[int, int, int, str]  # a stored model's id, size, mtime_ns and sidecar signature


def place_name(roots: ModelRoots, folder_type: str, path_index: int, place: str) -> str:
    """How messages name a place under a root: `loras/style`, or the root itself with its path."""
    return f"{folder_type}/{place}" if place else f"{folder_type} folder {roots.get(folder_type, path_index)}"


class KeptPlace(NamedTuple):
    """A place the scan could not reach, whose known models it kept; `message` is its line in the
    scan's errors. The user may forget them (services.forget_kept_models) when the place is gone for good."""

    folder_type: str
    path_index: int
    place: str  # inside the root; "" for the root itself
    model_count: int
    message: str


@dataclass
class ScanProgress:
    total: int = 0
    processed: int = 0
    added: int = 0
    updated: int = 0
    removed: int = 0
    current_path: str = ""
    errors: list[str] = field(default_factory=list)
    kept: list[KeptPlace] = field(default_factory=list)

    def error_report(self, limit: int = 20) -> str:
        """The first `limit` errors, one a line, and how many more there were."""
        more = len(self.errors) - limit
        return "\n".join(self.errors[:limit]) + (f"\n… and {more} more" if more > 0 else "")


def _dir_totals(path: str) -> tuple[int, int]:
    """Size and newest mtime of a diffusers folder."""
    size, newest = 0, 0
    for dirpath, _dirnames, filenames in os.walk(path, followlinks=True):
        for name in filenames:
            try:
                st = os.stat(os.path.join(dirpath, name))
            except OSError:
                continue
            size += st.st_size
            newest = max(newest, st.st_mtime_ns)
    return size, newest


def _sidecars_of(found: FoundModel) -> tuple[list[str], str]:
    """The model's sidecar names and a signature that changes when one is added, removed or rewritten."""
    names = found.folder_sidecars.of(found.entry.name, is_dir=found.is_dir)
    if not names:
        return names, ""
    parts = []
    for name in names:
        try:
            st = found.siblings[name].stat()
        except OSError:
            continue
        parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    return names, hashlib.sha1("|".join(parts).encode()).hexdigest() if parts else ""


def _has_header(found: FoundModel) -> bool:
    """Whether the model is a safetensors file, whose header the scan reads."""
    return not found.is_dir and found.entry.name.lower().endswith(HEADER_EXTENSIONS)


def _read_into_cache(found: FoundModel) -> None:
    """Reads what _scan_one will read of `found`: its inode, header and sidecars. Runs on read-ahead
    threads, so it stats by path: a DirEntry caches its stat without a lock."""
    size = os.stat(found.entry.path).st_size
    for name in found.folder_sidecars.of(found.entry.name, is_dir=found.is_dir):
        path = os.path.join(os.path.dirname(found.entry.path), name)
        if name.endswith(PREVIEW_SUFFIXES):
            os.stat(path)
        else:
            read_through(path, MAX_SIDECAR_BYTES)
    if _has_header(found):
        read_header_bytes_at(found.entry.path, size)


def _read_ahead_for(models: list[FoundModel]) -> ReadAhead[FoundModel]:
    """Threads reading ahead of the scanner, started only when `models` are not in the page cache: on a
    cold cache the scan would otherwise wait on the disk for each file in turn (see read_ahead.py)."""
    cached = starts_are_cached([m.entry.path for m in models if not m.is_dir])
    return ReadAhead(models, _read_into_cache, enabled=bool(models) and cached is not True)


def _key(found: FoundModel) -> tuple[str, int, str]:
    return found.folder_type, found.path_index, found.relative_path


def _timestamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _stat_and_metadata(found: FoundModel) -> tuple[os.stat_result, dict[str, str], MetadataJSON, str]:
    """The model's stat, its metadata map, that map's JSON text to store, and why it could not be read.
    A safetensors file is opened once for both: a stat by path costs another lookup of the path."""
    if not _has_header(found):
        return found.entry.stat(), {}, EMPTY_METADATA, ""
    try:
        fd = os.open(found.entry.path, os.O_RDONLY)
        try:
            st = os.fstat(fd)
            metadata, metadata_json = metadata_json_of_header(read_header_bytes_from(fd, st.st_size))
        finally:
            os.close(fd)
    except InvalidHeader as exc:
        return st, {}, EMPTY_METADATA, str(exc)[:300]
    except OSError as exc:
        return found.entry.stat(), {}, EMPTY_METADATA, f"cannot read: {exc.strerror or exc}"[:300]
    return st, metadata, metadata_json, ""


def _file_fields(found: FoundModel) -> tuple[dict[str, Any], dict[str, str], os.stat_result]:
    """The row fields read from the file itself, its metadata map, and its stat."""
    st, metadata, metadata_json, header_error = _stat_and_metadata(found)
    if found.is_dir:
        size, mtime_ns = _dir_totals(found.entry.path)
        name, extension = found.entry.name, ""
    else:
        size, mtime_ns = st.st_size, st.st_mtime_ns
        name, extension = os.path.splitext(found.entry.name)
    return (
        {
            "name": name,
            "extension": extension,
            "is_dir": found.is_dir,
            "size": size,
            "mtime_ns": mtime_ns,
            "modified_at": _timestamp(mtime_ns / 1e9),
            "created_at": _timestamp(getattr(st, "st_birthtime", None) or min(st.st_ctime, st.st_mtime)),
            "metadata": metadata_json,
            "header_error": header_error,
        },
        metadata,
        st,
    )


NO_SIDECARS = SidecarInfo()  # shared by every model without sidecars: its lists are only ever read


def _sidecar_fields(
    found: FoundModel, names: list[str], signature: str, *, name: str, metadata: dict[str, str]
) -> dict[str, Any]:
    info = (
        read_sidecars(os.path.dirname(found.entry.path), found.entry.name, names, is_dir=found.is_dir)
        if names
        else NO_SIDECARS
    )
    base_model = (info.base_model or base_model_from_metadata(metadata))[:100]
    words = [name, found.relative_path, base_model, info.civitai_name, *info.trained_words, *info.tags]
    return {
        "sidecars": info.files,
        "sidecar_signature": signature,
        "preview": info.preview,
        "description": info.description,
        "notes": info.notes,
        "base_model": base_model,
        "trained_words": info.trained_words,
        "tags": info.tags,
        "civitai_model_id": info.civitai_model_id,
        "civitai_version_id": info.civitai_version_id,
        "civitai_name": info.civitai_name[:600],
        "nsfw_level": info.nsfw_level,
        "sha256": info.sha256[:64],
        "search_text": " ".join(words).lower(),
        "labels": "\n" + "".join(f"{w.lower()}\n" for w in dict.fromkeys([*info.trained_words, *info.tags]))
        if info.trained_words or info.tags
        else "",
    }


class Scanner:
    """One pass over every root. `on_progress` is called as each model is found (the total still 0) and
    after each one is read; it may raise ScanStopped.
    `writer` takes the rows in batches: by default a thread writes them while the scan reads on
    (bench/scan.py gives its own, to time the reading and the writing apart)."""

    def __init__(
        self,
        roots: ModelRoots,
        *,
        full: bool = False,
        on_progress: Callable[[ScanProgress], None] | None = None,
        writer: Writer | None = None,
        hashes: QuerySet[HashCache] | None = None,
    ) -> None:
        self.roots = roots
        self.full = full
        self.on_progress = on_progress or (lambda progress: None)
        self.progress = ScanProgress()
        self.writer: Writer = writer or RowWriter()
        self._writes_in_a_thread = writer is None
        # The hashes known by file identity (`hashes`: only those that can be the models read).
        self.hash_cache = {
            (d, i, size, mtime): sha
            for d, i, size, mtime, sha in (
                hashes if hashes is not None else HashCache.objects.all()
            ).values_list("device", "inode", "size", "mtime_ns", "sha256")
        }
        self._inserts: list[dict[str, Any]] = []
        self._updates: list[tuple[int, dict[str, Any]]] = []
        self._sidecar_updates: list[tuple[int, dict[str, Any]]] = []

    def run(self) -> ScanProgress:
        follow_moved_roots(self.roots)
        found, unreachable = self._find_models()
        self.progress.total = len(found)
        self.on_progress(self.progress)
        known = {
            (t, i, p): (pk, size, mtime, sig)
            for pk, t, i, p, size, mtime, sig in ModelFile.objects.values_list(
                "pk", "folder_type", "path_index", "relative_path", "size", "mtime_ns", "sidecar_signature"
            ).iterator(chunk_size=5000)
        }
        if self._writes_in_a_thread:
            self.writer = writer_for_scan()
        try:
            seen = self._scan_all(found, known)
        finally:
            self.writer.close()  # every row read is written before the scan ends, or stops
        kept = self._keep_unreachable(known, seen, unreachable)
        gone = [pk for pk, *_ in known.values() if pk not in seen and pk not in kept]
        delete_models(gone)
        self.progress.removed = len(gone)
        self.progress.current_path = ""
        return self.progress

    def _find_models(self) -> tuple[list[FoundModel], list[tuple[str, int, Unreachable]]]:
        """Every model in every root, and the places that could not be reached, with why.

        Progress tells the folder being listed (total is still 0), so a large tree on a network share
        shows it moves, and a stop request is heard before the reading."""
        found = []
        unreachable: list[tuple[str, int, Unreachable]] = []
        for folder_type, index, root in self.roots:
            places: list[Unreachable] = []
            for model in walk_models(
                folder_type, index, root, on_skip=self.progress.errors.append, on_unreachable=places.append
            ):
                found.append(model)
                self.progress.current_path = f"{folder_type}/{model.relative_path.rpartition('/')[0]}"
                self.on_progress(self.progress)
            unreachable += [(folder_type, index, place) for place in places]
        return found, unreachable

    def _keep_unreachable(
        self,
        known: dict[tuple[str, int, str], KnownRow],
        seen: set[int],
        unreachable: list[tuple[str, int, Unreachable]],
    ) -> set[int]:
        """The ids of the known rows under places that could not be reached: kept, and said so, since
        a drive that is not mounted yet does not mean its models are gone."""
        kept: set[int] = set()
        unseen: dict[tuple[str, int], list[tuple[str, int]]] = {}
        for (t, i, path), (pk, *_) in known.items() if unreachable else ():
            if pk not in seen:
                unseen.setdefault((t, i), []).append((path, pk))
        for folder_type, index, (place, reason, is_error) in unreachable:
            under = [
                pk
                for path, pk in unseen.get((folder_type, index), [])
                if place == "" or path == place or path.startswith(place + "/")
            ]
            where = place_name(self.roots, folder_type, index, place)
            if under:
                kept.update(under)
                message = (
                    f"{where}: {reason} (a drive not mounted?); keeping the {len(under)} "
                    f"model{'s' if len(under) != 1 else ''} known there until it is back"
                )
                self.progress.errors.append(message)
                self.progress.kept.append(KeptPlace(folder_type, index, place, len(under), message))
            elif is_error:
                self.progress.errors.append(f"{where}: {reason}")
        return kept

    def _scan_all(self, found: list[FoundModel], known: dict[tuple[str, int, str], KnownRow]) -> set[int]:
        """Scans each model in turn; returns the ids of the known rows whose file is still there."""
        seen: set[int] = set()
        to_read = found if self.full else [m for m in found if _key(m) not in known]
        with _read_ahead_for(to_read) as read_ahead:
            try:
                for model in found:
                    key = _key(model)
                    if self.full or key not in known:
                        read_ahead.advance()
                    self.progress.current_path = f"{model.folder_type}/{model.relative_path}"
                    try:
                        self._scan_one(model, known.get(key))
                    except FileNotFoundError:
                        # Renamed or deleted since the listing: no fault of the file's. A known row is
                        # kept (an edit in the app may have moved it), the next scan settles the rest.
                        logger.debug("%s vanished while the scan ran", self.progress.current_path)
                    except OSError as exc:  # it became unreadable while we looked
                        self.progress.errors.append(f"{self.progress.current_path}: {exc.strerror or exc}")
                    except Exception as exc:
                        # A file no reader foresaw: it alone is left out, said and logged.
                        logger.exception("could not read %s", self.progress.current_path)
                        self.progress.errors.append(
                            f"{self.progress.current_path}: could not be read ({type(exc).__name__}: {exc})"
                        )
                    if key in known:
                        seen.add(known[key][0])
                    # Outside the try: a failed write is the scan's failure, not this file's.
                    if max(len(self._inserts), len(self._updates), len(self._sidecar_updates)) >= BATCH_SIZE:
                        self._flush()
                    self.progress.processed += 1
                    self.on_progress(self.progress)
            finally:
                self._flush()  # what was read before a stop request is kept
        return seen

    def _scan_one(self, found: FoundModel, known: KnownRow | None) -> None:
        names, signature = _sidecars_of(found)
        if known is not None and not self.full and not found.is_dir:
            pk, size, mtime_ns, old_signature = known
            st = found.entry.stat()
            if (st.st_size, st.st_mtime_ns) == (size, mtime_ns):
                if signature != old_signature:
                    name, metadata, sha256 = (
                        ModelFile.objects.filter(pk=pk).values_list("name", "metadata", "sha256").get()
                    )
                    fields = _sidecar_fields(found, names, signature, name=name, metadata=metadata)
                    fields["sha256"] = fields["sha256"] or sha256  # a computed hash outlives its sidecar
                    self._sidecar_updates.append((pk, fields))
                    self.progress.updated += 1
                return
        fields, metadata, st = _file_fields(found)
        fields.update(_sidecar_fields(found, names, signature, name=fields["name"], metadata=metadata))
        if not fields["sha256"] and not found.is_dir and self.hash_cache:
            fields["sha256"] = self.hash_cache.get(hash_key(st), "")
        if known is None:
            self._inserts.append(
                {
                    "folder_type": found.folder_type,
                    "path_index": found.path_index,
                    "relative_path": found.relative_path,
                    "sub_folder": found.relative_path.rpartition("/")[0],
                    **fields,
                }
            )
            self.progress.added += 1
        else:
            self._updates.append((known[0], fields))
            # A full rescan writes every row again; what it counts, as a diff scan does, is what changed.
            self.progress.updated += (fields["size"], fields["mtime_ns"], signature) != known[1:]

    def _flush(self) -> None:
        batch = (self._inserts, self._updates, self._sidecar_updates)
        self._inserts, self._updates, self._sidecar_updates = [], [], []
        if any(batch):
            self.writer.write(*batch)


def delete_models(pks: list[int]) -> None:
    """Deletes the rows in batches: a query's parameters are limited (SQLite allows 32,766)."""
    for start in range(0, len(pks), BATCH_SIZE):
        ModelFile.objects.filter(pk__in=pks[start : start + BATCH_SIZE]).delete()


def scan_one_model(roots: ModelRoots, folder_type: str, path_index: int, relative_path: str) -> None:
    """Reads one model and its sidecars again (after an edit), or forgets it if it is gone."""
    root = roots.get(folder_type, path_index)
    folder, _, name = relative_path.rpartition("/")
    known = ModelFile.objects.filter(
        folder_type=folder_type, path_index=path_index, relative_path=relative_path
    )
    try:
        siblings, _ = list_folder(root / folder)
    except FileNotFoundError:
        siblings = {}
    entry = siblings.get(name)
    if entry is None:
        known.delete()
        return
    found = FoundModel(
        folder_type,
        path_index,
        root,
        relative_path,
        entry,
        siblings,
        FolderSidecars(siblings),
        is_dir=entry.is_dir(),
    )
    row = known.values_list("pk", "size", "mtime_ns", "sidecar_signature").first()
    # Its own hash only: the whole table took 20 ms at 10,000 hashed models, on every edit.
    device, inode, size, mtime_ns = hash_key(entry.stat())
    own_hash = HashCache.objects.filter(device=device, inode=inode, size=size, mtime_ns=mtime_ns)
    scanner = Scanner(roots, full=True, writer=RowWriter(), hashes=own_hash)
    scanner._scan_one(found, row)
    scanner._flush()


def scan_folder(
    roots: ModelRoots, *, full: bool = False, on_progress: Callable[[ScanProgress], None] | None = None
) -> ScanProgress:
    return Scanner(roots, full=full, on_progress=on_progress).run()
