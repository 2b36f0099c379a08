"""Writes of downloads: create, pause, resume, cancel, retry, delete, keys. No HTTP here."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from downloads_app.engine import HttpError
from downloads_app.events import publish_deleted, publish_task
from downloads_app.models import (
    MAX_TITLE,
    MAX_VERSION_NAME,
    ApiKey,
    DownloadedFile,
    DownloadSettings,
    DownloadTask,
    Platform,
)
from downloads_app.sources import (
    Endpoints,
    Keys,
    RemoteFile,
    RemoteVersion,
    Resolution,
    SourceError,
    huggingface,
)
from mmsite.models import TaskStatus
from mmsite.worker import process_owner_prefix, wake_workers
from models_app.extensions import MODEL_EXTENSIONS
from models_app.models import MAX_RELATIVE_PATH, ModelFile
from models_app.roots import (
    PathOutsideRoot,
    RootNotThere,
    UnknownRoot,
    clean_relative_path,
    get_roots,
    model_path,
    resolve_model_path,
    root_to_write,
)
from models_app.selectors import models_with_sha256


class DownloadRequestError(ValueError):
    """A message for the user about what they asked for (name, folder, clash…)."""


def endpoints() -> Endpoints:
    return Endpoints(civitai=settings.MM_CIVITAI_URL, huggingface=settings.HF_ENDPOINT)


def keys() -> Keys:
    stored = dict(ApiKey.objects.values_list("service", "key"))
    return Keys(civitai=stored.get("civitai", ""), huggingface=stored.get("huggingface", ""))


def api_key_set(*, service: str, value: str) -> ApiKey | None:
    """Stores a key (an empty value removes it)."""
    if service not in ApiKey.Service.values:
        raise DownloadRequestError(f"Unknown service {service!r}: use civitai or huggingface.")
    value = value.strip()
    if not value:
        ApiKey.objects.filter(service=service).delete()
        return None
    try:
        ApiKey._meta.get_field("key").run_validators(value)
    except ValidationError as exc:
        raise DownloadRequestError(" ".join(exc.messages)) from None
    key, _ = ApiKey.objects.update_or_create(service=service, defaults={"key": value})
    return key


MB = 1 << 20  # as the pages show sizes and speeds: Django's filesizeformat counts in 1024s
SPEED_LIMIT_RANGE = (MB // 100, 100_000 * MB)
SPEED_LIMIT_READ_EVERY = 2.0  # seconds: another worker process takes a new limit up this late


class _SpeedLimitSetting:
    """This process's share of the speed limit of the settings, read again at most every
    SPEED_LIMIT_READ_EVERY seconds: every chunk of every running download asks for it."""

    def __init__(self) -> None:
        self.value, self.read_at = 0, -math.inf

    def __call__(self) -> int:
        if time.monotonic() - self.read_at >= SPEED_LIMIT_READ_EVERY:
            limit = DownloadSettings.current().speed_limit
            self.value, self.read_at = limit and _share_of_this_process(limit), time.monotonic()
        return self.value

    def forget(self) -> None:
        self.read_at = -math.inf


def _share_of_this_process(limit: int) -> int:
    """With several worker processes (the scale-out set-up), each takes the part of the limit that its
    share of the running downloads is, so that all of them together keep to it."""
    # One waiting to retry ("retrying in 8 s") takes no bytes meanwhile: its share would go unused.
    counts = DownloadTask.objects.filter(status=TaskStatus.RUNNING, notice="").aggregate(
        running=Count("pk"), here=Count("pk", filter=Q(owner__startswith=process_owner_prefix()))
    )
    if not counts["here"] or counts["here"] == counts["running"]:
        return limit
    return max(1, limit * counts["here"] // counts["running"])


speed_limit = _SpeedLimitSetting()


def speed_limit_set(*, bytes_per_second: int) -> int:
    """Holds all downloads together to that many bytes a second (0: no limit), the running ones too."""
    check_speed_limit(bytes_per_second)
    DownloadSettings.objects.update_or_create(pk=1, defaults={"speed_limit": bytes_per_second})
    speed_limit.forget()
    return bytes_per_second


def check_speed_limit(bytes_per_second: int) -> None:
    low, high = SPEED_LIMIT_RANGE
    if bytes_per_second and not low <= bytes_per_second <= high:
        raise DownloadRequestError(
            "The speed limit is between 0.01 and 100,000 MB/s; leave it empty (or 0) for no limit."
        )


def megabytes_per_second(bytes_per_second: int) -> str:
    """A speed limit as a user types it: "2.5", or nothing for none."""
    return f"{round(bytes_per_second / MB, 2):g}" if bytes_per_second else ""


def bytes_per_second(megabytes_per_second: str) -> int:
    """What a user types as a speed, in MB/s ("2.5"), in bytes a second; nothing is 0."""
    text = megabytes_per_second.strip()
    if not text:
        return 0
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise DownloadRequestError("Give the speed limit in MB/s, such as 2.5; leave it empty for no limit.")
    return round(value * MB)


@dataclass(frozen=True)
class Destination:
    folder_type: str
    path_index: int
    sub_folder: str
    filename: str

    @classmethod
    def of(cls, task: DownloadTask, suffix: str = "") -> Destination:
        """Where the task's file goes (with `suffix`: its part file)."""
        return cls(task.folder_type, task.path_index, task.sub_folder, task.filename + suffix)

    @property
    def folder(self) -> Path:
        return (
            resolve_model_path(self.folder_type, self.path_index, self.sub_folder)
            if self.sub_folder
            else get_roots().get(self.folder_type, self.path_index)
        )

    @property
    def path(self) -> Path:
        if not is_plain_file_name(self.filename):  # a name with a / or a .. would lead elsewhere
            raise PathOutsideRoot(f"{self.filename!r} is not a plain file name.")
        return self.folder / self.filename


