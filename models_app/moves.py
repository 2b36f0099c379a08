"""Moves of models picked in the library as worker jobs: progress by bytes, stop on request."""

from __future__ import annotations

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone

from mmsite import events
from mmsite.events import Throttle
from mmsite.models import TaskStatus
from mmsite.toasts import toast_fragment
from mmsite.worker import JobKind, TaskContext
from models_app import services
from models_app.models import ModelFile, MoveTask

FIELDS = ["total", "processed", "moved", "size_total", "size_done", "current"]


class MoveStopped(Exception):
    pass


def move_task_data(task: MoveTask) -> dict[str, object]:
    return {
        "taskId": task.pk, "status": task.status, "place": task.place, "total": task.total,
        "processed": task.processed, "moved": task.moved, "sizeTotal": task.size_total,
        "sizeDone": task.size_done, "progress": task.percent, "current": task.current, "error": task.error,
    }  # fmt: skip


def render_move_progress(task: MoveTask | None, *, finished: bool = False) -> str:
    return render_to_string("models_app/move_progress.html", {"move": task, "finished": finished})


def publish_move(event: str, task: MoveTask, *, ended: bool = False) -> None:
    """The move's event; its progress to the pages that show it and, once it has ended, the library's
    refresh and a toast for every page."""
    toast = toast_fragment(task.summary, level="error" if task.failures else "success") if ended else ""
    events.publish(
        event, move_task_data(task), render_move_progress(task, finished=ended), topic="move", toast=toast
    )


def stop_move(task: MoveTask) -> None:
    """Stops the move: at once when it has not started, else within the current copy, which is undone
    (run_move_task reports it); the models moved before it stay moved."""
    if task.request_stop():
        publish_move("complete_move_task", task, ended=True)


def run_move_task(task: MoveTask, ctx: TaskContext) -> None:
    throttle = Throttle(settings.MM_PROGRESS_INTERVAL)

    def report(force: bool = False) -> None:
        if throttle.ready(force=force):
            MoveTask.objects.filter(pk=task.pk).update(**{name: getattr(task, name) for name in FIELDS})
            publish_move("update_move_task", task)

    def on_copied(size: int) -> None:
        if ctx.requested() in {"cancel", "shutdown"}:
            raise MoveStopped(ctx.requested())
        task.size_done += size
        report()

    # Not their metadata: thousands may be picked, and the rows are read again after each move.
    models = list(ModelFile.objects.filter(pk__in=task.model_ids).defer("metadata").order_by("relative_path"))
    # A move taken over after a restart goes on with the models not moved yet (a moved one has a new row).
    task.total, task.processed = task.moved + len(models), task.moved
    task.size_total, task.size_done = sum(model.size for model in models), 0
    report(force=True)
    failures = []
    try:
        for model in models:
            if ctx.requested() in {"cancel", "shutdown"}:
                raise MoveStopped(ctx.requested())
            task.current = f"{model.folder_type}/{model.relative_path}"
            done_before = task.size_done
            try:
                services.model_move(
                    model=model,
                    folder_type=task.folder_type,
                    path_index=task.path_index,
                    sub_folder=task.sub_folder,
                    name=task.name or model.file_name,
                    on_copied=on_copied,
                )
            except (services.ModelEditError, OSError) as exc:  # OSError: its folder could not be read
                failures.append(f"{model.relative_path}: {exc}")
            else:
                task.moved += 1
            task.processed += 1
            task.size_done = done_before + model.size  # a rename reports no bytes; a copy its own
            report()
    except MoveStopped as stop:
        shutdown = str(stop) == "shutdown"
        task.status = TaskStatus.QUEUED if shutdown else TaskStatus.CANCELLED
        task.finished_at = None if shutdown else timezone.now()
        task.error = "\n".join(failures)
        MoveTask.objects.filter(pk=task.pk).update(
            status=task.status, owner="", finished_at=task.finished_at, error=task.error,
            **{name: getattr(task, name) for name in FIELDS},
        )  # fmt: skip
        publish_move("complete_move_task", task, ended=not shutdown)
        return
    task.status, task.current, task.finished_at = TaskStatus.DONE, "", timezone.now()
    task.error = "\n".join(failures)
    task.save(update_fields=[*FIELDS, "status", "finished_at", "error"])
    publish_move("complete_move_task", task, ended=True)


MOVE_JOB = JobKind(
    name="move",
    model=MoveTask,
    run=run_move_task,
    capacity=lambda: 1,
    announce_failure=lambda task: publish_move("complete_move_task", task, ended=True),
)
