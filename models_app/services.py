"""Writes to the model library (the scanner does the bulk of them)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from downloads_app.models import DownloadedFile, Platform
from mmsite.files import move_whole
from mmsite.models import ACTIVE_STATUSES
from mmsite.worker import wake_workers
from models_app.models import (
    MAX_RELATIVE_PATH,
    InfoMode,
    InfoTask,
    ModelFile,
    MoveTask,
    ScanMode,
    ScanTask,
    TrashItem,
)
from models_app.previews import save_preview, write_atomically
from models_app.roots import (
    PathOutsideRoot,
    RootNotThere,
    UnknownRoot,
    clean_relative_path,
    get_roots,
    model_path,
    resolve_model_path,
    root_to_write,
)
from models_app.scanner import delete_models, scan_one_model
from models_app.selectors import latest_scan
from models_app.sidecars import (
    IMAGE_EXTENSIONS,
    PREVIEW_SUFFIXES,
    model_base,
    sidecar_names,
    strip_front_matter,
)
from models_app.text import decode_text

# What ext4, XFS, Btrfs and NTFS allow in one file name.
NAME_MAX = 255


def scan_start(*, mode: str = ScanMode.DIFF, automatic: bool = False) -> tuple[ScanTask, bool]:
    """Queues a scan and returns it with True, or returns the scan already queued or running with False.

    A second scan while one runs would only walk the same folders again; a full scan asked for while a
    diff scan waits upgrades the waiting one, and a scan someone asks for while an automatic one runs
    makes that one show its progress.
    """
    if mode not in ScanMode.values:
        raise ValueError(f"mode must be one of {', '.join(ScanMode.values)}")
    active = ScanTask.objects.filter(status__in=ACTIVE_STATUSES).order_by("created_at").first()
    if active is not None:
        if mode == ScanMode.FULL and active.status == "queued" and active.mode != mode:
            ScanTask.objects.filter(pk=active.pk, status="queued").update(mode=mode)
            active.mode = mode
        if active.automatic and not automatic:
            ScanTask.objects.filter(pk=active.pk).update(automatic=False)
            active.automatic = False
        return active, False
    try:
        with transaction.atomic():
            task = ScanTask.objects.create(mode=mode, automatic=automatic)
    except IntegrityError:  # another worker queued the automatic scan a moment ago: that one it is
        return scan_start(mode=mode, automatic=automatic)
    wake_workers()
    return task, True


AUTOMATIC_SCANS_KEPT = timedelta(days=1)


def scan_if_due() -> ScanTask | None:
    """Scans the changed files, quietly, once the last scan ended MM_SCAN_EVERY minutes ago: models that
    other tools put in the folders (ComfyUI-Manager, a copy) show up without a press of Scan. The clock
    starts at the first scan (serve's, or the user's). Returns the scan it queued."""
    every = settings.MM_SCAN_EVERY
    latest = latest_scan()
    if every <= 0 or latest is None or latest.is_active or latest.finished_at is None:
        return None
    # Automatic scans pile up, one each interval: older ones are history nobody reads.
    ScanTask.objects.filter(automatic=True, finished_at__lt=timezone.now() - AUTOMATIC_SCANS_KEPT).exclude(
        pk=latest.pk
    ).delete()
    if timezone.now() - latest.finished_at < timedelta(minutes=every):
        return None
    task, created = scan_start(automatic=True)
    return task if created else None


AUTOMATIC_UPDATE_CHECKS_KEPT = timedelta(days=7)


def updates_check_if_due() -> InfoTask | None:
    """Asks Civitai for newer versions of the library's models (and Hugging Face for newer files),
    quietly, once the last check ended MM_UPDATES_EVERY hours ago (or there was none): the Update badges
    appear without a press of Check for updates. Returns the check it queued."""
    every = settings.MM_UPDATES_EVERY
    anything_to_ask = (
        ModelFile.objects.filter(civitai_model_id__isnull=False).exists()
        or DownloadedFile.objects.filter(platform=Platform.HUGGINGFACE).exists()
    )
    if every <= 0 or not anything_to_ask:
        return None
    checks = InfoTask.objects.filter(mode=InfoMode.UPDATES)
    if checks.filter(status__in=ACTIVE_STATUSES).exists():
        return None
    ended = checks.exclude(finished_at=None).order_by("-finished_at").only("finished_at", "model_ids")
    # A check of one model (its dialog's) leaves the others as old as they were.
    last = next((check for check in ended[:100] if not check.model_ids), None)
    if last is not None:
        old = timezone.now() - AUTOMATIC_UPDATE_CHECKS_KEPT
        checks.filter(automatic=True, finished_at__lt=old).exclude(pk=last.pk).delete()
        if timezone.now() - last.finished_at < timedelta(hours=every):  # type: ignore[operator]
            return None
    try:
        with transaction.atomic():
            task = InfoTask.objects.create(mode=InfoMode.UPDATES, automatic=True)
    except IntegrityError:  # another worker's check queued it a moment ago
        return None
    wake_workers()
    return task


class ModelEditError(ValueError):
    """A message for the user about an edit that cannot be done (clash, bad name, missing file…)."""


TRASH_DIR = ".trash"


def files_of(model: ModelFile) -> list[Path]:
    """The model and every sidecar beside it (listed now, not from the last scan)."""
    path = model_path(model)
    names = os.listdir(path.parent) if path.parent.is_dir() else []
    return [path, *(path.parent / name for name in sidecar_names(path.name, names, is_dir=model.is_dir))]


def _refresh(model: ModelFile) -> ModelFile:
    scan_one_model(get_roots(), model.folder_type, model.path_index, model.relative_path)
    return ModelFile.objects.get(pk=model.pk)


def description_set(*, model: ModelFile, text: str) -> ModelFile:
    """Writes `<base>.md`, keeping the YAML front matter the original plugin put there."""
    path = model_path(model)
    target = path.parent / (model_base(path.name, is_dir=model.is_dir) + ".md")
    front = ""
    if target.exists():
        front = strip_front_matter(decode_text(target.read_bytes()))[0]
    body = text.replace("\r\n", "\n").strip()
    try:
        write_atomically(target, ((front + "\n" if front else "") + body + "\n").encode())
    except OSError as exc:
        raise ModelEditError(
            f"Could not write {target.name} ({exc.strerror or exc}): nothing changed."
        ) from None
    return _refresh(model)


def preview_set(*, model: ModelFile, data: bytes) -> ModelFile:
    """Saves the image as `<base>.webp` and removes the other image previews it replaces."""
    path = model_path(model)
    try:
        saved = save_preview(data, path)
    except OSError as exc:
        raise ModelEditError(
            f"Could not write the preview ({exc.strerror or exc}): nothing changed."
        ) from None
    base = model_base(path.name, is_dir=model.is_dir)
    for suffix in PREVIEW_SUFFIXES:
        other = path.parent / (base + suffix)
        if other != saved and other.suffix.lower() in IMAGE_EXTENSIONS and other.exists():
            with contextlib.suppress(OSError):  # the new preview is saved; an old one left over is harmless
                other.unlink()
    return _refresh(model)


def forget_kept_models(*, scan: ScanTask, index: int) -> int:
    """Forgets the models `scan` kept in a place it could not reach (`scan.kept[index]`) whose files are
    still not there: a folder emptied on purpose, a drive gone for good. A model whose file is back
    stays (the next scan reads it). Returns how many were forgotten."""
    try:
        folder_type, path_index, place, _count, message = scan.kept[index]
    except (IndexError, TypeError, ValueError):
        raise ModelEditError("That place is no longer listed; scan again.") from None
    root = get_roots().get(folder_type, path_index)
    rows = ModelFile.objects.filter(folder_type=folder_type, path_index=path_index)
    if place:
        rows = rows.filter(Q(relative_path=place) | Q(relative_path__startswith=place + "/"))
    gone = [pk for pk, path in rows.values_list("pk", "relative_path") if not os.path.exists(root / path)]
    delete_models(gone)
    scan.kept = [entry for entry in scan.kept if entry[4] != message]
    scan.error = "\n".join(line for line in scan.error.splitlines() if line != message)
    scan.save(update_fields=["kept", "error"])
    return len(gone)


def model_trash(*, model: ModelFile, sidecars: bool = True) -> TrashItem:
    """Moves the model and all its sidecars to `<root>/.trash/` (a rename on the same disk); without
    `sidecars`, the model file alone (a newer file of its name takes its place and keeps them)."""
    root = get_roots().get(model.folder_type, model.path_index)
    files = [
        f for f in (files_of(model) if sidecars else [model_path(model)]) if f.exists() or f.is_symlink()
    ]
    if not files:
        ModelFile.objects.filter(pk=model.pk).delete()
        raise ModelEditError("The model is no longer on disk; it was removed from the library.")
    folder = f"{timezone.now():%Y%m%d-%H%M%S}-{model.pk}"
    target = root / TRASH_DIR / folder
    try:
        target.mkdir(parents=True)
        _move_all([(file, target / file.name) for file in files], move=os.rename)
    except OSError as exc:
        with contextlib.suppress(OSError):
            target.rmdir()
        raise ModelEditError(
            f"Could not move the files to the trash ({exc.strerror}): nothing moved."
        ) from None
    item = TrashItem.objects.create(
        folder_type=model.folder_type,
        path_index=model.path_index,
        relative_path=model.relative_path,
        trash_folder=folder,
        files=[f.name for f in files],
        size=model.size,
    )
    ModelFile.objects.filter(pk=model.pk).delete()
    return item


def models_trash(*, models: list[ModelFile]) -> tuple[list[TrashItem], list[str]]:
    """Moves each model to the trash as model_trash does; one that cannot go is named, and the rest go."""
    items: list[TrashItem] = []
    errors: list[str] = []
    for model in models:
        try:
            items.append(model_trash(model=model))
        except ModelEditError as exc:
            errors.append(f"{model.relative_path}: {exc}")
    return items, errors


class NameTaken(ModelEditError):
    """A file of the trashed model's name is where it lay: it can go back under `free_name`."""

    def __init__(self, clashes: list[str], free_name: str) -> None:
        super().__init__(f"{', '.join(clashes)} already exist(s) there again; move them away first.")
        self.clashes, self.free_name = clashes, free_name


