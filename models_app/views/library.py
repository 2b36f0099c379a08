"""The library page and its partials (side bar, filters, cards), a model's own address, the duplicates
page, and the files a card shows: its thumbnail and the files beside the model."""

from __future__ import annotations

import mimetypes
from urllib.parse import urlencode

from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseBase,
)
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import push_url

from mmsite.models import UserPreferences
from mmsite.preferences import preferences_set
from models_app import selectors
from models_app.models import ModelFile
from models_app.roots import get_roots
from models_app.thumbnails import ThumbnailError, get_thumbnail
from models_app.views.common import model_or_404, sidecar_path
from models_app.views.dialog import detail_context, render_dialog

# Which partial of library.html a request's HX-Target asks for.
CARDS_PARTIAL = "library.html#cards"
LIBRARY_PARTIALS = {
    "library": "library.html#library",
    "grid": CARDS_PARTIAL,
    "grid-more": CARDS_PARTIAL,
}
# Partials a user asked for (a tab, a search, a filter): the address bar then shows their query.
PUSHED_PARTIALS = {"library", "grid"}


@require_GET
def library(request: HttpRequest) -> HttpResponse:
    return _library(request, selectors.LibraryQuery.from_params(request.GET.dict()))


def _library(
    request: HttpRequest, query: selectors.LibraryQuery, *, open_model: ModelFile | None = None
) -> HttpResponse:
    partial = LIBRARY_PARTIALS.get(request.htmx.target or "") if request.htmx else None  # type: ignore[attr-defined]
    context = {
        "page": selectors.library_page(query),
        "next_page_query": urlencode(query.params(page=query.page + query.pages)),
        "query": query,
        "scan": selectors.latest_scan(),
        "has_roots": bool(get_roots().folders),
    }
    if partial != CARDS_PARTIAL:
        # A search as you type or the next page of cards shows neither the side bar nor the menus.
        menus = selectors.library_menus(query.folder_type)
        types, empty_types = menus.types_split(query.folder_type)
        context |= {
            "total_models": sum(count for _, count in menus.type_counts),
            "types": types,
            "empty_types": empty_types,
            "sub_folders": menus.sub_folders,
            "base_models": menus.base_models,
            "labels": menus.labels,
            "updates": menus.updates,
            "older_versions": menus.older,
            "sorts": {key: label for key, (label, _) in selectors.SORTS.items()},
            "info": selectors.latest_info(),
            "move": selectors.latest_move(),
        }
    if open_model is not None:
        # Drawn with the page, its dialog open; closing it leaves the address of the library behind.
        params = urlencode(query.params())
        context |= {
            "open_model": open_model,
            "dialog_html": render_to_string(
                "models_app/model_detail.html#dialog", detail_context(open_model), request
            ),
            "dialog_close_url": reverse("library") + (f"?{params}" if params else ""),
        }
    template = "models_app/" + (partial or "library.html")
    response = render(request, template, context)
    if request.htmx and request.htmx.target in PUSHED_PARTIALS and "refresh" not in request.GET:  # type: ignore[attr-defined]
        # The form sends every field, empty ones too: the address bar gets the same query without them.
        params = urlencode(query.params())
        push_url(response, reverse("library") + (f"?{params}" if params else ""))
    return response


@require_POST
def library_layout(request: HttpRequest) -> HttpResponse:
    """Grid or List, kept with the account; the page has switched already (app.js)."""
    layout = request.POST.get("layout", "")
    if layout not in UserPreferences.LibraryLayout.values:
        return HttpResponseBadRequest("The layout is grid or list.")
    preferences_set(user=request.user, library_layout=layout)  # type: ignore[arg-type]
    return HttpResponse(status=204)


@require_GET
def model_detail(request: HttpRequest, folder_type: str, path_index: int, relative_path: str) -> HttpResponse:
    model = model_or_404(folder_type, path_index, relative_path)
    if request.htmx:  # type: ignore[attr-defined]
        return render_dialog(request, model)
    # A model's own address (a card opened in a new tab, a shared link) is the library showing that
    # model's card, its dialog open: every action of the dialog then works as it does from the card.
    where = {"type": model.folder_type, "folder": model.sub_folder, "q": model.name}
    query = selectors.LibraryQuery.from_params(where)
    return _library(request, query, open_model=model)


@require_GET
def model_thumbnail(
    request: HttpRequest, folder_type: str, path_index: int, relative_path: str
) -> HttpResponseBase:
    model = model_or_404(folder_type, path_index, relative_path)
    if not model.preview or model.preview_is_video:
        raise Http404("This model has no preview image.")
    try:
        thumbnail = get_thumbnail(sidecar_path(model, model.preview))
    except (ThumbnailError, FileNotFoundError):
        raise Http404("The preview image cannot be read.") from None
    response = FileResponse(thumbnail.open("rb"), content_type="image/webp")
    # The URL carries the model's mtime, so a changed preview gets a new URL.
    response["Cache-Control"] = "private, max-age=86400"
    return response


@require_GET
def model_sidecar(
    request: HttpRequest, folder_type: str, path_index: int, relative_path: str
) -> HttpResponseBase:
    """One sidecar file as it is on disk (video previews, the .civitai.info JSON…), shown as text or media."""
    model = model_or_404(folder_type, path_index, relative_path)
    path = sidecar_path(model, request.GET.get("name", ""))
    content_type = mimetypes.guess_type(path.name)[0] or "text/plain"
    if not content_type.startswith(("image/", "video/")):
        content_type = "text/plain; charset=utf-8"  # never let a sidecar run as HTML
    if not path.is_file():  # gone, or a folder or a pipe under a sidecar's name
        raise Http404("The file is gone; scan again.")
    try:
        return FileResponse(path.open("rb"), content_type=content_type)
    except FileNotFoundError:
        raise Http404("The file is gone; scan again.") from None


@require_GET
def duplicates(request: HttpRequest) -> HttpResponse:
    groups = selectors.duplicates()
    freed = sum(group.freed_by_keeping_one for group in groups)
    return render(request, "models_app/duplicates.html", {"groups": groups, "freed": freed})
