from __future__ import annotations

import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from mmsite.management.database import require_migrated
from mmsite.models import TaskStatus
from models_app.models import ScanMode, ScanTask
from models_app.roots import get_roots
from models_app.scanner import ScanProgress, place_name, scan_folder
from models_app.services import forget_kept_models


def progress_bar(done: int, total: int, width: int = 30) -> str:
    filled = int(width * done / total) if total else 0
    return "[" + "#" * filled + "-" * (width - filled) + "]"


class Command(BaseCommand):
    help = "Scan the model folders now, in the foreground, with a progress bar."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--full", action="store_true", help="Read every file again, changed or not.")
        parser.add_argument(
            "--forget-unreachable",
            action="store_true",
            help="Forget the models of places that cannot be reached (a root that is missing or empty, a "
            "link that leads nowhere) instead of keeping them until the place is back.",
        )

    def handle(self, *args: Any, full: bool, forget_unreachable: bool, **options: Any) -> None:
        require_migrated()
        roots = get_roots()
        if not roots.folders:
            self.stderr.write(
                "No model folders are configured: set MM_COMFYUI_PATH or MM_MODEL_ROOTS (see README)."
            )
            sys.exit(2)
        task = ScanTask.objects.create(
            mode=ScanMode.FULL if full else ScanMode.DIFF,
            status=TaskStatus.RUNNING,
            owner="scan-command",
            started_at=timezone.now(),
        )
        tty = self.stdout.isatty()
        last = 0.0

        def on_progress(progress: ScanProgress) -> None:
            nonlocal last
            now = time.monotonic()
            finished = progress.total > 0 and progress.processed == progress.total
            if tty and (now - last > 0.1 or finished):
                last = now
                if progress.total:
                    line = f"{progress_bar(progress.processed, progress.total)} {progress.processed}/{progress.total}"
                else:  # still listing the folders
                    line = f"Looking for models… {progress.current_path}"
                self.stdout.write(f"\r\x1b[K{line}", ending="")
                self.stdout.flush()

        started = time.monotonic()
        try:
            result = scan_folder(roots, full=full, on_progress=on_progress)
        except BaseException as exc:
            ScanTask.objects.filter(pk=task.pk).update(
                status=TaskStatus.FAILED, error=str(exc) or type(exc).__name__, finished_at=timezone.now()
            )
            raise
        ScanTask.objects.filter(pk=task.pk).update(
            status=TaskStatus.DONE,
            total=result.total,
            processed=result.processed,
            added=result.added,
            updated=result.updated,
            removed=result.removed,
            error=result.error_report(),
            kept=[list(place) for place in result.kept],
            finished_at=timezone.now(),
        )
        if tty:
            self.stdout.write("")
        took = time.monotonic() - started
        self.stdout.write(
            f"Scanned {result.total} model{'s' if result.total != 1 else ''} in "
            f"{f'{took:.1f} s' if took >= 1 else f'{took * 1000:.0f} ms'}: "
            f"{result.added} added, {result.updated} changed, {result.removed} removed."
        )
        forgotten = set()
        if forget_unreachable:
            task.refresh_from_db()
            while task.kept:
                folder_type, path_index, place, _count, message = task.kept[0]
                count = forget_kept_models(scan=task, index=0)
                forgotten.add(message)
                where = place_name(roots, folder_type, path_index, place)
                self.stdout.write(f"Forgot {count} model{'s' if count != 1 else ''} in {where}.")
        errors = [error for error in result.errors if error not in forgotten]
        if errors:
            self.stderr.write("Skipped:")
        for error in errors:
            self.stderr.write(f"  {error}")
