"""Toasts for HTMX requests: the page's script shows whatever arrives in the HX-Trigger `toast` event."""

from __future__ import annotations

from django.http import HttpResponse
from django_htmx.http import trigger_client_event


def with_toast(response: HttpResponse, message: str, *, level: str = "success") -> HttpResponse:
    return trigger_client_event(response, "toast", {"message": message, "level": level})
