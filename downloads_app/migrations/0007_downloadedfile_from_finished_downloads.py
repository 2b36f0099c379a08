"""Where the files of downloads finished before DownloadedFile came from, read off their task rows.

A frozen copy of services.download_page: a migration must not change with the code."""

import re
from urllib.parse import quote, unquote, urlsplit

from django.conf import settings
from django.db import migrations

HF_FILE = re.compile(r"/([^/]+/[^/]+)/(?:resolve|blob)/([^/]+)/(.+)")


def _page(task):
    if task.platform == "huggingface" and (found := HF_FILE.fullmatch(urlsplit(task.download_url).path)):
        where = urlsplit(task.download_url)
        repo, revision, path = found[1], unquote(found[2]), unquote(found[3])
        return f"{where.scheme}://{where.netloc}/{repo}/blob/{quote(revision, safe='')}/{quote(path)}"
    info = task.info if isinstance(task.info, dict) else {}
    model_id, version_id = info.get("modelId"), info.get("id")
    if task.platform == "civitai" and type(model_id) is int and type(version_id) is int:
        return f"{settings.MM_CIVITAI_URL.rstrip('/')}/models/{model_id}?modelVersionId={version_id}"
    return task.source_url


def from_finished_downloads(apps, schema_editor):
    DownloadTask = apps.get_model("downloads_app", "DownloadTask")
    DownloadedFile = apps.get_model("downloads_app", "DownloadedFile")
    known = set(DownloadedFile.objects.values_list("sha256", flat=True))
    finished = DownloadTask.objects.filter(status="done").exclude(sha256="").order_by("-finished_at", "-pk")
    for task in finished.iterator():
        if task.sha256 in known:  # the newest download of a file says where it came from
            continue
        known.add(task.sha256)
        DownloadedFile.objects.create(
            sha256=task.sha256,
            platform=task.platform,
            page_url=_page(task),
            title=task.title,
            version_name=task.version_name,
            downloaded_at=task.finished_at or task.created_at,
        )


class Migration(migrations.Migration):
    dependencies = [("downloads_app", "0006_downloadedfile")]

    operations = [migrations.RunPython(from_finished_downloads, migrations.RunPython.noop)]
