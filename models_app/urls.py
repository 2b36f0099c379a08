from __future__ import annotations

from django.urls import path

from models_app import api_views, views

MODEL = "<str:folder_type>/<int:path_index>/<path:relative_path>"

urlpatterns = [
    path("", views.library, name="library"),
    path("library/scan/", views.scan_start, name="scan_start"),
    path("library/scan/<int:scan_id>/forget/<int:index>/", views.scan_forget, name="scan_forget"),
    path("library/scan/<int:scan_id>/stop/", views.scan_stop, name="scan_stop"),
    path("library/info/", views.info_start, name="info_start"),
    path("library/selection/trash/", views.selection_trash, name="selection_trash"),
    path("library/selection/move/", views.selection_move, name="selection_move"),
    path("library/info/<int:info_id>/stop/", views.info_stop, name="info_stop"),
    path("library/move/<int:move_id>/stop/", views.move_stop, name="move_stop"),
    path(f"model/{MODEL}", views.model_detail, name="model_detail"),
    path(f"thumbnail/{MODEL}", views.model_thumbnail, name="model_thumbnail"),
    path(f"sidecar/{MODEL}", views.model_sidecar, name="model_sidecar"),
    path(f"edit/<str:form>/{MODEL}", views.model_edit, name="model_edit"),
    path(f"description/{MODEL}", views.description_save, name="description_save"),
    path(f"preview/{MODEL}", views.preview_save, name="preview_save"),
    path(f"move/{MODEL}", views.model_move, name="model_move"),
    path(f"delete/{MODEL}", views.model_delete, name="model_delete"),
    path("markdown-preview/", views.markdown_preview, name="markdown_preview"),
    path("trash/", views.trash, name="trash"),
    path("duplicates/", views.duplicates, name="duplicates"),
    path("trash/empty/", views.trash_empty, name="trash_empty"),
    path("trash/<int:item_id>/<str:action>/", views.trash_action, name="trash_action"),
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
]
