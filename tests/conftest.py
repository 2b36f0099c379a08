from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.model_files import build_library


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:  # type: ignore[type-arg]
    """Waits until a server process listens, or fails with its log."""
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start:\n{log.read_text()}") from None
            time.sleep(0.1)


CHROMIUM = os.environ.get("MM_CHROMIUM", "/usr/bin/chromium")
LAN_NAME = "model-manager.lan.test"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # A name that is not localhost: a page served from it over plain http is not a secure context, as
    # the app is on a LAN, and the tests can see what works there.
    f"--host-resolver-rules=MAP {LAN_NAME} 127.0.0.1",
]


@pytest.fixture(autouse=True)
def _empty_cache():
    """Each test starts with an empty cache: the database is rolled back between tests, so the next
    test can bring the same library version with other rows behind it, and resolutions of links are
    cached per link; and no failed login of another test counts against this one."""
    from django.core.cache import caches

    for cache in caches.all():
        cache.clear()


@pytest.fixture
def model_roots(tmp_path: Path, settings) -> dict[str, Path]:
    """Two configured folder types, empty; the settings point the app at them."""
    roots = {"checkpoints": tmp_path / "models" / "checkpoints", "loras": tmp_path / "models" / "loras"}
    for path in roots.values():
        path.mkdir(parents=True)
    settings.MM_COMFYUI_PATH = ""
    settings.MM_EXTRA_MODEL_PATHS = ""
    settings.MM_MODEL_ROOTS = ";".join(f"{t}={p}" for t, p in roots.items())
    settings.MM_THUMBNAIL_DIR = tmp_path / "thumbnails"
    return roots


@pytest.fixture
def library(model_roots: dict[str, Path]) -> dict[str, Path]:
    build_library(model_roots)
    return model_roots


class Blocked(Exception):  # not an OSError: the code under test must not take it for a failed read
    pass


@pytest.fixture
def fails_if_blocked():
    """Interrupts a test that waits on a blocking call (opening a pipe) for 5 s, and every second after,
    so that it fails instead of holding up the whole run."""

    def interrupt(signum, frame):
        raise Blocked("waited 5 s on a blocking call")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 5, 1)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="ada", password="a-long-test-password")


@pytest.fixture
def logged_in(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def scanned(db, library):
    from models_app.roots import get_roots
    from models_app.scanner import scan_folder

    scan_folder(get_roots())
    return library


@pytest.fixture
def other_disk(scanned, settings) -> Iterator[Path]:
    """A second checkpoints folder on another filesystem (a tmpfs), where a move is a copy."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == scanned["checkpoints"].stat().st_dev:
        pytest.skip(reason="no second filesystem (a tmpfs) at /dev/shm to move models across")
    folder = Path(tempfile.mkdtemp(dir=shm, prefix="mm-test-"))
    settings.MM_MODEL_ROOTS += f";checkpoints={folder}"
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def pytest_sessionfinish(session, exitstatus):
    """tests/settings.py made a throw-away data dir for this run; remove it."""
    from django.conf import settings

    data_dir = Path(settings.DATA_DIR)
    if data_dir.name.startswith("mm-test-data-"):
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def upstream(tmp_path_factory):
    """The fake Civitai and Hugging Face, with the demo catalogue, on free ports."""
    from tests.upstream import FakeUpstream, build_demo_catalogue

    server = build_demo_catalogue(FakeUpstream(tmp_path_factory.mktemp("upstream")).start())
    yield server
    server.close()


@pytest.fixture
def services_at_upstream(settings, upstream, model_roots):
    """The app pointed at the fake upstream, with short progress and stall intervals."""
    settings.MM_CIVITAI_URL = upstream.civitai_url
    settings.HF_ENDPOINT = upstream.hf_url
    settings.MM_STALL_TIMEOUT = 2
    return upstream


@pytest.fixture(scope="session", autouse=True)
def _close_async_test_connections(django_db_setup, django_db_blocker):
    """Async tests reach the database from asgiref's executor thread, whose connection would otherwise
    stay open and keep PostgreSQL from dropping the test database at the end."""
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    executor = getattr(SyncToAsync, "single_thread_executor", None)
    if executor is not None:
        with django_db_blocker.unblock():
            executor.submit(connections.close_all).result()


@pytest.fixture(scope="session")
def browser():
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        if os.environ.get("MM_REQUIRE_BROWSER"):
            pytest.fail(f"MM_REQUIRE_BROWSER is set but there is no Chromium at {CHROMIUM}")
        why = (
            f"no Chromium at {CHROMIUM} (apt-get install chromium); set MM_REQUIRE_BROWSER=1 to fail instead"
        )
        pytest.skip(reason=why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
