from __future__ import annotations

import signal
import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q
from django.template.defaultfilters import filesizeformat

from downloads_app import selectors, services
from downloads_app.models import DownloadTask
from downloads_app.sources import SourceError
from downloads_app.tasks import download_task_run
from mmsite.management.database import require_migrated
from mmsite.models import TaskStatus
from mmsite.worker import process_owner_prefix
from models_app.management.commands.scan import progress_bar


class TerminalContext:
    """Runs a download in this process: a progress bar instead of events; Ctrl-C pauses."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.owner = process_owner_prefix() + "cli"
        self.stop = ""
        self.last = 0.0

    def requested(self) -> str:
        return self.stop

    def pause_condition(self) -> Q:
        return Q()  # Ctrl-C is this process's own word, not the row's

    def publish_task(self, task: DownloadTask, event: str) -> None:
        now = time.monotonic()
        if now - self.last < 0.2 and event == "update_download_task":
            return
        self.last = now
        total = task.total_size or 0
        speed = f"{filesizeformat(task.bps)}/s" if task.bps else ""
        line = f"\r{progress_bar(task.downloaded_size, total)} {task.percent:3d}% {filesizeformat(task.downloaded_size)} {speed}  "
        self.out.write(line, ending="")
        self.out.flush()


class Command(BaseCommand):
    help = "Download a model from a Civitai or Hugging Face link (or any URL) into the right folder."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("url")
        parser.add_argument(
            "--type", dest="folder_type", default="", help="Folder type (default: from the source)."
        )
        parser.add_argument("--path-index", type=int, default=0)
        parser.add_argument("--subfolder", default="")
        parser.add_argument("--name", default="", help="File name (default: the source's).")
        parser.add_argument("--model-version", default="", help="Civitai version id (default: the latest).")
        parser.add_argument(
            "--queue", action="store_true", help="Only queue it for the running server's worker."
        )

    def handle(
        self,
        *args: Any,
        url: str,
        folder_type: str,
        path_index: int,
        subfolder: str,
        name: str,
        model_version: str,
        queue: bool,
        **options: Any,
    ) -> None:
        require_migrated()
        try:
            resolution = selectors.resolution_get(url)
        except SourceError as exc:
            raise CommandError(str(exc)) from None
        try:
            task = services.download_as_linked(
                resolution,
                version_id=model_version or None,
                folder_type=folder_type,
                path_index=path_index,
                sub_folder=subfolder,
                filename=name,
            )
        except services.FolderTypeUnknown:
            raise CommandError("Which folder type? Pass --type (checkpoints, loras, vae, …).") from None
        except services.DownloadRequestError as exc:
            raise CommandError(str(exc)) from None
        destination = services.Destination.of(task)
        if queue:
            self.stdout.write(f"Queued download #{task.pk}: {destination.path}")
            return
        ctx = TerminalContext(self.stdout)
        # Claimed by this process, so a running worker leaves it alone.
        DownloadTask.objects.filter(pk=task.pk, status=TaskStatus.QUEUED).update(
            status=TaskStatus.RUNNING, owner=ctx.owner
        )
        signal.signal(signal.SIGINT, lambda *_: setattr(ctx, "stop", "pause"))
        task.refresh_from_db()
        self.stdout.write(f"{task.title or task.filename} → {destination.path}")
        download_task_run(task, ctx)
        task.refresh_from_db()
        self.stdout.write("")
        if task.status == TaskStatus.DONE:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Done: {destination.path} ({filesizeformat(task.total_size or 0)}, SHA256 {task.sha256})"
                )
            )
        elif task.status == TaskStatus.PAUSED:
            self.stdout.write(
                f"Paused (#{task.pk}{': ' + task.error if task.error else ''}). Resume it from the Downloads page."
            )
            sys.exit(1)
        else:
            raise CommandError(task.error or f"The download ended as {task.status}.")
