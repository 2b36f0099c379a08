"""Every MM_UPDATES_EVERY hours the worker asks Civitai for newer versions, quietly: the Update badges
appear without a press of Check for updates, and a check that finds nothing new says nothing."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from downloads_app.models import DownloadedFile
from models_app import services
from models_app.models import InfoTask, ModelFile
from models_app.roots import get_roots
from models_app.scanner import scan_folder
from models_app.selectors import latest_info
from tests.model_files import write_model
from tests.test_automatic_scans import the_other_worker_writes_first
from tests.test_consumers import events_and_library_page, received_fragments, with_a_worker_until
from tests.test_updates import DREAMXL_V1

pytestmark = pytest.mark.django_db


def with_dreamxl_v1(model_roots) -> None:  # type: ignore[no-untyped-def]
    """The library holds DreamXL v1.0, which Civitai info names; Civitai has v2.0 out."""
    write_model(model_roots["checkpoints"] / "dream_v1.safetensors")
    (model_roots["checkpoints"] / "dream_v1.civitai.info").write_text(json.dumps(DREAMXL_V1))
    scan_folder(get_roots())


def test_a_library_with_files_from_hugging_face_alone_is_checked_too(model_roots, settings):
    settings.MM_UPDATES_EVERY = 24
    assert services.updates_check_if_due() is None  # nothing downloaded, no Civitai info
    DownloadedFile.objects.create(
        sha256="ab" * 32,
        platform="huggingface",
        page_url="https://huggingface.co/org/repo/blob/main/style.safetensors",
        downloaded_at=timezone.now(),
    )
    check = services.updates_check_if_due()
    assert check is not None and (check.mode, check.automatic) == ("updates", True)


def ended_check(hours_ago: float, **fields) -> InfoTask:  # type: ignore[no-untyped-def]
    return InfoTask.objects.create(
        mode="updates", status="done", finished_at=timezone.now() - timedelta(hours=hours_ago), **fields
    )


def test_a_quiet_check_is_queued_when_the_last_one_ended_long_enough_ago(model_roots, settings):
    settings.MM_UPDATES_EVERY = 24
    write_model(model_roots["loras"] / "homemade.safetensors")
    scan_folder(get_roots())
    assert services.updates_check_if_due() is None  # no model with Civitai info: nothing to ask
    with_dreamxl_v1(model_roots)
    first = services.updates_check_if_due()  # never checked: now
    assert first is not None and (first.mode, first.automatic, first.status) == ("updates", True, "queued")
    assert services.updates_check_if_due() is None  # one at a time
    InfoTask.objects.filter(pk=first.pk).update(
        status="done", finished_at=timezone.now() - timedelta(hours=2)
    )
    assert services.updates_check_if_due() is None
    ended_check(hours_ago=1)  # the user's, since: the clock starts again
    InfoTask.objects.filter(pk=first.pk).update(finished_at=timezone.now() - timedelta(hours=30))
    assert services.updates_check_if_due() is None
    InfoTask.objects.filter(automatic=False).update(finished_at=timezone.now() - timedelta(hours=25))
    ended_check(
        hours_ago=0.5, model_ids=[ModelFile.objects.get(name="dream_v1").pk]
    )  # one model's, from its dialog
    assert services.updates_check_if_due() is not None  # the others are due all the same
    InfoTask.objects.filter(status="queued").delete()
    InfoTask.objects.filter(automatic=False).update(finished_at=timezone.now() - timedelta(hours=25))
    assert services.updates_check_if_due() is not None
    InfoTask.objects.all().update(status="done", finished_at=timezone.now() - timedelta(hours=48))
    settings.MM_UPDATES_EVERY = 0
    assert services.updates_check_if_due() is None


def test_two_workers_whose_checks_meet_queue_one_check(model_roots, settings, monkeypatch):
    settings.MM_UPDATES_EVERY = 24
    with_dreamxl_v1(model_roots)
    the_other_worker_writes_first(
        monkeypatch, lambda: InfoTask.objects.create(mode="updates", automatic=True)
    )
    assert services.updates_check_if_due() is None
    assert InfoTask.objects.filter(automatic=True, status="queued").count() == 1


def test_checks_asked_for_while_the_workers_own_waits_is_that_one_showing_its_progress(model_roots, settings):
    settings.MM_UPDATES_EVERY = 24
    with_dreamxl_v1(model_roots)
    automatic = services.updates_check_if_due()
    asked = services.info_start(mode="updates")
    assert asked.pk == automatic.pk and asked.automatic is False  # type: ignore[union-attr]
    assert InfoTask.objects.get().automatic is False
    assert latest_info() == asked


@pytest.mark.django_db(transaction=True)
async def test_a_check_tells_the_pages_only_of_updates_new_since_the_last_one(
    user, services_at_upstream, model_roots, settings
):
    settings.MM_UPDATES_EVERY = 24
    await sync_to_async(with_dreamxl_v1)(model_roots)
    events, library_page = await events_and_library_page(user)

    # The first check finds v2.0, new to the library: it says so, and the grid shows the badge.
    await sync_to_async(services.updates_check_if_due)()
    received = await with_a_worker_until(events, "complete_info_task")
    assert [e["type"] for e in received] == ["complete_info_task"]  # no progress of its own
    assert received[-1]["data"]["automatic"] is True and received[-1]["data"]["found"] == 1
    fragments = await received_fragments(library_page)
    assert any('href="/?updates=1">1 with an update</a>' in f for f in fragments)
    assert any("Out now: a newer version of 1 model (Updates, in the side bar)." in f for f in fragments)

    # A day later Civitai has nothing newer: the check says nothing, and the pages go on showing the first.
    await sync_to_async(InfoTask.objects.update)(finished_at=timezone.now() - timedelta(hours=25))
    quiet = await sync_to_async(services.updates_check_if_due)()
    received = await with_a_worker_until(events, "complete_info_task")
    assert [e["type"] for e in received] == ["complete_info_task"] and received[-1]["data"]["found"] == 0
    assert await received_fragments(library_page) == []
    shown = await sync_to_async(latest_info)()
    assert shown is not None and shown.pk != quiet.pk  # type: ignore[union-attr]
    for socket in (events, library_page):
        await socket.disconnect()
