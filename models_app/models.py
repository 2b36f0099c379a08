from __future__ import annotations

import contextlib
import secrets
from datetime import timedelta

from django.contrib.humanize.templatetags.humanize import intcomma
from django.db import models
from django.template.defaultfilters import pluralize
from django.utils import timezone

from mmsite.models import ACTIVE_STATUSES, TaskStatus, WorkerTask

MAX_RELATIVE_PATH = 1024  # characters; longer paths are skipped by the scan and refused by edits


class ModelFile(models.Model):
    """One model found by the scanner: a file with a model extension, or a diffusers folder."""

    folder_type = models.CharField(max_length=64)
    path_index = models.PositiveSmallIntegerField()
    relative_path = models.CharField(
        max_length=MAX_RELATIVE_PATH, help_text="Inside its root, with / separators."
    )
    sub_folder = models.CharField(max_length=1024, blank=True)
    name = models.CharField(max_length=512, help_text="File name without its extension.")
    extension = models.CharField(max_length=16, blank=True)
    is_dir = models.BooleanField(default=False)
    size = models.BigIntegerField()
    mtime_ns = models.BigIntegerField()
    created_at = models.DateTimeField(help_text="When the file appeared on disk (ctime when no birth time).")
    modified_at = models.DateTimeField()
    header_error = models.CharField(max_length=300, blank=True)
    sidecar_signature = models.CharField(max_length=64, blank=True)
    preview = models.CharField(max_length=600, blank=True, help_text="Preview file name beside the model.")
    base_model = models.CharField(max_length=100, blank=True)
    civitai_model_id = models.BigIntegerField(null=True, blank=True)
    civitai_version_id = models.BigIntegerField(null=True, blank=True)
    civitai_name = models.CharField(max_length=600, blank=True)
    nsfw_level = models.PositiveSmallIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    civitai_missing = models.BooleanField(
        default=False, db_default=False, help_text="Civitai answered 404 for its hash."
    )
    # Large values last: SQLite reads a row only up to the last column asked for, and the cards ask
    # for the small ones above, so the metadata's overflow pages are never read for a page of cards.
    search_text = models.TextField(blank=True, help_text="Lower-case name, path and words, for search.")
    labels = models.TextField(
        blank=True, help_text="Lower-case trigger words and tags, one a line, between newlines."
    )
    sidecars = models.JSONField(default=list, blank=True)
    trained_words = models.JSONField(default=list, blank=True)
    tags = models.JSONField(default=list, blank=True)
    description = models.TextField(blank=True)
    notes = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True, help_text="safetensors __metadata__")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["folder_type", "path_index", "relative_path"], name="unique_model_path"
            )
        ]
        # The library page's sorts and filter lists: without these each page load scans the whole
        # table, whose rows carry the models' metadata (14 KB for a kohya LoRA), and a sort by size took
        # 23 ms of a 10,000-model page instead of 0.5. They are about a fifth of a first scan's writing.
        indexes = [
            models.Index(fields=["name"]),
            # With the size, these two also give the count and size of a type or of a subfolder (the line
            # above the cards) without reading the rows.
            models.Index(fields=["folder_type", "name", "size"]),
            models.Index(fields=["size"]),
            models.Index(fields=["modified_at"]),
            models.Index(fields=["created_at"]),
            models.Index(fields=["folder_type", "sub_folder", "size"]),
            models.Index(fields=["base_model"]),
            # The models of a Civitai model, and whether the library holds one of its versions
            # (selectors.with_update); partial, so that the scan's writing of the many rows without
            # Civitai info does not pay for it.
            models.Index(
                fields=["civitai_model_id", "civitai_version_id"],
                condition=models.Q(civitai_model_id__isnull=False),
                name="model_civitai_version",
            ),
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.folder_type}/{self.relative_path}"

    @property
    def file_name(self) -> str:
        return self.relative_path.rsplit("/", 1)[-1]

    @property
    def base_path(self) -> str:
        """Relative path without the extension: sidecars are named after it."""
        return self.relative_path if self.is_dir else self.relative_path[: -len(self.extension) or None]

    @property
    def prompt_token(self) -> str:
        """What a prompt calls this model by, where one can: ComfyUI's own `embedding:` (a subfolder and
        no extension are fine there), and for a LoRA the `<lora:name:weight>` that A1111, and ComfyUI's
        prompt nodes that take LoRAs (LoRA Manager's, prompt-control), read."""
        if self.is_dir:
            return ""
        if self.folder_type == "embeddings":
            return f"embedding:{self.base_path}"
        if self.folder_type == "loras":
            return f"<lora:{self.name}:1>"
        return ""

    @property
    def preview_is_video(self) -> bool:
        return self.preview.lower().endswith((".mp4", ".webm"))