def is_plain_file_name(name: str) -> bool:
    """A name that stays in its folder, and that the scanner does not skip as hidden."""
    return bool(name) and "/" not in name and "\\" not in name and not name.startswith(".")


def checked_sub_folder(sub_folder: str) -> str:
    """The subfolder as typed, cleaned, or why it cannot be one."""
    sub_folder = sub_folder.strip().strip("/")
    if sub_folder:
        try:
            sub_folder = clean_relative_path(sub_folder)
        except PathOutsideRoot:
            raise DownloadRequestError(
                "The subfolder must stay inside the model folder (no “..”, no leading /)."
            ) from None
        if any(part.startswith(".") for part in sub_folder.split("/")):
            raise DownloadRequestError("Subfolder names may not start with a dot.")
    return sub_folder


def is_in_place(model: ModelFile | None, final: Path) -> bool:
    """Whether `model`, which a download replaces, is the file at the download's `final` path: a newer
    file of the same Hugging Face path, which takes its name."""
    if model is None:
        return False
    try:
        return model_path(model) == final
    except (UnknownRoot, PathOutsideRoot):
        return False


def check_destination(
    *, folder_type: str, path_index: int, sub_folder: str, filename: str, replacing: ModelFile | None = None
) -> Destination:
    """Refuses names and folders that would leave the model roots, clash or not be a model. The name of
    the model the download `replacing` replaces in place is not a clash."""
    try:
        root_to_write(folder_type, path_index)
    except UnknownRoot:
        raise DownloadRequestError(f"There is no {folder_type} folder number {path_index}.") from None
    except RootNotThere as exc:
        raise DownloadRequestError(f"{exc} Nothing was downloaded.") from None
    sub_folder = checked_sub_folder(sub_folder)
    filename = filename.strip()
    if not is_plain_file_name(filename):
        raise DownloadRequestError("The file name may not contain / or \\ or start with a dot.")
    if len(filename.encode()) > 240:
        raise DownloadRequestError("The file name is too long.")
    if len(f"{sub_folder}/{filename}") > MAX_RELATIVE_PATH:
        raise DownloadRequestError(
            f"The subfolder and file name pass {MAX_RELATIVE_PATH} characters together."
        )
    if Path(filename).suffix.lower() not in MODEL_EXTENSIONS:
        raise DownloadRequestError(
            f"The file name must end in a model extension ({', '.join(sorted(MODEL_EXTENSIONS))})."
        )
    destination = Destination(folder_type, path_index, sub_folder, filename)
    try:
        final = destination.path
    except PathOutsideRoot:
        raise DownloadRequestError("The subfolder must stay inside the model folder.") from None
    if final.exists() and not is_in_place(replacing, final):
        raise DownloadRequestError(
            f"{destination.sub_folder + '/' if sub_folder else ''}{filename} already exists in that folder."
        )
    clash = DownloadTask.objects.filter(
        folder_type=folder_type, path_index=path_index, sub_folder=sub_folder, filename=filename
    ).exclude(status__in=[TaskStatus.DONE, TaskStatus.CANCELLED, TaskStatus.FAILED])
    if clash.exists():
        raise DownloadRequestError("Another download already goes to that file name.")
    return destination


