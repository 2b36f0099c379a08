"""DESIGN.md §9.4: kill -9 the worker at random moments, restart it, and the file still ends byte-exact."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.upstream import Fault

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def app_env(tmp_path, upstream):
    models = tmp_path / "models" / "checkpoints"
    models.mkdir(parents=True)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mmsite.settings",
        "MM_DATA_DIR": str(tmp_path / "data"),
        "MM_MODEL_ROOTS": f"checkpoints={models}",
        "MM_COMFYUI_PATH": "",
        "MM_CIVITAI_URL": upstream.civitai_url,
        "HF_ENDPOINT": upstream.hf_url,
        "MM_PROGRESS_INTERVAL": "0.2",
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    return env, models, tmp_path / "data" / "db.sqlite3"


def task_row(db: Path) -> tuple[str, int]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT status, downloaded_size FROM downloads_app_downloadtask").fetchone()


def test_kill_9_at_random_moments_then_restart_ends_byte_exact(app_env, upstream):
    env, models, db = app_env
    stored = upstream.add_large_file("big-checkpoint", "big.safetensors", 3_000_000)
    version = upstream.versions[42012][1]
    version.files[0] = (stored, {"primary": True})
    upstream.faults[stored.key] = Fault(throttle=1_000_000)
    queued = subprocess.run(
        [sys.executable, "manage.py", "download", f"{upstream.civitai_url}/models/4201", "--queue"],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert "Queued download" in queued.stdout
    part = models / "big.safetensors.part"
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"kill points seed {seed}")
    kills = 0
    # One kill point in each third, and each restarted worker must itself add bytes before it is killed:
    # two close points would otherwise kill the new worker before it ever asked for a Range.
    for low, high in ((0.1, 0.3), (0.35, 0.6), (0.65, 0.85)):
        fraction = rng.uniform(low, high)
        resumed_from = part.stat().st_size if part.exists() else 0
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "worker"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        target = max(fraction * stored.size, resumed_from + 100_000)
        while not (part.exists() and part.stat().st_size >= target):
            assert time.monotonic() < deadline, f"no progress past {fraction:.0%}: {task_row(db)}"
            assert worker.poll() is None, "the worker died by itself"
            time.sleep(0.02)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        kills += 1
        assert not (models / "big.safetensors").exists()
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while task_row(db)[0] != "done":
            assert time.monotonic() < deadline, f"not done: {task_row(db)}"
            assert task_row(db)[0] not in ("failed", "cancelled"), task_row(db)
            time.sleep(0.1)
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    assert kills == 3
    assert (models / "big.safetensors").read_bytes() == stored.path.read_bytes()
    assert not part.exists()
    ranged = [r for r in upstream.storage_requests(stored.key) if r.headers.get("Range")]
    assert len(ranged) >= 3  # every restart resumed from the part
    assert upstream.full_body_requests(stored.key) == 1
