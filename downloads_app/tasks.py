"""Downloads as worker jobs: the engine does the bytes; this keeps the row, the events and the sidecars."""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from pathlib import Path
from typing import Protocol

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from downloads_app import services
from downloads_app.engine import (
    DiskFull,
    DownloadError,
    DownloadJob,
    DownloadResult,
    Engine,
    FileClash,
    HttpError,
    ResumeState,
    SpeedLimit,
    Stopped,
)
from downloads_app.events import publish_deleted, publish_task
from downloads_app.models import DownloadTask
from downloads_app.sources import auth_for, explain
from mmsite.events import Throttle
from mmsite.models import TaskStatus
from mmsite.worker import JobKind, TaskContext, wake_workers
from models_app.hashing import hash_key
from models_app.markdown import sanitize_html
from models_app.models import HashCache, ModelFile
from models_app.previews import PreviewError, fetch_image, save_preview, write_atomically
from models_app.roots import PathOutsideRoot, RootNotThere, UnknownRoot, root_to_write
from models_app.services import ModelEditError, model_trash, scan_start
from models_app.tasks import read_new_model

logger = logging.getLogger("mm.downloads")

SPEED_WINDOW = 5.0
PROGRESS_FIELDS = ["downloaded_size", "total_size", "bps", "validator", "expected_sha256", "notice"]


class ProgressReporter:
    """Keeps the row and the browsers up to date: at most one event a second, the speed smoothed over
    about five seconds, and the resume validator saved the moment it is known (a crash right after
    must still resume, not restart)."""

    def __init__(self, task: DownloadTask, job: DownloadJob, ctx: DownloadContext) -> None:
        self.task = task
        self.job = job
        self.ctx = ctx
        self.throttle = Throttle(settings.MM_PROGRESS_INTERVAL)
        self.samples: deque[tuple[float, int]] = deque()

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[0][0] > SPEED_WINDOW:
            self.samples.popleft()
        first_time, first_done = self.samples[0]
        if now - first_time >= 0.5:
            self.task.bps = int((done - first_done) / (now - first_time))
        # Bytes flow again after a retry: its "retrying in 8 s" is over.
        resumed = bool(self.task.notice) and done > self.task.downloaded_size
        if resumed:
            self.task.notice = ""
        self.task.downloaded_size = done
        self.task.total_size = total
        validator_changed = self.job.state.validator != self.task.validator
        self.task.validator = self.job.state.validator
        self.task.expected_sha256 = self.job.expected_sha256
        if self.throttle.ready(force=validator_changed or resumed):
            self.save()
            self.ctx.publish_task(self.task, "update_download_task")

    def save(self) -> None:
        DownloadTask.objects.filter(pk=self.task.pk).update(
            **{name: getattr(self.task, name) for name in PROGRESS_FIELDS}
        )


class DownloadContext(Protocol):
    """Where a running download reports to: the worker (events to browsers) or the `download` command."""

    owner: str

    def requested(self) -> str: ...

    def pause_condition(self) -> Q:
        """What the row must still ask for when a download stopped for a pause is written "paused"."""
        ...

    def publish_task(self, task: DownloadTask, event: str) -> None: ...


class WorkerDownloadContext:
    def __init__(self, ctx: TaskContext) -> None:
        self.ctx = ctx
        self.owner = ctx.worker.owner

    def requested(self) -> str:
        return self.ctx.requested()

    def pause_condition(self) -> Q:
        # `requested()` read the row up to half a second ago: a resume or a cancel may have come since.
        return Q(requested="pause")

    def publish_task(self, task: DownloadTask, event: str) -> None:
        publish_task(task, event)


# One for the whole process: the downloads running side by side share the limit.
SPEED_LIMIT = SpeedLimit(rate=services.speed_limit)


def new_engine() -> Engine:
    return Engine(
        stall_timeout=settings.MM_STALL_TIMEOUT,
        max_attempts=settings.MM_DOWNLOAD_ATTEMPTS,
        speed_limit=SPEED_LIMIT,
    )


def run_download_task(task: DownloadTask, worker_ctx: TaskContext) -> None:
    download_task_run(task, WorkerDownloadContext(worker_ctx))


