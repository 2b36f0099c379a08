"""Browser tests: real Chromium (Debian's, via Playwright) against a real `serve` process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import LAN_NAME, free_port, wait_for_port
from tests.model_files import build_library

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
USERNAME, PASSWORD = "admin", "browser-test-passphrase"


@dataclass
class Server:
    url: str
    data_dir: Path
    roots: dict[str, Path]
    env: dict[str, str]
    process: subprocess.Popen[str]


@pytest.fixture(scope="module")
def fake_upstream(tmp_path_factory):
    """The fake Civitai and Hugging Face, with 2 MB files sent at 400 KB/s: slow enough to pause."""
    from tests.upstream import FakeUpstream, Fault, build_demo_catalogue

    upstream = build_demo_catalogue(FakeUpstream(tmp_path_factory.mktemp("upstream")).start(), size=2_000_000)
    for key in upstream.files:
        upstream.faults[key] = Fault(throttle=400_000)
    yield upstream
    upstream.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, fake_upstream) -> Iterator[Server]:
    """A real `serve` (Daphne + worker) of its own for each test module, on a free port."""
    base = tmp_path_factory.mktemp("browser")
    # Embeddings stays empty, as most of a ComfyUI folder's types do: the side bar folds it away.
    roots = {
        "checkpoints": base / "models" / "checkpoints",
        "loras": base / "models" / "loras",
        "embeddings": base / "models" / "embeddings",
    }
    for path in roots.values():
        path.mkdir(parents=True)
    build_library(roots)
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mmsite.settings",
        "MM_DATA_DIR": str(base / "data"),
        "MM_MODEL_ROOTS": ";".join(f"{t}={p}" for t, p in roots.items()),
        "MM_COMFYUI_PATH": "",
        "MM_EXTRA_MODEL_PATHS": "",
        "MM_PORT": str(port),
        "MM_ALLOWED_HOSTS": f"127.0.0.1,{LAN_NAME}",
        "MM_PROGRESS_INTERVAL": "0.2",
        "MM_CIVITAI_URL": fake_upstream.civitai_url,
        "HF_ENDPOINT": fake_upstream.hf_url,
        "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
    )
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "createsuperuser",
            "--noinput",
            "--username",
            USERNAME,
            "--email",
            "a@example.com",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    log = (base / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for_port(port, process, base / "serve.log")
    yield Server(f"http://127.0.0.1:{port}", base / "data", roots, env, process)
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def api_headers(server: Server) -> dict[str, str]:
    """What a script sends to the JSON API: a token of the admin's (`manage.py apitoken`)."""
    token = subprocess.run(
        [sys.executable, "manage.py", "apitoken", USERNAME],
        cwd=ROOT, env=server.env, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    return {"Authorization": f"Bearer {token}"}


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.failed_call = report.failed
    return report


# What htmx logs when a fragment has no place on the page or cannot be swapped in; a refused request
# (a 4xx a test provokes on purpose) is the page's business and is not listed.
HTMX_FAULTS = ("htmx:oobErrorNoTarget", "htmx:targetError", "htmx:swapError", "htmx:onLoadError")


@pytest.fixture
def page(browser, server, request):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(10_000)
    faults: list[str] = []
    page.on("pageerror", lambda error: faults.append(f"uncaught {error}"))
    page.on("console", lambda message: faults.extend(f for f in HTMX_FAULTS if f in message.text))
    yield page
    if getattr(request.node, "failed_call", False):
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / f"{request.node.name}.png"
        page.screenshot(path=shot, full_page=True)
        print(f"\nscreenshot of the failure: {shot}")
    context.close()
    # Every test also proves its pages ran without a script error or a fragment lost on the way.
    assert not faults, faults


@pytest.fixture
def logged_in_page(page, server):
    page.goto(server.url + "/")
    page.fill("input[name=username]", USERNAME)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/")
    return page
