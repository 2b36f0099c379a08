from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.utils import timezone

from mmsite.worker import Worker, claim_rows, release_dead_local_rows
from models_app.models import ModelFile, ScanTask

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_row_is_claimed_by_one_worker_only(db):
    tasks = [ScanTask.objects.create() for _ in range(6)]
    results: dict[str, list[int]] = {}
    barrier = threading.Barrier(3)

    def claim(owner: str) -> None:
        barrier.wait()
        try:
            results[owner] = claim_rows(ScanTask, owner, 6)
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=claim, args=(f"h:{i}:x",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3  # no thread died on a locked database
    claimed = [pk for pks in results.values() for pk in pks]
    assert sorted(claimed) == sorted(t.pk for t in tasks)  # each exactly once
    for owner, pks in results.items():
        assert set(ScanTask.objects.filter(pk__in=pks).values_list("owner", flat=True)) <= {owner}


def test_rows_of_a_worker_that_stopped_heartbeating_are_taken_over(db):
    stale = ScanTask.objects.create(
        status="running", owner="other:1:a", heartbeat_at=timezone.now() - timedelta(seconds=31)
    )
    alive = ScanTask.objects.create(status="running", owner="other:2:b", heartbeat_at=timezone.now())
    assert claim_rows(ScanTask, "me:3:c", 5) == [stale.pk]
    assert ScanTask.objects.get(pk=alive.pk).owner == "other:2:b"


def test_rows_of_a_dead_process_on_this_host_are_requeued_at_once(db):
    dead = ScanTask.objects.create(status="running", owner="host:999999:a", heartbeat_at=timezone.now())
    other_host = ScanTask.objects.create(status="running", owner="far:999999:a", heartbeat_at=timezone.now())
    assert release_dead_local_rows(ScanTask, "host:1:me") == 1
    assert ScanTask.objects.get(pk=dead.pk).status == "queued"
    assert ScanTask.objects.get(pk=other_host.pk).status == "running"


async def wait_for_status(pk: int, statuses: set[str], timeout: float = 10) -> ScanTask:
    async with asyncio.timeout(timeout):
        while True:
            task = await sync_to_async(ScanTask.objects.get)(pk=pk)
            if task.status in statuses:
                return task
            await asyncio.sleep(0.05)


@pytest.fixture
def slow_scan(monkeypatch) -> threading.Event:
    """Each model takes 0.3 s to scan; the event is set once the first one starts."""
    import models_app.scanner as scanner

    started = threading.Event()
    real = scanner.Scanner._scan_one

    def slow_scan_one(self, found, known):
        started.set()
        threading.Event().wait(0.3)
        return real(self, found, known)

    monkeypatch.setattr(scanner.Scanner, "_scan_one", slow_scan_one)
    return started


async def test_a_cancel_request_on_the_row_stops_the_scan(library, slow_scan):
    started = slow_scan
    task = await sync_to_async(ScanTask.objects.create)(mode="full")
    worker = Worker(poll_interval=0.05)
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.to_thread(started.wait, 5)
        await sync_to_async(ScanTask.objects.filter(pk=task.pk).update)(requested="cancel")
        task = await wait_for_status(task.pk, {"cancelled", "done"})
    finally:
        await worker.stop()
        running.cancel()
    assert task.status == "cancelled"
    assert task.processed < 5


async def test_the_stop_button_stops_a_running_scan_which_keeps_what_it_read(library, slow_scan, logged_in):
    task = await sync_to_async(ScanTask.objects.create)(mode="full")
    worker = Worker(poll_interval=0.05)
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.to_thread(slow_scan.wait, 5)
        await asyncio.sleep(0.4)  # one model read
        response = await sync_to_async(logged_in.post)(f"/library/scan/{task.pk}/stop/")
        assert "Stopping…" in response.content.decode()
        task = await wait_for_status(task.pk, {"cancelled", "done"})
    finally:
        await worker.stop()
        running.cancel()
    assert task.status == "cancelled"
    assert 1 <= await sync_to_async(ModelFile.objects.count)() < 5


async def test_stopping_the_worker_puts_a_running_scan_back_in_the_queue(library, slow_scan):
    started = slow_scan
    task = await sync_to_async(ScanTask.objects.create)(mode="full")
    worker = Worker(poll_interval=0.05)
    running = asyncio.create_task(worker.run())
    await asyncio.to_thread(started.wait, 5)
    await worker.stop()
    running.cancel()
    task = await sync_to_async(ScanTask.objects.get)(pk=task.pk)
    assert (task.status, task.owner) == ("queued", "")


async def test_a_starting_worker_moves_rows_to_their_folders_new_index_before_any_task(
    library, settings, tmp_path
):
    """A download waiting in the queue must resume into its folder, not the one that took its index."""
    from models_app.roots import get_roots
    from models_app.scanner import scan_folder

    await sync_to_async(scan_folder)(get_roots())
    (tmp_path / "in_front").mkdir()
    settings.MM_MODEL_ROOTS = f"loras={tmp_path / 'in_front'};" + settings.MM_MODEL_ROOTS
    lora_indexes = sync_to_async(
        lambda: set(ModelFile.objects.filter(folder_type="loras").values_list("path_index", flat=True))
    )
    worker = Worker(poll_interval=0.05)
    running = asyncio.create_task(worker.run())
    try:
        for _ in range(100):
            if await lora_indexes() == {1}:
                break
            await asyncio.sleep(0.05)
    finally:
        await worker.stop()
        running.cancel()
    assert await lora_indexes() == {1}
    assert not await sync_to_async(ScanTask.objects.exists)()