def download_create(
    *,
    resolution: Resolution,
    version: RemoteVersion,
    remote: RemoteFile,
    destination: Destination,
    save_preview: bool = True,
    save_description: bool = True,
    save_info: bool = True,
    replaces: ModelFile | None = None,
) -> DownloadTask:
    with transaction.atomic():
        task = DownloadTask.objects.create(
            platform=resolution.platform,
            source_url=resolution.url
            if resolution.url.startswith("http")
            else (version.page_url or remote.download_url),
            download_url=remote.download_url,
            title=resolution.title[:MAX_TITLE],
            version_name=version.name[:MAX_VERSION_NAME] if resolution.platform == Platform.CIVITAI else "",
            folder_type=destination.folder_type,
            path_index=destination.path_index,
            sub_folder=destination.sub_folder,
            filename=destination.filename,
            expected_sha256=remote.sha256,
            total_size=remote.size,
            preview_url=version.preview_url if save_preview else "",
            description_html=resolution.description_html_of(version) if save_description else "",
            info=version.info if save_info and resolution.platform == Platform.CIVITAI else {},
            save_preview=save_preview and bool(version.preview_url),
            save_description=save_description,
            save_info=save_info and resolution.platform == Platform.CIVITAI,
            replaces=replaces.pk if replaces else None,
            replaces_path=f"{replaces.folder_type}/{replaces.relative_path}" if replaces else "",
        )
    publish_task(task, "create_download_task")
    wake_workers()
    return task


class FolderTypeUnknown(DownloadRequestError):
    """A link to a file of no known kind (a direct link, a repository's loose file): the user says."""


def download_as_linked(
    resolution: Resolution,
    *,
    version_id: str | None = None,
    folder_type: str = "",
    path_index: int = 0,
    sub_folder: str = "",
    filename: str = "",
    replaces: Callable[[RemoteVersion, RemoteFile], ModelFile] | None = None,
) -> DownloadTask:
    """Queues what the link names without a dialog (the API, the command line, several links at once):
    its version (or `version_id`, else the newest) and that version's file (else its primary one),
    in the folder type it suggests and under its own name, unless told otherwise. `replaces` gives
    the library model that the download of that version moves to the Trash once it is in."""
    version = resolution.version(version_id)
    remote = resolution.file(version)
    folder_type = folder_type or resolution.folder_type_of(remote)
    if not folder_type:
        raise FolderTypeUnknown("Which folder type? The link does not say (checkpoints, loras, vae, …).")
    older = replaces(version, remote) if replaces else None
    destination = check_destination(
        folder_type=folder_type,
        path_index=path_index,
        sub_folder=sub_folder,
        filename=filename or remote.save_as,
        replacing=older,
    )
    return download_create(
        resolution=resolution, version=version, remote=remote, destination=destination, replaces=older
    )


MAX_LINKS_AT_ONCE = 50


def links_in(text: str) -> list[str]:
    """The links of a pasted list, each once, in order: one a line, or separated by spaces or commas."""
    links = list(dict.fromkeys(word for word in text.replace(",", " ").split()))
    if not links:
        raise DownloadRequestError("Paste one link a line.")
    if len(links) > MAX_LINKS_AT_ONCE:
        raise DownloadRequestError(f"At most {MAX_LINKS_AT_ONCE} links at once: these are {len(links)}.")
    return links


@dataclass(frozen=True)
class Wanted:
    """A link to queue, and where its file goes when not where the link suggests."""

    link: str
    folder_type: str = ""
    sub_folder: str = ""
    filename: str = ""


@dataclass(frozen=True)
class LinkOutcome:
    link: str
    task: DownloadTask | None = None
    have: ModelFile | None = None  # the library's model with the file's SHA256: not downloaded again
    error: str = ""
    filename: str = ""  # the name it was wanted under, if one was given

    @property
    def label(self) -> str:
        return self.filename or self.link


ASKED_AT_ONCE = 6  # a list of 50 links waits on the services' slowest answers, not on all in turn


def asked_at_once[T, R](ask_one: Callable[[T], R], items: list[T]) -> list[R]:
    """`ask_one` of each item, in order, asked of the services a few at a time. It runs on other
    threads: it must not touch the database."""
    with ThreadPoolExecutor(max_workers=ASKED_AT_ONCE, thread_name_prefix="ask-services") as pool:
        return list(pool.map(ask_one, items))


def _resolve_all(
    links: list[str], resolve: Callable[[str], Resolution]
) -> list[Resolution | SourceError | HttpError]:
    """Each link's resolution, or why it has none."""

    def one(link: str) -> Resolution | SourceError | HttpError:
        try:
            return resolve(link)
        except (SourceError, HttpError) as exc:
            return exc

    return asked_at_once(one, links)


