"""Updates of files downloaded from Hugging Face: whether the branch or tag a file came from holds
another file at its path now.

A file downloaded at a commit never changes; one downloaded at `main` (what a repository link gives)
does when its owner pushes a fixed or better file under the same name. The hub gives each file's
SHA256 with its resolve link (`X-Linked-Etag`), so one request a file tells it.
"""

from __future__ import annotations

import re

from django.utils import timezone

from downloads_app import services
from downloads_app.models import DownloadedFile, Platform
from downloads_app.sources import HttpClient, ServiceUnreachable, SourceError, huggingface
from models_app.models import LibraryVersion

COMMIT = re.compile(r"[0-9a-f]{40}")


class HubCheckFailed(Exception):
    """The hub could not say what the file's path holds now; the message says why, in words."""


class HubUnreachable(Exception):
    """The hub cannot be reached at all: every other file would wait out the same timeout."""


def branch_of(downloaded: DownloadedFile) -> str:
    """The branch or tag the file was downloaded from, or "" when it cannot change: a commit, or not a
    Hugging Face file."""
    if downloaded.platform != Platform.HUGGINGFACE:
        return ""
    try:
        _repo, kind, revision, _path = huggingface.parse(downloaded.page_url)
    except SourceError:
        return ""
    return revision if kind == "file" and not COMMIT.fullmatch(revision) else ""


def same_path(page_url: str, download_url: str) -> bool:
    """Whether two Hugging Face links name the same file of the same repository, at any revision."""
    try:
        repo, kind, _revision, path = huggingface.parse(page_url)
        other_repo, other_kind, _other_revision, other_path = huggingface.parse(download_url)
    except SourceError:
        return False
    return kind == other_kind == "file" and (repo, path) == (other_repo, other_path)


def checkable() -> list[DownloadedFile]:
    """The files downloaded from a Hugging Face branch or tag."""
    return [d for d in DownloadedFile.objects.filter(platform=Platform.HUGGINGFACE) if branch_of(d)]


def check(downloaded: DownloadedFile) -> bool:
    """Asks the hub what the file's path holds now and keeps its SHA256; True when that changed since
    the last check (at the first, since the download)."""
    try:
        # The hub's own reading of the link, whatever host it names: the file's path at its branch,
        # asked of the hub configured now (a mirror set since the download included).
        resolution = huggingface.resolve(
            downloaded.page_url, endpoints=services.endpoints(), keys=services.keys(), client=HttpClient()
        )
    except ServiceUnreachable as exc:
        raise HubUnreachable(str(exc)) from None
    except SourceError as exc:
        raise HubCheckFailed(str(exc)) from None
    sha256 = resolution.versions[0].files[0].sha256
    if not sha256:  # a small file kept in git itself: the hub gives its git hash, not its SHA256
        raise HubCheckFailed("Hugging Face gives no SHA256 for this file, so a change cannot be told.")
    changed = sha256 != (downloaded.hub_sha256 or downloaded.sha256)
    downloaded.hub_sha256, downloaded.hub_checked_at = sha256, timezone.now()
    downloaded.save(update_fields=["hub_sha256", "hub_checked_at"])
    if changed:
        LibraryVersion.renew()  # the library page keeps its count of updates under this
    return changed