def trash_restore(*, item: TrashItem, name: str = "") -> ModelFile:
    """Puts the model and its sidecars back where they were; under `name`, its sidecars renamed with it,
    when another file has taken its own (NameTaken says so, with a free name)."""
    root = get_roots().get(item.folder_type, item.path_index)
    source = root / TRASH_DIR / item.trash_folder
    is_dir = (source / item.name).is_dir()
    extension = "" if is_dir else Path(item.name).suffix
    old_base = model_base(item.name, is_dir=is_dir)
    new_base = base_of_new_name(name, extension) if name else old_base
    relative = f"{item.folder}/{new_base}{extension}" if item.folder else new_base + extension
    destination = resolve_model_path(item.folder_type, item.path_index, relative).parent
    moves = [(source / file, destination / _renamed(file, old_base, new_base)) for file in item.files]
    _check_lengths(relative, moves)
    clashes = [target.name for _, target in moves if target.exists()]
    if clashes:
        free = _free_base(destination, [target.name for _, target in moves], new_base)
        raise NameTaken(clashes, free + extension)
    try:
        destination.mkdir(parents=True, exist_ok=True)
        _move_all(moves, move=os.rename)
    except OSError as exc:
        raise ModelEditError(f"Could not restore the files ({exc.strerror or exc}): nothing moved.") from None
    shutil.rmtree(source, ignore_errors=True)
    TrashItem.objects.filter(pk=item.pk).delete()
    scan_one_model(get_roots(), item.folder_type, item.path_index, relative)
    return ModelFile.objects.get(
        folder_type=item.folder_type, path_index=item.path_index, relative_path=relative
    )


