"""The background worker: claims task rows and runs them in threads (DESIGN.md §2).

The database is the queue. A channel message only wakes the worker early; it also polls, so a lost
wake-up costs at most one poll interval. A row is claimed with one conditional UPDATE (or
`select_for_update(skip_locked=True)` where the database has it), so two workers never run the same
task. A running worker heartbeats its rows; rows whose worker stopped heartbeating are taken over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from mmsite import events
from mmsite.models import TaskStatus, WorkerTask

logger = logging.getLogger("mm.worker")

WAKE_CHANNEL = "mm-worker"
REQUEST_CHECK_INTERVAL = 0.5


def heartbeat_timeout() -> timedelta:
    """How long a running row may go without a heartbeat before another worker takes it over."""
    return timedelta(seconds=settings.MM_HEARTBEAT_TIMEOUT)


class TaskContext:
    """What a running job may ask of its worker besides its own work: whether to stop."""

    def __init__(self, task: WorkerTask, worker: Worker) -> None:
        self.task = task
        self.worker = worker
        self._checked_at = 0.0
        self._requested = ""

    def requested(self) -> str:
        """'' to go on, else 'pause', 'cancel' or 'shutdown'. Reads the row at most every 0.5 s."""
        if self.worker.stopping:
            return "shutdown"
        now = time.monotonic()
        if now - self._checked_at >= REQUEST_CHECK_INTERVAL:
            self._checked_at = now
            row = type(self.task).objects.filter(pk=self.task.pk).values_list("requested", "owner").first()
            if row is None:
                self._requested = "cancel"  # the row was deleted
            else:
                requested, owner = row
                # Another worker took the row over (we looked dead to it): stop without touching it.
                self._requested = requested if owner == self.worker.owner else "shutdown"
        return self._requested


@dataclass(frozen=True)
class JobKind:
    """A kind of task row the worker runs: `run` does the work and leaves the row in a final state.
    When `run` breaks instead, the worker marks the row failed and hands it to `announce_failure`, so
    the pages showing it running hear that it ended."""

    name: str
    model: type[WorkerTask]
    run: Callable[[Any, TaskContext], None]
    capacity: Callable[[], int]
    announce_failure: Callable[[Any], None] | None = None


JOB_KINDS: dict[str, JobKind] = {}
# Housekeeping each worker runs now and then (emptying old trash): (function, interval in seconds).
PERIODIC: list[tuple[Callable[[], object], float]] = []
# What each worker runs as it starts, before it takes any task (moving rows to their folder's new index).
AT_START: list[Callable[[], object]] = []


def register_job_kind(kind: JobKind) -> None:
    JOB_KINDS[kind.name] = kind


def wake_workers() -> None:
    """Tells a worker that there is new work, without waiting for its next poll."""
    layer = get_channel_layer()
    if layer is None:
        return
    with contextlib.suppress(ChannelFull):  # plenty of wake-ups are already waiting
        events.run_on_layer_loop(layer.send, WAKE_CHANNEL, {"type": "wake"})


def claim_rows(model: type[WorkerTask], owner: str, limit: int) -> list[int]:
    """Claims up to `limit` queued rows (or rows of a dead worker) for `owner`; returns their ids."""
    if limit <= 0:
        return []
    now = timezone.now()
    claimable = model.objects.filter(status=TaskStatus.QUEUED) | model.objects.filter(
        status=TaskStatus.RUNNING, heartbeat_at__lt=now - heartbeat_timeout()
    )
    claimable = claimable.order_by(*model.claim_order)
    claimed: list[int] = []
    if connection.features.has_select_for_update_skip_locked:
        with transaction.atomic():
            pks = list(claimable.select_for_update(skip_locked=True).values_list("pk", flat=True)[:limit])
            model.objects.filter(pk__in=pks).update(
                status=TaskStatus.RUNNING, owner=owner, heartbeat_at=now, requested=""
            )
            return pks
    for pk, status, heartbeat_at in claimable.values_list("pk", "status", "heartbeat_at")[: limit * 2]:
        won = model.objects.filter(pk=pk, status=status, heartbeat_at=heartbeat_at).update(
            status=TaskStatus.RUNNING, owner=owner, heartbeat_at=now, requested=""
        )
        if won:
            claimed.append(pk)
            if len(claimed) == limit:
                break
    return claimed


def release_dead_local_rows(model: type[WorkerTask], owner: str) -> int:
    """Requeues rows whose owner was a process of this host that is gone (a restart after a crash),
    so they resume at once instead of after the heartbeat timeout."""
    host, pid, _ = owner.split(":")
    released = 0
    for pk, row_owner in model.objects.filter(
        status=TaskStatus.RUNNING, owner__startswith=host + ":"
    ).values_list("pk", "owner"):
        row_host, row_pid, _ = [*row_owner.split(":"), "", ""][:3]
        if row_host != host or row_owner == owner or not row_pid.isdigit():
            continue
        if int(row_pid) != int(pid) and _process_alive(int(row_pid)):
            continue
        released += model.objects.filter(pk=pk, owner=row_owner, status=TaskStatus.RUNNING).update(
            status=TaskStatus.QUEUED, owner=""
        )
    return released


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_owner_prefix() -> str:
    """How the owner of every row this process runs begins: its workers', and the `download` command's."""
    return f"{socket.gethostname()}:{os.getpid()}:"


class Worker:
    def __init__(self, *, poll_interval: float = 1.0, max_threads: int = 16) -> None:
        self.owner = process_owner_prefix() + secrets.token_hex(3)
        self.poll_interval = poll_interval
        self.executor = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="mm-job")
        self.running: dict[tuple[str, int], asyncio.Task[None]] = {}
        self.stopping = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        events.bind_loop(self.loop)
        for func in AT_START:
            await self._run_logged(func)
        helpers = [asyncio.create_task(self._listen()), asyncio.create_task(self._heartbeat())]
        helpers += [asyncio.create_task(self._every(func, interval)) for func, interval in PERIODIC]
        await self._in_thread(self._release_dead_local)
        logger.info("worker %s started (%s)", self.owner, ", ".join(JOB_KINDS))
        try:
            while not self.stopping:
                await self._fill()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
                self._wake.clear()
        finally:
            for helper in helpers:
                helper.cancel()

    async def stop(self) -> None:
        """Asks running jobs to stop at their next tick (they requeue themselves) and waits for them."""
        self.stopping = True
        self._wake.set()
        if self.running:
            await asyncio.wait(list(self.running.values()), timeout=10)
        self.executor.shutdown(wait=False, cancel_futures=True)

    def wake(self) -> None:
        self._wake.set()

    async def _in_thread(self, func: Callable[..., Any], *args: Any) -> Any:
        def call() -> Any:
            try:
                return func(*args)
            finally:
                close_old_connections()

        assert self.loop is not None
        return await self.loop.run_in_executor(self.executor, call)

    def _release_dead_local(self) -> None:
        for kind in JOB_KINDS.values():
            if released := release_dead_local_rows(kind.model, self.owner):
                logger.info("requeued %d %s task(s) of a stopped worker", released, kind.name)

    async def _fill(self) -> None:
        for kind in JOB_KINDS.values():
            busy = sum(1 for name, _ in self.running if name == kind.name)
            try:
                pks = await self._in_thread(claim_rows, kind.model, self.owner, kind.capacity() - busy)
            except Exception:
                logger.exception("could not claim %s tasks", kind.name)
                continue
            for pk in pks:
                self.running[(kind.name, pk)] = asyncio.create_task(self._run(kind, pk))

    async def _run(self, kind: JobKind, pk: int) -> None:
        try:
            await self._in_thread(self._run_in_thread, kind, pk)
        finally:
            self.running.pop((kind.name, pk), None)
            self._wake.set()

    def _run_in_thread(self, kind: JobKind, pk: int) -> None:
        task = kind.model.objects.filter(pk=pk, owner=self.owner).first()
        if task is None:
            return
        # One line per start and end, so an operator (and the scale-out test) can tell which worker ran
        # what even after the row has moved on.
        logger.info("%s task %s started", kind.name, pk)
        try:
            kind.run(task, TaskContext(task, self))
            status = kind.model.objects.filter(pk=pk).values_list("status", flat=True).first() or "deleted"
            logger.info("%s task %s ended: %s", kind.name, pk, status)
        except Exception as exc:
            logger.exception("%s task %s failed", kind.name, pk)
            failed = kind.model.objects.filter(pk=pk, owner=self.owner).update(
                status=TaskStatus.FAILED, error=f"Unexpected error: {exc}"[:2000], finished_at=timezone.now()
            )
            if failed and kind.announce_failure is not None:
                try:
                    kind.announce_failure(kind.model.objects.get(pk=pk))
                except Exception:
                    logger.exception("could not announce the failure of %s task %s", kind.name, pk)

    async def _listen(self) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        while True:
            try:
                await layer.receive(WAKE_CHANNEL)
                self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("worker lost its channel layer; polling only for 5 s", exc_info=True)
                await asyncio.sleep(5)

    async def _run_logged(self, func: Callable[[], object]) -> None:
        """Runs housekeeping whose failure is logged and never stops the worker."""
        try:
            await self._in_thread(func)
        except Exception:
            logger.exception("%s failed", getattr(func, "__name__", func))

    async def _every(self, func: Callable[[], object], interval: float) -> None:
        while True:
            await self._run_logged(func)
            await asyncio.sleep(interval)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(settings.MM_HEARTBEAT_TIMEOUT / 4)
            try:
                await self._in_thread(self._beat)
            except Exception:
                logger.warning("heartbeat failed", exc_info=True)

    def _beat(self) -> None:
        now = timezone.now()
        for kind in JOB_KINDS.values():
            pks = [pk for name, pk in self.running if name == kind.name]
            if pks:
                kind.model.objects.filter(pk__in=pks, owner=self.owner).update(heartbeat_at=now)
