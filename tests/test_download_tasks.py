"""Download tasks end to end: service → worker → engine → fake upstream → files on disk and events."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
from types import SimpleNamespace

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from downloads_app import selectors, services
from downloads_app.models import DownloadedFile, DownloadTask
from downloads_app.tasks import WorkerDownloadContext, download_task_run
from mmsite.events import EVENTS_GROUP
from mmsite.worker import Worker, process_owner_prefix
from models_app.models import ModelFile, ScanTask
from models_app.roots import get_roots
from models_app.scanner import scan_folder
from tests.upstream import Fault

pytestmark = pytest.mark.django_db(transaction=True)


def queue(url, *, folder_type=None, sub_folder="", filename=None, version=None, **extras):
    resolution = selectors.resolution_get(url)
    chosen = resolution.version(version)
    remote = resolution.file(chosen)
    destination = services.check_destination(
        folder_type=folder_type or resolution.folder_type,
        path_index=0,
        sub_folder=sub_folder,
        filename=filename or remote.name,
    )
    return services.download_create(
        resolution=resolution, version=chosen, remote=remote, destination=destination, **extras
    )


async def wait_for(pk, statuses, timeout=15):
    async with asyncio.timeout(timeout):
        while True:
            task = await sync_to_async(DownloadTask.objects.filter(pk=pk).first)()
            if task is None or task.status in statuses:
                return task
            await asyncio.sleep(0.05)


async def wait_for_scan(timeout=15):
    async with asyncio.timeout(timeout):
        while True:
            scan = await sync_to_async(ScanTask.objects.first)()
            if scan is not None and scan.status in {"done", "failed"}:
                return scan
            await asyncio.sleep(0.05)


class Running:
    """A worker on this test's loop, listening like a browser on /ws/events/."""

    async def __aenter__(self):
        self.worker = Worker(poll_interval=0.05)
        self.task = asyncio.create_task(self.worker.run())
        self.layer = get_channel_layer()
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(EVENTS_GROUP, self.channel)
        return self

    async def events(self):
        found = []
        while True:
            try:
                async with asyncio.timeout(0.1):
                    found.append(await self.layer.receive(self.channel))
            except TimeoutError:
                return found

    async def __aexit__(self, *exc):
        await self.worker.stop()
        self.task.cancel()


async def test_a_civitai_download_lands_with_its_sidecars_and_in_the_library(
    services_at_upstream, model_roots
):
    up = services_at_upstream
    task = await sync_to_async(queue)(f"{up.civitai_url}/models/1231067", sub_folder="styles")
    async with Running() as running:
        done = await wait_for(task.pk, {"done", "failed"})
        await asyncio.sleep(0.3)
        events = await running.events()
    assert done.status == "done", done.error
    stored = up.files["storybook"]
    target = model_roots["loras"] / "styles" / stored.name
    assert target.read_bytes() == stored.path.read_bytes()
    assert done.sha256 == stored.sha256
    base = target.with_suffix("")
    info = json.loads((base.parent / (base.name + ".civitai.info")).read_text())
    assert info["modelId"] == 1231067 and info["model"]["type"] == "LORA"
    assert (base.parent / (base.name + ".webp")).exists()  # the first image, as .webp
    assert (base.parent / (base.name + ".md")).exists()
    assert not list(model_roots["loras"].rglob("*.part"))
    names = [e["event"] for e in events]
    assert "update_download_task" in names and names.count("complete_download_task") == 1
    complete = next(e for e in events if e["event"] == "complete_download_task")["data"]
    assert (complete["status"], complete["progress"], complete["fullname"]) == (
        "done",
        100,
        f"styles/{stored.name}",
    )
    # Done, it is in the library with what its sidecars say, and the library pages were told, without
    # a scan of the whole library.
    model = await sync_to_async(ModelFile.objects.get)(name=stored.name.rsplit(".", 1)[0])
    assert (model.civitai_model_id, model.preview) == (1231067, base.name + ".webp")
    assert model.sha256 == stored.sha256  # from the download: the file is not read again to hash it
    changed = next(e for e in events if e["event"] == "library_changed")["data"]
    assert changed == {"type": "loras", "pathIndex": 0, "path": f"styles/{stored.name}"}
    assert names.index("library_changed") < names.index("complete_download_task")
    assert not await sync_to_async(ScanTask.objects.exists)()


