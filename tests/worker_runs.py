"""Runs a real worker on the test's event loop until a task row has ended."""

from __future__ import annotations

import asyncio

from asgiref.sync import sync_to_async

from mmsite.models import WorkerTask
from mmsite.worker import Worker

ENDED = ("done", "failed", "cancelled")


async def run_until_ended[T: WorkerTask](model: type[T], pk: int, *, while_running=None) -> T:  # type: ignore[no-untyped-def]
    """`while_running(task)`, if given, is called (in a thread) on each look at the running task."""
    worker = Worker(poll_interval=0.05)
    running = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(45):  # generous: the PostgreSQL pass runs on a machine still busy
            while (task := await sync_to_async(model.objects.get)(pk=pk)).status not in ENDED:
                if while_running is not None:
                    await sync_to_async(while_running)(task)
                await asyncio.sleep(0.05)
    finally:
        await worker.stop()
        running.cancel()
    return task
