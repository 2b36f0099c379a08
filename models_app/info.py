"""Hashes and Civitai info as worker jobs: SHA256 for models that lack it, then `by-hash` lookups that
write `<base>.civitai.info` (and the first image as preview when the model has none), or the check for
newer versions of the models with Civitai info and newer files of those from Hugging Face (updates.py)."""

from __future__ import annotations

import errno
import json
import logging
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone

from downloads_app import hub_updates
from downloads_app import services as downloads
from downloads_app.sources import SourceError, platform_of, resolve
from mmsite import events
from mmsite.events import Throttle
from mmsite.models import TaskStatus
from mmsite.toasts import toast_fragment
from mmsite.worker import JobKind, TaskContext
from models_app import civitai_api, services, updates
from models_app.civitai_api import CivitaiUnavailable, LookupFailed, ShouldStop, Stop
from models_app.hashing import HashStopped, file_sha256, hash_key
from models_app.models import CivitaiModel, HashCache, InfoMode, InfoTask, ModelFile
from models_app.previews import PreviewError, fetch_image, save_preview, write_atomically
from models_app.roots import PathOutsideRoot, UnknownRoot, get_roots
from models_app.scanner import scan_one_model
from models_app.sidecars import mapping

logger = logging.getLogger("mm.info")


def info_task_data(task: InfoTask) -> dict[str, object]:
    return {
        "taskId": task.pk, "mode": task.mode, "automatic": task.automatic, "status": task.status, "total": task.total,
        "processed": task.processed, "hashed": task.hashed, "found": task.found, "missing": task.missing,
        "failed": task.failed, "gone": task.gone,
        "progress": task.percent, "current": task.current, "error": task.error,
    }  # fmt: skip


def render_info_progress(task: InfoTask | None, *, finished: bool = False) -> str:
    return render_to_string("models_app/info_progress.html", {"info": task, "finished": finished})


def info_toast(task: InfoTask) -> str:
    if task.automatic and task.mode == InfoMode.UPDATES and task.status == TaskStatus.DONE:
        return toast_fragment(
            f"Out now: a newer version of {task.found} model{'s' if task.found != 1 else ''} "
            "(Updates, in the side bar).",
            level="info",
        )
    if task.status == TaskStatus.FAILED:
        return toast_fragment(f"{task.get_mode_display()} failed: {task.error}", level="error")
    counts = []
    if task.mode == InfoMode.FETCH:
        counts = [f"{task.found} found on Civitai", f"{task.missing} not on Civitai"]
    elif task.mode == InfoMode.UPDATES:
        counts = [
            f"{task.found} model{'s' if task.found != 1 else ''} with an update"
            if task.found
            else "no update"
        ]
        if task.missing:
            counts.append(f"{task.missing} no longer on Civitai")
    if task.gone:
        counts.append(f"{task.gone} no longer on disk (a scan updates the library)")
    if task.failed:
        first = task.error.partition("\n")[0]
        counts.append(f"{task.failed} failed ({first})")
        return toast_fragment(f"{task.get_mode_display()} done: {', '.join(counts)}.", level="error")
    return toast_fragment(f"{task.get_mode_display()} done{': ' if counts else ''}{', '.join(counts)}.")


def publish_info(event: str, task: InfoTask, *, finished: bool = False) -> None:
    """The job's event; its progress to the pages that show it and, once it is done, a toast for every page.
    A quiet check (InfoTask.is_quiet) sends the event alone."""
    if task.is_quiet:
        events.publish(event, info_task_data(task))
        return
    progress = render_info_progress(task, finished=finished)
    events.publish(
        event, info_task_data(task), progress, topic="info", toast=info_toast(task) if finished else ""
    )


def stop_info(task: InfoTask) -> None:
    """Stops the hashing or the lookups: at once when they have not started, else after the current
    file's next chunk (run_info_task reports it)."""
    if task.request_stop():
        publish_info("complete_info_task", task)


