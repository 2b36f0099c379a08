"""Every page passes axe-core's checks (WCAG 2 A and AA: contrast, names, labels, landmarks, headings),
in light and in dark, and the dialogs."""

from __future__ import annotations

import json
import time

import pytest
import requests
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tests.browser.conftest import api_headers
from tests.model_files import write_model

PAGES = (
    "/",
    "/?type=loras",
    "/model/loras/0/style/pepper.safetensors",  # the library with a model's dialog open
    "/?updates=1",
    "/?older=1",
    "/model/checkpoints/0/dream_old.safetensors",  # with an update out on Civitai
    "/model/checkpoints/0/pair_v1.safetensors",  # with another version in the library
    "/downloads/",
    "/browse/",
    "/browse/?q=no+such+model",
    "/browse/huggingface/",
    "/browse/huggingface/?q=no+such+repo",
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
def two_digit_counts_and_an_update(server):
    """axe leaves the contrast of a one-character text unjudged: the side bar's counts need two digits.
    The server's own worker scans them in (through the API), so no second scan runs beside its own; then
    it checks for updates, and a model with an older DreamXL has one."""
    for n in range(10):
        write_model(server.roots["loras"] / "more" / f"extra_{n}.safetensors")
    write_model(server.roots["checkpoints"] / "dream_old.safetensors")
    info = {"id": 42011, "modelId": 4201, "name": "v1.0", "model": {"name": "DreamXL"}}
    (server.roots["checkpoints"] / "dream_old.civitai.info").write_text(json.dumps(info))
    for version in (1, 2):  # two versions of one Civitai model: each dialog lists the other
        write_model(
            server.roots["checkpoints"] / f"pair_v{version}.safetensors", payload=bytes([version]) * 2
        )
        pair = {"id": 77_000 + version, "modelId": 77_000, "name": f"v{version}", "model": {"name": "Pair"}}
        (server.roots["checkpoints"] / f"pair_v{version}.civitai.info").write_text(json.dumps(pair))
    auth = api_headers(server)
    api = f"{server.url}/model-manager/model-info/scan"

    def done(url: str) -> bool:
        return requests.get(url, headers=auth, timeout=10).json()["data"]["status"] == "done"

    for _ in range(3):  # a scan already running may have listed the folders before the files came
        scan = requests.post(api, json={"mode": "diff"}, headers=auth, timeout=10).json()["data"]
        for _ in range(300):
            if done(f"{api}/{scan['taskId']}"):
                break
            time.sleep(0.05)
        if scan["created"]:
            break
    else:
        pytest.fail("no scan of the new models ran")
    fetch = f"{server.url}/model-manager/model-info/fetch"
    check = requests.post(fetch, json={"mode": "updates"}, headers=auth, timeout=10).json()["data"]
    for _ in range(300):
        if done(f"{fetch}/{check['taskId']}"):
            return
        time.sleep(0.05)
    pytest.fail("the check for updates did not end")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_is_accessible(logged_in_page, server, two_digit_counts_and_an_update, scheme):
    page = logged_in_page
    page.emulate_media(color_scheme=scheme)
    page.reload()
    expect(page.locator(".types [aria-current] .count")).to_have_text("18")
    expect(page.locator(".card .badge.update")).to_have_count(1)
    # The Civitai menu, open.
    page.locator(".scan-actions summary", has_text="Civitai").click()
    expect(page.get_by_role("button", name="Check for updates")).to_be_visible()
    assert_accessible(page)
    for path in PAGES:
        page.goto(server.url + path)
        page.wait_for_load_state("networkidle")
        if "pair_v1" in path:
            expect(page.get_by_role("dialog", name="pair_v1")).to_contain_text("Other versions Pair – v2")
        assert_accessible(page)
    # Select mode, one card picked, the bar below the grid.
    page.goto(server.url + "/")
    page.get_by_role("button", name="Select").click()
    pepper = page.locator("#grid > .card", has_text="pepper")  # 14.0 KB
    pepper.click()
    size = pepper.locator(".size").inner_text()  # Django's filesizeformat
    assert size.endswith("\xa0KB")
    expect(page.get_by_role("form", name="Picked models")).to_contain_text(f"1 picked · {size}")
    assert_accessible(page)
    # The model dialog's forms. Each dialog is named by its title, for a screen reader to announce.
    page.goto(server.url + "/model/loras/0/style/pepper.safetensors")
    dialog = page.get_by_role("dialog", name="pepper", exact=True)
    for button in ("Edit description", "Change preview", "Rename / move", "Delete…"):
        dialog.get_by_role("button", name=button).click()
        expect(dialog.get_by_role("button", name="Back to the model")).to_be_visible()
        assert_accessible(page)
        dialog.get_by_role("button", name="Back to the model").click()
        expect(dialog.get_by_role("button", name="Close", exact=True)).to_be_visible()
    page.goto(server.url + "/downloads/")
    page.get_by_role("button", name="New download").click()
    expect(
        page.get_by_role("dialog", name="New download").get_by_role("textbox", name="Link")
    ).to_be_focused()
    assert_accessible(page)
    # A workflow's models: the file to choose, then each model with its box and link.
    page.get_by_role("button", name="A workflow's models…").click()
    expect(page.get_by_role("dialog", name="Models of a workflow")).to_be_visible()
    assert_accessible(page)
    workflow = {
        "nodes": [
            {
                "id": 1,
                "type": "CheckpointLoaderSimple",
                "mode": 0,
                "widgets_values": ["alpha_xl.safetensors"],
            },
            {"id": 2, "type": "LoraLoader", "mode": 0, "widgets_values": ["pepper.safetensors", 1, 1]},
            {"id": 3, "type": "VAELoader", "mode": 0, "widgets_values": ["ae.safetensors"]},
        ]
    }
    page.locator("input[name=workflow]").set_input_files(
        files=[{"name": "flux.json", "mimeType": "application/json", "buffer": json.dumps(workflow).encode()}]
    )
    expect(page.get_by_role("dialog", name="flux.json needs 3 models")).to_be_visible()
    assert_accessible(page)
