from __future__ import annotations

import asyncio
import re

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from mmsite.asgi import application
from mmsite.worker import Worker
from models_app.models import ScanTask
from models_app.services import scan_start

pytestmark = pytest.mark.django_db(transaction=True)


def session_headers(user) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    return [(b"cookie", cookie.encode()), (b"origin", b"http://localhost")]


async def receive_until(communicator, event_type: str, timeout: float = 10) -> list[dict]:
    events = []
    async with asyncio.timeout(timeout):
        while True:
            event = await communicator.receive_json_from(timeout=timeout)
            events.append(event)
            if event["type"] == event_type:
                return events


async def test_an_anonymous_socket_is_refused(db):
    for path in ("/ws/events/", "/ws/ui/"):
        communicator = WebsocketCommunicator(application, path, headers=[(b"origin", b"http://localhost")])
        connected, _ = await communicator.connect()
        assert connected is False


async def test_a_socket_from_another_origin_is_refused(user):
    headers = [h for h in await sync_to_async(session_headers)(user) if h[0] != b"origin"]
    communicator = WebsocketCommunicator(
        application, "/ws/events/", headers=[*headers, (b"origin", b"http://evil.test")]
    )
    connected, _ = await communicator.connect()
    assert connected is False


async def test_a_socket_over_https_is_logged_in_by_the_https_session_cookie(user):
    from mmsite.cookies import SECURE_PREFIX

    headers = await sync_to_async(session_headers)(user)
    renamed = [(k, SECURE_PREFIX.encode() + v if k == b"cookie" else v) for k, v in headers]
    communicator = WebsocketCommunicator(application, "/ws/events/", headers=renamed)
    assert (await communicator.connect())[0]
    await communicator.disconnect()


async def with_a_worker_until(communicator, event_type: str) -> list[dict]:
    """Runs a worker until `communicator` (a /ws/events/ socket) hears `event_type`; the events heard."""
    worker = Worker(poll_interval=0.1)
    running = asyncio.create_task(worker.run())
    try:
        return await receive_until(communicator, event_type)
    finally:
        await worker.stop()
        running.cancel()


async def events_and_library_page(user) -> tuple[WebsocketCommunicator, WebsocketCommunicator]:
    """A /ws/events/ socket, and a library page's /ws/ui/ socket past the state it gets on connect."""
    headers = await sync_to_async(session_headers)(user)
    events = WebsocketCommunicator(application, "/ws/events/", headers=headers)
    library_page = WebsocketCommunicator(application, "/ws/ui/?live=scan,info", headers=headers)
    for socket in (events, library_page):
        assert (await socket.connect())[0]
    await library_page.receive_from()
    return events, library_page


async def received_fragments(communicator) -> list[str]:
    fragments = []
    while not await communicator.receive_nothing(timeout=0.2):
        fragments.append(await communicator.receive_from())
    return fragments


async def test_scan_events_reach_the_events_socket_and_fragments_the_ui_socket(user, library):
    headers = await sync_to_async(session_headers)(user)
    events = WebsocketCommunicator(application, "/ws/events/", headers=headers)
    library_page = WebsocketCommunicator(application, "/ws/ui/?live=scan,info", headers=headers)
    downloads_page = WebsocketCommunicator(application, "/ws/ui/?live=downloads", headers=headers)
    for socket in (events, library_page, downloads_page):
        assert (await socket.connect())[0]
    first = await library_page.receive_from()
    assert first.startswith('<div id="scan-progress"')  # the current state, sent on connect
    assert '<div id="info-progress"' in first
    state = await downloads_page.receive_from()  # no download: the line that sums them up, empty
    assert re.fullmatch(r'\s*<p id="downloads-summary" [^>]*hx-swap-oob="true"></p>\s*', state)

    task, _ = await sync_to_async(scan_start)(mode="full")
    received = await with_a_worker_until(events, "complete_scan_task")
    updates = [e for e in received if e["type"] == "update_scan_task"]
    assert updates and all(e["data"]["taskId"] == task.pk for e in updates)
    done = received[-1]["data"]
    assert (done["status"], done["total"], done["added"], done["progress"]) == ("done", 5, 5, 100)

    fragments = await received_fragments(library_page)
    assert any('id="scan-progress"' in f and "<progress" in f for f in fragments)
    assert any('id="scan-progress"' in f and 'hx-trigger="load"' in f for f in fragments)  # the grid reloads
    toast = '<div hx-swap-oob="beforeend:#toasts"><div class="toast success" role="status">Scan finished: 5 models, 5 new.'
    assert sum(f.startswith(toast) for f in fragments) == 1
    # The downloads page has no place for the scan's progress (htmx would log an error for each):
    # it hears only the toast.
    elsewhere = await received_fragments(downloads_page)
    assert len(elsewhere) == 1 and elsewhere[0].startswith(toast)
    for socket in (events, library_page, downloads_page):
        await socket.disconnect()
    assert (await sync_to_async(ScanTask.objects.get)(pk=task.pk)).status == "done"