def download_task_run(task: DownloadTask, ctx: DownloadContext) -> None:
    """Runs a claimed task to a final state (done, failed, paused, cancelled or back in the queue)."""
    try:
        destination = services.Destination.of(task)
        folder = destination.path.parent
        root_to_write(task.folder_type, task.path_index)
    except UnknownRoot as exc:
        return _finish(task, ctx, TaskStatus.FAILED, f"The target folder is no longer configured: {exc}")
    except PathOutsideRoot as exc:
        return _finish(task, ctx, TaskStatus.FAILED, f"The target lies outside its model folder: {exc}")
    except RootNotThere as exc:
        return _finish(task, ctx, TaskStatus.FAILED, f"{exc} Resume the download once it is.")
    in_place = InPlaceReplacement.of(task, destination.path)
    job = DownloadJob(
        url=task.download_url,
        dest_dir=folder,
        filename=task.filename,
        expected_sha256=task.expected_sha256,
        expected_size=task.total_size,
        auth=auth_for(task.platform, endpoints=services.endpoints(), keys=services.keys()),
        state=ResumeState(validator=task.validator, total=task.total_size),
        make_room=in_place.make_room if in_place else None,
    )
    reporter = ProgressReporter(task, job, ctx)
    task.error, task.notice, task.started_at = "", "", task.started_at or timezone.now()
    # Started, it is no longer "next": paused and resumed later, it takes its turn again.
    task.priority = 0
    DownloadTask.objects.filter(pk=task.pk).update(
        error="", notice="", started_at=task.started_at, priority=0
    )
    ctx.publish_task(task, "update_download_task")

    def on_retry(error: DownloadError, delay: float) -> None:
        task.notice = f"{error} — retrying in {delay:.0f} s"
        task.bps = 0
        DownloadTask.objects.filter(pk=task.pk).update(notice=task.notice[:500], bps=0)
        ctx.publish_task(task, "update_download_task")

    try:
        result = new_engine().download(
            job, on_progress=reporter, should_stop=ctx.requested, on_retry=on_retry
        )
    except Stopped as stop:
        reporter.save()
        return _stopped(task, ctx, stop.reason)
    except DiskFull as exc:
        reporter.save()
        return _finish(task, ctx, TaskStatus.PAUSED, str(exc))
    except HttpError as exc:
        return _finish(
            task, ctx, TaskStatus.FAILED, explain(exc, platform=task.platform, keys=services.keys())
        )
    except DownloadError as exc:
        reporter.save()
        return _finish(task, ctx, TaskStatus.FAILED, str(exc))
    task.sha256 = result.sha256
    _remember_hash(result)
    services.remember_where_downloaded(task)
    task.downloaded_size = task.total_size = result.size
    replaced = in_place.notice if in_place else _replace_older(task)
    task.notice = " ".join(filter(None, [_save_sidecars(task, result), replaced]))[:500]
    _add_to_library(task)  # before "done", so that the row's "In library" link leads to it
    _finish(task, ctx, TaskStatus.DONE, "")


def _add_to_library(task: DownloadTask) -> None:
    relative_path = f"{task.sub_folder}/{task.filename}" if task.sub_folder else task.filename
    try:
        read_new_model(task.folder_type, task.path_index, relative_path)
    except Exception:  # the download itself succeeded: a scan finds the file instead
        logger.exception("could not read the new model %s; scanning", relative_path)
        scan_start()


class InPlaceReplacement:
    """The library model a download replaces under its own name: a newer file of the same Hugging Face
    path. Its file goes to the Trash just before the download takes the name; its sidecars (a preview,
    a description) stay, for the new file."""

    def __init__(self, older_pk: int, final: Path) -> None:
        self.older_pk, self.final = older_pk, final
        self.notice = ""  # what became of the older file, once the download is in

    @classmethod
    def of(cls, task: DownloadTask, final: Path) -> InPlaceReplacement | None:
        older = ModelFile.objects.filter(pk=task.replaces).first() if task.replaces is not None else None
        return cls(older.pk, final) if older is not None and services.is_in_place(older, final) else None

    def make_room(self) -> None:
        older = ModelFile.objects.filter(pk=self.older_pk).first()
        if older is None or not services.is_in_place(older, self.final):  # renamed or deleted since
            raise FileClash(f"{self.final.name} already exists in that folder; nothing was overwritten.")
        try:
            model_trash(model=older, sidecars=False)
        except ModelEditError as exc:
            raise FileClash(f"The older {self.final.name} could not go to the Trash: {exc}") from None
        self.notice = f"The older file, {older.folder_type}/{older.relative_path}, is in the Trash."


def _replace_older(task: DownloadTask) -> str:
    """Moves the older version this download replaces to the Trash, as the user asked in the dialog;
    says what became of it. The library page hears of it with the new model."""
    if task.replaces is None:
        return ""
    older = ModelFile.objects.filter(pk=task.replaces).first()
    if older is None:
        return "The older version was no longer in the library: nothing went to the Trash."
    where = f"{older.folder_type}/{older.relative_path}"
    try:
        model_trash(model=older)
    except ModelEditError as exc:
        return f"The older version, {where}, was not moved to the Trash: {exc}"
    except (UnknownRoot, PathOutsideRoot):  # its folder left the settings while this downloaded
        return f"The older version, {where}, was not moved to the Trash: its model folder is no longer configured."
    return f"The older version, {where}, is in the Trash."


