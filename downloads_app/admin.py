from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from downloads_app import services
from downloads_app.models import ApiKey, DownloadedFile, DownloadSettings, DownloadTask
from mmsite.admin import WorkerTaskAdmin


@admin.register(DownloadTask)
class DownloadTaskAdmin(WorkerTaskAdmin):
    list_display = (
        "pk",
        "filename",
        "folder_type",
        "sub_folder",
        "platform",
        "status",
        "percent",
        "created_at",
    )
    list_filter = ("status", "platform", "folder_type")
    search_fields = ("filename", "title", "source_url")
    exclude = ("info",)  # Civitai's whole answer about the version: pages of JSON
    actions = ["pause", "resume", "cancel"]  # its own Stop: a paused download can go on

    def _apply(self, request: HttpRequest, queryset: QuerySet[DownloadTask], action, verb: str) -> None:  # type: ignore[no-untyped-def]
        """Says how many the action changed: a done download picked with the others is left as it is."""
        changed = 0
        for task in queryset:
            before = (task.status, task.requested)
            after = action(task=task)
            changed += (after.status, after.requested) != before
        left = queryset.count() - changed
        messages.success(
            request, f"{verb} {changed} task(s)." + (f" {left} left as they were." if left else "")
        )

    @admin.action(description="Pause selected downloads")
    def pause(self, request: HttpRequest, queryset: QuerySet[DownloadTask]) -> None:
        self._apply(request, queryset, services.download_pause, "Paused")

    @admin.action(description="Resume selected downloads")
    def resume(self, request: HttpRequest, queryset: QuerySet[DownloadTask]) -> None:
        self._apply(request, queryset, services.download_resume, "Resumed")

    @admin.action(description="Cancel selected downloads (deletes their partial files)")
    def cancel(self, request: HttpRequest, queryset: QuerySet[DownloadTask]) -> None:
        self._apply(request, queryset, services.download_cancel, "Cancelled")


@admin.register(DownloadedFile)
class DownloadedFileAdmin(admin.ModelAdmin):
    """Where each downloaded file came from, as its model's dialog says: written by downloads only."""

    list_display = ("title", "platform", "version_name", "downloaded_at", "sha256", "hub_checked_at")
    list_filter = ("platform",)
    search_fields = ("title", "sha256", "page_url")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: DownloadedFile | None = None) -> bool:
        return False


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are shown masked; a new key is typed in full and never displayed again."""

    list_display = ("service", "key_masked", "updated_at")
    fields = ("service", "key")

    @admin.display(description="Key")
    def key_masked(self, key: ApiKey) -> str:
        return key.masked

    def get_form(
        self, request: HttpRequest, obj: ApiKey | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm[ApiKey]]:
        form = super().get_form(request, obj, change, **kwargs)
        key = form.base_fields["key"]
        key.widget = forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"})
        key.required = obj is None
        key.help_text = f"Currently {obj.masked}. Leave empty to keep it, or type a new key." if obj else ""
        return form

    def save_model(
        self, request: HttpRequest, obj: ApiKey, form: forms.ModelForm[ApiKey], change: bool
    ) -> None:
        if change and not form.cleaned_data.get("key"):
            obj.key = ApiKey.objects.values_list("key", flat=True).get(pk=obj.pk)
        super().save_model(request, obj, form, change)


class DownloadSettingsForm(forms.ModelForm):  # type: ignore[type-arg]
    """The speed limit in MB/s, as the Settings page takes it, checked by the same service."""

    speed_limit = forms.CharField(
        label="Speed limit (MB/s)",
        required=False,
        help_text="For all downloads together, the running ones too; several worker processes share it. "
        "Empty for no limit.",
    )

    class Meta:
        model = DownloadSettings
        fields = ("speed_limit",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initial["speed_limit"] = services.megabytes_per_second(self.instance.speed_limit)

    def clean_speed_limit(self) -> int:
        try:
            limit = services.bytes_per_second(self.cleaned_data["speed_limit"])
            services.check_speed_limit(limit)
        except services.DownloadRequestError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return limit


@admin.register(DownloadSettings)
class DownloadSettingsAdmin(admin.ModelAdmin):
    """One row, which the list opens at once; saved through the service, so that running downloads
    take the new limit up."""

    form = DownloadSettingsForm
    readonly_fields = ("updated_at",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:downloads_app_downloadsettings_change", args=[1]))

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> DownloadSettings | None:
        return DownloadSettings.current() if object_id == "1" else None

    def save_model(
        self,
        request: HttpRequest,
        obj: DownloadSettings,
        form: forms.ModelForm[DownloadSettings],
        change: bool,
    ) -> None:
        services.speed_limit_set(bytes_per_second=form.cleaned_data["speed_limit"])
