"""The trash: models deleted from the dialog or by Select, restored or deleted for good."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, render
from django.template.defaultfilters import pluralize
from django.views.decorators.http import require_GET, require_POST

from mmsite.toasts import with_toast
from models_app import services
from models_app.models import TrashItem
from models_app.roots import PathOutsideRoot, UnknownRoot
from models_app.tasks import announce_library_changed


@require_GET
def trash(request: HttpRequest) -> HttpResponse:
    return render(
        request, "models_app/trash.html", {"items": TrashItem.objects.all(), "days": settings.MM_TRASH_DAYS}
    )


@require_GET
def trash_item(request: HttpRequest, item_id: int) -> HttpResponse:
    """One row, as the page shows it (Cancel of Restore as)."""
    return render(request, "models_app/trash_item.html", {"item": get_object_or_404(TrashItem, pk=item_id)})


@require_POST
def trash_action(request: HttpRequest, item_id: int, action: str) -> HttpResponse:
    item = get_object_or_404(TrashItem, pk=item_id)
    if action == "restore":
        name = request.POST.get("name", "")
        try:
            restored = services.trash_restore(item=item, name=name)
        except services.NameTaken as exc:
            taken = f"Its name is taken there now ({', '.join(exc.clashes)})."
            return render(
                request,
                "models_app/trash_item.html",
                {"item": item, "restore_as": exc.free_name, "taken": taken},
            )
        except (services.ModelEditError, UnknownRoot, PathOutsideRoot) as exc:
            if name:
                context = {"item": item, "restore_as": name, "error": str(exc)}
                return render(request, "models_app/trash_item.html", context)
            return with_toast(HttpResponse(status=204), str(exc), level="error")
        # The library pages open elsewhere show it back, as they show a download that came in.
        announce_library_changed(restored.folder_type, restored.path_index, restored.relative_path)
        return with_toast(HttpResponse(""), f"{restored.file_name} is back in {restored.folder_type}.")
    if action == "delete":
        services.trash_delete(item=item)
        return with_toast(HttpResponse(""), f"{item.name} deleted for good.", level="info")
    return HttpResponseBadRequest("Unknown action.")


@require_POST
def trash_restore_all(request: HttpRequest) -> HttpResponse:
    restored, errors = services.trash_restore_all()
    if restored:
        announce_library_changed()  # once for them all: each would have every open page read it again
    response = render(request, "models_app/trash.html#items", {"items": TrashItem.objects.all()})
    message = f"{restored} model{pluralize(restored)} restored."
    if errors:
        return with_toast(response, f"{message} Still in the trash: {'; '.join(errors)}", level="error")
    return with_toast(response, message)


@require_POST
def trash_empty(request: HttpRequest) -> HttpResponse:
    count = services.trash_purge(older_than_days=0)
    return with_toast(
        render(request, "models_app/trash.html#items", {"items": []}),
        f"Trash emptied ({count} models).",
        level="info",
    )