def _remember_hash(result: DownloadResult) -> None:
    """The SHA256 computed on the way in: the library never reads this file again to hash it."""
    device, inode, size, mtime_ns = hash_key(result.path.stat())
    HashCache.objects.update_or_create(
        device=device, inode=inode, size=size, mtime_ns=mtime_ns, defaults={"sha256": result.sha256}
    )


def _stopped(task: DownloadTask, ctx: DownloadContext, reason: str) -> None:
    if reason == "shutdown":
        # The server is stopping (or another worker took over): leave the row to be resumed. A retry's
        # notice ("retrying in 8 s") would be a false word on a row that waits in the queue.
        DownloadTask.objects.filter(pk=task.pk, owner=ctx.owner).update(
            status=TaskStatus.QUEUED, owner="", bps=0, notice=""
        )
        return
    if reason in ("cancel", "delete"):
        services.delete_part(task)
        if reason == "delete" or not DownloadTask.objects.filter(pk=task.pk).exists():
            DownloadTask.objects.filter(pk=task.pk).delete()
            publish_deleted(task.pk)
            return
        task.downloaded_size, task.validator = 0, ""
        return _finish(task, ctx, TaskStatus.CANCELLED, "")
    # The row may ask for something else by the time this writes (a resume, Pause all then Resume all at
    # once; or a cancel): each write holds only while the row still asks what was read, so the user's
    # last word is kept.
    while not _finish_if(task, ctx, TaskStatus.PAUSED, "", only_if=ctx.pause_condition()):
        now_requested = DownloadTask.objects.filter(pk=task.pk).values_list("requested", flat=True).first()
        if now_requested in ("cancel", "delete", None):
            return _stopped(task, ctx, now_requested or "delete")
        if _finish_if(task, ctx, TaskStatus.QUEUED, "", only_if=Q(requested="")):
            return wake_workers()


_EVENT_OF_FINAL_STATUS: dict[str, str] = {
    TaskStatus.DONE: "complete_download_task",
    TaskStatus.FAILED: "error_download_task",
}


FINAL_FIELDS = (
    "status", "error", "requested", "bps", "finished_at", "owner", "sha256", "notice",
    "downloaded_size", "total_size", "validator", "expected_sha256",
)  # fmt: skip


def _finish(task: DownloadTask, ctx: DownloadContext, status: str, error: str) -> None:
    _finish_if(task, ctx, status, error, only_if=Q())


def _finish_if(task: DownloadTask, ctx: DownloadContext, status: str, error: str, *, only_if: Q) -> bool:
    """Writes the task's end if the row still matches `only_if`, and tells the pages; whether it did."""
    task.status, task.error, task.requested, task.bps = status, error, "", 0
    if status in (TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.CANCELLED):
        task.finished_at = timezone.now()
    task.owner = ""
    written = DownloadTask.objects.filter(only_if, pk=task.pk).update(
        **{name: getattr(task, name) for name in FINAL_FIELDS}
    )
    if not written:
        return False
    event = _EVENT_OF_FINAL_STATUS.get(status, "update_download_task")
    if status == TaskStatus.PAUSED and error:
        event = "error_download_task"
    ctx.publish_task(task, event)
    return True


def _save_sidecars(task: DownloadTask, result: DownloadResult) -> str:
    """Writes the preview, description and Civitai info the user asked for; a failure here is a note
    on the task, never a failed download."""
    notes = []
    base = result.path.with_suffix("")
    if task.save_info and task.info:
        write_atomically(
            base.parent / (base.name + ".civitai.info"), json.dumps(task.info, indent=2).encode()
        )
    if task.save_description and task.description_html:
        clean = sanitize_html(task.description_html)
        write_atomically(base.parent / (base.name + ".md"), clean.encode())
    if task.save_preview and task.preview_url:
        try:
            save_preview(fetch_image(task.preview_url), result.path)
        except PreviewError as exc:
            notes.append(f"No preview was saved. {exc}")
    return " ".join(notes)[:500]


DOWNLOAD_JOB = JobKind(
    name="download",
    model=DownloadTask,
    run=run_download_task,
    capacity=lambda: settings.MM_DOWNLOAD_CONCURRENCY,
    announce_failure=lambda task: publish_task(task, "error_download_task"),
)
