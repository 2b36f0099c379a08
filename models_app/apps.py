from __future__ import annotations

from django.apps import AppConfig


class ModelsAppConfig(AppConfig):
    name = "models_app"
    verbose_name = "Model library"

    def ready(self) -> None:
        from mmsite.events import add_state_renderer
        from mmsite.worker import AT_START, PERIODIC, register_job_kind
        from models_app import checks  # noqa: F401  (registers them)
        from models_app.info import INFO_JOB, render_info_progress
        from models_app.moves import MOVE_JOB, render_move_progress
        from models_app.root_moves import follow_moved_roots
        from models_app.roots import get_roots
        from models_app.selectors import latest_info, latest_move, latest_scan
        from models_app.services import purge_old_trash, scan_if_due, updates_check_if_due
        from models_app.tasks import SCAN_JOB, render_scan_progress

        register_job_kind(SCAN_JOB)
        register_job_kind(INFO_JOB)
        register_job_kind(MOVE_JOB)
        PERIODIC.append((purge_old_trash, 3600))
        PERIODIC.append((scan_if_due, 60))
        PERIODIC.append((updates_check_if_due, 60))
        AT_START.append(lambda: follow_moved_roots(get_roots()))
        add_state_renderer("scan", lambda: render_scan_progress(latest_scan()))
        add_state_renderer("info", lambda: render_info_progress(latest_info()))
        add_state_renderer("move", lambda: render_move_progress(latest_move()))
