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
# Every page hears the toasts; the fragments of a live topic ("scan", "downloads", …) go only to the
# pages that show it, so a page never receives rows it has no place for.
UI_GROUP = "mm-ui"

# Each app registers, per topic, a function that renders its live fragments as they are now; a page
# whose socket (re)connects gets them first, so a missed progress message never leaves it stale.
STATE_RENDERERS: dict[str, list[Callable[[], str]]] = {}


def ui_topic_group(topic: str) -> str:
    return f"{UI_GROUP}.{topic}"


def add_state_renderer(topic: str, render: Callable[[], str]) -> None:
    STATE_RENDERERS.setdefault(topic, []).append(render)


def live_topics(asked: str | None) -> list[str]:
    """The known topics among those a page asks for (comma-separated); every topic when it asks none."""
    if asked is None:
        return list(STATE_RENDERERS)
    return [topic for topic in asked.split(",") if topic in STATE_RENDERERS]


def current_state_fragments(topics: list[str]) -> str:
    return "".join(render() for topic in topics for render in STATE_RENDERERS[topic])


async def publish_async(
    event: str, data: dict[str, Any], fragment: str = "", *, topic: str = "", toast: str = ""
) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    await layer.group_send(EVENTS_GROUP, {"type": "event.message", "event": event, "data": data})
    if fragment:
        group = ui_topic_group(topic) if topic else UI_GROUP
        await layer.group_send(group, {"type": "ui.fragment", "html": fragment})
    if toast:
        await layer.group_send(UI_GROUP, {"type": "ui.fragment", "html": toast})


_layer_loop: asyncio.AbstractEventLoop | None = None


def bind_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Names the event loop that owns the channel layer (Daphne's, or the worker command's)."""
    global _layer_loop
    _layer_loop = loop


def run_on_layer_loop(func: Callable[..., Coroutine[Any, Any, Any]], *args: Any, **kwargs: Any) -> None:
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
            loop.create_task(func(*args, **kwargs))
            return
        asyncio.run_coroutine_threadsafe(func(*args, **kwargs), loop).result(timeout=10)
        return
    async_to_sync(func)(*args, **kwargs)


def publish(
    event: str, data: dict[str, Any], fragment: str = "", *, topic: str = "", toast: str = ""
) -> None:
    """Sends an event (its fragment to the pages showing `topic`, its toast to every page) from
    synchronous code; a lost event never breaks the sender."""
    try:
        run_on_layer_loop(publish_async, event, data, fragment, topic=topic, toast=toast)
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
