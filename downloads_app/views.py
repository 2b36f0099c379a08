"""Downloads pages: the task list, the create dialog, the settings page. Thin: services do the work."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.template.defaultfilters import filesizeformat, pluralize
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from downloads_app import browse, selectors, services
from downloads_app.engine import HttpError
from downloads_app.models import ApiKey, DownloadTask
from downloads_app.sources import Resolution, SourceError
from downloads_app.sources.civitai import FOLDER_OF_TYPE
from downloads_app.summary import downloads_summary
from downloads_app.workflows import MAX_WORKFLOW_BYTES, WorkflowError, WorkflowModel, models_in_workflow
from mmsite.preferences import preferences_set
from mmsite.toasts import with_toast
from models_app.civitai_api import CivitaiUnavailable, LookupFailed
from models_app.examples import example_images
from models_app.markdown import sanitize_html
from models_app.roots import get_roots, roots_sources
from models_app.selectors import folders_to_write, model_folders, models_with_sha256


@require_GET
def downloads(request: HttpRequest) -> HttpResponse:
    context = {
        "tasks": selectors.tasks(),
        "speed_limit": selectors.speed_limit(),
        "summary": downloads_summary(),
    }
    return render(request, "downloads_app/downloads.html", context)


@require_POST
def downloads_clear(request: HttpRequest) -> HttpResponse:
    cleared = services.downloads_clear_finished()
    response = render(request, "downloads_app/downloads.html#task_list", {"tasks": selectors.tasks()})
    return with_toast(
        response, f"{cleared} finished download{pluralize(cleared)} cleared from the list.", level="info"
    )


PAST_TENSE = {"pause": "paused", "resume": "resumed", "retry": "retried"}


@require_POST
def downloads_every(request: HttpRequest, action: str) -> HttpResponse:
    """Pause all, Resume all, Retry failed."""
    if action not in services.EVERY_TASK_ACTIONS:
        return HttpResponse(f"Unknown action {action!r}.", status=400)
    count = services.EVERY_TASK_ACTIONS[action]()
    done = PAST_TENSE[action]
    response = render(request, "downloads_app/downloads.html#task_list", {"tasks": selectors.tasks()})
    message = f"{count} download{pluralize(count)} {done}." if count else f"No download to {action}."
    return with_toast(response, message, level="info")


@require_GET
def download_new(request: HttpRequest) -> HttpResponse:
    return render(request, "downloads_app/new_dialog.html#url_step", {"url": request.GET.get("url", "")})


@require_http_methods(["GET", "POST"])
def download_batch(request: HttpRequest) -> HttpResponse:
    """Several links at once, each queued as it is named, in the folder it suggests."""
    if request.method == "GET":
        # Links pasted on a page come here to be looked over before they are queued.
        return render(
            request, "downloads_app/new_dialog.html#batch_step", {"urls": request.GET.get("urls", "")}
        )
    text, sub_folder = request.POST.get("urls", ""), request.POST.get("sub_folder", "")
    try:
        links = services.links_in(text)
        sub_folder = services.checked_sub_folder(sub_folder)  # once, rather than once a link
    except services.DownloadRequestError as exc:
        typed = {"urls": text, "sub_folder": sub_folder, "error": str(exc)}
        return render(request, "downloads_app/new_dialog.html#batch_step", typed)
    wanted = [services.Wanted(link, sub_folder=sub_folder) for link in links]
    return _queued(request, wanted, again=(reverse("download_batch"), "More links"))


def _queued(request: HttpRequest, wanted: list[services.Wanted], *, again: tuple[str, str]) -> HttpResponse:
    """Queues the links (several links, the models of a workflow) and says what became of each;
    `again` is the address and label of the button that starts over."""
    keys = services.keys()  # read here: the links are resolved on threads that leave the database alone
    outcomes = services.download_links(wanted, resolve=lambda link: selectors.resolution_get(link, keys))
    queued = sum(outcome.task is not None for outcome in outcomes)
    have = sum(outcome.have is not None for outcome in outcomes)
    page = request.htmx.current_url_abs_path or ""  # type: ignore[attr-defined]
    context = {
        "outcomes": outcomes,
        "queued": queued,
        "on_downloads_page": page.startswith(reverse("downloads")),
        "again": {"url": again[0], "label": again[1]},
    }
    response = render(request, "downloads_app/new_dialog.html#batch_done", context)
    left = len(outcomes) - queued - have
    message = " ".join(
        [f"{queued} download{pluralize(queued)} queued."]
        + ([f"{have} you have already."] if have else [])
        + ([f"{left} could not be."] if left else [])
    )
    level = "error" if left and not queued else "success" if not left else "info"
    return with_toast(response, message, level=level)


@require_http_methods(["GET", "POST"])
def download_workflow(request: HttpRequest) -> HttpResponse:
    """The models a ComfyUI workflow loads (or an image names): which the library has, and the others to
    download."""
    step = "downloads_app/workflow_dialog.html#workflow_step"
    if request.method == "GET":
        return render(request, step)
    upload = request.FILES.get("workflow")
    if upload is None:
        return render(
            request, step, {"error": "Choose a workflow: a .json file ComfyUI saved, or an image it made."}
        )
    try:
        needs = selectors.workflow_needs(models_in_workflow(upload.read(MAX_WORKFLOW_BYTES + 1)))
    except WorkflowError as exc:
        return render(request, step, {"error": str(exc)})
    context = {"needs": needs, "counts": Counter(need.state for need in needs), "workflow_name": upload.name}
    return render(request, "downloads_app/workflow_dialog.html#workflow_models", context)


@require_POST
def download_workflow_queue(request: HttpRequest) -> HttpResponse:
    """Queues the ticked models of a workflow, each into its folder under the name the workflow loads."""
    wanted = []
    for index in dict.fromkeys(request.POST.getlist("pick")):
        # The dialog gives the name only of a workflow's model: an image's keeps the link's file name.
        name = request.POST.get(f"name_{index}", "")
        model = WorkflowModel(name, request.POST.get(f"folder_{index}", ""), exact=bool(name))
        link = request.POST.get(f"link_{index}", "").strip()
        wanted.append(services.Wanted(link, model.folder_type, *model.destination))
    if not wanted:
        return with_toast(HttpResponse(status=204), "Tick the models to download.", level="error")
    if len(wanted) > services.MAX_LINKS_AT_ONCE:
        message = f"At most {services.MAX_LINKS_AT_ONCE} downloads at once: these are {len(wanted)}."
        return with_toast(HttpResponse(status=204), message, level="error")
    return _queued(request, wanted, again=(reverse("download_workflow"), "Another file"))


@require_GET
def browse_civitai(request: HttpRequest) -> HttpResponse:
    """Civitai's models, searched, of a type, in an order; a card opens the download dialog."""
    keys = ("q", "type", "base", "sort", "period", "rating")
    query = {key: request.GET.get(key, "").strip() for key in keys}
    try:
        page = browse.civitai_models(
            query=query["q"],
            model_type=query["type"],
            base_model=query["base"],
            sort=query["sort"],
            period=query["period"],
            safe_only=query["rating"] == "safe",
            cursor=request.GET.get("cursor", ""),
        )
        error = ""
    except (CivitaiUnavailable, LookupFailed) as exc:
        page, error = browse.CivitaiPage([], ""), str(exc)
    filters = {
        "types": FOLDER_OF_TYPE,
        "sorts": browse.SORTS,
        "periods": browse.PERIODS,
        "base_models": browse.BASE_MODELS,
    }
    return _browse_page(request, "downloads_app/browse.html", page, query, error, filters)


