from __future__ import annotations

from django.urls import path

from downloads_app import api_views, views

urlpatterns = [
    path("downloads/", views.downloads, name="downloads"),
    path("downloads/new/", views.download_new, name="download_new"),
    path("downloads/choose/", views.download_choose, name="download_choose"),
    path("downloads/batch/", views.download_batch, name="download_batch"),
    path("downloads/workflow/", views.download_workflow, name="download_workflow"),
    path("downloads/workflow/queue/", views.download_workflow_queue, name="download_workflow_queue"),
    path("downloads/create/", views.download_create, name="download_create"),
    path("downloads/clear/", views.downloads_clear, name="downloads_clear"),
    path("downloads/every/<str:action>/", views.downloads_every, name="downloads_every"),
    path("downloads/<int:task_id>/<str:action>/", views.download_action, name="download_action"),
    path("browse/", views.browse_civitai, name="browse"),
    path("browse/huggingface/", views.browse_huggingface, name="browse_huggingface"),
    path("settings/", views.settings_page, name="settings"),
]

api_urlpatterns = [
    path("download/task", api_views.tasks, name="api_download_tasks"),
    path("download/setting", api_views.setting, name="api_download_setting"),
    path("download/<int:task_id>", api_views.task, name="api_download_task"),
    path("model", api_views.create, name="api_download_create"),
    path("model-info", api_views.model_info, name="api_model_info"),
    path("workflow/models", api_views.workflow_models, name="api_workflow_models"),
]
