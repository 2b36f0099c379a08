"""The time zone dates are shown in: the machine's own, as the app runs on the user's machine."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

LOCALTIME = Path("/etc/localtime")  # a link into the zone database, on Linux and macOS
TIMEZONE_FILE = Path("/etc/timezone")  # the zone's name, on Debian


def machine_time_zone(
    environ: Mapping[str, str] = os.environ,
    localtime: Path = LOCALTIME,
    timezone_file: Path = TIMEZONE_FILE,
) -> str:
    """MM_TIME_ZONE as given (Django refuses a wrong one at start); else the zone the machine keeps its
    clock in, by its IANA name (TZ, then /etc/localtime, then /etc/timezone); else UTC."""
    if environ.get("MM_TIME_ZONE"):
        return environ["MM_TIME_ZONE"]
    candidates = [environ.get("TZ", "").lstrip(":")]
    target = os.path.realpath(localtime)
    if "/zoneinfo/" in target:
        candidates.append(target.split("/zoneinfo/", 1)[1])
    with contextlib.suppress(OSError):
        candidates.append(timezone_file.read_text().strip())
    return next((name for name in candidates if _is_zone(name)), "UTC")


def _is_zone(name: str) -> bool:
    if not name or name.startswith("/") or ".." in name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True
