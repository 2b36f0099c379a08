from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from downloads_app import selectors, services
from downloads_app.workflows import MAX_WORKFLOW_BYTES, WorkflowError, models_in_workflow
from mmsite.management.database import require_migrated

STATES = (
    ("have", "in the library"),
    ("queued", "downloading"),
    ("missing", "missing"),
    ("no_folder", "with no model folder of their type"),
)


class Command(BaseCommand):
    help = (
        "List the models a ComfyUI workflow (.json, or an image ComfyUI, A1111, Forge or Civitai made) needs,"
        " and which the library has; --queue downloads the missing ones that have a link."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--queue",
            action="store_true",
            help="Queue the missing models that have a link, for the running server's worker.",
        )

    def handle(self, *args: Any, file: Path, queue: bool, **options: Any) -> None:
        require_migrated()
        try:
            with file.open("rb") as opened:
                data = opened.read(MAX_WORKFLOW_BYTES + 1)
        except OSError as exc:
            raise CommandError(f"{file} cannot be read: {exc.strerror}.") from None
        try:
            needs = selectors.workflow_needs(models_in_workflow(data))
        except WorkflowError as exc:
            raise CommandError(str(exc)) from None
        for need in needs:
            self.stdout.write(
                f"{need.state:9} {need.model.folder_type or '?':16} {need.model.name}  {_said(need)}"
            )
        counts = Counter(need.state for need in needs)
        said = [f"{counts[state]} {words}" for state, words in STATES if counts[state]]
        self.stdout.write(f"{len(needs)} models: {', '.join(said) or 'none'}.")
        missing = [need for need in needs if need.state == "missing"]
        if not queue:
            return
        # Those the dialog ticks.
        wanted = [
            services.Wanted(need.model.url, need.model.folder_type, *need.model.destination)
            for need in missing
            if need.ticked
        ]
        keys = services.keys()
        for outcome in services.download_links(
            wanted, resolve=lambda link: selectors.resolution_get(link, keys)
        ):
            if outcome.task:
                self.stdout.write(
                    f"Queued download #{outcome.task.pk}: {services.Destination.of(outcome.task).path}"
                )
            elif outcome.have:
                self.stdout.write(f"Had already: {outcome.have.folder_type}/{outcome.have.relative_path}")
            else:
                self.stderr.write(f"Not queued: {outcome.label}: {outcome.error}")


def _said(need: selectors.NeededModel) -> str:
    """The row's words, as the dialog says them."""
    if need.have:
        return f"→ {need.have.folder_type}/{need.have.relative_path}"
    if need.state == "no_folder":
        return "(no model folder of that type)"
    words = (
        [f"elsewhere: {need.elsewhere.folder_type}/{need.elsewhere.relative_path}"] if need.elsewhere else []
    )
    words += [f"similar: {need.similar.folder_type}/{need.similar.relative_path}"] if need.similar else []
    words += [need.model.url] if need.model.url else [need.not_on_civitai or "no link"]
    return " · ".join(words) if need.state == "missing" else ""