async def test_a_scan_that_breaks_tells_the_pages_showing_it_running(user, library, monkeypatch):
    from models_app import tasks

    def broken_scan(*args, **kwargs):
        raise RuntimeError("the disk went away")

    monkeypatch.setattr(tasks, "scan_folder", broken_scan)
    events, library_page = await events_and_library_page(user)
    await sync_to_async(scan_start)(mode="diff")
    received = await with_a_worker_until(events, "complete_scan_task")
    assert (received[-1]["data"]["status"], received[-1]["data"]["error"]) == (
        "failed",
        "Unexpected error: the disk went away",
    )
    fragments = await received_fragments(library_page)
    assert any("Last scan failed: Unexpected error: the disk went away" in f for f in fragments)
    assert any(
        'class="toast error"' in f and "Scan failed: Unexpected error: the disk went away" in f
        for f in fragments
    )
    for socket in (events, library_page):
        await socket.disconnect()


async def test_a_reconnecting_page_gets_every_unfinished_download_at_once(user, db):
    from downloads_app.models import DownloadTask

    running = await sync_to_async(DownloadTask.objects.create)(
        platform="civitai", source_url="https://civitai.com/models/1", download_url="https://civitai.com/api/download/models/2",
        folder_type="loras", filename="half.safetensors", status="running", downloaded_size=300, total_size=1000,
    )  # fmt: skip
    await sync_to_async(DownloadTask.objects.create)(
        platform="civitai", source_url="https://civitai.com/models/1", download_url="https://civitai.com/api/download/models/3",
        folder_type="loras", filename="old.safetensors", status="done",
    )  # fmt: skip
    headers = await sync_to_async(session_headers)(user)
    ui = WebsocketCommunicator(application, "/ws/ui/?live=downloads", headers=headers)
    assert (await ui.connect())[0]
    state = await ui.receive_from()
    assert f'id="download-task-{running.pk}"' in state
    assert '<progress max="100" value="30"' in state
    assert "old.safetensors" not in state
    assert "scan-progress" not in state
    assert re.search(r'<p id="downloads-summary" [^>]*>\s*1 running\s*— 700\xa0bytes to go\s*</p>', state)
    await ui.disconnect()
    # A page with no live part (Settings) gets no state, and an unknown topic is ignored.
    quiet = WebsocketCommunicator(application, "/ws/ui/?live=nonsense", headers=headers)
    assert (await quiet.connect())[0]
    assert await quiet.receive_nothing(timeout=0.3)
    await quiet.disconnect()


async def test_a_page_that_connects_a_moment_after_a_civitai_job_ended_still_hears_how_it_went(user):
    """The event of its end went out before this socket was open (a page loaded, a socket reconnected)."""
    from datetime import timedelta

    from django.utils import timezone

    from models_app.models import InfoTask

    headers = await sync_to_async(session_headers)(user)

    async def first_state() -> str:
        page = WebsocketCommunicator(application, "/ws/ui/?live=info", headers=headers)
        assert (await page.connect())[0]
        state = await page.receive_from()
        await page.disconnect()
        return state

    ended = await sync_to_async(InfoTask.objects.create)(
        mode="updates", status="done", total=1, processed=1, found=1, finished_at=timezone.now()
    )
    state = await first_state()
    assert "Check for updates done:" in state and "1 with an update</a>" in state
    assert 'hx-trigger="load' not in state  # the grid was read again when it ended, not once more per page
    await sync_to_async(InfoTask.objects.filter(pk=ended.pk).update)(
        finished_at=timezone.now() - timedelta(minutes=2)
    )
    assert "done:" not in await first_state()


async def test_each_download_event_brings_the_line_that_sums_them_up(user):
    from downloads_app.events import publish_task
    from downloads_app.models import DownloadTask

    task = await sync_to_async(DownloadTask.objects.create)(
        platform="direct", source_url="https://x.test/a", download_url="https://x.test/a",
        folder_type="loras", filename="a.safetensors", status="running", downloaded_size=10, total_size=110, bps=50,
    )  # fmt: skip
    headers = await sync_to_async(session_headers)(user)
    ui = WebsocketCommunicator(application, "/ws/ui/?live=downloads", headers=headers)
    assert (await ui.connect())[0]
    await ui.receive_from()  # the state on connect
    await sync_to_async(publish_task)(task, "update_download_task")
    fragment = await ui.receive_from()
    assert f'id="download-task-{task.pk}"' in fragment
    assert re.search(r"1 running\s*— 100\xa0bytes to go at 50\xa0bytes/s, about 2 s", fragment)
    await ui.disconnect()
