"""Several processes on real PostgreSQL and Redis: one web process, two workers, 40 downloads.

Runs when MM_TEST_DATABASE_URL and MM_TEST_REDIS_URL are set (`.ci/run` sets them); a service that is
set but cannot be reached fails the test. Without them (a laptop) it skips, saying why.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

from tests.conftest import free_port, wait_for_port
from tests.upstream import CivitaiModel, CivitaiVersion, Fault
from tests.upstream.catalogue import model_bytes

ROOT = Path(__file__).resolve().parent.parent
DATABASE_URL = os.environ.get("MM_TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("MM_TEST_REDIS_URL", "")
TASKS = 40

pytestmark = pytest.mark.skipif(
    not (DATABASE_URL and REDIS_URL),
    reason="set MM_TEST_DATABASE_URL (postgres://…) and MM_TEST_REDIS_URL (redis://…) to run the scale-out tests",
)


@pytest.fixture
def database_url():
    """A fresh PostgreSQL database for these processes, dropped afterwards."""
    import psycopg

    name = f"mm_scale_{secrets.token_hex(4)}"
    admin = urlunsplit(urlsplit(DATABASE_URL)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield urlunsplit(urlsplit(DATABASE_URL)._replace(path=f"/{name}"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Cluster:
    def __init__(self, tmp_path: Path, database_url: str, upstream) -> None:  # type: ignore[no-untyped-def]
        self.models = tmp_path / "models" / "checkpoints"
        self.models.mkdir(parents=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "mmsite.settings",
            "MM_DATA_DIR": str(tmp_path / "data"),
            "MM_DATABASE_URL": database_url,
            "MM_REDIS_URL": REDIS_URL,
            "MM_MODEL_ROOTS": f"checkpoints={self.models}",
            "MM_COMFYUI_PATH": "",
            "MM_CIVITAI_URL": upstream.civitai_url,
            "HF_ENDPOINT": upstream.hf_url,
            "MM_HEARTBEAT_TIMEOUT": "4",
            "MM_PROGRESS_INTERVAL": "0.5",
            "MM_SCAN_ON_START": "0",
            "DJANGO_SUPERUSER_PASSWORD": "scale-out-passphrase",
        }
        self.logs = tmp_path
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def manage(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        self.processes[name] = process
        return process

    def _fetch(self, sql: str) -> list[tuple]:  # type: ignore[type-arg]
        import psycopg

        with psycopg.connect(self.database_url) as conn:
            return conn.execute(sql).fetchall()

    def rows(self) -> list[tuple[int, str, str]]:
        return self._fetch("SELECT id, status, owner FROM downloads_app_downloadtask ORDER BY id")

    def saved_bytes(self) -> dict[int, int]:
        """The bytes each task's row says are in its part (written there before the row is updated)."""
        return dict(self._fetch("SELECT id, downloaded_size FROM downloads_app_downloadtask"))

    def runners(self, *names: str) -> dict[int, set[str]]:
        """Which of the named workers started each task, from the line each logs as it starts one."""
        started: dict[int, set[str]] = {}
        for name in names:
            for match in re.finditer(r"download task (\d+) started", (self.logs / f"{name}.log").read_text()):
                started.setdefault(int(match[1]), set()).add(name)
        return started

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
def cluster(tmp_path, database_url, upstream):
    cluster = Cluster(tmp_path, database_url, upstream)
    cluster.manage("migrate", "-v0")
    cluster.manage("createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.com")
    cluster.token = cluster.manage("apitoken", "admin").strip()
    yield cluster
    cluster.stop()


def add_models(upstream) -> list[str]:  # type: ignore[no-untyped-def]
    keys = []
    for i in range(TASKS):
        key = f"scale-{i:02d}"
        stored = upstream.add_file(key, f"scale_{i:02d}.safetensors", model_bytes(key, 400_000))
        upstream.faults[key] = Fault(throttle=250_000)
        version = CivitaiVersion(id=90_000 + i, name="v1", files=[(stored, {"primary": True})])
        upstream.add_civitai_model(
            CivitaiModel(id=9_000 + i, name=f"Scale {i}", type="Checkpoint", versions=[version])
        )
        keys.append(key)
    return keys


