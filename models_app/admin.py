from __future__ import annotations

from django.contrib import admin
from django.template.defaultfilters import filesizeformat

from mmsite.admin import WorkerTaskAdmin
from models_app.info import stop_info
from models_app.models import CivitaiModel, InfoTask, ModelFile, MoveTask, ScanTask
from models_app.moves import stop_move
from models_app.tasks import stop_scan


@admin.register(ModelFile)
class ModelFileAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "folder_type",
        "path_index",
        "sub_folder",
        "base_model",
        "size_display",
        "modified_at",
    )
    list_filter = ("folder_type", "base_model")
    search_fields = ("name", "relative_path", "sha256")
    readonly_fields = [f.name for f in ModelFile._meta.fields]

    @admin.display(description="Size", ordering="size")
    def size_display(self, obj: ModelFile) -> str:
        return filesizeformat(obj.size)

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False  # rows come from the scanner


@admin.register(CivitaiModel)
class CivitaiModelAdmin(admin.ModelAdmin):
    list_display = ("model_id", "version_id", "version_name", "base_model", "checked_at")
    search_fields = ("model_id", "version_name")
    readonly_fields = [f.name for f in CivitaiModel._meta.fields]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False  # rows come from Check for updates


@admin.register(ScanTask)
class ScanTaskAdmin(WorkerTaskAdmin):
    stop_task = staticmethod(stop_scan)
    list_display = (
        "pk", "mode", "automatic", "status", "processed", "total", "added", "updated", "removed", "created_at",
    )  # fmt: skip
    list_filter = ("status", "mode", "automatic")


@admin.register(InfoTask)
class InfoTaskAdmin(WorkerTaskAdmin):
    """Hashing and Civitai lookups, queued from the library or after a scan, and the worker's own checks
    for updates (MM_UPDATES_EVERY)."""

    stop_task = staticmethod(stop_info)

    list_display = (
        "pk",
        "mode",
        "automatic",
        "status",
        "processed",
        "total",
        "hashed",
        "found",
        "missing",
        "failed",
        "gone",
        "created_at",
    )
    list_filter = ("status", "mode", "automatic")


@admin.register(MoveTask)
class MoveTaskAdmin(WorkerTaskAdmin):
    """Models picked in the library, moved into one folder by the worker."""

    stop_task = staticmethod(stop_move)

    list_display = (
        "pk",
        "status",
        "folder_type",
        "path_index",
        "sub_folder",
        "processed",
        "total",
        "moved",
        "created_at",
    )
    list_filter = ("status", "folder_type")