def models_for(task: InfoTask) -> list[ModelFile]:
    # Without the large columns nothing here reads: after a first scan of a big LoRA library every
    # model needs a hash, and their metadata alone would take gigabytes.
    models = ModelFile.objects.filter(is_dir=False).defer(
        "metadata", "description", "notes", "search_text", "labels"
    )
    if task.mode == InfoMode.UPDATES:
        from_the_hub = [downloaded.sha256 for downloaded in hub_updates.checkable()]
        # One Civitai model after the other: its files then share one answer (updates.check).
        models = models.filter(Q(civitai_model_id__isnull=False) | Q(sha256__in=from_the_hub)).order_by(
            "civitai_model_id", "pk"
        )
    if task.model_ids:
        return list(models.filter(pk__in=task.model_ids))
    if task.mode == InfoMode.UPDATES:
        return list(models)
    if task.mode == InfoMode.HASH:
        return list(models.filter(sha256=""))
    # Every model without Civitai info that Civitai did not already say it does not know, and every one
    # whose info names its Civitai model but not the version (some Lora-Manager files): without the
    # version, neither its updates nor its older versions can be told.
    lacking = Q(civitai_model_id__isnull=True) | Q(civitai_version_id__isnull=True)
    return list(models.filter(lacking, civitai_missing=False).exclude(Q(sidecars__icontains=".civitai.info")))


def ensure_sha256(model: ModelFile, *, on_progress, should_stop) -> tuple[str, bool]:  # type: ignore[no-untyped-def]
    """The model's SHA256 from the row, the cache, or by reading it; True when it was read now."""
    if model.sha256:
        return model.sha256, False
    path = services.model_path(model)
    key = hash_key(path.stat())
    cached = HashCache.objects.filter(device=key[0], inode=key[1], size=key[2], mtime_ns=key[3]).first()
    if cached is not None:
        sha256, computed = cached.sha256, False
    else:
        sha256 = file_sha256(path, on_progress=on_progress, should_stop=should_stop)
        HashCache.objects.update_or_create(
            device=key[0], inode=key[1], size=key[2], mtime_ns=key[3], defaults={"sha256": sha256}
        )
        computed = True
    ModelFile.objects.filter(pk=model.pk).update(sha256=sha256)
    return sha256, computed


def fetch_civitai_info(model: ModelFile, sha256: str, should_stop: ShouldStop) -> bool:
    """Asks Civitai about the file; True when it knows it. 404 is remembered; 429 waits and asks again."""
    data = civitai_api.ask(f"/api/v1/model-versions/by-hash/{sha256.upper()}", should_stop)
    if data is None:
        ModelFile.objects.filter(pk=model.pk).update(civitai_missing=True)
        return False
    _save_info(model, data)
    return True


def civitai_link_set(*, model: ModelFile, url: str) -> None:
    """Links the model to the Civitai version that `url` names, by hand: for a file Civitai does not
    know by its hash (pruned, merged or saved again). Its info is written beside it as a lookup would
    write it, without SHA256s that are not this file's: the file's own hash stays the truth."""
    endpoints = downloads.endpoints()
    if platform_of(url.strip(), endpoints) != "civitai":
        raise services.ModelEditError(
            "That is not a Civitai link: paste the page of the version you have (civitai.com/models/…)."
        )
    try:
        resolution = resolve(url, endpoints=endpoints, keys=downloads.keys())
    except SourceError as exc:
        raise services.ModelEditError(str(exc)) from None
    _save_info(model, _vouched_for(resolution.version().info, model.sha256))


def _vouched_for(info: dict[str, Any], sha256: str) -> dict[str, Any]:
    """The version's info, its files' hashes left out unless one of them is `sha256`: tools take the
    hash an info file gives for the file beside it."""
    files = [f for f in info.get("files") or [] if isinstance(f, dict)]
    if sha256 and any(str(mapping(f.get("hashes")).get("SHA256", "")).lower() == sha256 for f in files):
        return info
    return {**info, "files": [{k: v for k, v in f.items() if k != "hashes"} for f in files]}


def _save_info(model: ModelFile, data: dict) -> None:  # type: ignore[type-arg]
    """Writes Civitai's answer beside the model, its first image as preview when it has none, and reads
    the model again."""
    path = services.model_path(model)
    if not path.exists():  # gone since the scan (its hash came from the row): no sidecar for nothing
        raise FileNotFoundError(errno.ENOENT, "the model is no longer there", str(path))
    base = path.with_suffix("")
    write_atomically(base.parent / (base.name + ".civitai.info"), json.dumps(data, indent=2).encode())
    images = [
        i
        for i in data.get("images") or []
        if isinstance(i, dict) and i.get("type", "image") == "image" and i.get("url")
    ]
    if not model.preview and images:
        try:
            save_preview(fetch_image(images[0]["url"]), path)
        except PreviewError as exc:
            logger.warning("no preview for %s: %s", model, exc)
    ModelFile.objects.filter(pk=model.pk).update(civitai_missing=False)
    scan_one_model(get_roots(), model.folder_type, model.path_index, model.relative_path)