@require_GET
def browse_huggingface(request: HttpRequest) -> HttpResponse:
    """The hub's models, searched, of a task and a file format, in an order; a card opens the download
    dialog at the repository's files."""
    query = {key: request.GET.get(key, "").strip() for key in ("q", "task", "format", "sort")}
    try:
        page = browse.huggingface_models(
            query=query["q"],
            task=query["task"],
            file_format=query["format"],
            sort=query["sort"],
            cursor=request.GET.get("cursor", ""),
        )
        error = ""
    except SourceError as exc:
        page, error = browse.HuggingFacePage([], ""), str(exc)
    filters = {"tasks": browse.HF_TASKS, "formats": browse.HF_FORMATS, "sorts": browse.HF_SORTS}
    return _browse_page(request, "downloads_app/browse_huggingface.html", page, query, error, filters)


def _browse_page(
    request: HttpRequest,
    template: str,
    page: browse.CivitaiPage | browse.HuggingFacePage,
    query: dict[str, str],
    error: str,
    filters: Mapping[str, object],
) -> HttpResponse:
    """The whole page; its results for a new search; or the next cards, as the grid scrolls."""
    context = {
        **filters,
        "page": page,
        "query": query,
        "error": error,
        "more_query": urlencode({**query, "cursor": page.next_cursor}),
    }
    if request.htmx and request.GET.get("cursor"):  # type: ignore[attr-defined]
        return render(request, f"{template}#hits", context)
    if request.htmx and request.htmx.target == "browse-results":  # type: ignore[attr-defined]
        return render(request, f"{template}#results", context)
    return render(request, template, context)


