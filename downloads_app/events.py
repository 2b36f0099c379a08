"""What browsers hear about downloads: the seed's JSON events and the task row fragment."""

from __future__ import annotations

from typing import Any

from django.template.loader import render_to_string

from downloads_app.models import DownloadTask
from downloads_app.summary import downloads_summary
from mmsite.events import publish
from mmsite.toasts import toast_fragment


def task_data(task: DownloadTask) -> dict[str, Any]:
    return {
        "taskId": task.pk,
        "fullname": task.relative_path,
        "type": task.folder_type,
        "pathIndex": task.path_index,
        "status": task.status,
        "downloadedSize": task.downloaded_size,
        "totalSize": task.total_size,
        "progress": task.percent,
        "bps": task.bps,
        "error": task.error,
        "platform": task.platform,
    }


def render_task_row(task: DownloadTask, *, oob: str = "") -> str:
    return render_to_string("downloads_app/task_row.html", {"task": task, "oob": oob})


def render_summary(*, oob: bool = False) -> str:
    return render_to_string(
        "downloads_app/downloads_summary.html", {"summary": downloads_summary(), "oob": oob}
    )


def publish_task(task: DownloadTask, event: str) -> None:
    fragment = render_task_row(
        task, oob="afterbegin:#download-tasks" if event == "create_download_task" else ""
    ) + render_summary(oob=True)
    toast = ""
    if event == "complete_download_task":
        toast = toast_fragment(f"Downloaded {task.filename}.")
    elif event == "error_download_task":
        toast = toast_fragment(f"{task.filename}: {task.error}", level="error")
    publish(event, task_data(task), fragment, topic="downloads", toast=toast)


def publish_deleted(task_id: int) -> None:
    publish(
        "delete_download_task",
        {"taskId": task_id},
        f'<div id="download-task-{task_id}" hx-swap-oob="delete"></div>' + render_summary(oob=True),
        topic="downloads",
    )
