from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def issue(self, *, user: models.Model, name: str = "") -> tuple[ApiToken, str]:
        """Creates a token and returns it with its plain text, which is shown once and never stored."""
        plain = "mm_" + secrets.token_urlsafe(32)
        token = self.create(user=user, name=name, digest=hash_token(plain), prefix=plain[:7])
        return token, plain


class ApiToken(models.Model):
    """A bearer token for the JSON API; only its SHA256 is kept."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    digest = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


class UserPreferences(models.Model):
    """What a user chose to see, kept with the account so it follows them to every browser."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preferences"
    )

    class LibraryLayout(models.TextChoices):
        GRID = "grid", "Grid of cards"
        LIST = "list", "List of rows"

    show_nsfw = models.BooleanField(default=False, help_text="Show NSFW previews instead of blurring them.")
    library_layout = models.CharField(
        max_length=8,
        choices=LibraryLayout.choices,
        default=LibraryLayout.GRID,
        help_text="How the library shows models.",
    )

    class Meta:
        verbose_name_plural = "user preferences"

    def __str__(self) -> str:
        return f"preferences of {self.user}"


class TaskStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = (TaskStatus.QUEUED, TaskStatus.RUNNING)


class WorkerTask(models.Model):
    """A row that a worker claims and runs (DESIGN.md §2: the database is the queue).

    `owner` and `heartbeat_at` tell which worker runs it and whether that worker is alive; `requested`
    carries pause or cancel requests from any web process to the running worker.
    """

    status = models.CharField(
        max_length=12, choices=TaskStatus.choices, default=TaskStatus.QUEUED, db_index=True
    )
    requested = models.CharField(max_length=12, blank=True)
    owner = models.CharField(max_length=64, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    # Declared here so that code handed any task model (`type[WorkerTask]`) can query it.
    objects = models.Manager()
    # The order workers take queued rows in: first come, first served, unless a model says otherwise.
    claim_order: tuple[str, ...] = ("created_at", "pk")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def is_stopping(self) -> bool:
        return self.status == TaskStatus.RUNNING and self.requested == "cancel"

    def request_stop(self) -> bool:
        """Cancels the task if it still waits (True), or asks its worker to stop it, which the worker
        does between two files and then reports (False); nothing when it has ended. Reloads the row."""
        model = type(self)
        cancelled = model.objects.filter(pk=self.pk, status=TaskStatus.QUEUED).update(
            status=TaskStatus.CANCELLED, finished_at=timezone.now()
        )
        if not cancelled:
            model.objects.filter(pk=self.pk, status=TaskStatus.RUNNING).update(requested="cancel")
        self.refresh_from_db()
        return bool(cancelled)