def _renamed(file_name: str, old_base: str, new_base: str) -> str:
    """A model's file or sidecar name once the model is called `new_base` (sidecars start with its base)."""
    return new_base + file_name[len(old_base) :] if file_name.startswith(old_base) else file_name


def _free_base(folder: Path, names: list[str], taken_base: str) -> str:
    """`style-2`, `style-3`…: the first base under which none of the model's files would clash."""
    for number in range(2, 1000):
        base = f"{taken_base}-{number}"
        if not any((folder / _renamed(name, taken_base, base)).exists() for name in names):
            return base
    return f"{taken_base}-{timezone.now():%Y%m%d-%H%M%S}"


def trash_restore_all() -> tuple[int, list[str]]:
    """Puts every model of the trash back: the way back from a bulk delete picked wrong. One that cannot
    go back (a file of its name is there again, its folder is no longer configured) stays, with why."""
    restored, errors = 0, []
    for item in TrashItem.objects.all():
        try:
            trash_restore(item=item)
        except ModelEditError as exc:  # it names the files
            errors.append(str(exc))
        except UnknownRoot as exc:
            errors.append(f"{item.name}: its model folder is no longer configured ({exc})")
        else:
            restored += 1
    return restored, errors


def trash_delete(*, item: TrashItem) -> None:
    try:
        root = get_roots().get(item.folder_type, item.path_index)
        shutil.rmtree(root / TRASH_DIR / item.trash_folder, ignore_errors=True)
    except UnknownRoot:
        pass
    TrashItem.objects.filter(pk=item.pk).delete()


