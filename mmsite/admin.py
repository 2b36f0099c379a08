from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from mmsite.forms import ThrottledAdminLogin
from mmsite.models import ApiToken, UserPreferences

admin.site.login_form = ThrottledAdminLogin
admin.site.site_header = "Model Manager administration"
admin.site.site_title = "Model Manager admin"
admin.site.site_url = "/"


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are made with `manage.py apitoken`; here they are listed (by prefix only) and revoked."""

    list_display = ("prefix", "user", "name", "created_at", "last_used_at")
    readonly_fields = ("user", "prefix", "digest", "created_at", "last_used_at")
    fields = ("user", "name", "prefix", "created_at", "last_used_at")

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False


@admin.register(UserPreferences)
class UserPreferencesAdmin(admin.ModelAdmin):
    list_display = ("user", "show_nsfw", "library_layout")
    list_filter = ("show_nsfw", "library_layout")


class WorkerTaskAdmin(admin.ModelAdmin):
    """Tasks come from the app, which checks what they may touch (folders inside the model roots, the
    links it resolved): here they are watched, stopped and deleted, never added or edited, since a task
    written here would skip those checks."""

    stop_task: Callable[[Any], None]  # the app's own way to stop one, which tells every open page
    actions = ["stop_selected"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.action(description="Stop the selected tasks")
    def stop_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        active = [task for task in queryset if task.is_active]
        for task in active:
            self.stop_task(task)
        messages.success(request, f"Asked {len(active)} task(s) to stop; the others had ended.")