async def test_a_preview_that_cannot_be_fetched_leaves_a_notice_not_a_failure(
    services_at_upstream, model_roots
):
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        unreachable = f"http://127.0.0.1:{closed.getsockname()[1]}/preview.jpeg"
    task = await sync_to_async(queue)(f"{services_at_upstream.civitai_url}/models/1231067")
    await sync_to_async(DownloadTask.objects.filter(pk=task.pk).update)(preview_url=unreachable)
    async with Running():
        done = await wait_for(task.pk, {"done", "failed"})
    assert done.status == "done", done.error
    assert done.notice == (
        "No preview was saved. The image could not be fetched: "
        "no connection (check the address and this machine's network)."
    )
    assert not list(model_roots["loras"].rglob("*.webp"))


async def test_pause_keeps_the_part_and_resume_finishes_from_it(services_at_upstream, model_roots):
    up = services_at_upstream
    up.faults["dreamxl-v2-fp16"] = Fault(throttle=150_000)
    task = await sync_to_async(queue)(f"{up.civitai_url}/models/4201")
    async with Running():
        async with asyncio.timeout(10):
            while (await sync_to_async(DownloadTask.objects.get)(pk=task.pk)).downloaded_size < 40_000:
                await asyncio.sleep(0.05)
        await sync_to_async(services.download_pause)(
            task=await sync_to_async(DownloadTask.objects.get)(pk=task.pk)
        )
        paused = await wait_for(task.pk, {"paused"})
        part = model_roots["checkpoints"] / "dreamxl_v2_fp16.safetensors.part"
        assert part.exists() and 0 < part.stat().st_size < up.files["dreamxl-v2-fp16"].size
        assert not (model_roots["checkpoints"] / "dreamxl_v2_fp16.safetensors").exists()
        assert paused.validator
        up.faults.clear()
        await sync_to_async(services.download_resume)(task=paused)
        done = await wait_for(task.pk, {"done", "failed"})
    assert done.status == "done", done.error
    assert (model_roots["checkpoints"] / "dreamxl_v2_fp16.safetensors").read_bytes() == up.files[
        "dreamxl-v2-fp16"
    ].path.read_bytes()
    assert up.storage_requests("dreamxl-v2-fp16")[-1].headers.get("Range", "").startswith("bytes=")
    assert up.full_body_requests("dreamxl-v2-fp16") == 1


@pytest.fixture
def speed_limited():
    """The limit the worker read stays in its process for two seconds: the next test must not inherit it."""
    yield
    services.speed_limit.forget()


async def test_the_speed_limit_of_the_settings_holds_a_running_download_until_it_is_lifted(
    services_at_upstream, model_roots, speed_limited
):
    up = services_at_upstream
    size = up.files["dreamxl-v2-fp16"].size
    slowest = services.SPEED_LIMIT_RANGE[0]  # 0.01 MB/s
    assert size / slowest > 15
    await sync_to_async(services.speed_limit_set)(bytes_per_second=slowest)
    task = await sync_to_async(queue)(f"{up.civitai_url}/models/4201")
    async with Running():
        async with asyncio.timeout(10):
            while (await sync_to_async(DownloadTask.objects.get)(pk=task.pk)).downloaded_size == 0:
                await asyncio.sleep(0.05)
        await asyncio.sleep(1)
        held = await sync_to_async(DownloadTask.objects.get)(pk=task.pk)
        assert held.status == "running" and held.downloaded_size < size // 2
        await sync_to_async(services.speed_limit_set)(bytes_per_second=0)
        done = await wait_for(task.pk, {"done", "failed"}, timeout=3)  # at once, not after what was booked
    assert done.status == "done", done.error
    assert (model_roots["checkpoints"] / "dreamxl_v2_fp16.safetensors").read_bytes() == up.files[
        "dreamxl-v2-fp16"
    ].path.read_bytes()