def trash_purge(*, older_than_days: float) -> int:
    """Deletes for good what has been in the trash longer than that; returns how many models."""
    old = TrashItem.objects.filter(trashed_at__lt=timezone.now() - timedelta(days=older_than_days))
    count = 0
    for item in old:
        trash_delete(item=item)
        count += 1
    return count


@contextlib.contextmanager
def _said_of_the_place(folder_type: str, path_index: int) -> Iterator[None]:
    """Why a move cannot go to that model folder, in the user's words."""
    try:
        yield
    except PathOutsideRoot:
        raise ModelEditError("The new place must stay inside the model folders.") from None
    except UnknownRoot:
        raise ModelEditError(f"There is no {folder_type} folder number {path_index}.") from None
    except RootNotThere as exc:
        raise ModelEditError(f"{exc} Nothing was moved.") from None


def move_start(
    *, model_ids: list[int], folder_type: str, path_index: int, sub_folder: str, name: str = ""
) -> MoveTask:
    """Queues the move of those models into one folder for the worker, once the folder is known to be a
    place inside the roots. Each keeps its name, or one model takes `name`."""
    sub_folder = sub_folder.strip().strip("/")
    with _said_of_the_place(folder_type, path_index):
        root_to_write(folder_type, path_index)
        if sub_folder:
            resolve_model_path(folder_type, path_index, clean_relative_path(sub_folder))
    if len(sub_folder) >= MAX_RELATIVE_PATH:
        raise ModelEditError(f"The subfolder is longer than {MAX_RELATIVE_PATH} characters.")
    if name and len(model_ids) != 1:
        raise ValueError("a new name is for one model")
    task = MoveTask.objects.create(
        model_ids=model_ids, folder_type=folder_type, path_index=path_index, sub_folder=sub_folder, name=name
    )
    wake_workers()
    return task


@dataclass(frozen=True)
class MovePlan:
    """Where a model and each file beside it go, checked: inside the roots, no clash, names the disk takes."""

    folder_type: str
    path_index: int
    relative_path: str
    files: list[tuple[Path, Path]]

    @property
    def is_copy(self) -> bool:
        """Whether the files go to another disk, where moving them is a copy (of gigabytes, for a model)."""
        source, target = self.files[0]
        folder = target.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        return source.parent.stat().st_dev != folder.stat().st_dev


def move_plan(
    *, model: ModelFile, folder_type: str, path_index: int, sub_folder: str, name: str
) -> MovePlan | None:
    """How model_move would move the model (None: it is there already), or the reason it cannot."""
    source = model_path(model)
    extension = "" if model.is_dir else source.suffix
    new_base = base_of_new_name(name, extension)
    sub_folder = sub_folder.strip().strip("/")
    with _said_of_the_place(folder_type, path_index):
        new_relative = clean_relative_path(
            f"{sub_folder}/{new_base}{extension}" if sub_folder else new_base + extension
        )
        target = resolve_model_path(folder_type, path_index, new_relative)
        root_to_write(folder_type, path_index)
    if target == source:
        return None
    old_base = model_base(source.name, is_dir=model.is_dir)
    moves = [(f, target.parent / _renamed(f.name, old_base, new_base)) for f in files_of(model)]
    _check_lengths(new_relative, moves)
    clashes = [dst.name for _, dst in moves if dst.exists()]
    if clashes:
        raise ModelEditError(f"{', '.join(clashes)} already exist(s) there: nothing was moved.")
    return MovePlan(folder_type, path_index, new_relative, moves)