class CivitaiModel(models.Model):
    """What Civitai said when last asked about one of its models: its newest version. A library model
    with the info of an older version of it has an update, unless the newest is in the library too."""

    model_id = models.BigIntegerField(primary_key=True)
    version_id = models.BigIntegerField(help_text="Its newest version.")
    version_name = models.CharField(max_length=300, blank=True)
    base_model = models.CharField(max_length=100, blank=True)
    checked_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Civitai model {self.model_id}: newest version {self.version_id} ({self.version_name})"


class LibraryVersion(models.Model):
    """A token the scanner renews whenever it writes model rows. Inserts and deletes change the number
    of rows or the newest id; this covers the rows rewritten in place, so together they tell when what
    the library page keeps in the cache is stale."""

    token = models.CharField(max_length=32)

    def __str__(self) -> str:
        return self.token

    @classmethod
    def renew(cls) -> None:
        cls.objects.update_or_create(pk=1, defaults={"token": secrets.token_hex(8)})

    @classmethod
    def current(cls) -> str:
        return cls.objects.filter(pk=1).values_list("token", flat=True).first() or ""


class RootFolder(models.Model):
    """A model folder as the last start configured it: root_moves.py moves rows along when one of them
    gets another index."""

    folder_type = models.CharField(max_length=64)
    path_index = models.PositiveSmallIntegerField()
    path = models.TextField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["folder_type", "path_index"], name="unique_root_folder")
        ]

    def __str__(self) -> str:
        return f"{self.folder_type}/{self.path_index}: {self.path}"


class ScanMode(models.TextChoices):
    DIFF = "diff", "Changed files only"
    FULL = "full", "Everything"


class CountedTask(WorkerTask):
    """A task that goes through a known number of models."""

    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)

    class Meta:
        abstract = True

    @property
    def percent(self) -> int:
        if self.status == "done":
            return 100
        return int(self.processed * 100 / self.total) if self.total else 0


class ScanTask(CountedTask):
    mode = models.CharField(max_length=8, choices=ScanMode.choices, default=ScanMode.DIFF)
    automatic = models.BooleanField(
        default=False,
        help_text="Started by the worker (MM_SCAN_EVERY), not by someone: it shows only what it changed.",
    )
    added = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    removed = models.PositiveIntegerField(default=0)
    current_path = models.TextField(blank=True)
    kept = models.JSONField(
        default=list,
        blank=True,
        help_text="Places the scan could not reach, whose models it kept: "
        "[folder type, root index, place, count, message] each.",
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # The workers' periodic checks (services.scan_if_due) may fire at one moment: one scan comes of it.
            models.UniqueConstraint(
                fields=["automatic"],
                condition=models.Q(automatic=True, status__in=list(ACTIVE_STATUSES)),
                name="one_automatic_scan_at_a_time",
            )
        ]

    def __str__(self) -> str:
        return f"{'Full rescan' if self.mode == ScanMode.FULL else 'Scan'} #{self.pk} ({self.status})"

    @property
    def kept_models(self) -> int:
        """How many known models it kept in places it could not reach (not in `total`)."""
        return sum(entry[3] for entry in self.kept)

    @property
    def changes(self) -> str:
        """What it changed in the library, in words ("3 new, 1 gone"), or "" when nothing."""
        counts = (
            (self.added, "new"),
            (self.updated, "changed"),
            (self.removed, "gone"),
            (self.kept_models, "out of reach"),
        )
        return ", ".join(f"{intcomma(n)} {what}" for n, what in counts if n)

    @property
    def skipped(self) -> list[tuple[str, int | None]]:
        """What a finished scan skipped, and why, one a line; with a line about a place whose models
        were kept, that place's index in `kept` (the page offers to forget them)."""
        if self.status != TaskStatus.DONE:
            return []
        kept = {entry[4]: index for index, entry in enumerate(self.kept)}
        return [(line, kept.get(line)) for line in self.error.splitlines()]


class TrashItem(models.Model):
    """A model and its sidecars moved to `<root>/.trash/<folder>/` (same disk: a rename, never a copy)."""

    folder_type = models.CharField(max_length=64)
    path_index = models.PositiveSmallIntegerField()
    relative_path = models.CharField(max_length=1024, help_text="Where the model was, inside its root.")
    trash_folder = models.CharField(max_length=300, help_text="Inside <root>/.trash/.")
    files = models.JSONField(default=list, help_text="Names of the model and its sidecars.")
    size = models.BigIntegerField(default=0)
    trashed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-trashed_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.folder_type}/{self.relative_path} (trashed)"

    @property
    def name(self) -> str:
        return self.relative_path.rsplit("/", 1)[-1]

    @property
    def folder(self) -> str:
        """The subfolder it came from, and goes back to ("" for the root)."""
        return self.relative_path.rpartition("/")[0]


class HashCache(models.Model):
    """SHA256 of a file's content, valid while (device, inode, size, mtime_ns) are unchanged."""

    device = models.BigIntegerField()
    inode = models.BigIntegerField()
    size = models.BigIntegerField()
    mtime_ns = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["device", "inode", "size", "mtime_ns"], name="unique_hash_key")
        ]

    def __str__(self) -> str:
        return self.sha256


