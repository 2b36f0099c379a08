from __future__ import annotations

from django.contrib import auth
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import DisallowedHost
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.http.request import split_domain_port
from django.shortcuts import redirect, render
from django.template import loader
from django.views.decorators.http import require_POST

from mmsite import setup as first_run
from mmsite.api import api_error
from mmsite.auth import is_api_request
from mmsite.forms import AdminCreationForm, ThrottledLogin


class LoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    authentication_form = ThrottledLogin
    redirect_authenticated_user = True


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    auth.logout(request)
    return redirect("login")


@login_not_required
def setup(request: HttpRequest, token: str) -> HttpResponse:
    if not first_run.check_setup_token(token):
        return render(request, "registration/setup_invalid.html", status=404)
    form = AdminCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            user = form.save(commit=False)
            user.is_staff = user.is_superuser = True
            user.save()
        first_run.finish_setup()
        auth.login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("library")
    return render(request, "registration/setup.html", {"form": form})


SERVER_ERROR = "Something went wrong on the server; the log of manage.py serve says what."


def server_error(request: HttpRequest) -> HttpResponse:
    """An unexpected error: the envelope for API clients, a short text a page shows as a toast, or a page
    that needs no database (the error may be the database)."""
    if is_api_request(request):
        return api_error(SERVER_ERROR, status=500)
    if request.headers.get("HX-Request"):
        return HttpResponse(SERVER_ERROR, status=500, content_type="text/plain; charset=utf-8")
    return _standalone_error("Server error", SERVER_ERROR, status=500)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Above all a browser that reached the server by a name it does not answer to: a LAN address or
    a proxy's name missing from MM_ALLOWED_HOSTS. The request went no further than reading its host,
    so nothing here may read it again, nor rely on the login."""
    message = "The request could not be read."
    if isinstance(exception, DisallowedHost):
        host, _ = split_domain_port(request.META.get("HTTP_HOST", ""))
        message = (
            f"This server does not answer to the name {host or 'it was called by'}. Add it to MM_ALLOWED_HOSTS (comma-separated) "
            "and start the server again."
        )
    if is_api_request(request):
        return api_error(message, status=400)
    # No link back: the library is behind the same name.
    return _standalone_error("Bad request", message, status=400, link_back=False)


def _standalone_error(title: str, message: str, *, status: int, link_back: bool = True) -> HttpResponse:
    context = {"title": title, "message": message, "link_back": link_back}
    return HttpResponse(loader.render_to_string("standalone_error.html", context), status=status)


STALE_PAGE = "This page is out of date (its security token was refused): reload it and try again."


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A form posted from a page whose token no longer holds: the user logged out and in again in
    another tab, or the cookies were cleared. Reloading the page fixes it, and saying so is the help:
    as the API's envelope, as a text htmx shows in a toast, or as a page."""
    if is_api_request(request):
        return api_error("CSRF check failed: with a session, send its token as X-CSRFToken.", status=403)
    if request.headers.get("HX-Request"):
        return HttpResponse(STALE_PAGE, status=403, content_type="text/plain; charset=utf-8")
    return render(request, "403.html", {"message": STALE_PAGE}, status=403)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_api_request(request):
        return api_error("Not found.", status=404)
    # Http404("No such model.") says what is missing; an address no route matches carries Django's list
    # of every route tried, which is not for the page.
    message = exception.args[0] if exception and exception.args else ""
    return render(request, "404.html", {"message": message if isinstance(message, str) else ""}, status=404)
