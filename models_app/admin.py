from __future__ import annotations

from django.contrib import admin
from django.template.defaultfilters import filesizeformat

from models_app.models import CivitaiModel, InfoTask, ModelFile, MoveTask, ScanTask


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
class ScanTaskAdmin(admin.ModelAdmin):
    list_display = ("pk", "mode", "status", "processed", "total", "added", "updated", "removed", "created_at")
    list_filter = ("status", "mode")
    readonly_fields = ("owner", "heartbeat_at", "started_at", "finished_at")


@admin.register(InfoTask)
class InfoTaskAdmin(admin.ModelAdmin):
    """Hashing and Civitai lookups, queued from the library or after a scan."""

    list_display = (
        "pk",
        "mode",
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
    list_filter = ("status", "mode")
    readonly_fields = ("owner", "heartbeat_at", "started_at", "finished_at")


@admin.register(MoveTask)
class MoveTaskAdmin(admin.ModelAdmin):
    """Models picked in the library, moved into one folder by the worker."""

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
    readonly_fields = ("owner", "heartbeat_at", "started_at", "finished_at")
