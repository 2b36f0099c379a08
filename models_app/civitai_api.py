"""Civitai's API as the worker's jobs ask it: one JSON answer, or why there is none in Civitai's words."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings

from downloads_app.engine import HttpError, parse_retry_after

ShouldStop = Callable[[], bool]


class Stop(Exception):
    """The job was asked to stop (cancel, shutdown)."""


class CivitaiUnavailable(Exception):
    """Civitai cannot be asked at all (no connection, a refused key): every other model would fail the
    same way, so the job ends with this message rather than wait out a timeout per model."""


class LookupFailed(Exception):
    """Civitai gave no usable answer about this one model."""


class RateLimited(LookupFailed):
    """Civitai asks to wait longer than the caller can (a page someone is looking at)."""


IN_A_REQUEST = 5.0  # seconds of 429 a page waits out: past that, it says so rather than hang


def ask(
    path: str, should_stop: ShouldStop, *, patience: float = math.inf, key: str | None = None
) -> dict[str, Any] | None:
    """Civitai's JSON object at `path` (`/api/v1/…`), or None when it answers 404. A 429 waits as long
    as Civitai says and asks again, unless that would take more than `patience` seconds in all. With no
    `key` given, the one stored is read: a caller on another thread reads it first and passes it."""
    from downloads_app.services import keys
    from downloads_app.sources import HttpClient, SourceError, civitai

    key = keys().civitai if key is None else key
    url = settings.MM_CIVITAI_URL.rstrip("/") + path
    client = HttpClient()
    for _attempt in range(6):
        try:
            data = client.get(url, key=key).json()
        except SourceError as exc:
            raise CivitaiUnavailable(str(exc)) from None
        except HttpError as error:
            if error.status == 429:
                seconds = parse_retry_after(error.headers.get("Retry-After"))
                if seconds > patience:
                    raise RateLimited(
                        f"Civitai asks to wait {math.ceil(seconds)} s (too many requests): try again then."
                    ) from None
                patience -= seconds
                _wait(seconds, should_stop)
                continue
            if error.status == 404:
                return None
            message = civitai.explain(error, has_key=bool(key))
            if error.status in (401, 403):
                raise CivitaiUnavailable(message) from None
            raise LookupFailed(message) from None
        except ValueError:
            raise LookupFailed("Civitai's answer could not be read.") from None
        if not isinstance(data, dict):
            raise LookupFailed("Civitai's answer could not be read.")
        return data
    raise LookupFailed("Civitai kept answering 429 (rate limited): try again later.")


def _wait(seconds: float, should_stop: ShouldStop) -> None:
    deadline = time.monotonic() + min(seconds, 300)
    while time.monotonic() < deadline:
        if should_stop():
            raise Stop
        time.sleep(0.25)