def download_links(wanted: list[Wanted], *, resolve: Callable[[str], Resolution]) -> list[LinkOutcome]:
    """Queues each link as download_as_linked does, where its Wanted says; one that cannot be queued
    says why, and the others go on. A file the library holds already (by SHA256) is not downloaded
    again. The links are resolved together (see _resolve_all), then queued in order."""
    links = list(dict.fromkeys(want.link for want in wanted if want.link))
    resolutions = dict(zip(links, _resolve_all(links, resolve), strict=True))
    outcomes = []
    for want in wanted:
        outcome = functools.partial(LinkOutcome, want.link, filename=want.filename)
        if not want.link:
            outcomes.append(outcome(error="No link: paste one where to get it."))
            continue
        resolution = resolutions[want.link]
        if not isinstance(resolution, Resolution):
            outcomes.append(outcome(error=why_unresolved(resolution)))
            continue
        try:
            remote = resolution.file(resolution.version())
            if have := models_with_sha256(remote.sha256, limit=1):
                outcomes.append(outcome(have=have[0]))
                continue
            task = download_as_linked(
                resolution, folder_type=want.folder_type, sub_folder=want.sub_folder, filename=want.filename
            )
            outcomes.append(outcome(task=task))
        except FolderTypeUnknown:
            outcomes.append(
                outcome(
                    error="The link does not say what kind of model it is: add it on its own to pick its folder."
                )
            )
        except DownloadRequestError as exc:
            outcomes.append(outcome(error=str(exc)))
    return outcomes


def why_unresolved(exc: SourceError | HttpError) -> str:
    """What the dialogs say of a link that could not be read: the service's refusal in words."""
    return f"The address answered HTTP {exc.status}." if isinstance(exc, HttpError) else str(exc)


def remember_where_downloaded(task: DownloadTask) -> None:
    """Keeps where the file `task` downloaded came from, by its SHA256, for the model's dialog."""
    DownloadedFile.objects.update_or_create(
        sha256=task.sha256,
        defaults={
            "platform": task.platform,
            "page_url": download_page(task),
            "title": task.title,
            "version_name": task.version_name,
            "downloaded_at": timezone.now(),
        },
    )


def download_page(task: DownloadTask) -> str:
    """The page of what `task` downloads, for a person: the Civitai model at its version, the file on
    Hugging Face, else the link the user gave."""
    if task.platform == Platform.HUGGINGFACE:
        try:
            repo, _, revision, path = huggingface.parse(task.download_url)
        except SourceError:
            return task.source_url
        where = urlsplit(task.download_url)
        return huggingface.blob_url(f"{where.scheme}://{where.netloc}", repo, revision, path)
    model_id, version_id = task.info.get("modelId"), task.info.get("id")
    if task.platform == Platform.CIVITAI and type(model_id) is int and type(version_id) is int:
        return f"{settings.MM_CIVITAI_URL.rstrip('/')}/models/{model_id}?modelVersionId={version_id}"
    return task.source_url


def _part_path(task: DownloadTask) -> Path | None:
    try:
        return Destination.of(task, ".part").path
    except (PathOutsideRoot, UnknownRoot):
        return None


def delete_part(task: DownloadTask) -> None:
    if (part := _part_path(task)) is not None:
        part.unlink(missing_ok=True)


def download_pause(*, task: DownloadTask) -> DownloadTask:
    """A queued task is paused at once; a running one is asked to stop at its next chunk. Read from the
    row, not from `task`: a worker may have taken the queued task up since the page was drawn. A cancel
    or delete already asked for is not turned into a pause."""
    paused = DownloadTask.objects.filter(pk=task.pk, status=TaskStatus.QUEUED).update(
        status=TaskStatus.PAUSED, bps=0
    )
    if not paused:
        DownloadTask.objects.filter(pk=task.pk, status=TaskStatus.RUNNING, requested="").update(
            requested="pause"
        )
    return _refreshed(task)


def download_resume(*, task: DownloadTask) -> DownloadTask:
    """Queues a paused, failed or cancelled task again; it continues from its part file. A running task
    still pausing runs on. Read from the row, as for a pause: a pausing task may have paused since."""
    queued = DownloadTask.objects.filter(
        pk=task.pk, status__in=(TaskStatus.PAUSED, TaskStatus.FAILED, TaskStatus.CANCELLED)
    ).update(status=TaskStatus.QUEUED, requested="", error="", notice="", finished_at=None)
    if queued:
        wake_workers()
    else:
        DownloadTask.objects.filter(pk=task.pk, status=TaskStatus.RUNNING, requested="pause").update(
            requested=""
        )
    return _refreshed(task)