class InfoMode(models.TextChoices):
    HASH = "hash", "Compute hashes"
    FETCH = "fetch", "Fetch Civitai info"
    UPDATES = "updates", "Check for updates"


INFO_OUTCOME_SHOWN = timedelta(minutes=1)


class InfoTask(CountedTask):
    """Hashes models that lack a SHA256, and (fetch mode) asks Civitai about them by hash, or (updates
    mode) asks Civitai for the newest version of each model that has Civitai info."""

    mode = models.CharField(max_length=8, choices=InfoMode.choices, default=InfoMode.HASH)
    automatic = models.BooleanField(
        default=False,
        help_text="A check for updates the worker started (MM_UPDATES_EVERY): it tells the pages only of updates.",
    )
    model_ids = models.JSONField(default=list, blank=True, help_text="Empty: every model that needs it.")
    hashed = models.PositiveIntegerField(default=0)
    found = models.PositiveIntegerField(default=0)
    missing = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0, help_text="Models that could not be hashed or looked up.")
    gone = models.PositiveIntegerField(
        default=0, help_text="Models whose file was no longer there: the next scan forgets them."
    )
    current = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # The workers' periodic checks (services.updates_check_if_due) may fire at one moment.
            models.UniqueConstraint(
                fields=["automatic"],
                condition=models.Q(automatic=True, status__in=list(ACTIVE_STATUSES)),
                name="one_automatic_update_check_at_a_time",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_mode_display()} #{self.pk} ({self.status})"

    # The jobs the pages show: an automatic check tells them only that it found updates (is_quiet).
    SHOWN = models.Q(automatic=False) | models.Q(status=TaskStatus.DONE, found__gt=0)

    @property
    def is_quiet(self) -> bool:
        """The Python side of SHOWN: no progress, no "no update" from a check the worker started."""
        return self.automatic and not (self.status == TaskStatus.DONE and self.found)

    @property
    def failures(self) -> list[str]:
        """Why each model that failed did, one a line (the first 20), once the task is done."""
        return self.error.splitlines() if self.status == TaskStatus.DONE else []

    @property
    def unlisted_failures(self) -> int:
        return max(0, self.failed - len(self.failures))

    @property
    def just_ended(self) -> bool:
        """Whether a page drawn now still says how it went: one that connected (or loaded) a moment after
        the end missed the event that said so."""
        return self.finished_at is not None and timezone.now() - self.finished_at < INFO_OUTCOME_SHOWN

    @property
    def only_model(self) -> ModelFile | None:
        """The one model the task was started for (from its dialog), while it is in the library."""
        if len(self.model_ids) != 1:
            return None
        return ModelFile.objects.filter(pk=self.model_ids[0]).first()


class MoveTask(CountedTask):
    """Models picked in the library, moved into one folder by the worker: across disks each move is a
    copy of gigabytes, longer than a request should wait."""

    model_ids = models.JSONField(default=list)
    folder_type = models.CharField(max_length=64)
    path_index = models.IntegerField(default=0)
    sub_folder = models.CharField(max_length=MAX_RELATIVE_PATH, blank=True)
    name = models.CharField(
        max_length=255, blank=True, help_text="A new name, for one model; else each keeps its own."
    )
    moved = models.PositiveIntegerField(default=0)
    size_total = models.BigIntegerField(default=0, help_text="Bytes of the models to move.")
    size_done = models.BigIntegerField(
        default=0, help_text="Bytes moved so far, the current copy's included."
    )
    current = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Move #{self.pk} to {self.place} ({self.status})"

    @property
    def place(self) -> str:
        """Where the models go, as the user knows it: a type's first folder by the type's name, another
        (a second disk) by its path."""
        from models_app.roots import UnknownRoot, get_roots

        where = self.folder_type
        if self.path_index:
            with contextlib.suppress(UnknownRoot):
                where = str(get_roots().get(self.folder_type, self.path_index))
        return f"{where}/{self.sub_folder}" if self.sub_folder else where

    @property
    def percent(self) -> int:
        # By bytes: one checkpoint copied across disks outweighs a hundred LoRAs renamed.
        if self.status == "done":
            return 100
        if self.size_total:
            return int(self.size_done * 100 / self.size_total)
        return super().percent

    @property
    def failures(self) -> list[str]:
        return self.error.splitlines()

    @property
    def recently_ended(self) -> bool:
        """Whether the library still says how it went: what could not move stays listed for a while."""
        return self.finished_at is not None and timezone.now() - self.finished_at < timedelta(minutes=10)

    @property
    def summary(self) -> str:
        summary = f"{intcomma(self.moved)} model{pluralize(self.moved)} moved to {self.place}"
        if self.status == TaskStatus.CANCELLED:
            return f"Move stopped: {summary}; the others stayed where they were."
        if self.status == TaskStatus.FAILED:
            return f"Move failed: {summary}; the others stayed where they were."
        failed = len(self.failures)
        return summary + (f". {failed} could not be moved." if failed else ".")
