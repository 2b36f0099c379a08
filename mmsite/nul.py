"""Requests that carry a NUL character are refused up front.

No name, path or text needs one, and PostgreSQL refuses NUL in every text column: a search, a file name
or a description with one would end in a server error instead of a clear answer."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

from mmsite.api import NUL_REFUSED, api_error
from mmsite.auth import is_api_request
from models_app.text import has_nul


class RefuseNulMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # request.POST holds the form fields only: an uploaded image may well hold NUL bytes.
        if has_nul(request.path) or has_nul(dict(request.GET.lists())) or has_nul(dict(request.POST.lists())):
            if is_api_request(request):
                return api_error(NUL_REFUSED)
            return HttpResponseBadRequest(NUL_REFUSED, content_type="text/plain; charset=utf-8")
        return self.get_response(request)
