"""Login on every page and API route; bearer tokens for API clients."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from django.contrib.auth import middleware as auth_middleware
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import resolve_url
from django.utils import timezone

from mmsite.models import ApiToken, hash_token

API_PREFIX = "/model-manager/"


def is_api_request(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


class ApiTokenMiddleware:
    """Authenticates `Authorization: Bearer <token>` on API routes.

    Such requests carry no cookie, so CSRF does not apply to them."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer ") and is_api_request(request):
            token = (
                ApiToken.objects.select_related("user")
                .filter(digest=hash_token(header.removeprefix("Bearer ").strip()), user__is_active=True)
                .first()
            )
            if token is None:
                return JsonResponse({"success": False, "error": "Invalid API token."}, status=401)
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
            request.user = token.user
            request._dont_enforce_csrf_checks = True  # type: ignore[attr-defined]
        return self.get_response(request)


class LoginRequiredMiddleware(auth_middleware.LoginRequiredMiddleware):
    """Django's login-required default, but API clients get a 401 JSON answer instead of a login page."""

    def handle_no_permission(  # type: ignore[override]  # Django's stubs allow only a redirect
        self, request: HttpRequest, view_func: Callable[..., HttpResponseBase]
    ) -> HttpResponse:
        if is_api_request(request):
            return JsonResponse({"success": False, "error": "Authentication required."}, status=401)
        if request.htmx:  # type: ignore[attr-defined]
            # A partial request after the session expired: send the whole page to the login form.
            response = HttpResponse(status=204)
            next_url = request.htmx.current_url_abs_path or "/"  # type: ignore[attr-defined]
            response["HX-Redirect"] = f"{resolve_url(self.get_login_url(view_func))}?next={quote(next_url)}"
            return response
        return super().handle_no_permission(request, view_func)
