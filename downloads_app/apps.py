from __future__ import annotations

from django.apps import AppConfig


class DownloadsAppConfig(AppConfig):
    name = "downloads_app"
    verbose_name = "Downloads"

    def ready(self) -> None:
        from downloads_app.selectors import unfinished_rows_fragment
        from downloads_app.tasks import DOWNLOAD_JOB
        from mmsite.events import STATE_RENDERERS
        from mmsite.worker import register_job_kind

        register_job_kind(DOWNLOAD_JOB)
        STATE_RENDERERS.append(unfinished_rows_fragment)
