"""Keeps rows with their folder when the configuration gives that folder another index.

Rows address a model, a trashed model or a download as (type, path index, path). A folder added in front of
others (MM_COMFYUI_PATH set beside MM_MODEL_ROOTS, a yaml entry with `is_default: true`) shifts the indexes of
those behind it. Without this, the next scan read the shifted models again as new ones, and kept the old rows
as "out of reach" beside them when their old index now named an empty or missing folder: every model twice.
Each start (and scan) compares the folders with those of the last one and moves the rows along.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import models, transaction

from models_app.models import LibraryVersion, ModelFile, RootFolder, TrashItem
from models_app.roots import ModelRoots

logger = logging.getLogger("mm.scanner")

# Rows pass through PARKED + their new index, so that two folders that swap indexes never collide; rows of a
# folder no longer configured end at GONE + their old index, which names no folder (UnknownRoot where used).
PARKED, GONE = 10_000, 20_000


@dataclass(frozen=True)
class RootAddressed:
    model: type[models.Model]
    delete_when_unconfigured: bool = False  # else kept, under an index that names no folder


# Other apps add theirs (downloads_app: DownloadTask).
ROOT_ADDRESSED: list[RootAddressed] = [
    RootAddressed(ModelFile, delete_when_unconfigured=True),  # no longer in the library
    RootAddressed(TrashItem),
]


def follow_moved_roots(roots: ModelRoots) -> None:
    current = {(folder_type, index): str(path) for folder_type, index, path in roots}
    index_of = {(folder_type, path): index for (folder_type, index), path in current.items()}
    with transaction.atomic():
        # One process at a time: several starting together would otherwise move the same rows twice.
        LibraryVersion.objects.get_or_create(pk=1, defaults={"token": ""})
        list(LibraryVersion.objects.select_for_update().filter(pk=1).values_list("pk"))
        previous = {
            (t, i): p for t, i, p in RootFolder.objects.values_list("folder_type", "path_index", "path")
        }
        moves = {
            key: index_of.get((key[0], path)) for key, path in previous.items() if current.get(key) != path
        }
        for entry in ROOT_ADDRESSED if moves else ():
            _move_rows(entry, moves)
        if moves:
            LibraryVersion.renew()
            for (folder_type, old), new in moves.items():
                where = f"to {folder_type} folder {new}" if new is not None else "out: no longer configured"
                logger.info(
                    "%s folder %s (%s) moved %s", folder_type, old, previous[(folder_type, old)], where
                )
        if moves or previous.keys() != current.keys():
            RootFolder.objects.all().delete()
            RootFolder.objects.bulk_create(
                RootFolder(folder_type=t, path_index=i, path=p) for (t, i), p in current.items()
            )


def _move_rows(entry: RootAddressed, moves: dict[tuple[str, int], int | None]) -> None:
    rows = entry.model._default_manager
    for (folder_type, old), new in moves.items():
        of_folder = rows.filter(folder_type=folder_type, path_index=old)
        if new is not None:
            of_folder.update(path_index=PARKED + new)
        elif entry.delete_when_unconfigured:
            of_folder.delete()
        else:
            of_folder.update(path_index=GONE + old)
    for (folder_type, _old), new in moves.items():
        if new is not None:
            rows.filter(folder_type=folder_type, path_index=PARKED + new).update(path_index=new)
