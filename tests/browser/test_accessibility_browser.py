"""Every page passes axe-core's checks (WCAG 2 A and AA: contrast, names, labels, landmarks, headings),
in light and in dark, and the dialogs."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import requests
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tests.browser.conftest import ROOT
from tests.model_files import write_model

PAGES = (
    "/",
    "/?type=loras",
    "/model/loras/0/style/pepper.safetensors",  # the library with a model's dialog open
    "/downloads/",
    "/duplicates/",
    "/trash/",
    "/settings/",
)


def assert_accessible(page) -> None:
    # A template comment or tag that Django did not take (a {# … #} over two lines) shows as text.
    text = page.locator("body").inner_text()
    assert not any(mark in text for mark in ("{#", "#}", "{%", "%}")), f"{page.url}: {text[:300]}"
    results = Axe().run(page)
    assert results.violations_count == 0, f"{page.url}\n{results.generate_report()}"


def test_the_login_page_is_accessible(page, server):
    page.goto(server.url + "/")
    expect(page.get_by_label("Username")).to_be_visible()
    assert_accessible(page)


@pytest.fixture(scope="module")
def two_digit_counts(server):
    """axe leaves the contrast of a one-character text unjudged: the side bar's counts need two digits.
    The server's own worker scans them in (through the API), so no second scan runs beside its own."""
    for n in range(10):
        write_model(server.roots["loras"] / "more" / f"extra_{n}.safetensors")
    token = subprocess.run(
        [sys.executable, "manage.py", "apitoken", "admin"],
        cwd=ROOT, env=server.env, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    auth = {"Authorization": f"Bearer {token}"}
    api = f"{server.url}/model-manager/model-info/scan"

    def scan_done(task_id: int) -> bool:
        return requests.get(f"{api}/{task_id}", headers=auth, timeout=10).json()["data"]["status"] == "done"

    for _ in range(3):  # a scan already running may have listed the folders before the files came
        scan = requests.post(api, json={"mode": "diff"}, headers=auth, timeout=10).json()["data"]
        for _ in range(300):
            if scan_done(scan["taskId"]):
                break
            time.sleep(0.05)
        if scan["created"]:
            return
    pytest.fail("no scan of the new models ran")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_is_accessible(logged_in_page, server, two_digit_counts, scheme):
    page = logged_in_page
    page.emulate_media(color_scheme=scheme)
    page.reload()
    expect(page.locator(".types [aria-current] .count")).to_have_text("15")
    for path in PAGES:
        page.goto(server.url + path)
        page.wait_for_load_state("networkidle")
        assert_accessible(page)
    # Select mode, one card picked, the bar below the grid.
    page.goto(server.url + "/")
    page.get_by_role("button", name="Select").click()
    page.locator("#grid > .card").first.click()
    expect(page.get_by_role("form", name="Picked models")).to_contain_text("1 picked")
    assert_accessible(page)
    # The model dialog's forms.
    page.goto(server.url + "/model/loras/0/style/pepper.safetensors")
    dialog = page.locator("dialog[open]")
    for button in ("Edit description", "Change preview", "Rename / move", "Delete…"):
        dialog.get_by_role("button", name=button).click()
        expect(dialog.get_by_role("button", name="Back to the model")).to_be_visible()
        assert_accessible(page)
        dialog.get_by_role("button", name="Back to the model").click()
        expect(dialog.get_by_role("button", name="Close", exact=True)).to_be_visible()
    page.goto(server.url + "/downloads/")
    page.get_by_role("button", name="New download").click()
    expect(page.get_by_role("textbox", name="Link")).to_be_focused()
    assert_accessible(page)
