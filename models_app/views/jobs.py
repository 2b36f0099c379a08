"""The worker's jobs as the library starts and stops them: scans, hashing and Civitai lookups, moves.
Each answers with the progress partial shown beside Scan."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, render
from django.template.defaultfilters import pluralize
from django.views.decorators.http import require_POST
from django_htmx.http import reswap, retarget, trigger_client_event

from mmsite.toasts import with_toast
from models_app import services
from models_app.info import stop_info
from models_app.models import InfoMode, InfoTask, MoveTask, ScanMode, ScanTask
from models_app.moves import stop_move
from models_app.roots import UnknownRoot
from models_app.tasks import stop_scan
from models_app.views.common import picked_ids


@require_POST
def scan_start(request: HttpRequest) -> HttpResponse:
    mode = request.POST.get("mode", "diff")
    try:
        scan, created = services.scan_start(mode=mode)
    except ValueError as exc:
        return HttpResponseBadRequest(str(exc))
    response = render(request, "models_app/scan_progress.html", {"scan": scan})
    if created:
        return with_toast(
            response, "Full rescan started." if scan.mode == ScanMode.FULL else "Scan started.", level="info"
        )
    return with_toast(response, "A scan is already running.", level="info")


@require_POST
def scan_stop(request: HttpRequest, scan_id: int) -> HttpResponse:
    scan = get_object_or_404(ScanTask, pk=scan_id)
    stop_scan(scan)
    return render(request, "models_app/scan_progress.html", {"scan": scan})


@require_POST
def scan_forget(request: HttpRequest, scan_id: int, index: int) -> HttpResponse:
    """Forget the models a scan kept in a place it could not reach (see services.forget_kept_models)."""
    scan = get_object_or_404(ScanTask, pk=scan_id)
    try:
        count = services.forget_kept_models(scan=scan, index=index)
    except (services.ModelEditError, UnknownRoot) as exc:
        return with_toast(HttpResponse(status=204), str(exc), level="error")
    response = trigger_client_event(HttpResponse(status=204), "libraryChanged")
    if not count:
        return with_toast(
            response, "Nothing to forget: their files are back. Scan to read them.", level="info"
        )
    return with_toast(response, f"Forgot {count} model{pluralize(count)} whose files are gone.")


@require_POST
def info_start(request: HttpRequest) -> HttpResponse:
    """Fetch info (or hash) for one model (`model` = its id), for the models picked in the library (`ids`),
    or for every model that needs it."""
    mode = request.POST.get("mode", "fetch")
    model_ids = picked_ids(request, "model") or picked_ids(request, "ids")
    if not model_ids and (request.POST.getlist("model") or request.POST.getlist("ids")):
        # Models were named, but none by an id: that is no request for every model.
        return HttpResponseBadRequest("Those are not models of the library: nothing was queued.")
    try:
        task = services.info_start(mode=mode, model_ids=model_ids or None)
    except ValueError as exc:
        return HttpResponseBadRequest(str(exc))
    response = render(request, "models_app/info_progress.html", {"info": task})
    if not model_ids:
        what = (
            "every model with Civitai info or from Hugging Face"
            if mode == InfoMode.UPDATES
            else "every model without it"
        )
    else:
        what = "this model" if len(model_ids) == 1 else f"{len(model_ids)} models"
    return with_toast(response, f"{task.get_mode_display()} for {what} queued.", level="info")


@require_POST
def info_stop(request: HttpRequest, info_id: int) -> HttpResponse:
    info = get_object_or_404(InfoTask, pk=info_id)
    stop_info(info)
    return render(request, "models_app/info_progress.html", {"info": info})


@require_POST
def move_stop(request: HttpRequest, move_id: int) -> HttpResponse:
    move = get_object_or_404(MoveTask, pk=move_id)
    stop_move(move)
    return render(request, "models_app/move_progress.html", {"move": move, "finished": not move.is_active})


def move_queued(request: HttpRequest, task: MoveTask) -> HttpResponse:
    """The dialog closes; the worker's progress shows beside Scan (across disks a move is a copy of
    gigabytes, longer than a request should wait)."""
    response = render(request, "models_app/move_progress.html", {"move": task})
    response = reswap(retarget(response, "#move-progress"), "outerHTML")
    trigger_client_event(response, "closeDialog", after="settle")
    count = len(task.model_ids)
    return with_toast(response, f"Moving {count} model{pluralize(count)} to {task.place}…", level="info")
