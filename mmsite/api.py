"""The JSON API's envelope: `{"success": bool, "data"?: …, "error"?: str}` (DESIGN.md §10)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

from django.http import HttpRequest, HttpResponseBase, JsonResponse

from models_app.roots import PathOutsideRoot, UnknownRoot
from models_app.text import fit_to_store, has_nul, whole_number


class ApiError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def api_ok(data: Any = None, *, status: int = 200) -> JsonResponse:
    body: dict[str, Any] = {"success": True}
    if data is not None:
        body["data"] = data
    return JsonResponse(body, status=status)


def api_error(message: str, *, status: int = 400) -> JsonResponse:
    return JsonResponse({"success": False, "error": message}, status=status)


def json_body(request: HttpRequest) -> dict[str, Any]:
    if not request.body:
        return {}
    try:
        data = json.loads(request.body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ApiError("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError("The request body must be a JSON object.")
    refuse_nul(data)
    # With NUL refused, all fit_to_store can still change is half a UTF-16 pair, which JSON may escape
    # ("\ud800") and no file name or file holds.
    if fit_to_store(data) != data:
        raise ApiError(
            "The request holds text that is not valid Unicode (an unpaired surrogate such as \\ud800)."
        )
    return data


def text_field(data: Mapping[str, Any], name: str, default: str = "") -> str:
    """A text field of a request body. null counts as left out, as a blank form field does: a script's
    `{"value": null}` must not store the text "None"."""
    value = data.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ApiError(f"{name} must be text.")
    return value


def number_field(data: Mapping[str, Any], name: str, default: int) -> int:
    """A whole number, given as a JSON number or, from a form, as its digits."""
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and (number := whole_number(value)) is not None:
        return number
    raise ApiError(f"{name} must be a whole number.")


NUL_REFUSED = "The request holds a NUL character, which no name, path or text may contain."


def refuse_nul(data: Any) -> None:
    """PostgreSQL refuses NUL in every text column: a field with one gets a clear 400, not a server error.
    mmsite/nul.py refuses it in the address and in form fields; this is for the bodies parsed here."""
    if has_nul(data):
        raise ApiError(NUL_REFUSED)


def api_view(*methods: str) -> Callable[[Callable[..., HttpResponseBase]], Callable[..., HttpResponseBase]]:
    """An API route answering `methods`: a wrong method, and the errors a request can cause, get the
    envelope with a fitting status (Django's require_* decorators would answer 405 with an empty page)."""

    def decorator(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.method not in methods:
                response = api_error(f"Use {' or '.join(methods)} here.", status=405)
                response["Allow"] = ", ".join(methods)
                return response
            try:
                return view(request, *args, **kwargs)
            except ApiError as exc:
                return api_error(str(exc), status=exc.status)
            except PathOutsideRoot as exc:
                return api_error(str(exc), status=400)
            except UnknownRoot as exc:
                return api_error(str(exc), status=404)

        return wrapper

    return decorator