def test_two_workers_share_forty_downloads_each_once_and_survive_a_kill(cluster, upstream, browser):
    keys = add_models(upstream)
    web = cluster.start("web", "serve", "--no-worker", "--port", str(cluster.port))
    wait_for_port(cluster.port, web, cluster.logs / "web.log")
    workers = {name: cluster.start(name, "worker", "--concurrency", "4") for name in ("worker-a", "worker-b")}
    pids = {str(p.pid): name for name, p in workers.items()}

    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(cluster.url + "/accounts/login/")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", "scale-out-passphrase")
        page.click("button[type=submit]")
        page.wait_for_url(cluster.url + "/")
        page.evaluate(
            """() => new Promise(ready => {
                window.mmEvents = [];
                const socket = new WebSocket(`ws://${location.host}/ws/events/`);
                socket.onmessage = e => window.mmEvents.push(JSON.parse(e.data));
                socket.onopen = ready;
            })"""
        )

        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {cluster.token}"
        for i in range(TASKS):
            response = api.post(
                f"{cluster.url}/model-manager/model",
                json={"downloadUrl": f"{upstream.civitai_url}/models/{9_000 + i}", "type": "checkpoints", "pathIndex": 0,
                      "fullname": f"scale_{i:02d}.safetensors"},
            )  # fmt: skip
            assert response.status_code == 201, response.text

        def running_on_a(rows: list[tuple[int, str, str]]) -> list[int]:
            a = str(workers["worker-a"].pid)
            return [
                task_id
                for task_id, status, owner in rows
                if status == "running" and owner.split(":")[1:2] == [a]
            ]

        owners: dict[int, set[str]] = {}
        killed: list[int] = []
        saved_at_kill: dict[int, int] = {}
        paused_task = None  # the task a pause was asked for
        seen_paused = None  # the one then seen paused
        deadline = time.monotonic() + 120
        while True:
            rows = cluster.rows()
            for task_id, status, owner in rows:
                if status == "running" and owner:
                    owners.setdefault(task_id, set()).add(pids.get(owner.split(":")[1], owner))
            done = sum(status == "done" for _, status, _ in rows)
            if not killed and done >= 8 and running_on_a(rows):
                workers["worker-a"].send_signal(signal.SIGKILL)  # mid-download
                workers["worker-a"].wait()
                killed = running_on_a(cluster.rows())  # read after its death: it may have claimed more
                saved_at_kill = cluster.saved_bytes()
            statuses = {task_id: status for task_id, status, _ in rows}
            if paused_task is not None and seen_paused is None and statuses[paused_task] == "done":
                paused_task = None  # it finished before its worker read the request: ask another
            if paused_task is None and seen_paused is None and killed:
                running_b = [
                    task_id
                    for task_id, status, owner in rows
                    if status == "running" and task_id not in killed
                ]
                if running_b:
                    paused_task = running_b[0]
                    assert api.put(
                        f"{cluster.url}/model-manager/download/{paused_task}", json={"status": "pause"}
                    ).ok
            if paused_task is not None and statuses[paused_task] == "paused":
                seen_paused = paused_task
                assert api.put(
                    f"{cluster.url}/model-manager/download/{paused_task}", json={"status": "resume"}
                ).ok
            if done == TASKS:
                break
            assert all(status not in ("failed", "cancelled") for _, status, _ in rows), cluster.errors()
            assert time.monotonic() < deadline, f"not finished: {rows}"
            time.sleep(0.1)
        page.wait_for_timeout(1500)
        events = page.evaluate("window.mmEvents")
    finally:
        context.close()

    assert killed, "worker-a was never seen running a task"
    task_ids = sorted(task_id for task_id, _, _ in cluster.rows())  # created in the order of `keys`
    for i, key in enumerate(keys):
        assert (cluster.models / f"scale_{i:02d}.safetensors").read_bytes() == upstream.files[
            key
        ].path.read_bytes()
        # Fetched once; a takeover resumes with Range. Only a task killed before its row recorded a byte
        # may have had nothing on disk yet, and then starting over is right.
        killed_empty = task_ids[i] in killed and not saved_at_kill[task_ids[i]]
        assert upstream.full_body_requests(key) in ((1, 2) if killed_empty else (1,)), (
            f"{key} was downloaded more than once: {upstream.storage_requests(key)}"
        )
    # Polling every 0.1 s can miss a short run, and a worker killed right after claiming a row never logs
    # it: together the two say who ran what.
    runners = cluster.runners("worker-a", "worker-b")
    for task_id, names in owners.items():
        runners.setdefault(task_id, set()).update(names)
    assert set(runners) == {task_id for task_id, _, _ in cluster.rows()}
    # worker-a's tasks were taken over by worker-b once worker-a stopped heartbeating (a task worker-a
    # completed at the instant it was killed needs no takeover, so at least one is asked for).
    assert any(runners[task_id] == {"worker-a", "worker-b"} for task_id in killed), (killed, runners)
    # The browser, connected to the web process only, heard progress of both workers' tasks.
    heard = {e["data"]["taskId"] for e in events if e["type"] == "update_download_task"}
    assert any("worker-a" in runners[t] for t in heard)
    assert any(runners[t] == {"worker-b"} for t in heard)
    completed = {e["data"]["taskId"] for e in events if e["type"] == "complete_download_task"}
    # Events are at-most-once: only the worker killed between saving a row and publishing can lose one
    # (a reconnecting page re-renders the rows instead).
    assert all("worker-a" in runners[t] for t in set(runners) - completed), (
        set(runners) - completed,
        runners,
    )
    assert len(completed) >= TASKS - 1
    # The pause asked on the web process reached the worker that ran the task.
    assert seen_paused is not None
    assert any(
        e["type"] == "update_download_task"
        and e["data"]["taskId"] == seen_paused
        and e["data"]["status"] == "paused"
        for e in events
    )


