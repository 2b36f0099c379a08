"""Per-user display preferences: read for every page, written from the Settings page."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from mmsite.models import UserPreferences


def preferences_get(user: AbstractBaseUser | AnonymousUser) -> UserPreferences:
    """The user's saved preferences, or the defaults (unsaved) when they never changed any."""
    if not user.is_authenticated:
        return UserPreferences()
    return UserPreferences.objects.filter(user=user).first() or UserPreferences(user=user)  # type: ignore[misc]


def preferences_set(
    *, user: AbstractBaseUser, show_nsfw: bool | None = None, library_layout: str | None = None
) -> UserPreferences:
    """Saves what is given; the rest stays as the user left it."""
    chosen = {"show_nsfw": show_nsfw, "library_layout": library_layout}
    preferences, _ = UserPreferences.objects.update_or_create(  # type: ignore[misc]
        user=user, defaults={name: value for name, value in chosen.items() if value is not None}
    )
    return preferences


def preferences(request: HttpRequest) -> dict[str, object]:
    """Context processor: `preferences` in every template, read only when a template uses it."""
    return {"preferences": SimpleLazyObject(lambda: preferences_get(request.user))}
