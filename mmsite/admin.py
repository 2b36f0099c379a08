from __future__ import annotations

from django.contrib import admin

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
    list_display = ("user", "show_nsfw")
    list_filter = ("show_nsfw",)
