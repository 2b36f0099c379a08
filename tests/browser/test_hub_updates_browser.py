"""A file downloaded from a Hugging Face branch that changed there: found by Check for updates, replaced
from its dialog under its own name, its description kept."""

from __future__ import annotations

import hashlib
import os
import re
import time

import requests
from playwright.sync_api import expect

from tests.browser.conftest import api_headers
from tests.model_files import safetensors_bytes
from tests.upstream.server import HfRepo

REPO = "test-org/changing-loras"


def wait_until(condition, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_newer_file_on_the_branch_is_found_and_replaces_the_older_under_its_name(
    logged_in_page, server, fake_upstream
):
    up = fake_upstream
    older = safetensors_bytes({"v": "1"}, b"first take" * 40)
    up.add_hf_repo(
        HfRepo(
            REPO, "e" * 40, {"inkwash.safetensors": up.add_file("changing-v1", "inkwash.safetensors", older)}
        )
    )
    try:
        created = requests.post(
            f"{server.url}/model-manager/model",
            json={
                "downloadUrl": f"{up.hf_url}/{REPO}/blob/main/inkwash.safetensors",
                "type": "loras",
                "pathIndex": 0,
                "fullname": "inkwash.safetensors",
            },
            headers=api_headers(server),
            timeout=10,
        )
        assert created.status_code == 201, created.text
        inkwash = server.roots["loras"] / "inkwash.safetensors"
        wait_until(lambda: inkwash.exists())
        (server.roots["loras"] / "inkwash.md").write_text("My notes on this LoRA")
        newer = safetensors_bytes({"v": "2"}, b"retrained" * 40)
        up.repos[REPO].files["inkwash.safetensors"] = up.add_file("changing-v2", "inkwash.safetensors", newer)

        page = logged_in_page
        page.reload()
        page.locator("#civitai-menu summary").click()
        page.get_by_role("button", name=re.compile("^Check for updates")).click()
        expect(page.locator("#toasts")).to_contain_text("Check for updates done: 1 model with an update")
        updates = page.get_by_role("navigation", name="Folder types").get_by_role(
            "link", name=re.compile("^Updates")
        )
        expect(updates).to_contain_text("1")
        updates.click()
        card = page.locator(".card", has_text="inkwash")
        expect(card.locator(".badge.update")).to_have_attribute("title", "A newer file is on Hugging Face")
        card.click()

        dialog = page.locator("dialog[open]")
        expect(dialog).to_contain_text("A newer file ↗ is on Hugging Face, at main")
        if os.environ.get("MM_SHOTS"):
            page.screenshot(path=f"{os.environ['MM_SHOTS']}/hub-update-dialog.png")
        dialog.get_by_role("button", name="Download it…").click()
        expect(dialog.get_by_label("File name")).to_have_value("inkwash.safetensors")
        replace = dialog.get_by_role("checkbox", name=re.compile("^Replace"))
        expect(replace).to_be_checked()
        if os.environ.get("MM_SHOTS"):
            page.screenshot(path=f"{os.environ['MM_SHOTS']}/hub-update-download.png")
        dialog.get_by_role("button", name=re.compile("^Download")).click()
        expect(dialog).to_contain_text("Download queued")

        wait_until(lambda: hashlib.sha256(inkwash.read_bytes()).digest() == hashlib.sha256(newer).digest())
        assert (server.roots["loras"] / "inkwash.md").read_text() == "My notes on this LoRA"
        page.keyboard.press("Escape")
        page.get_by_role("link", name="Trash").click()
        expect(page.locator("body")).to_contain_text("inkwash.safetensors")
        page.get_by_role("link", name="Library").click()
        expect(page.locator(".card", has_text="inkwash").locator(".badge.update")).to_have_count(0)
    finally:
        del up.repos[REPO]
