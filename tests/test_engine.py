"""Every case of DESIGN.md §9 that the engine owns, against the fake upstream over real sockets."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from downloads_app.engine import (
    DiskFull,
    DownloadJob,
    Engine,
    FileClash,
    HashMismatch,
    HttpError,
    RateLimited,
    ResumeState,
    SpeedLimit,
    Stopped,
    TransientError,
    filename_from_disposition,
)
from tests.upstream import Fault

KEY = "civitai-good-key"


def civitai_job(upstream, tmp_path, version_id=42012, *, key=None, name="model.safetensors", expected=True):
    stored = upstream.versions[version_id][1].files[0][0]
    return DownloadJob(
        url=f"{upstream.civitai_url}/api/download/models/{version_id}",
        dest_dir=tmp_path / "loras",
        filename=name,
        expected_sha256=stored.sha256 if expected else "",
        auth={upstream.civitai_url: f"Bearer {key}"} if key else {},
    ), stored


def fast_engine(**kwargs):
    return Engine(
        backoff_start=0.01, backoff_cap=0.05, stall_timeout=kwargs.pop("stall_timeout", 5), **kwargs
    )


def stop_after(limit):
    """should_stop that asks to pause once `limit` bytes have arrived."""
    seen = {"done": 0}

    def on_progress(done, total):
        seen["done"] = done

    return on_progress, lambda: "pause" if seen["done"] >= limit else ""


def test_it_downloads_into_the_final_name_only_after_the_check(upstream, tmp_path):
    job, stored = civitai_job(upstream, tmp_path)
    result = fast_engine().download(job)
    assert result.path == tmp_path / "loras" / "model.safetensors"
    assert result.path.read_bytes() == stored.path.read_bytes()
    assert result.sha256 == stored.sha256
    assert not job.part_path.exists()
    assert job.state.validator == stored.etag


def test_a_stopped_download_leaves_only_the_part(upstream, tmp_path):
    job, stored = civitai_job(upstream, tmp_path)
    upstream.faults[stored.key] = Fault(throttle=400_000)
    on_progress, should_stop = stop_after(50_000)
    with pytest.raises(Stopped):
        fast_engine().download(job, on_progress=on_progress, should_stop=should_stop)
    assert not job.final_path.exists()
    assert 50_000 <= job.part_path.stat().st_size < stored.size
    assert stored.path.read_bytes().startswith(job.part_path.read_bytes())


def test_resume_sends_range_and_if_range_and_appends(upstream, tmp_path):
    job, stored = civitai_job(upstream, tmp_path)
    upstream.faults[stored.key] = Fault(throttle=400_000)
    on_progress, should_stop = stop_after(60_000)
    with pytest.raises(Stopped):
        fast_engine().download(job, on_progress=on_progress, should_stop=should_stop)
    offset = job.part_path.stat().st_size
    upstream.faults.clear()
    result = fast_engine().download(job)
    assert result.path.read_bytes() == stored.path.read_bytes()
    last = upstream.storage_requests(stored.key)[-1]
    assert last.headers["Range"] == f"bytes={offset}-"
    assert last.headers["If-Range"] == stored.etag
    assert last.status == 206
    assert upstream.full_body_requests(stored.key) == 1  # the first, and only, full body


def test_a_changed_file_restarts_from_zero_and_never_splices(upstream, tmp_path):
    job, stored = civitai_job(upstream, tmp_path, expected=False)
    upstream.faults[stored.key] = Fault(throttle=400_000)
    on_progress, should_stop = stop_after(60_000)
    with pytest.raises(Stopped):
        fast_engine().download(job, on_progress=on_progress, should_stop=should_stop)
    upstream.faults.clear()
    new_content = b"\x07" * 150_000
    upstream.replace_content(stored.key, new_content)
    result = fast_engine().download(job)
    assert result.path.read_bytes() == new_content
    assert upstream.storage_requests(stored.key)[-1].status == 200  # If-Range failed: the whole new file


def test_a_changed_file_with_an_announced_hash_fails_and_keeps_nothing(upstream, tmp_path):
    job, stored = civitai_job(upstream, tmp_path)
    upstream.replace_content(stored.key, b"\x01" * 1000)  # the API still announced the old hash
    with pytest.raises(HashMismatch, match="Nothing was kept"):
        fast_engine().download(job)
    assert not job.final_path.exists()
    assert not job.part_path.exists()


def test_416_on_a_complete_part_verifies_and_finishes(upstream, tmp_path):
    job, stored = civitai_job(upstream, tmp_path)
    job.dest_dir.mkdir(parents=True)
    job.part_path.write_bytes(stored.path.read_bytes())
    job.state = ResumeState(validator=stored.etag, total=stored.size)
    result = fast_engine().download(job)
    assert upstream.storage_requests(stored.key)[-1].status == 416
    assert result.sha256 == stored.sha256
    assert result.path.read_bytes() == stored.path.read_bytes()


def test_the_validator_is_reported_before_the_first_byte_lands(upstream, tmp_path):
    # A worker killed after its first write must find the validator saved, or it restarts from zero.
    job, _ = civitai_job(upstream, tmp_path)
    first = []

    def on_progress(done, total):
        if not first:
            part_size = job.part_path.stat().st_size if job.part_path.exists() else 0
            first.append((done, total, job.state.validator, part_size))

    fast_engine().download(job, on_progress=on_progress)
    done, total, validator, part_size = first[0]
    assert (done, part_size) == (0, 0)
    assert validator and total == job.state.total


def test_a_part_without_a_validator_is_not_trusted(upstream, tmp_path):
    job, stored = civitai_job(upstream, tmp_path)
    job.dest_dir.mkdir(parents=True)
    job.part_path.write_bytes(b"garbage from who knows where")
    result = fast_engine().download(job)
    assert result.path.read_bytes() == stored.path.read_bytes()
    assert "Range" not in upstream.storage_requests(stored.key)[-1].headers


def test_a_dropped_connection_is_resumed(upstream, tmp_path):
    job, stored = civitai_job(upstream, tmp_path)
    upstream.faults[stored.key] = Fault(drop_after=70_000, drops=2)
    retries = []
    result = fast_engine().download(job, on_retry=lambda error, delay: retries.append(error))
    assert result.path.read_bytes() == stored.path.read_bytes()
    assert len(retries) == 2 and all(isinstance(e, TransientError) for e in retries)
    ranges = [r.headers.get("Range") for r in upstream.storage_requests(stored.key)]
    assert ranges == [None, "bytes=70000-", "bytes=140000-"]
    assert upstream.full_body_requests(stored.key) == 1


def test_a_stall_is_detected_and_resumed(upstream, tmp_path):
    job, stored = civitai_job(upstream, tmp_path)
    upstream.faults[stored.key] = Fault(stall_after=30_000, stall_seconds=3)
    retries = []
    result = fast_engine(stall_timeout=0.5).download(job, on_retry=lambda e, d: retries.append(str(e)))
    assert result.sha256 == stored.sha256
    assert "stalled" in retries[0]


def test_a_host_that_cannot_be_reached_is_retried_then_explained(tmp_path):
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    job = DownloadJob(
        url=f"http://127.0.0.1:{port}/m.safetensors", dest_dir=tmp_path, filename="m.safetensors"
    )
    retries = []
    with pytest.raises(TransientError) as error:
        fast_engine(max_attempts=3).download(job, on_retry=lambda e, d: retries.append(str(e)))
    reason = f"cannot reach 127.0.0.1:{port}: no connection (check the address and this machine's network)"
    assert str(error.value) == reason and retries == [reason, reason]
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_5xx_is_retried_with_growing_backoff(upstream, tmp_path):
    job, stored = civitai_job(upstream, tmp_path)
    upstream.faults[stored.key] = Fault(statuses=[503, 502, 500])
    delays = []
    engine = Engine(backoff_start=0.01, backoff_cap=1)
    result = engine.download(job, on_retry=lambda error, delay: delays.append(delay))
    assert result.sha256 == stored.sha256
    assert delays == [0.01, 0.02, 0.04]


def test_backoff_starts_at_2_seconds_and_is_capped():
    engine = Engine()
    assert (engine.backoff_start, engine.backoff_cap) == (2.0, 60.0)


def test_too_many_failures_give_up_with_the_last_error(upstream, tmp_path):
    job, stored = civitai_job(upstream, tmp_path)
    upstream.faults[stored.key] = Fault(statuses=[503] * 10)
    with pytest.raises(TransientError, match="HTTP 503"):
        Engine(backoff_start=0.001, max_attempts=3).download(job)


def test_429_honours_retry_after(upstream, tmp_path):
    job, stored = civitai_job(upstream, tmp_path)
    upstream.faults[stored.key] = Fault(statuses=[429], retry_after=1)
    delays = []
    result = fast_engine().download(job, on_retry=lambda error, delay: delays.append((type(error), delay)))
    assert delays == [(RateLimited, 1.0)]
    assert result.sha256 == stored.sha256


@pytest.mark.parametrize(
    ("version_id", "key", "status"),
    [(50011, None, 401), (42012, "wrong-key", 401), (50021, KEY, 403), (50031, KEY, 410), (99999, None, 404)],
)
def test_auth_access_and_missing_files_fail_at_once(upstream, tmp_path, version_id, key, status):
    job = DownloadJob(
        url=f"{upstream.civitai_url}/api/download/models/{version_id}",
        dest_dir=tmp_path,
        filename="x.safetensors",
        auth={upstream.civitai_url: f"Bearer {key}"} if key else {},
    )
    with pytest.raises(HttpError) as error:
        fast_engine().download(job)
    assert error.value.status == status
    assert len([r for r in upstream.requests if r.host == "civitai"]) == 1  # no retry
    assert not job.part_path.exists()


def test_the_key_goes_to_the_api_host_only(upstream, tmp_path):
    job, _stored = civitai_job(upstream, tmp_path, 50011, key=KEY)
    fast_engine().download(job)
    hub = [r for r in upstream.requests if r.host == "civitai"]
    storage = [r for r in upstream.requests if r.host == "storage"]
    assert hub[0].headers["Authorization"] == f"Bearer {KEY}"
    assert storage and all("Authorization" not in r.headers for r in storage)


def test_resume_asks_the_api_again_for_a_fresh_signed_url(upstream, tmp_path):
    job, stored = civitai_job(upstream, tmp_path)
    upstream.faults[stored.key] = Fault(drop_after=50_000)
    fast_engine().download(job)
    signed = [r.path for r in upstream.storage_requests(stored.key)]
    assert len(signed) == 2 and signed[0] != signed[1]
    assert len([r for r in upstream.requests if r.host == "civitai"]) == 2


def test_no_space_for_the_file_stops_before_writing(upstream, tmp_path):
    job, stored = civitai_job(upstream, tmp_path)
    job.expected_size = stored.size
    with pytest.raises(DiskFull, match="more are needed"):
        fast_engine(disk_free=lambda path: 1000).download(job)
    assert not job.part_path.exists()


@pytest.fixture
def tiny_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip(reason="mounting a small tmpfs to fill it needs root")
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_keeps_the_part_and_says_so(upstream, tiny_disk):
    job, stored = civitai_job(upstream, tiny_disk)
    job.dest_dir = tiny_disk
    # The free-space check passes (a thin-provisioned share can lie about it), then writing hits ENOSPC.
    with pytest.raises(DiskFull, match="disk is full"):
        fast_engine(disk_free=lambda path: 1 << 40).download(job)
    assert 0 < job.part_path.stat().st_size < stored.size
    assert not job.final_path.exists()


def test_an_existing_different_file_is_never_overwritten(upstream, tmp_path):
    job, _stored = civitai_job(upstream, tmp_path)
    job.dest_dir.mkdir(parents=True)
    job.final_path.write_bytes(b"my own model")
    with pytest.raises(FileClash, match="already exists"):
        fast_engine().download(job)
    assert job.final_path.read_bytes() == b"my own model"


def test_a_download_that_replaces_the_file_of_its_name_makes_room_only_once_it_is_complete(
    upstream, tmp_path
):
    job, stored = civitai_job(upstream, tmp_path)
    job.dest_dir.mkdir(parents=True)
    job.final_path.write_bytes(b"the older file")
    seen_when_asked = []

    def make_room() -> None:
        seen_when_asked.append((job.part_path.stat().st_size, job.final_path.read_bytes()))
        job.final_path.rename(tmp_path / "trash")

    result = fast_engine().download(replace(job, make_room=make_room))
    assert seen_when_asked == [(stored.size, b"the older file")]  # asked once, with every byte in
    assert result.sha256 == stored.sha256 and job.final_path.read_bytes() == stored.path.read_bytes()
    assert (tmp_path / "trash").read_bytes() == b"the older file" and not job.part_path.exists()


def test_hugging_face_announces_the_sha256_in_x_linked_etag(upstream, tmp_path):
    stored = upstream.repos["demo-org/demo-models"].files["flux1-schnell-fp8.safetensors"]
    job = DownloadJob(
        url=f"{upstream.hf_url}/demo-org/demo-models/resolve/main/flux1-schnell-fp8.safetensors",
        dest_dir=tmp_path,
        filename="flux1-schnell-fp8.safetensors",
    )
    result = fast_engine().download(job)
    assert job.expected_sha256 == stored.sha256 == hashlib.sha256(result.path.read_bytes()).hexdigest()


def test_content_disposition_names():
    assert filename_from_disposition('attachment; filename="a b.safetensors"') == "a b.safetensors"
    assert (
        filename_from_disposition("inline; filename*=UTF-8''%E2%9C%93.gguf; filename=\"x.gguf\";") == "✓.gguf"
    )
    assert filename_from_disposition('attachment; filename="../../etc/passwd"') == "passwd"
    assert filename_from_disposition("attachment") == ""


def test_a_part_locked_by_another_writer_is_waited_for(upstream, tmp_path):
    import fcntl

    job, stored = civitai_job(upstream, tmp_path)
    job.dest_dir.mkdir(parents=True)
    job.part_path.write_bytes(b"")
    with job.part_path.open("rb+") as other_writer:
        fcntl.flock(other_writer, fcntl.LOCK_EX)
        with pytest.raises(TransientError, match="another worker is still writing"):
            Engine(max_attempts=1).download(job)
    assert fast_engine().download(job).sha256 == stored.sha256


def test_a_run_that_died_after_the_rename_is_finished_not_refused(upstream, tmp_path):
    job, stored = civitai_job(upstream, tmp_path)
    job.dest_dir.mkdir(parents=True)
    job.final_path.write_bytes(stored.path.read_bytes())
    os.link(job.final_path, job.part_path)  # died between link and unlink
    result = fast_engine().download(job)
    assert result.sha256 == stored.sha256 and not job.part_path.exists()
    job.part_path.unlink(missing_ok=True)
    again = fast_engine().download(job)  # died after the unlink, before the row was saved
    assert again.sha256 == stored.sha256
    assert not [r for r in upstream.requests if r.host == "storage"]


def test_a_speed_limit_holds_the_downloads_that_share_it_together(upstream, tmp_path):
    jobs = [civitai_job(upstream, tmp_path / name)[0] for name in ("one", "two")]
    stored = civitai_job(upstream, tmp_path)[1]
    rate = stored.size  # each file alone would take a second at it
    limit = SpeedLimit(rate=lambda: rate)
    start = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda job: fast_engine(speed_limit=limit).download(job), jobs))
    assert time.monotonic() - start >= 1.7  # two files at the one rate: two seconds
    assert [r.path.read_bytes() for r in results] == [stored.path.read_bytes()] * 2


def test_a_download_held_by_the_speed_limit_stops_at_once_and_takes_a_new_limit_up(upstream, tmp_path):
    job, stored = civitai_job(upstream, tmp_path)
    slow = SpeedLimit(rate=lambda: stored.size // 10)  # ten seconds for the file
    start = time.monotonic()
    with pytest.raises(Stopped):
        fast_engine(speed_limit=slow).download(
            job, should_stop=lambda: "pause" if time.monotonic() > start + 0.3 else ""
        )
    assert time.monotonic() - start < 2
    assert 0 < job.part_path.stat().st_size < stored.size

    lifted = SpeedLimit(rate=lambda: stored.size // 10 if time.monotonic() < start + 0.6 else 0)
    result = fast_engine(speed_limit=lifted).download(job)
    assert time.monotonic() - start < 4  # the rest at ten seconds' rate would have taken most of them
    assert result.path.read_bytes() == stored.path.read_bytes()


def test_a_speed_limit_lifted_lets_a_download_waiting_on_it_go_at_once():
    rate = {"now": 1000}
    limit = SpeedLimit(rate=lambda: rate["now"])
    start = time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(limit.wait_for, 16_000, lambda: "")  # sixteen seconds at that rate
        time.sleep(0.3)
        rate["now"] = 0
        waiting.result(timeout=5)
    assert time.monotonic() - start < 1