@dataclass
class Choice:
    """What the user picked in the dialog, with defaults from the resolution."""

    url: str
    version: str
    file: str
    folder_type: str
    path_index: int
    sub_folder: str
    filename: str
    save_preview: bool
    save_description: bool
    save_info: bool
    replaces: str  # the id of the library model it replaces: the older version the dialog came from
    replace_older: bool

    @property
    def relative_path(self) -> str:
        return (
            f"{self.sub_folder.strip('/')}/{self.filename}" if self.sub_folder.strip("/") else self.filename
        )

    @classmethod
    def from_request(cls, request: HttpRequest, resolution: Resolution) -> Choice:
        data = request.POST if request.method == "POST" else request.GET
        version = resolution.version(data.get("version"))
        remote = resolution.file(
            version, data.get("file") if data.get("version", version.id) == version.id else None
        )
        trigger = request.htmx.trigger_name if request.htmx else None  # type: ignore[attr-defined]
        folder_types = get_roots().types()
        default = resolution.folder_type_of(remote)
        if default not in folder_types:  # none suggested, or one this install has no folder for
            default = folder_types[0] if folder_types else ""
        # Another file or version brings its own folder, as it brings its own name.
        new_file = trigger in {"version", "file"}
        folder_type = default if new_file else data.get("folder_type") or default
        try:
            path_index = int(data.get("path_index", "0"))
        except ValueError:
            path_index = 0
        if trigger == "folder_type" or folder_type != data.get("folder_type", folder_type):
            path_index = 0  # each folder type has its own list of folders
        first_render = "filename" not in data
        filename = remote.save_as if first_render or new_file else data.get("filename", "")
        return cls(
            url=resolution.url,
            version=version.id,
            file=remote.id,
            folder_type=folder_type,
            path_index=path_index,
            sub_folder=data.get("sub_folder", ""),
            filename=filename,
            save_preview=first_render or data.get("save_preview") == "on",
            save_description=first_render or data.get("save_description") == "on",
            save_info=first_render or data.get("save_info") == "on",
            replaces=data.get("replaces", ""),
            replace_older=first_render or data.get("replace_older") == "on",
        )


def _choose_step(
    request: HttpRequest, resolution: Resolution, choice: Choice, error: str = ""
) -> HttpResponse:
    version = resolution.version(choice.version)
    remote = resolution.file(version, choice.file)
    folders = folders_to_write()
    chosen = next((f for f in folders.get(choice.folder_type, []) if f.path_index == choice.path_index), None)
    older = selectors.older_version_to_replace(choice.replaces, version, remote)
    context = {
        "resolution": resolution,
        "version": version,
        "description": sanitize_html(resolution.description_html_of(version)),
        "examples": example_images(version.info),
        "remote": remote,
        "already_have": models_with_sha256(remote.sha256),
        "older": older,
        "in_place": older is not None
        and older.relative_path == choice.relative_path
        and (older.folder_type, older.path_index) == (choice.folder_type, choice.path_index),
        "choice": choice,
        "folders": folders,
        # Said before the download rather than at its start: the worker would pause it, "disk full".
        "space_short": chosen
        if chosen and chosen.free is not None and (remote.size or 0) > chosen.free
        else None,
        "sub_folders": selectors.existing_sub_folders(choice.folder_type, choice.path_index),
        "error": error,
        # Civitai serves many models only to a logged-in account: better said before than after a failure.
        "civitai_key_missing": resolution.platform == "civitai" and not services.keys().civitai,
    }
    return render(request, "downloads_app/new_dialog.html#choose_step", context)


def _resolve_or_error(request: HttpRequest, url: str, *, fresh: bool = False) -> Resolution | HttpResponse:
    try:
        return selectors.resolution_get(url, fresh=fresh)
    except (SourceError, HttpError) as exc:
        error = services.why_unresolved(exc)
    return render(request, "downloads_app/new_dialog.html#url_step", {"url": url, "error": error})


@require_http_methods(["GET", "POST"])
def download_choose(request: HttpRequest) -> HttpResponse:
    """Step 2: resolve the link, then pick version, file, folder and name (re-rendered on each change)."""
    url = (request.POST.get("url") or request.GET.get("url") or "").strip()
    # Opened afresh (a link pasted, a card, an update), the service is asked again: a file of the same
    # link may have changed since; the form's own changes, which carry the version, ask nothing.
    opened = "version" not in (request.POST if request.method == "POST" else request.GET)
    resolution = _resolve_or_error(request, url, fresh=opened)
    if isinstance(resolution, HttpResponse):
        return resolution
    return _choose_step(request, resolution, Choice.from_request(request, resolution))


