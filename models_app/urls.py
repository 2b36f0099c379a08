from __future__ import annotations

from django.urls import path

from models_app import api_views
from models_app.views import dialog, jobs, library, selection, trash

MODEL = "<str:folder_type>/<int:path_index>/<path:relative_path>"

urlpatterns = [
    path("", library.library, name="library"),
    path(f"model/{MODEL}", library.model_detail, name="model_detail"),
    path(f"thumbnail/{MODEL}", library.model_thumbnail, name="model_thumbnail"),
    path(f"sidecar/{MODEL}", library.model_sidecar, name="model_sidecar"),
    path("duplicates/", library.duplicates, name="duplicates"),
    path("library/layout/", library.library_layout, name="library_layout"),
    path(f"edit/<str:form>/{MODEL}", dialog.model_edit, name="model_edit"),
    path(f"description/{MODEL}", dialog.description_save, name="description_save"),
    path(f"preview/{MODEL}", dialog.preview_save, name="preview_save"),
    path(f"civitai-link/{MODEL}", dialog.civitai_link_save, name="civitai_link_save"),
    path(f"move/{MODEL}", dialog.model_move, name="model_move"),
    path(f"delete/{MODEL}", dialog.model_delete, name="model_delete"),
    path("markdown-preview/", dialog.markdown_preview, name="markdown_preview"),
    path("library/scan/", jobs.scan_start, name="scan_start"),
    path("library/scan/<int:scan_id>/forget/<int:index>/", jobs.scan_forget, name="scan_forget"),
    path("library/scan/<int:scan_id>/stop/", jobs.scan_stop, name="scan_stop"),
    path("library/info/", jobs.info_start, name="info_start"),
    path("library/info/<int:info_id>/stop/", jobs.info_stop, name="info_stop"),
    path("library/move/<int:move_id>/stop/", jobs.move_stop, name="move_stop"),
    path("library/selection/trash/", selection.selection_trash, name="selection_trash"),
    path("library/selection/move/", selection.selection_move, name="selection_move"),
    path("trash/", trash.trash, name="trash"),
    path("trash/empty/", trash.trash_empty, name="trash_empty"),
    path("trash/restore-all/", trash.trash_restore_all, name="trash_restore_all"),
    path("trash/<int:item_id>/", trash.trash_item, name="trash_item"),
    path("trash/<int:item_id>/<str:action>/", trash.trash_action, name="trash_action"),
]

api_urlpatterns = [
    path("models", api_views.folders, name="api_folders"),
    path("models/<str:folder_type>", api_views.models_of_type, name="api_models_of_type"),
    path(f"model/{MODEL}", api_views.model, name="api_model"),
    path(f"preview/{MODEL}", api_views.preview, name="api_preview"),
    path("model-info/scan", api_views.scan, name="api_scan"),
    path("model-info/fetch", api_views.fetch, name="api_fetch"),
    path("model-info/scan/<int:task_id>", api_views.scan_task, name="api_scan_task"),
    path("model-info/fetch/<int:task_id>", api_views.fetch_task, name="api_fetch_task"),
    path("trash", api_views.trash, name="api_trash"),
    path("trash/<int:item_id>", api_views.trash_item, name="api_trash_item"),
]
