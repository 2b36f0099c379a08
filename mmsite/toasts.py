"""Toasts: for an HTMX request in its HX-Trigger `toast` event, which the page's script shows; from the
worker as a fragment that the page's socket appends to #toasts."""

from __future__ import annotations

from django.http import HttpResponse
from django.template.loader import render_to_string
from django_htmx.http import trigger_client_event


def with_toast(response: HttpResponse, message: str, *, level: str = "success") -> HttpResponse:
    return trigger_client_event(response, "toast", {"message": message, "level": level})


def toast_fragment(message: str, *, level: str = "success") -> str:
    return render_to_string("toast.html", {"message": message, "level": level})