def download_next(*, task: DownloadTask) -> DownloadTask:
    """Makes a queued task the next to start, ahead of the others queued; one made next before goes back
    to its turn, so that "next" stays one task."""
    if DownloadTask.objects.filter(pk=task.pk, status=TaskStatus.QUEUED).update(priority=1):
        before = list(DownloadTask.objects.filter(priority__gt=0).exclude(pk=task.pk))
        DownloadTask.objects.filter(pk__in=[other.pk for other in before]).update(priority=0)
        for other in before:
            _refreshed(other)
    return _refreshed(task)


def download_cancel(*, task: DownloadTask) -> DownloadTask:
    """Stops the task and deletes its part; the row stays so it can be retried or deleted."""
    if task.status == TaskStatus.RUNNING:
        DownloadTask.objects.filter(pk=task.pk, status=TaskStatus.RUNNING).update(requested="cancel")
    elif task.status in (TaskStatus.QUEUED, TaskStatus.PAUSED, TaskStatus.FAILED):
        updated = DownloadTask.objects.filter(pk=task.pk, status=task.status).update(
            status=TaskStatus.CANCELLED, bps=0, downloaded_size=0, validator=""
        )
        if updated:
            delete_part(task)
    return _refreshed(task)


def download_delete(*, task: DownloadTask) -> None:
    """Removes the task and its part. A running task is asked to stop; the worker removes it."""
    if task.status == TaskStatus.RUNNING and DownloadTask.objects.filter(
        pk=task.pk, status=TaskStatus.RUNNING
    ).update(requested="delete"):
        return
    delete_part(task)
    DownloadTask.objects.filter(pk=task.pk).delete()
    publish_deleted(task.pk)


# What a task's own buttons (and the API's PUT) ask of it, by name.
TASK_ACTIONS = {
    "pause": download_pause,
    "resume": download_resume,
    "retry": download_resume,
    "cancel": download_cancel,
    "next": download_next,
}


def downloads_pause_all() -> int:
    """Pauses every queued and running download (each keeps its part, to resume from); the number
    paused. Every open page shows the change."""
    paused = 0
    for task in DownloadTask.objects.filter(status__in=(TaskStatus.QUEUED, TaskStatus.RUNNING), requested=""):
        download_pause(task=task)
        paused += task.status == TaskStatus.PAUSED or task.requested == "pause"
    return paused


def downloads_resume_all() -> int:
    """Queues every paused download again, and lets those still pausing run on; the number resumed.
    Failed ones wait for their own Retry: what failed them (a key, a full disk) may still be there."""
    resumed = 0
    pausing = Q(status=TaskStatus.RUNNING, requested="pause")
    for task in DownloadTask.objects.filter(Q(status=TaskStatus.PAUSED) | pausing):
        download_resume(task=task)
        resumed += task.status == TaskStatus.QUEUED or (
            task.status == TaskStatus.RUNNING and not task.requested
        )
    return resumed


def downloads_retry_failed() -> int:
    """Queues every failed download again, each from its part: once a key is added in the settings, or
    a drive is back, every download it failed is one click away; the number retried."""
    retried = 0
    for task in DownloadTask.objects.filter(status=TaskStatus.FAILED):
        retried += download_resume(task=task).status == TaskStatus.QUEUED
    return retried


# What the Downloads page's Pause all, Resume all and Retry failed (and the API's PUT of the list) ask.
EVERY_TASK_ACTIONS = {
    "pause": downloads_pause_all,
    "resume": downloads_resume_all,
    "retry": downloads_retry_failed,
}


FINISHED = (TaskStatus.DONE, TaskStatus.CANCELLED)


def downloads_clear_finished() -> int:
    """Takes the done and cancelled downloads off the list; their model files stay where they are, and
    neither has a part left. Every open page drops their rows."""
    finished = list(DownloadTask.objects.filter(status__in=FINISHED).values_list("pk", flat=True))
    DownloadTask.objects.filter(pk__in=finished, status__in=FINISHED).delete()
    # A finished download retried meanwhile was not deleted: its row stays.
    kept = set(DownloadTask.objects.filter(pk__in=finished).values_list("pk", flat=True))
    for pk in finished:
        if pk not in kept:
            publish_deleted(pk)
    return len(finished) - len(kept)


def _refreshed(task: DownloadTask) -> DownloadTask:
    task.refresh_from_db()
    publish_task(task, "update_download_task")
    return task
