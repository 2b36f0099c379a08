from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.db import models

from mmsite.models import WorkerTask

MAX_TITLE = 300  # characters; a longer Civitai or Hugging Face title is cut to fit
MAX_VERSION_NAME = 200


class Platform(models.TextChoices):
    CIVITAI = "civitai", "Civitai"
    HUGGINGFACE = "huggingface", "Hugging Face"
    DIRECT = "direct", "Direct link"


class DownloadTask(WorkerTask):
    """One file to download into a model folder. The row is the truth; the worker only runs it."""

    platform = models.CharField(max_length=16, choices=Platform.choices)
    source_url = models.URLField(max_length=2000, help_text="The page or link the user gave.")
    download_url = models.URLField(max_length=2000)
    title = models.CharField(max_length=MAX_TITLE, blank=True)
    version_name = models.CharField(max_length=MAX_VERSION_NAME, blank=True)
    folder_type = models.CharField(max_length=64)
    path_index = models.PositiveSmallIntegerField(default=0)
    sub_folder = models.CharField(max_length=1024, blank=True)
    filename = models.CharField(max_length=255)
    expected_sha256 = models.CharField(max_length=64, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    total_size = models.BigIntegerField(null=True, blank=True)
    downloaded_size = models.BigIntegerField(default=0)
    bps = models.BigIntegerField(default=0, help_text="Bytes per second, smoothed over about 5 s.")
    validator = models.CharField(max_length=300, blank=True, help_text="ETag or Last-Modified of the part.")
    preview_url = models.URLField(max_length=2000, blank=True)
    description_html = models.TextField(blank=True)
    info = models.JSONField(default=dict, blank=True)
    save_preview = models.BooleanField(default=True)
    save_description = models.BooleanField(default=True)
    save_info = models.BooleanField(default=True)
    notice = models.CharField(max_length=500, blank=True, help_text="A note that does not fail the task.")
    replaces = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="The library model (an older version) to move to the Trash once this download is done.",
    )
    replaces_path = models.CharField(
        max_length=1100, blank=True, help_text="Where that model lay when the download was asked for."
    )
    priority = models.PositiveIntegerField(
        default=0, help_text="Queued tasks start highest first, then oldest first (Download next)."
    )

    # The order workers take queued rows in (mmsite.worker.claim_rows).
    claim_order = ("-priority", "created_at", "pk")

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.relative_path} ({self.status})"

    @property
    def relative_path(self) -> str:
        return f"{self.sub_folder}/{self.filename}" if self.sub_folder else self.filename

    @property
    def replaces_in_place(self) -> bool:
        """Whether the file it replaces has its very name (a newer file of the same Hugging Face path)."""
        return self.replaces_path == f"{self.folder_type}/{self.relative_path}"

    @property
    def percent(self) -> int:
        if self.status == "done":
            return 100
        if not self.total_size:
            return 0
        return min(100, int(self.downloaded_size * 100 / self.total_size))

    @property
    def eta_seconds(self) -> int | None:
        if self.status != "running" or not self.bps or not self.total_size:
            return None
        return max(0, int((self.total_size - self.downloaded_size) / self.bps))


class DownloadedFile(models.Model):
    """Where a file came from, kept by its SHA256 when its download finishes: a rename, a move, a
    rescan or clearing the finished downloads does not lose it."""

    sha256 = models.CharField(max_length=64, unique=True)
    platform = models.CharField(max_length=16, choices=Platform.choices)
    page_url = models.URLField(
        max_length=2000, help_text="Its page: the Civitai model, the Hugging Face file, or the link given."
    )
    title = models.CharField(max_length=MAX_TITLE, blank=True)
    version_name = models.CharField(max_length=MAX_VERSION_NAME, blank=True)
    downloaded_at = models.DateTimeField()
    # A file downloaded from a Hugging Face branch or tag may change there: Check for updates asks the
    # hub what the same path holds now (hub_updates.py).
    hub_sha256 = models.CharField(
        max_length=64, blank=True, help_text="The SHA256 of the file at that branch when last checked."
    )
    hub_checked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.title or self.page_url} ({self.sha256[:10]})"

    @property
    def label(self) -> str:
        """Civitai · Storybook · v1.0, Hugging Face · org/repo: where from, in a few words."""
        version = self.version_name if self.platform == Platform.CIVITAI else ""
        return " · ".join(filter(None, [self.get_platform_display(), self.title, version]))


def check_key(value: str) -> None:
    """Both services issue keys as one word: a space means something else was pasted with it."""
    if re.search(r"\s", value):
        raise ValidationError("A key is one word without spaces.")


class ApiKey(models.Model):
    """A Civitai or Hugging Face key. Sent only to that service's own host, never shown back in full."""

    class Service(models.TextChoices):
        CIVITAI = "civitai", "Civitai"
        HUGGINGFACE = "huggingface", "Hugging Face"

    service = models.CharField(max_length=16, choices=Service.choices, unique=True)
    key = models.CharField(max_length=500, validators=[check_key])
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.get_service_display()} key {self.masked}"

    @property
    def masked(self) -> str:
        return mask_key(self.key)


def mask_key(key: str) -> str:
    return "••••" + key[-4:] if len(key) > 8 else "••••"


class DownloadSettings(models.Model):
    """What every download shares: one row, read with `current()`."""

    speed_limit = models.PositiveBigIntegerField(
        default=0, help_text="Bytes a second for all downloads together; 0 for no limit."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = verbose_name_plural = "download settings"

    def __str__(self) -> str:
        return "Download settings"

    @classmethod
    def current(cls) -> DownloadSettings:
        return cls.objects.filter(pk=1).first() or cls(pk=1)
