"""SHA256 in the background, and Civitai info fetched by hash (against the fake Civitai)."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from asgiref.sync import sync_to_async

from downloads_app.services import api_key_set
from models_app import services
from models_app.hashing import autov2, file_sha256
from models_app.info import info_toast, render_info_progress
from models_app.models import HashCache, InfoTask, ModelFile
from models_app.roots import get_roots
from models_app.scanner import scan_folder
from tests.conftest import free_port
from tests.worker_runs import run_until_ended

pytestmark = pytest.mark.django_db(transaction=True)


def test_file_sha256_matches_hashlib_and_reports_progress(tmp_path):
    path = tmp_path / "m.bin"
    path.write_bytes(b"x" * (9 << 20))
    seen = []
    assert file_sha256(path, on_progress=seen.append) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert seen == [8 << 20, 9 << 20]
    assert autov2("21437ec26670e230b067") == "21437EC266"


async def run_until_done(pk: int) -> InfoTask:
    return await run_until_ended(InfoTask, pk)


async def test_models_without_a_hash_are_hashed_once_and_the_cache_outlives_a_full_rescan(library):
    await sync_to_async(scan_folder)(get_roots())
    lacking = await sync_to_async(ModelFile.objects.filter(sha256="").count)()
    assert lacking == 4  # poses has its hash in .civitai.info
    task = await sync_to_async(services.info_start)(mode="hash")
    done = await run_until_done(task.pk)
    assert (done.status, done.hashed, done.processed) == ("done", 4, 4)
    alpha = await sync_to_async(ModelFile.objects.get)(name="alpha_xl")
    assert (
        alpha.sha256
        == hashlib.sha256((library["checkpoints"] / "alpha_xl.safetensors").read_bytes()).hexdigest()
    )
    assert await sync_to_async(HashCache.objects.count)() == 4
    await sync_to_async(scan_folder)(get_roots(), full=True)  # the cache, not a new read, gives the hash back
    assert (await sync_to_async(ModelFile.objects.get)(name="alpha_xl")).sha256 == alpha.sha256
    again = await run_until_done((await sync_to_async(services.info_start)(mode="hash")).pk)
    assert (again.total, again.hashed) == (0, 0)


async def test_a_file_deleted_before_it_is_hashed_is_no_failure_and_the_next_scan_forgets_it(library):
    await sync_to_async(scan_folder)(get_roots())
    (library["checkpoints"] / "beta_xl.safetensors").unlink()
    done = await run_until_done((await sync_to_async(services.info_start)(mode="hash")).pk)
    assert (done.status, done.hashed, done.gone, done.failed) == ("done", 3, 1, 0)
    toast = info_toast(done)
    assert "error" not in toast and "1 no longer on disk (a scan updates the library)" in toast
    assert "3 hashed, 1 no longer on disk" in render_info_progress(done, finished=True)
    await sync_to_async(scan_folder)(get_roots())
    assert not await sync_to_async(ModelFile.objects.filter(name="beta_xl").exists)()


async def test_a_model_replaced_by_a_pipe_since_the_scan_fails_alone_and_does_not_hold_up_hashing(
    library, fails_if_blocked
):
    await sync_to_async(scan_folder)(get_roots())
    beta = library["checkpoints"] / "beta_xl.safetensors"
    beta.unlink()
    os.mkfifo(beta)  # opened for reading, a pipe waits for a writer
    with pytest.raises(OSError, match="not a regular file"):
        file_sha256(beta)
    done = await run_until_done((await sync_to_async(services.info_start)(mode="hash")).pk)
    assert (done.status, done.hashed, done.failed) == ("done", 3, 1)
    assert done.error == "checkpoints/beta_xl.safetensors: not a regular file"


async def test_fetch_info_for_a_model_deleted_since_the_scan_leaves_no_stray_sidecar(
    services_at_upstream, model_roots
):
    up = services_at_upstream
    model = model_roots["loras"] / "soon_gone.safetensors"
    model.write_bytes(up.files["storybook"].path.read_bytes())
    model.with_suffix(".sha256").write_text(up.files["storybook"].sha256)  # the hash needs no reading
    await sync_to_async(scan_folder)(get_roots())
    model.unlink()
    done = await run_until_done((await sync_to_async(services.info_start)(mode="fetch")).pk)
    assert (done.status, done.found, done.gone, done.failed) == ("done", 0, 1, 0)
    assert sorted(p.name for p in model_roots["loras"].iterdir()) == ["soon_gone.sha256"]


async def test_fetch_info_writes_civitai_info_and_a_preview_and_remembers_404(
    services_at_upstream, model_roots
):
    up = services_at_upstream
    known = model_roots["loras"] / "found_on_civitai.safetensors"
    known.write_bytes(up.files["storybook"].path.read_bytes())
    unknown = model_roots["loras"] / "homemade.safetensors"
    unknown.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + b"\0" * 64)
    await sync_to_async(scan_folder)(get_roots())
    up.by_hash_statuses = [429]
    task = await sync_to_async(services.info_start)(mode="fetch")
    done = await run_until_done(task.pk)
    assert (done.status, done.found, done.missing, done.hashed) == ("done", 1, 1, 2), done.error
    info = json.loads((model_roots["loras"] / "found_on_civitai.civitai.info").read_text())
    assert info["modelId"] == 1231067
    assert (model_roots["loras"] / "found_on_civitai.webp").exists()
    model = await sync_to_async(ModelFile.objects.get)(name="found_on_civitai")
    assert (model.civitai_model_id, model.preview, model.base_model) == (
        1231067,
        "found_on_civitai.webp",
        info["baseModel"],
    )
    homemade = await sync_to_async(ModelFile.objects.get)(name="homemade")
    assert homemade.civitai_missing
    lookups = [r for r in up.requests if "/by-hash/" in r.path]
    assert lookups[0].status == 429 and sorted(r.status for r in lookups) == [
        200,
        404,
        429,
    ]  # waited, then asked again
    # "All models without info" does not ask about homemade again; asking for it on purpose does.
    again = await run_until_done((await sync_to_async(services.info_start)(mode="fetch")).pk)
    assert again.total == 0
    explicit = await run_until_done(
        (await sync_to_async(services.info_start)(mode="fetch", model_ids=[homemade.pk])).pk
    )
    assert (explicit.total, explicit.missing) == (1, 1)


async def test_fetch_info_completes_info_that_names_the_civitai_model_but_not_the_version(
    services_at_upstream, model_roots
):
    up = services_at_upstream
    model = model_roots["loras"] / "storybook.safetensors"
    model.write_bytes(up.files["storybook"].path.read_bytes())
    model.with_suffix(".metadata.json").write_text('{"civitai": {"modelId": 1231067}}')  # no version id
    await sync_to_async(scan_folder)(get_roots())
    done = await run_until_done((await sync_to_async(services.info_start)(mode="fetch")).pk)
    assert (done.status, done.found) == ("done", 1), done.error
    row = await sync_to_async(ModelFile.objects.get)(name="storybook")
    version = json.loads(model.with_suffix(".civitai.info").read_text())["id"]
    assert (row.civitai_model_id, row.civitai_version_id) == (1231067, version)
    again = await run_until_done((await sync_to_async(services.info_start)(mode="fetch")).pk)
    assert again.total == 0  # complete now: not asked about again


def test_fetch_api_queues_a_job(logged_in, scanned):
    response = logged_in.post(
        "/model-manager/model-info/fetch",
        {"models": [{"type": "loras", "pathIndex": 0, "fullname": "poses.safetensors"}]},
        content_type="application/json",
    )
    assert response.status_code == 202
    task = InfoTask.objects.get()
    assert (task.mode, task.model_ids) == ("fetch", [ModelFile.objects.get(name="poses").pk])
    assert (
        logged_in.post(
            "/model-manager/model-info/fetch", {"models": "all"}, content_type="application/json"
        ).status_code
        == 202
    )
    bad = logged_in.post(
        "/model-manager/model-info/fetch",
        {"models": [{"type": "loras", "pathIndex": 0, "fullname": "nope.safetensors"}]},
        content_type="application/json",
    )
    assert bad.status_code == 404


async def test_hashing_taken_up_again_after_a_restart_counts_what_is_left(library):
    await sync_to_async(scan_folder)(get_roots())
    # Stopped by a restart after hashing 14 models of another run: queued again with its counts.
    task = await sync_to_async(InfoTask.objects.create)(mode="hash", processed=14, hashed=14, total=16)
    done = await run_until_done(task.pk)
    assert (done.status, done.total, done.processed, done.hashed) == ("done", 4, 4, 4)


async def test_fetch_info_without_a_connection_to_civitai_fails_at_once_and_says_why(library, settings):
    settings.MM_CIVITAI_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    await sync_to_async(scan_folder)(get_roots())
    done = await run_until_done((await sync_to_async(services.info_start)(mode="fetch")).pk)
    assert (done.status, done.processed) == ("failed", 0)
    assert "cannot be reached: no connection" in done.error
    assert "hashes and the info found so far are kept" in done.error
    # It stopped at the first model, rather than wait for each of the others in turn; its hash is kept.
    assert await sync_to_async(ModelFile.objects.filter(sha256="").count)() == 3
    toast = info_toast(done)
    assert "error" in toast and "Fetch Civitai info failed" in toast and "no connection" in toast
    assert "failed: 127.0.0.1" in render_info_progress(done, finished=True)


async def test_fetch_info_with_a_refused_civitai_key_fails_and_points_to_settings(
    services_at_upstream, library
):
    await sync_to_async(api_key_set)(service="civitai", value="civitai-revoked-key")
    await sync_to_async(scan_folder)(get_roots())
    done = await run_until_done((await sync_to_async(services.info_start)(mode="fetch")).pk)
    assert done.status == "failed"
    assert done.error.startswith("Your Civitai key was refused: check it in Settings.")
    lookups = [r for r in services_at_upstream.requests if "/by-hash/" in r.path]
    assert [r.status for r in lookups] == [401]


async def test_fetch_info_counts_a_model_civitai_could_not_answer_and_lists_why(
    services_at_upstream, model_roots
):
    up = services_at_upstream
    (model_roots["loras"] / "found_on_civitai.safetensors").write_bytes(
        up.files["storybook"].path.read_bytes()
    )
    (model_roots["loras"] / "homemade.safetensors").write_bytes(
        b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + b"\0" * 64
    )
    await sync_to_async(scan_folder)(get_roots())
    up.by_hash_statuses = [500]  # the first lookup, whichever model it is for
    done = await run_until_done((await sync_to_async(services.info_start)(mode="fetch")).pk)
    assert (done.status, done.processed, done.failed, done.found + done.missing) == ("done", 2, 1, 1)
    (line,) = done.failures
    assert line.startswith("loras/") and line.endswith(": Civitai answered HTTP 500.")
    toast = info_toast(done)
    assert "error" in toast and "1 failed" in toast and "HTTP 500" in toast
    progress = render_info_progress(done, finished=True)
    assert "1 failed</summary>" in progress and "Civitai answered HTTP 500." in progress
    # The model that failed is asked about again by the next "all models without info".
    again = await run_until_done((await sync_to_async(services.info_start)(mode="fetch")).pk)
    assert (again.total, again.failed) == (1, 0)