class WorkerView:
    """What a worker's TaskContext tells a download: who runs it, and what its row asks for."""

    worker = SimpleNamespace(owner="worker-1")

    def __init__(self, requested):
        self.requested = requested


def test_a_download_resumed_while_it_was_pausing_goes_back_in_the_queue(services_at_upstream, model_roots):
    up = services_at_upstream
    up.faults["dreamxl-v2-fp16"] = Fault(throttle=150_000)
    task = queue(f"{up.civitai_url}/models/4201")
    # Pause all, then Resume all: the row asks for nothing any more, but the worker had read "pause".
    DownloadTask.objects.filter(pk=task.pk).update(status="running", owner="worker-1", requested="")
    task.refresh_from_db()
    download_task_run(task, WorkerDownloadContext(WorkerView(lambda: "pause")))
    task.refresh_from_db()
    assert (task.status, task.requested, task.owner) == ("queued", "", "")

    DownloadTask.objects.filter(pk=task.pk).update(status="running", owner="worker-1", requested="pause")
    task.refresh_from_db()
    download_task_run(task, WorkerDownloadContext(WorkerView(lambda: "pause")))
    task.refresh_from_db()
    assert task.status == "paused"  # still asked to pause: it does


def test_a_download_going_on_after_a_dropped_connection_no_longer_says_it_is_retrying(
    services_at_upstream, model_roots
):
    up = services_at_upstream
    size = up.files["dreamxl-v2-fp16"].size
    up.faults["dreamxl-v2-fp16"] = Fault(drop_after=size // 4, throttle=size * 2)  # half a second a file
    task = queue(f"{up.civitai_url}/models/4201")
    DownloadTask.objects.filter(pk=task.pk).update(status="running", owner="worker-1")
    task.refresh_from_db()
    rows = DownloadTask.objects.filter(pk=task.pk)
    seen = []  # what the Downloads page would show, looked at each time the download asks whether to stop

    def look() -> str:
        seen.append(rows.values_list("downloaded_size", "notice").get())
        return ""

    download_task_run(task, WorkerDownloadContext(WorkerView(look)))
    task.refresh_from_db()
    assert task.status == "done", task.error
    assert any("retrying in" in notice for _, notice in seen)  # the drop was told
    later = [notice for done, notice in seen if done >= size * 3 // 4]
    assert later and all(notice == "" for notice in later), later


@pytest.mark.parametrize("asked", ["cancel", "delete"])
def test_a_download_cancelled_or_deleted_while_it_was_pausing_is_so_not_paused(
    services_at_upstream, model_roots, asked
):
    up = services_at_upstream
    up.faults["dreamxl-v2-fp16"] = Fault(throttle=150_000)
    task = queue(f"{up.civitai_url}/models/4201")
    part = model_roots["checkpoints"] / "dreamxl_v2_fp16.safetensors.part"
    # The worker read "pause"; the user cancelled (or deleted) it before the worker wrote "paused".
    DownloadTask.objects.filter(pk=task.pk).update(status="running", owner="worker-1", requested=asked)
    task.refresh_from_db()
    pause_once_begun = WorkerView(lambda: "pause" if part.exists() else "")
    download_task_run(task, WorkerDownloadContext(pause_once_begun))
    assert not part.exists()
    if asked == "delete":
        assert not DownloadTask.objects.filter(pk=task.pk).exists()
    else:
        task.refresh_from_db()
        assert (task.status, task.requested, task.downloaded_size) == ("cancelled", "", 0)


def test_a_download_stopped_with_the_server_while_it_waits_to_retry_is_queued_without_the_retry_notice(
    services_at_upstream, model_roots
):
    up = services_at_upstream
    up.faults["dreamxl-v2-fp16"] = Fault(statuses=[503] * 5)
    task = queue(f"{up.civitai_url}/models/4201")
    DownloadTask.objects.filter(pk=task.pk).update(status="running", owner="worker-1")
    task.refresh_from_db()
    retry_notice = DownloadTask.objects.filter(pk=task.pk).exclude(notice="")
    shutdown_during_a_retry = WorkerView(lambda: "shutdown" if retry_notice.exists() else "")
    download_task_run(task, WorkerDownloadContext(shutdown_during_a_retry))
    task.refresh_from_db()
    assert (task.status, task.owner, task.notice) == ("queued", "", "")


async def test_cancel_deletes_the_part_and_delete_removes_the_task(services_at_upstream, model_roots):
    up = services_at_upstream
    up.faults["dreamxl-v2-fp16"] = Fault(throttle=100_000)
    task = await sync_to_async(queue)(f"{up.civitai_url}/models/4201")
    part = model_roots["checkpoints"] / "dreamxl_v2_fp16.safetensors.part"
    async with Running() as running:
        async with asyncio.timeout(10):
            while not part.exists():
                await asyncio.sleep(0.05)
        await sync_to_async(services.download_cancel)(
            task=await sync_to_async(DownloadTask.objects.get)(pk=task.pk)
        )
        cancelled = await wait_for(task.pk, {"cancelled"})
        assert not part.exists()
        assert cancelled.downloaded_size == 0
        await sync_to_async(services.download_delete)(task=cancelled)
        await asyncio.sleep(0.2)
        events = await running.events()
    assert not await sync_to_async(DownloadTask.objects.filter(pk=task.pk).exists)()
    assert events[-1]["event"] == "delete_download_task"


async def test_deleting_a_running_task_stops_it_and_removes_everything(services_at_upstream, model_roots):
    up = services_at_upstream
    up.faults["dreamxl-v2-fp16"] = Fault(throttle=100_000)
    task = await sync_to_async(queue)(f"{up.civitai_url}/models/4201")
    part = model_roots["checkpoints"] / "dreamxl_v2_fp16.safetensors.part"
    async with Running():
        async with asyncio.timeout(10):
            while not part.exists():
                await asyncio.sleep(0.05)
        await sync_to_async(services.download_delete)(
            task=await sync_to_async(DownloadTask.objects.get)(pk=task.pk)
        )
        assert await wait_for(task.pk, set()) is None
    assert not part.exists()


@pytest.mark.parametrize(
    ("model_id", "key", "message"),
    [
        (5001, "", "This model needs a Civitai API key: add one in Settings"),
        (5001, "wrong-key", "Your Civitai key was refused"),
        (5002, "", "Early Access on Civitai until 2030-01-15"),
        (5003, "", "archived on Civitai"),
        (5005, "", "disabled downloads"),
    ],
)
async def test_refusals_fail_at_once_with_their_own_message(services_at_upstream, model_id, key, message):
    up = services_at_upstream
    if key:
        await sync_to_async(services.api_key_set)(service="civitai", value=key)
    task = await sync_to_async(queue)(f"{up.civitai_url}/models/{model_id}", folder_type="loras")
    async with Running() as running:
        failed = await wait_for(task.pk, {"failed", "done"})
        await asyncio.sleep(0.1)
        events = await running.events()
    assert failed.status == "failed"
    assert message in failed.error
    assert any(e["event"] == "error_download_task" and message in e["data"]["error"] for e in events)


async def test_a_key_unlocks_a_members_only_model(services_at_upstream, model_roots):
    up = services_at_upstream
    await sync_to_async(services.api_key_set)(service="civitai", value="civitai-good-key")
    task = await sync_to_async(queue)(f"{up.civitai_url}/models/5001", folder_type="loras")
    async with Running():
        done = await wait_for(task.pk, {"failed", "done"})
    assert done.status == "done", done.error
    hub = [r for r in up.requests if r.host == "civitai" and "/api/download/" in r.path]
    assert hub[-1].headers["Authorization"] == "Bearer civitai-good-key"
    assert all("Authorization" not in r.headers for r in up.requests if r.host == "storage")


async def test_a_gated_hugging_face_file_needs_a_token(services_at_upstream, model_roots):
    up = services_at_upstream
    with pytest.raises(Exception, match="add a Hugging Face token in Settings"):
        await sync_to_async(queue)(f"{up.hf_url}/gated-org/gated-model", folder_type="checkpoints")
    await sync_to_async(services.api_key_set)(service="huggingface", value="hf_good_token")
    task = await sync_to_async(queue)(f"{up.hf_url}/gated-org/gated-model", folder_type="checkpoints")
    async with Running():
        done = await wait_for(task.pk, {"failed", "done"})
    assert done.status == "done", done.error
    assert done.sha256 == up.files["hf-gated"].sha256


async def test_a_full_disk_pauses_with_a_message(services_at_upstream, model_roots, monkeypatch):
    up = services_at_upstream
    import downloads_app.tasks as tasks
    from downloads_app.engine import Engine

    monkeypatch.setattr(tasks, "new_engine", lambda: Engine(disk_free=lambda path: 10_000))
    task = await sync_to_async(queue)(f"{up.civitai_url}/models/4201")
    async with Running():
        paused = await wait_for(task.pk, {"paused", "failed", "done"})
    assert paused.status == "paused"
    assert paused.error.startswith("The disk is full")
    assert up.full_body_requests("dreamxl-v2-fp16") <= 1  # no loop of retries


async def test_a_hash_mismatch_fails_and_keeps_nothing(services_at_upstream, model_roots):
    up = services_at_upstream
    task = await sync_to_async(queue)(f"{up.civitai_url}/models/4201")
    up.replace_content("dreamxl-v2-fp16", b"tampered" * 1000)
    async with Running():
        failed = await wait_for(task.pk, {"failed", "done"})
    assert failed.status == "failed"
    assert "SHA256" in failed.error
    assert list(model_roots["checkpoints"].iterdir()) == []


async def test_the_concurrency_limit_queues_the_rest(services_at_upstream, model_roots, settings):
    up = services_at_upstream
    settings.MM_DOWNLOAD_CONCURRENCY = 2
    for key in up.files:
        up.faults[key] = Fault(throttle=200_000)
    urls = [f"{up.civitai_url}/models/{i}" for i in (4201, 1231067, 5004)]
    tasks_ = [await sync_to_async(queue)(url, folder_type="checkpoints") for url in urls]
    async with Running():
        running_counts = []
        async with asyncio.timeout(20):
            while True:
                statuses = await sync_to_async(list)(DownloadTask.objects.values_list("status", flat=True))
                running_counts.append(statuses.count("running"))
                if all(s == "done" for s in statuses):
                    break
                await asyncio.sleep(0.05)
    assert max(running_counts) == 2
    assert len(tasks_) == 3


async def test_download_next_starts_a_queued_download_before_the_older_ones(
    services_at_upstream, model_roots, settings
):
    up = services_at_upstream
    settings.MM_DOWNLOAD_CONCURRENCY = 1
    urls = [f"{up.civitai_url}/models/{i}" for i in (4201, 1231067, 5004)]
    first, second, last = [await sync_to_async(queue)(url, folder_type="checkpoints") for url in urls]
    await sync_to_async(services.download_next)(task=second)
    bumped = await sync_to_async(services.download_next)(task=last)  # next is one task: the last asked
    assert bumped.priority == 1
    await sync_to_async(second.refresh_from_db)()
    assert second.priority == 0
    async with Running():
        for task in (first, second, last):
            done = await wait_for(task.pk, {"done", "failed"}, timeout=20)
            assert done.status == "done", done.error
    started = await sync_to_async(list)(
        DownloadTask.objects.order_by("started_at").values_list("pk", "priority")
    )
    assert started == [(last.pk, 0), (first.pk, 0), (second.pk, 0)]  # once started, no longer next


def test_a_task_resumes_by_itself_after_a_restart_and_paused_ones_stay(services_at_upstream, db):
    from mmsite.worker import release_dead_local_rows

    up = services_at_upstream
    running = queue(f"{up.civitai_url}/models/4201")
    paused = queue(f"{up.civitai_url}/models/1231067", folder_type="loras")
    import socket

    DownloadTask.objects.filter(pk=running.pk).update(
        status="running", owner=f"{socket.gethostname()}:999999:old"
    )
    DownloadTask.objects.filter(pk=paused.pk).update(status="paused")
    assert release_dead_local_rows(DownloadTask, f"{socket.gethostname()}:1:new") == 1
    assert DownloadTask.objects.get(pk=running.pk).status == "queued"
    assert DownloadTask.objects.get(pk=paused.pk).status == "paused"


async def test_a_download_into_a_drive_no_longer_mounted_fails_and_writes_nothing(
    services_at_upstream, model_roots, settings
):
    up = services_at_upstream
    nas = model_roots["loras"].parent.parent / "nas"  # a mount point
    (nas / "models" / "loras").mkdir(parents=True)
    settings.MM_MODEL_ROOTS = f"loras={nas / 'models' / 'loras'}"
    task = await sync_to_async(queue)(f"{up.civitai_url}/models/1231067")
    assert (task.folder_type, task.path_index) == ("loras", 0)
    shutil.rmtree(nas / "models")  # the drive is unmounted before the worker gets to it
    async with Running():
        failed = await wait_for(task.pk, {"failed", "done"})
    assert failed.status == "failed"
    assert failed.error == (
        f"{nas / 'models' / 'loras'} is not there, nor the folder it goes in: is its drive mounted? "
        "Resume the download once it is."
    )
    assert list(nas.iterdir()) == []  # no folders made on the disk under the mount point


async def test_a_task_whose_file_name_leads_out_of_its_folder_fails_and_writes_nothing(
    services_at_upstream, model_roots
):
    # The app refuses such a name; a task's row changed behind its back (in the database) is checked again.
    task = await sync_to_async(queue)(f"{services_at_upstream.civitai_url}/models/1231067")
    await sync_to_async(DownloadTask.objects.filter(pk=task.pk).update)(filename="../escaped.safetensors")
    async with Running():
        failed = await wait_for(task.pk, {"failed", "done"})
    assert (failed.status, failed.error) == (
        "failed",
        "The target lies outside its model folder: '../escaped.safetensors' is not a plain file name.",
    )
    root = model_roots["loras"]
    assert not any(root.parent.rglob("escaped.safetensors*")) and list(root.iterdir()) == []


async def test_a_new_model_that_cannot_be_read_at_once_is_left_to_a_scan(
    services_at_upstream, model_roots, monkeypatch
):
    from downloads_app import tasks

    def unreadable(*args):
        raise OSError("the share went away")

    monkeypatch.setattr(tasks, "read_new_model", unreadable)
    task = await sync_to_async(queue)(f"{services_at_upstream.civitai_url}/models/1231067")
    async with Running():
        done = await wait_for(task.pk, {"done", "failed"})
        scanned = await wait_for_scan()
    assert (done.status, done.error) == ("done", "")  # the file is there: the download did not fail
    assert scanned.status == "done" and scanned.added == 1


async def test_a_download_that_breaks_unexpectedly_tells_the_pages_showing_it(
    services_at_upstream, model_roots, monkeypatch
):
    from downloads_app import tasks

    def broken(task, ctx):
        raise RuntimeError("a bug")

    monkeypatch.setattr(tasks, "download_task_run", broken)
    task = await sync_to_async(queue)(f"{services_at_upstream.civitai_url}/models/1231067")
    async with Running() as running:
        failed = await wait_for(task.pk, {"failed", "done"})
        await asyncio.sleep(0.2)
        events = await running.events()
    assert (failed.status, failed.error) == ("failed", "Unexpected error: a bug")
    assert any(
        e["event"] == "error_download_task"
        and e["data"]["status"] == "failed"
        and e["data"]["error"] == "Unexpected error: a bug"
        for e in events
    )


def test_a_process_takes_the_share_of_the_speed_limit_that_its_running_downloads_are(db, speed_limited):
    services.speed_limit_set(bytes_per_second=3_000_000)

    def running(owner: str) -> None:
        DownloadTask.objects.create(platform="direct", source_url="https://x.test/a", download_url="https://x.test/a",
                                    folder_type="loras", filename=f"{owner}.safetensors", status="running", owner=owner)  # fmt: skip

    running(process_owner_prefix() + "a1b2c3")
    assert services.speed_limit() == 3_000_000  # alone: the whole limit
    running("other-host:4242:d4e5f6")
    running("other-host:4243:cli")
    services.speed_limit.forget()
    assert services.speed_limit() == 1_000_000  # one of the three running downloads
    DownloadTask.objects.filter(owner="other-host:4243:cli").update(
        notice="the connection closed — retrying in 8 s"
    )
    services.speed_limit.forget()
    assert services.speed_limit() == 1_500_000  # the one waiting to retry takes no bytes meanwhile
    services.speed_limit_set(bytes_per_second=0)
    assert services.speed_limit() == 0


async def test_where_a_file_was_downloaded_from_outlives_the_task_and_a_move(
    services_at_upstream, model_roots, client, django_user_model
):
    up = services_at_upstream
    link = f"{up.hf_url}/demo-org/demo-models/resolve/main/flux1-schnell-fp8.safetensors"
    task = await sync_to_async(queue)(link, folder_type="checkpoints")
    async with Running():
        done = await wait_for(task.pk, {"done", "failed"})
    assert done.status == "done", done.error
    user = await sync_to_async(django_user_model.objects.create_user)("someone", password="x-long-passphrase")
    await sync_to_async(client.force_login)(user)

    def dialog_of(relative_path: str) -> str:
        return client.get(
            f"/model/checkpoints/0/{relative_path}", headers={"HX-Request": "true"}
        ).content.decode()

    page = f"{up.hf_url}/demo-org/demo-models/blob/main/flux1-schnell-fp8.safetensors"
    said = f'<dt>Downloaded</dt><dd><a href="{page}" target="_blank" rel="noopener noreferrer" class="break">Hugging Face · demo-org/demo-models ↗</a>'
    assert said in await sync_to_async(dialog_of)("flux1-schnell-fp8.safetensors")

    # The finished download cleared, and the file moved by hand: the library still knows where it came from.
    await sync_to_async(services.downloads_clear_finished)()
    (model_roots["checkpoints"] / "flux").mkdir()
    (model_roots["checkpoints"] / "flux1-schnell-fp8.safetensors").rename(
        model_roots["checkpoints"] / "flux" / "schnell.safetensors"
    )
    await sync_to_async(scan_folder)(get_roots())
    assert said in await sync_to_async(dialog_of)("flux/schnell.safetensors")
    answer = await sync_to_async(client.get)("/model-manager/model/checkpoints/0/flux/schnell.safetensors")
    source = answer.json()["data"]["downloadedFrom"]
    assert (source["platform"], source["url"], source["title"]) == (
        "huggingface",
        page,
        "demo-org/demo-models",
    )


def test_the_page_of_what_a_task_downloads(settings):
    settings.MM_CIVITAI_URL = "https://civitai.com"
    civitai = DownloadTask(
        platform="civitai", source_url="https://civitai.com/api/download/models/42",
        download_url="https://civitai.com/api/download/models/42?type=Model", info={"id": 42, "modelId": 7},
    )  # fmt: skip
    assert services.download_page(civitai) == "https://civitai.com/models/7?modelVersionId=42"
    civitai.info = {}  # its info not kept: the link given
    assert services.download_page(civitai) == "https://civitai.com/api/download/models/42"
    hub = DownloadTask(
        platform="huggingface", source_url="https://huggingface.co/org/repo",
        download_url="https://huggingface.co/org/repo/resolve/v1.0/unet/model%20one.safetensors",
    )  # fmt: skip
    assert (
        services.download_page(hub)
        == "https://huggingface.co/org/repo/blob/v1.0/unet/model%20one.safetensors"
    )
    direct = DownloadTask(
        platform="direct",
        source_url="https://example.com/x.safetensors",
        download_url="https://cdn.example.com/x",
    )
    assert services.download_page(direct) == "https://example.com/x.safetensors"


def test_where_a_file_came_from_in_a_few_words():
    civitai = DownloadedFile(platform="civitai", title="Storybook", version_name="v1.0")
    assert civitai.label == "Civitai · Storybook · v1.0"
    hub = DownloadedFile(
        platform="huggingface", title="org/repo", version_name="main"
    )  # a revision, not a version
    assert hub.label == "Hugging Face · org/repo"