def test_two_worker_processes_keep_to_one_speed_limit_together(cluster, upstream):
    limit = 400_000  # bytes a second, for all downloads together
    for i in range(2):
        stored = upstream.add_file(f"held-{i}", f"held_{i}.safetensors", model_bytes(f"held-{i}", 8_000_000))
        version = CivitaiVersion(id=80_000 + i, name="v1", files=[(stored, {"primary": True})])
        upstream.add_civitai_model(CivitaiModel(id=8_000 + i, name=f"Held {i}", type="Checkpoint", versions=[version]))  # fmt: skip
    web = cluster.start("web", "serve", "--no-worker", "--port", str(cluster.port))
    wait_for_port(cluster.port, web, cluster.logs / "web.log")
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {cluster.token}"
    assert api.post(
        f"{cluster.url}/model-manager/download/setting", json={"key": "speedLimit", "value": limit}
    ).ok
    for i in range(2):
        assert api.post(
            f"{cluster.url}/model-manager/model",
            json={"downloadUrl": f"{upstream.civitai_url}/models/{8_000 + i}", "type": "checkpoints", "pathIndex": 0,
                  "fullname": f"held_{i}.safetensors"},
        ).status_code == 201  # fmt: skip
    for name in ("worker-a", "worker-b"):
        cluster.start(name, "worker", "--concurrency", "1")

    deadline = time.monotonic() + 30
    while {owner.split(":")[1] for _, status, owner in cluster.rows() if status == "running"} != {
        str(p.pid) for name, p in cluster.processes.items() if name.startswith("worker")
    }:
        assert time.monotonic() < deadline, cluster.rows()
        time.sleep(0.1)
    time.sleep(2.5)  # each worker reads its share of the limit again every two seconds

    start, before = time.monotonic(), sum(cluster.saved_bytes().values())
    time.sleep(4)
    rate = (sum(cluster.saved_bytes().values()) - before) / (time.monotonic() - start)
    # Each worker alone keeps to the limit; without their shares the two together would take twice it.
    assert 0.5 * limit < rate < 1.3 * limit, rate
    assert all(status == "running" for _, status, _ in cluster.rows())