def base_of_new_name(name: str, extension: str) -> str:
    """The base of a name the user typed for a model, with its extension or without."""
    name = name.strip()
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ModelEditError("The name may not be empty, contain / or \\, or start with a dot.")
    return name[: -len(extension)] if extension and name.lower().endswith(extension.lower()) else name


def _check_lengths(relative_path: str, moves: list[tuple[Path, Path]]) -> None:
    if len(relative_path) > MAX_RELATIVE_PATH:
        raise ModelEditError(f"The new path is longer than {MAX_RELATIVE_PATH} characters.")
    if any(len(os.fsencode(target.name)) > NAME_MAX for _, target in moves):
        raise ModelEditError(f"The name is too long: with its sidecars' endings it passes {NAME_MAX} bytes.")


def model_move(
    *,
    model: ModelFile,
    folder_type: str,
    path_index: int,
    sub_folder: str,
    name: str,
    on_copied: Callable[[int], object] | None = None,
) -> ModelFile:
    """Renames or moves a model with every sidecar; refuses clashes and paths outside the roots.
    `on_copied` hears how the copies go when the move crosses disks (see move_whole)."""
    plan = move_plan(
        model=model, folder_type=folder_type, path_index=path_index, sub_folder=sub_folder, name=name
    )
    if plan is None:
        return model
    try:
        plan.files[0][1].parent.mkdir(parents=True, exist_ok=True)
        # A rename on one disk, a copy across disks (which can fill it).
        _move_all(
            plan.files, move=lambda src, dst: move_whole(src, dst, on_copied=on_copied), undo=move_whole
        )
    except OSError as exc:
        raise ModelEditError(
            f"Could not move the files ({exc.strerror or exc}): nothing was moved."
        ) from None
    ModelFile.objects.filter(pk=model.pk).delete()
    scan_one_model(get_roots(), folder_type, path_index, plan.relative_path)
    return ModelFile.objects.get(
        folder_type=folder_type, path_index=path_index, relative_path=plan.relative_path
    )


def _move_all(
    moves: list[tuple[Path, Path]],
    *,
    move: Callable[[Path, Path], object],
    undo: Callable[[Path, Path], object] | None = None,
) -> None:
    """Moves every file with `move`, or none: when one fails (or is stopped), what moved before it goes
    back (with `undo`, by default `move`), and the error is raised. The destinations must not exist yet."""
    moved: list[tuple[Path, Path]] = []
    try:
        for src, dst in moves:
            move(src, dst)
            moved.append((src, dst))
    except BaseException:
        for src, dst in reversed(moved):
            (undo or move)(dst, src)
        raise


def purge_old_trash() -> int:
    from django.conf import settings

    return trash_purge(older_than_days=settings.MM_TRASH_DAYS)


def info_start(*, mode: str, model_ids: list[int] | None = None) -> InfoTask:
    """Queues hashing (mode hash) or Civitai lookups (mode fetch) for those models, or for all that need it."""
    if mode not in InfoMode.values:
        raise ValueError(f"mode must be one of {', '.join(InfoMode.values)}")
    if model_ids:
        ModelFile.objects.filter(pk__in=model_ids).update(civitai_missing=False)  # asked again on purpose
    elif mode == InfoMode.UPDATES:
        # The worker's own check of every model is under way: asked for now, it shows its progress.
        automatic = InfoTask.objects.filter(mode=mode, automatic=True, status__in=ACTIVE_STATUSES).first()
        if automatic is not None:
            InfoTask.objects.filter(pk=automatic.pk).update(automatic=False)
            automatic.automatic = False
            return automatic
    task = InfoTask.objects.create(mode=mode, model_ids=list(model_ids or []))
    wake_workers()
    return task
