"""The unfinished downloads together, for the line under the Downloads title: how many, how much is
left and when it will be in."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import BigIntegerField, Count, ExpressionWrapper, F, Q, Sum

from downloads_app.models import DownloadTask
from mmsite.models import TaskStatus


@dataclass(frozen=True)
class DownloadsSummary:
    running: int = 0
    queued: int = 0
    paused: int = 0
    bytes_left: int = 0  # of the running and queued ones whose size is known
    paused_bytes_left: int = 0
    bps: int = 0  # of the running ones together

    @property
    def eta_seconds(self) -> int | None:
        """Until the running and queued ones are in at the speed of now; a paused one waits for the user."""
        return int(self.bytes_left / self.bps) if self.bps and self.bytes_left else None


def downloads_summary() -> DownloadsSummary:
    left = ExpressionWrapper(F("total_size") - F("downloaded_size"), output_field=BigIntegerField())
    known = Q(total_size__isnull=False)
    found = DownloadTask.objects.filter(
        status__in=[TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.PAUSED]
    ).aggregate(
        running=Count("pk", filter=Q(status=TaskStatus.RUNNING)),
        queued=Count("pk", filter=Q(status=TaskStatus.QUEUED)),
        paused=Count("pk", filter=Q(status=TaskStatus.PAUSED)),
        bytes_left=Sum(left, filter=known & ~Q(status=TaskStatus.PAUSED)),
        paused_bytes_left=Sum(left, filter=known & Q(status=TaskStatus.PAUSED)),
        bps=Sum("bps", filter=Q(status=TaskStatus.RUNNING)),
    )
    return DownloadsSummary(**{name: max(0, value or 0) for name, value in found.items()})
