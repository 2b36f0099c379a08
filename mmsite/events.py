"""Events for browsers: JSON on /ws/events/ and HTMX fragments on /ws/ui/ (DESIGN.md §10).

Channel layers are not thread-safe (the in-memory one above all), so a worker thread hands its
messages to the event loop that owns the layer; request threads go through async_to_sync, which
asgiref runs on the server's own loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger("mm.events")

EVENTS_GROUP = "mm-events"
UI_GROUP = "mm-ui"

# Each app registers a function that renders its live fragments as they are now; a page whose socket
# (re)connects gets them first, so a missed progress message never leaves it stale.
STATE_RENDERERS: list[Callable[[], str]] = []


def current_state_fragments() -> str:
    return "".join(render() for render in STATE_RENDERERS)


async def publish_async(event: str, data: dict[str, Any], fragment: str = "") -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    await layer.group_send(EVENTS_GROUP, {"type": "event.message", "event": event, "data": data})
    if fragment:
        await layer.group_send(UI_GROUP, {"type": "ui.fragment", "html": fragment})


_layer_loop: asyncio.AbstractEventLoop | None = None


def bind_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Names the event loop that owns the channel layer (Daphne's, or the worker command's)."""
    global _layer_loop
    _layer_loop = loop


def run_on_layer_loop(func: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
    """Runs a layer call from synchronous code on the loop that owns the layer.

    From another thread (a worker job, a request thread) it is handed over and waited for; on the loop
    itself it is scheduled; with no loop bound (tests, management commands) asgiref runs it.
    """
    loop = _layer_loop
    if loop is not None and loop.is_running():
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.create_task(func(*args))
            return
        asyncio.run_coroutine_threadsafe(func(*args), loop).result(timeout=10)
        return
    async_to_sync(func)(*args)


def publish(event: str, data: dict[str, Any], fragment: str = "") -> None:
    """Sends an event (and its fragment) from synchronous code; a lost event never breaks the sender."""
    try:
        run_on_layer_loop(publish_async, event, data, fragment)
    except Exception:
        logger.exception("could not publish %s", event)


class Throttle:
    """At most one `ready()` a interval; `ready(force=True)` always passes (state changes, the end)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last = 0.0

    def ready(self, *, force: bool = False) -> bool:
        now = time.monotonic()
        if force or now - self.last >= self.interval:
            self.last = now
            return True
        return False
