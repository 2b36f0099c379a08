"""Finds the models under a root: the files with model extensions, and diffusers folders as one model."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from models_app.extensions import MODEL_EXTENSIONS
from models_app.models import MAX_RELATIVE_PATH
from models_app.sidecars import FolderSidecars

logger = logging.getLogger("mm.scanner")

DIFFUSERS_MARKER = "model_index.json"


@dataclass
class FoundModel:
    """A model the walk found, with its folder's listing: the scanner finds its sidecars there."""

    folder_type: str
    path_index: int
    root: Path
    relative_path: str
    entry: os.DirEntry[str]
    siblings: dict[str, os.DirEntry[str]]
    folder_sidecars: FolderSidecars
    is_dir: bool = False


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _is_utf8(name: str) -> bool:
    """Whether a listed name is valid UTF-8: Python lists other bytes as surrogates, which no database
    column takes (an archive made on Windows can leave such names behind)."""
    if name.isascii():
        return True
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


def _is_model_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in MODEL_EXTENSIONS


def list_folder(folder: Path | str) -> tuple[dict[str, os.DirEntry[str]], list[str]]:
    """The folder's entries by name, hidden ones left out, and the models and subfolders left out
    because their name is not UTF-8 (shown with � for the bytes that are not)."""
    entries, unreadable = {}, []
    with os.scandir(folder) as it:
        for entry in it:
            name = entry.name
            if _is_hidden(name):
                continue
            if not _is_utf8(name):
                if _is_model_name(name) or entry.is_dir():
                    unreadable.append(os.fsencode(name).decode("utf-8", errors="replace"))
                continue
            entries[name] = entry
    return entries, unreadable


class Unreachable(NamedTuple):
    """A place under a root whose models cannot be known now. A drive that is not mounted yet looks
    like one of these, and its models are not gone."""

    path: str  # inside the root; "" for the root itself
    reason: str
    is_error: bool  # worth saying even where no model was known


def walk_models(
    folder_type: str,
    path_index: int,
    root: Path,
    *,
    on_skip: Callable[[str], None] = logger.warning,
    on_unreachable: Callable[[Unreachable], None] = lambda place: None,
) -> Iterator[FoundModel]:
    """Every model under `root`: symlinks followed (each real folder once), hidden names skipped.

    `on_skip` hears of each model or folder left out because of its name or the length of its path.
    `on_unreachable` hears of each place whose models cannot be known now: the root when it is missing
    or empty (an unmounted mount point is empty), a symlink that leads nowhere, a folder that cannot be
    listed.
    """
    if not root.is_dir():
        on_unreachable(Unreachable("", "not there", is_error=False))
        return
    seen_dirs: set[tuple[int, int]] = set()
    stack: list[tuple[Path, str]] = [(root, "")]
    while stack:
        folder, relative = stack.pop()
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in seen_dirs:
                continue
            seen_dirs.add((st.st_dev, st.st_ino))
            entries, unreadable = list_folder(folder)
        except OSError as exc:
            reason = f"cannot list the folder: {exc.strerror or exc}"
            on_unreachable(Unreachable(relative.rstrip("/"), reason, is_error=True))
            continue
        if not relative and not entries and not unreadable:
            on_unreachable(Unreachable("", "empty", is_error=False))
        for name in unreadable:
            on_skip(f"{folder_type}/{relative}{name}: the name is not valid UTF-8; rename it to scan it")
        sidecars = FolderSidecars(entries)
        subfolders = []
        for name, entry in entries.items():
            try:
                is_dir = entry.is_dir()
                if is_dir and not os.path.exists(os.path.join(entry.path, DIFFUSERS_MARKER)):
                    subfolders.append((Path(entry.path), relative + name + "/"))
                    continue
                if not is_dir and entry.is_symlink() and not os.path.exists(entry.path):
                    on_unreachable(Unreachable(relative + name, "the link leads nowhere", is_error=False))
                    continue
                if not is_dir and not (_is_model_name(name) and entry.is_file()):
                    continue
            except OSError as exc:  # it vanished while we looked
                logger.debug("skipping %s: %s", entry.path, exc)
                continue
            path = relative + name
            if len(path) > MAX_RELATIVE_PATH:
                on_skip(f"{folder_type}/{path}: the path is longer than {MAX_RELATIVE_PATH} characters")
                continue
            yield FoundModel(folder_type, path_index, root, path, entry, entries, sidecars, is_dir=is_dir)
        stack.extend(sorted(subfolders, reverse=True))