@require_POST
def download_create(request: HttpRequest) -> HttpResponse:
    resolution = _resolve_or_error(request, request.POST.get("url", "").strip())
    if isinstance(resolution, HttpResponse):
        return resolution
    choice = Choice.from_request(request, resolution)
    version = resolution.version(choice.version)
    remote = resolution.file(version, choice.file)
    older = (
        selectors.older_version_to_replace(choice.replaces, version, remote) if choice.replace_older else None
    )
    try:
        destination = services.check_destination(
            folder_type=choice.folder_type,
            path_index=choice.path_index,
            sub_folder=choice.sub_folder,
            filename=choice.filename,
            replacing=older,
        )
    except services.DownloadRequestError as exc:
        return _choose_step(request, resolution, choice, str(exc))
    task = services.download_create(
        resolution=resolution,
        version=version,
        remote=remote,
        destination=destination,
        save_preview=choice.save_preview,
        save_description=choice.save_description,
        save_info=choice.save_info,
        replaces=older,
    )
    # From the downloads page the new row is right behind the dialog; from the library it is a page away.
    page = request.htmx.current_url_abs_path or ""  # type: ignore[attr-defined]
    on_downloads_page = page.startswith(reverse("downloads"))
    context = {"task": task, "on_downloads_page": on_downloads_page}
    response = render(request, "downloads_app/new_dialog.html#created", context)
    response["HX-Retarget"] = "#dialog"
    return with_toast(response, f"Download of {task.filename} queued.")


@require_POST
def download_action(request: HttpRequest, task_id: int, action: str) -> HttpResponse:
    task = get_object_or_404(DownloadTask, pk=task_id)
    if action == "delete":
        services.download_delete(task=task)
        return with_toast(HttpResponse(""), f"{task.filename} removed from the list.", level="info")
    if action not in services.TASK_ACTIONS:
        return HttpResponse(f"Unknown action {action!r}.", status=400)
    task = services.TASK_ACTIONS[action](task=task)
    return render(request, "downloads_app/task_row.html", {"task": task})


@require_http_methods(["GET", "POST"])
def settings_page(request: HttpRequest) -> HttpResponse:
    error = ""
    saved = ""
    if request.method == "POST" and "show_nsfw" in request.POST:
        chosen = preferences_set(user=request.user, show_nsfw=request.POST["show_nsfw"] == "on")  # type: ignore[arg-type]
        response = render(request, "downloads_app/settings.html#display")
        return with_toast(response, "NSFW previews are now " + ("shown." if chosen.show_nsfw else "blurred."))
    if request.method == "POST" and "speed_limit" in request.POST:
        return _speed_limit_set(request)
    if request.method == "POST":
        service = request.POST.get("service", "")
        try:
            services.api_key_set(service=service, value=request.POST.get("key", ""))
        except services.DownloadRequestError as exc:
            error = str(exc)
        else:
            saved = service
    keys = selectors.api_keys()
    context: dict[str, object] = {
        "keys": keys,
        "services": ApiKey.Service.choices,
        "error": error,
        "saved": saved,
    }
    if request.htmx:  # type: ignore[attr-defined]
        template = "downloads_app/settings.html#keys"
    else:
        template = "downloads_app/settings.html"
        context |= {
            "folders": model_folders(),
            "folder_sources": roots_sources(),
            "scan_every": settings.MM_SCAN_EVERY,
            "updates_every": settings.MM_UPDATES_EVERY,
            **_speed_context(),
        }
    response = render(request, template, context)
    if saved:
        label = dict(ApiKey.Service.choices)[saved]
        return with_toast(response, f"{label} key {'saved' if saved in keys else 'removed'}.")
    return response


def _speed_limit_set(request: HttpRequest) -> HttpResponse:
    try:
        limit = services.speed_limit_set(
            bytes_per_second=services.bytes_per_second(request.POST["speed_limit"])
        )
    except services.DownloadRequestError as exc:
        context = _speed_context() | {"speed_error": str(exc), "speed_typed": request.POST["speed_limit"]}
        return render(request, "downloads_app/settings.html#speed", context)
    response = render(request, "downloads_app/settings.html#speed", _speed_context())
    if limit:
        return with_toast(response, f"Downloads are held to {filesizeformat(limit)}/s together.")
    return with_toast(response, "Downloads are no longer held to a speed.")


def _speed_context() -> dict[str, object]:
    limit = selectors.speed_limit()
    return {"speed_limit": limit, "speed_typed": services.megabytes_per_second(limit)}
