"""Dates read in the machine's own time zone."""

from __future__ import annotations

from pathlib import Path

from mmsite.time_zone import machine_time_zone


def zone_link(tmp_path: Path, zone: str) -> Path:
    """An /etc/localtime that links into a zone database, as Debian's and macOS's do."""
    target = tmp_path / "usr" / "share" / "zoneinfo" / zone
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"TZif")
    link = tmp_path / "localtime"
    link.symlink_to(target)
    return link


def test_the_machines_zone_from_its_localtime_link(tmp_path):
    link = zone_link(tmp_path, "Europe/Berlin")
    assert machine_time_zone({}, link, tmp_path / "none") == "Europe/Berlin"


def test_mm_time_zone_then_tz_come_first(tmp_path):
    link = zone_link(tmp_path, "Europe/Berlin")
    assert machine_time_zone({"TZ": ":America/New_York"}, link, tmp_path / "none") == "America/New_York"
    both = {"MM_TIME_ZONE": "Asia/Tokyo", "TZ": "America/New_York"}
    assert machine_time_zone(both, link, tmp_path / "none") == "Asia/Tokyo"


def test_debians_timezone_file_then_utc(tmp_path):
    timezone_file = tmp_path / "timezone"
    timezone_file.write_text("Australia/Sydney\n")
    assert machine_time_zone({}, tmp_path / "no-link", timezone_file) == "Australia/Sydney"
    # A zone name nobody knows, a path, or nothing at all: UTC.
    timezone_file.write_text("Mars/Olympus_Mons\n")
    assert machine_time_zone({"TZ": "/etc/localtime"}, tmp_path / "no-link", timezone_file) == "UTC"
    assert machine_time_zone({}, tmp_path / "no-link", tmp_path / "none") == "UTC"
