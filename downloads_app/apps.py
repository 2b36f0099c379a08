from __future__ import annotations

from django.apps import AppConfig


class DownloadsAppConfig(AppConfig):
    name = "downloads_app"
    verbose_name = "Downloads"

    def ready(self) -> None:
        from downloads_app.models import DownloadTask
        from downloads_app.selectors import unfinished_rows_fragment
        from downloads_app.tasks import DOWNLOAD_JOB
        from mmsite.events import add_state_renderer
        from mmsite.worker import register_job_kind
        from models_app.root_moves import ROOT_ADDRESSED, RootAddressed

        register_job_kind(DOWNLOAD_JOB)
        add_state_renderer("downloads", unfinished_rows_fragment)
        # A download resumes into its folder, not into whichever folder takes its old index.
        ROOT_ADDRESSED.append(RootAddressed(DownloadTask))
