"""Scans as worker jobs: progress to the browsers, stop on request."""

from __future__ import annotations

from dataclasses import asdict

from django.conf import settings
from django.contrib.humanize.templatetags.humanize import intcomma
from django.template.loader import render_to_string
from django.utils import timezone

from mmsite import events
from mmsite.events import Throttle
from mmsite.models import ACTIVE_STATUSES, TaskStatus
from mmsite.toasts import toast_fragment
from mmsite.worker import JobKind, TaskContext
from models_app.models import InfoMode, InfoTask, ModelFile, ScanMode, ScanTask
from models_app.roots import get_roots
from models_app.scanner import ScanProgress, ScanStopped, scan_folder, scan_one_model
from models_app.selectors import latest_scan
from models_app.services import info_start


def scan_task_data(task: ScanTask) -> dict[str, object]:
    return {
        "taskId": task.pk,
        "mode": task.mode,
        "automatic": task.automatic,
        "status": task.status,
        "total": task.total,
        "processed": task.processed,
        "added": task.added,
        "updated": task.updated,
        "removed": task.removed,
        "progress": task.percent,
        "currentPath": task.current_path,
        "error": task.error,
    }


def render_scan_progress(task: ScanTask | None, *, refresh_library: bool = False) -> str:
    return render_to_string(
        "models_app/scan_progress.html", {"scan": task, "refresh_library": refresh_library}
    )


def scan_toast(task: ScanTask) -> str:
    if task.status == TaskStatus.FAILED:
        return toast_fragment(f"Scan failed: {task.error}", level="error")
    if task.status != TaskStatus.DONE:
        return toast_fragment(f"Scan {task.get_status_display().lower()}.", level="info")
    if task.automatic:
        return toast_fragment(f"The model folders changed: {task.changes}.", level="info")
    new = f", {intcomma(task.added)} new" if task.added else ""
    return toast_fragment(
        f"Scan finished: {intcomma(task.total)} model{'' if task.total == 1 else 's'}{new}."
    )


def publish_scan(event: str, task: ScanTask, *, ended: bool = False) -> None:
    """The scan's event; its progress to the pages that show it and, once it has ended with models
    to show, the library's refresh and a toast for every page."""
    progress = render_scan_progress(task, refresh_library=ended)
    events.publish(
        event, scan_task_data(task), progress, topic="scan", toast=scan_toast(task) if ended else ""
    )


def read_new_model(folder_type: str, path_index: int, relative_path: str) -> None:
    """Reads a model that just came in (a download) with its sidecars, and has the open library pages
    read the library again, as the end of a scan does: a scan of the whole library, on a network share,
    could take a while to show one file."""
    scan_one_model(get_roots(), folder_type, path_index, relative_path)
    announce_library_changed(folder_type, path_index, relative_path)


def announce_library_changed(folder_type: str = "", path_index: int = 0, relative_path: str = "") -> None:
    """Has the open library pages read the library again, as the end of a scan does, for the model that
    came in, or for several at once (no model named)."""
    data = {"type": folder_type, "pathIndex": path_index, "path": relative_path} if folder_type else {}
    fragment = render_scan_progress(latest_scan(), refresh_library=True)  # the scan status, as it stands
    events.publish("library_changed", data, fragment, topic="scan")


def stop_scan(task: ScanTask) -> None:
    """Stops the scan. One that has not started is over at once, and every open page hears so; a
    running one stops between two files, keeping the rows it wrote (run_scan_task reports it)."""
    if task.request_stop():
        publish_scan("complete_scan_task", task)


def run_scan_task(task: ScanTask, ctx: TaskContext) -> None:
    throttle = Throttle(settings.MM_PROGRESS_INTERVAL)
    fields = ["total", "processed", "added", "updated", "removed", "current_path"]

    def shows_progress() -> bool:
        """An automatic scan is quiet until someone asks for a scan while it runs (services.scan_start)."""
        if task.automatic:
            task.automatic = ScanTask.objects.filter(pk=task.pk, automatic=True).exists()
        return not task.automatic

    def on_progress(progress: ScanProgress) -> None:
        if ctx.requested() in {"cancel", "shutdown"}:
            raise ScanStopped(ctx.requested())
        # The moment the listing ends and the total is known goes out at once; the rest once a second.
        if throttle.ready(force=progress.processed == 0 and progress.total > 0):
            for name in fields:
                setattr(task, name, getattr(progress, name))
            ScanTask.objects.filter(pk=task.pk).update(**{name: getattr(task, name) for name in fields})
            if shows_progress():
                publish_scan("update_scan_task", task)

    task.started_at = timezone.now()
    ScanTask.objects.filter(pk=task.pk).update(started_at=task.started_at)
    if shows_progress():
        publish_scan("update_scan_task", task)
    try:
        result = scan_folder(get_roots(), full=task.mode == ScanMode.FULL, on_progress=on_progress)
    except ScanStopped as stop:
        shutdown = str(stop) == "shutdown"
        task.status = TaskStatus.QUEUED if shutdown else TaskStatus.CANCELLED
        task.finished_at = None if shutdown else timezone.now()
        ScanTask.objects.filter(pk=task.pk).update(status=task.status, owner="", finished_at=task.finished_at)
        # The models read before the stop are in the library now: a cancelled scan shows them too.
        publish_scan("complete_scan_task", task, ended=not shutdown)
        return
    for name, value in asdict(result).items():
        if name in fields:
            setattr(task, name, value)
    task.status = TaskStatus.DONE
    task.finished_at = timezone.now()
    task.error = result.error_report()
    task.kept = [list(place) for place in result.kept]
    task.save(update_fields=[*fields, "status", "finished_at", "error", "kept"])
    # A quiet scan that changed nothing only updates the status line ("Scanned just now"); one that
    # still cannot reach a drive says so there, not in a toast every interval.
    changed = task.added or task.updated or task.removed
    publish_scan("complete_scan_task", task, ended=shows_progress() or bool(changed))
    if changed or not task.automatic:  # a model that could not be hashed is not tried every interval
        hash_missing()


def hash_missing() -> None:
    """Queues the background hashing of models that lack a SHA256, unless it is queued already."""
    needs = ModelFile.objects.filter(sha256="", is_dir=False).exists()
    if needs and not InfoTask.objects.filter(mode=InfoMode.HASH, status__in=ACTIVE_STATUSES).exists():
        info_start(mode=InfoMode.HASH)


SCAN_JOB = JobKind(
    name="scan",
    model=ScanTask,
    run=run_scan_task,
    capacity=lambda: 1,
    announce_failure=lambda task: publish_scan("complete_scan_task", task, ended=True),
)
