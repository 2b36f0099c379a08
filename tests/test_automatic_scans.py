"""The worker scans the changed files again every MM_SCAN_EVERY minutes, quietly: what other tools put in
the model folders shows up without a press of Scan, and a scan that finds nothing says nothing."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction
from django.utils import timezone

from models_app.models import InfoTask, ScanTask
from models_app.roots import get_roots
from models_app.scanner import scan_folder
from models_app.services import scan_if_due, scan_start
from tests.model_files import write_model
from tests.test_consumers import events_and_library_page, received_fragments, with_a_worker_until


def ended(minutes_ago: float, **fields) -> ScanTask:  # type: ignore[no-untyped-def]
    return ScanTask.objects.create(
        status="done", finished_at=timezone.now() - timedelta(minutes=minutes_ago), **fields
    )


def test_a_quiet_diff_scan_is_queued_once_the_last_scan_ended_long_enough_ago(db, settings):
    settings.MM_SCAN_EVERY = 15
    assert scan_if_due() is None  # the first scan is serve's or the user's
    last = ended(minutes_ago=5)
    assert scan_if_due() is None
    ScanTask.objects.filter(pk=last.pk).update(finished_at=timezone.now() - timedelta(minutes=16))
    queued = scan_if_due()
    assert queued is not None and (queued.automatic, queued.mode, queued.status) == (True, "diff", "queued")
    assert scan_if_due() is None  # one at a time
    ScanTask.objects.filter(pk=queued.pk).update(
        status="done", finished_at=timezone.now() - timedelta(hours=1)
    )
    settings.MM_SCAN_EVERY = 0
    assert scan_if_due() is None


def the_other_worker_writes_first(monkeypatch, write) -> None:  # type: ignore[no-untyped-def]
    """Both workers' checks saw nothing running; the other one's `write` lands between this one's look
    and its own write (its first `transaction.atomic()`)."""
    real_atomic = transaction.atomic

    @contextlib.contextmanager
    def race():  # type: ignore[no-untyped-def]
        monkeypatch.setattr(transaction, "atomic", real_atomic)
        write()
        with real_atomic():
            yield

    def atomic(*args, **kwargs):  # type: ignore[no-untyped-def]
        return race() if not (args or kwargs) else real_atomic(*args, **kwargs)  # the ORM's own pass by

    monkeypatch.setattr(transaction, "atomic", atomic)


def test_two_workers_whose_checks_meet_queue_one_automatic_scan(db, settings, monkeypatch):
    settings.MM_SCAN_EVERY = 15
    ended(minutes_ago=20)
    the_other_worker_writes_first(monkeypatch, lambda: ScanTask.objects.create(automatic=True))
    assert scan_if_due() is None  # it found the other one's
    assert ScanTask.objects.filter(automatic=True, status="queued").count() == 1


def test_automatic_scans_older_than_a_day_are_forgotten_but_not_the_last_one(db, settings):
    settings.MM_SCAN_EVERY = 15
    old_automatic = ended(minutes_ago=3 * 24 * 60, automatic=True)
    old_by_the_user = ended(minutes_ago=3 * 24 * 60 - 1)
    last = ended(minutes_ago=2 * 24 * 60, automatic=True)
    assert scan_if_due() is not None
    assert set(ScanTask.objects.filter(automatic=False).values_list("pk", flat=True)) == {old_by_the_user.pk}
    assert not ScanTask.objects.filter(pk=old_automatic.pk).exists()
    assert ScanTask.objects.filter(pk=last.pk).exists()


def test_a_scan_asked_for_while_an_automatic_one_waits_is_that_one_showing_its_progress(db):
    automatic, _ = scan_start(automatic=True)
    asked, created = scan_start()
    assert (asked.pk, created, asked.automatic) == (automatic.pk, False, False)
    assert ScanTask.objects.get(pk=automatic.pk).automatic is False


@pytest.mark.django_db(transaction=True)
async def test_an_automatic_scan_tells_the_pages_only_what_changed(user, library):
    await sync_to_async(scan_folder)(get_roots())
    events, library_page = await events_and_library_page(user)

    await sync_to_async(scan_start)(automatic=True)
    received = await with_a_worker_until(events, "complete_scan_task")
    assert [e["type"] for e in received] == ["complete_scan_task"]  # no progress of its own
    assert received[-1]["data"]["automatic"] is True and received[-1]["data"]["added"] == 0
    fragments = await received_fragments(library_page)
    assert len(fragments) == 1 and "Scanned just now: nothing changed" in fragments[0]
    assert 'hx-trigger="load"' not in fragments[0]  # the grid is not read again, and no toast
    # Nothing new to hash: models whose hash failed once are not tried again every interval.
    assert not await sync_to_async(InfoTask.objects.exists)()

    write_model(library["loras"] / "copied_in.safetensors")  # another tool puts a LoRA there
    await sync_to_async(scan_start)(automatic=True)
    received = await with_a_worker_until(events, "complete_scan_task")
    assert received[-1]["data"]["added"] == 1
    assert await sync_to_async(InfoTask.objects.filter(mode="hash").exists)()  # the new LoRA gets its SHA256
    fragments = await received_fragments(library_page)
    assert any('id="scan-progress"' in f and 'hx-trigger="load"' in f for f in fragments)  # the grid reloads
    assert any('class="toast info"' in f and "The model folders changed: 1 new." in f for f in fragments)
    for socket in (events, library_page):
        await socket.disconnect()