def run_info_task(task: InfoTask, ctx: TaskContext) -> None:
    throttle = Throttle(settings.MM_PROGRESS_INTERVAL)
    fields = ["total", "processed", "hashed", "found", "missing", "failed", "gone", "current"]

    def still_quiet() -> bool:
        """A check the worker started is quiet until someone asks for a check while it runs (info_start)."""
        if task.automatic:
            task.automatic = InfoTask.objects.filter(pk=task.pk, automatic=True).exists()
        return task.automatic

    def report(force: bool = False) -> None:
        if throttle.ready(force=force):
            InfoTask.objects.filter(pk=task.pk).update(**{f: getattr(task, f) for f in fields})
            if not still_quiet():
                publish_info("update_info_task", task)

    def should_stop() -> bool:
        return ctx.requested() in {"cancel", "shutdown"}

    models = models_for(task)
    # A task taken up again after a restart counts afresh what is left: the counts of the run before
    # would pass the new total.
    task.total = len(models)
    task.processed = task.hashed = task.found = task.missing = task.failed = task.gone = 0
    report(force=True)
    errors = []
    asked: dict[int, CivitaiModel | None] = {}  # Civitai's answers, by Civitai model id
    asked_the_hub: dict[str, bool] = {}  # the hub's, by SHA256
    # A check the worker makes every few hours counts only the updates that are new since the last one:
    # the ones it found before would make the same toast each time.
    newest_before = (
        dict(CivitaiModel.objects.values_list("model_id", "version_id")) if task.automatic else None
    )
    try:
        for model in models:
            if should_stop():
                raise Stop
            task.current = f"{model.folder_type}/{model.relative_path}"
            try:
                if task.mode == InfoMode.UPDATES and model.civitai_model_id is None:
                    outcome, changed = updates.check_on_the_hub(model, asked_the_hub)
                    task.found += outcome is updates.Outcome.UPDATE and (not task.automatic or changed)
                elif task.mode == InfoMode.UPDATES:
                    outcome = updates.check(model, asked, should_stop)
                    newest = asked[model.civitai_model_id]  # type: ignore[index]
                    task.found += outcome is updates.Outcome.UPDATE and (
                        newest_before is None
                        or newest is None
                        or newest_before.get(newest.model_id) != newest.version_id
                    )
                    task.missing += outcome is updates.Outcome.GONE
                else:
                    sha256, computed = ensure_sha256(
                        model, on_progress=lambda done: report(), should_stop=should_stop
                    )
                    task.hashed += computed
                    if task.mode == InfoMode.FETCH:
                        if fetch_civitai_info(model, sha256, should_stop):
                            task.found += 1
                        else:
                            task.missing += 1
            except HashStopped:
                raise Stop from None
            except FileNotFoundError:
                # Deleted or moved since the scan, or on a drive taken out: not this job's failure. The
                # rows stay for the scan to settle, which keeps those of a drive that is only unmounted.
                task.gone += 1
            except (OSError, PathOutsideRoot, UnknownRoot, LookupFailed) as exc:
                task.failed += 1
                errors.append(f"{task.current}: {_reason(exc)}")
            task.processed += 1
            report()
    except (CivitaiUnavailable, hub_updates.HubUnreachable) as exc:
        task.status, task.current, task.finished_at = TaskStatus.FAILED, "", timezone.now()
        kept = "updates" if task.mode == InfoMode.UPDATES else "hashes and the info"
        task.error = f"{exc} The {kept} found so far are kept."
        task.save(update_fields=[*fields, "status", "finished_at", "error"])
        still_quiet()
        publish_info("complete_info_task", task, finished=True)
        return
    except Stop:
        shutdown = ctx.requested() == "shutdown"
        task.status = TaskStatus.QUEUED if shutdown else TaskStatus.CANCELLED
        task.finished_at = None if shutdown else timezone.now()
        InfoTask.objects.filter(pk=task.pk).update(
            status=task.status,
            owner="",
            finished_at=task.finished_at,
            **{f: getattr(task, f) for f in fields},
        )
        publish_info("complete_info_task", task)
        return
    task.status, task.current, task.finished_at = TaskStatus.DONE, "", timezone.now()
    task.error = "\n".join(errors[:20])
    task.save(update_fields=[*fields, "status", "finished_at", "error"])
    still_quiet()
    publish_info("complete_info_task", task, finished=True)


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


INFO_JOB = JobKind(
    name="info",
    model=InfoTask,
    run=run_info_task,
    capacity=lambda: 1,
    announce_failure=lambda task: publish_info("complete_info_task", task, finished=True),
)
