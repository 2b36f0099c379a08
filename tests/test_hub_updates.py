"""Updates of files downloaded from a Hugging Face branch (against the fake hub): Check for updates asks
the hub what the file's path holds now."""

from __future__ import annotations

import hashlib
import re
from html import unescape

import pytest
from asgiref.sync import sync_to_async
from django.urls import reverse

from downloads_app.models import DownloadedFile, DownloadTask
from models_app import services
from models_app.info import info_toast
from models_app.models import InfoTask, TrashItem
from tests.conftest import free_port
from tests.model_files import safetensors_bytes
from tests.test_download_tasks import Running, queue, wait_for
from tests.test_updates import FormFields
from tests.upstream.server import HfRepo
from tests.worker_runs import run_until_ended

pytestmark = pytest.mark.django_db(transaction=True)

REPO = "test-org/changing-loras"
COMMIT = "e" * 40


@pytest.fixture
def hub(services_at_upstream):
    """A repository of two LoRAs on the fake hub, taken away again after the test (the hub is shared)."""
    up = services_at_upstream
    files = {
        name: up.add_file(f"changing-{name}", name, safetensors_bytes({"v": "1"}, name.encode() * 40))
        for name in ("style.safetensors", "pinned.safetensors")
    }
    repo = HfRepo(REPO, COMMIT, files)
    up.add_hf_repo(repo)
    yield up, repo
    del up.repos[REPO]


def push(up, repo: HfRepo, name: str, content: bytes) -> str:
    """A new commit holding another file under that name; returns its SHA256."""
    repo.files[name] = up.add_file(f"changing-{name}-{len(content)}", name, content)
    repo.commit = "f" * 40
    return hashlib.sha256(content).hexdigest()


async def download(link: str, **choices) -> None:
    task = await sync_to_async(queue)(link, folder_type="loras", **choices)
    async with Running():
        done = await wait_for(task.pk, {"done", "failed"})
    assert done.status == "done", done.error


async def check_for_updates(**options) -> InfoTask:
    task = await sync_to_async(services.info_start)(mode="updates")
    if options:
        await sync_to_async(InfoTask.objects.filter(pk=task.pk).update)(**options)
    return await run_until_ended(InfoTask, task.pk)


def resolves_asked(up) -> list[str]:
    return sorted(r.path for r in up.requests if r.path.startswith(f"/{REPO}/resolve/"))


async def test_a_file_changed_on_its_branch_is_an_update_that_replaces_it_keeping_its_sidecars(
    hub, logged_in, model_roots
):
    up, repo = hub
    await download(f"{up.hf_url}/{REPO}/resolve/main/style.safetensors")
    await download(f"{up.hf_url}/{REPO}/resolve/{COMMIT}/pinned.safetensors")  # at a commit: never changes
    up.requests.clear()

    unchanged = await check_for_updates()
    assert (unchanged.status, unchanged.total, unchanged.found, unchanged.failed) == ("done", 1, 0, 0)
    assert resolves_asked(up) == [f"/{REPO}/resolve/main/style.safetensors"]

    newer = push(up, repo, "style.safetensors", safetensors_bytes({"v": "2"}, b"retrained" * 20))
    push(up, repo, "pinned.safetensors", safetensors_bytes({"v": "2"}, b"pinned too" * 20))
    done = await check_for_updates()
    assert (done.status, done.total, done.found, done.failed) == ("done", 1, 1, 0)
    assert "Check for updates done: 1 model with an update." in info_toast(done)
    assert (await sync_to_async(DownloadedFile.objects.get)(hub_sha256=newer)).page_url.endswith(
        "/blob/main/style.safetensors"
    )

    def what_the_user_sees() -> tuple[str, str, str, dict]:
        page = logged_in.get(reverse("library")).content.decode()
        only = logged_in.get(reverse("library") + "?updates=1").content.decode()
        args = ["loras", 0, "style.safetensors"]
        dialog = logged_in.get(reverse("model_detail", args=args), headers={"HX-Request": "true"})
        api = logged_in.get(reverse("api_model", args=args)).json()["data"]
        return page, only, dialog.content.decode(), api

    page, only, dialog, api = await sync_to_async(what_the_user_sees)()
    assert page.count('title="A newer file is on Hugging Face">Update</span>') == 1
    assert re.search(r'href="\?updates=1".*?<span>Updates</span><span class="count">1</span>', page, re.S)
    assert "style" in only and "pinned" not in only
    blob = f"{up.hf_url}/{REPO}/blob/main/style.safetensors"
    assert f'<a class="badge update" href="{blob}"' in dialog
    assert "A newer file ↗</a> is on Hugging Face, at main" in dialog
    assert api["downloadedFrom"]["newerFile"]["sha256"] == newer

    # The user's own description of the model, which the new file keeps.
    (model_roots["loras"] / "style.md").write_text("My notes on this LoRA")
    (link,) = re.findall(r'hx-get="([^"]*)"[^>]*>Download it…', dialog)
    choose = await sync_to_async(logged_in.get)(unescape(link), headers={"HX-Request": "true"})
    choose = choose.content.decode()
    assert re.search(r'name="replace_older" checked> Replace\s+<span[^>]*>LoRAs / style.safetensors', choose)
    assert 'name="filename" value="style.safetensors"' in choose
    form = FormFields(choose.split('id="download-form"')[1]).data

    unticked = {k: v for k, v in form.items() if k != "replace_older"}
    refused = await sync_to_async(logged_in.post)(
        reverse("download_create"), unticked, headers={"HX-Request": "true"}
    )
    assert "style.safetensors already exists in that folder." in refused.content.decode()

    queued = await sync_to_async(logged_in.post)(
        reverse("download_create"), form, headers={"HX-Request": "true"}
    )
    assert "Download of style.safetensors queued." in queued.headers["HX-Trigger"]
    task = await sync_to_async(DownloadTask.objects.latest)("pk")
    row = await sync_to_async(logged_in.get)(reverse("downloads"))
    assert (
        'Replaces the library\'s <span class="mono">loras/style.safetensors</span> once it is in: '
        "the older file goes to the Trash, its sidecars stay."
    ) in row.content.decode()
    async with Running():
        done = await wait_for(task.pk, {"done", "failed"})
    assert (done.status, done.notice) == (
        "done",
        "The older file, loras/style.safetensors, is in the Trash.",
    ), done.error
    assert hashlib.sha256((model_roots["loras"] / "style.safetensors").read_bytes()).hexdigest() == newer
    assert (model_roots["loras"] / "style.md").read_text() == "My notes on this LoRA"
    item = await sync_to_async(TrashItem.objects.get)()
    assert (item.relative_path, item.files) == ("style.safetensors", ["style.safetensors"])

    page, only, dialog, api = await sync_to_async(what_the_user_sees)()
    assert "badge update" not in page and "A newer file" not in dialog
    assert api["sha256"] == newer and api["description"] == "My notes on this LoRA"
    assert api["downloadedFrom"]["newerFile"] is None


async def test_a_file_gone_from_its_branch_fails_its_check_in_words(hub):
    up, repo = hub
    await download(f"{up.hf_url}/{REPO}/resolve/main/style.safetensors")
    del repo.files["style.safetensors"]
    done = await check_for_updates()
    assert (done.status, done.found, done.failed) == ("done", 0, 1)
    assert done.error == (
        "loras/style.safetensors: That file does not exist in this Hugging Face repository at that revision."
    )


async def test_a_check_the_worker_makes_on_its_own_counts_only_what_changed_since_the_last(hub):
    up, repo = hub
    await download(f"{up.hf_url}/{REPO}/resolve/main/style.safetensors")
    push(up, repo, "style.safetensors", safetensors_bytes({"v": "2"}, b"retrained" * 20))
    first = await check_for_updates(automatic=True)
    assert first.found == 1
    assert "Out now: a newer version of 1 model (Updates, in the side bar)." in info_toast(first)
    again = await check_for_updates(automatic=True)
    assert (again.status, again.found) == ("done", 0)  # the same update: no second toast
    push(up, repo, "style.safetensors", safetensors_bytes({"v": "3"}, b"again" * 20))
    assert (await check_for_updates(automatic=True)).found == 1


async def test_the_api_replaces_a_file_by_the_newer_file_of_its_path(hub, logged_in, model_roots):
    up, repo = hub
    await download(f"{up.hf_url}/{REPO}/resolve/main/style.safetensors")
    newer = push(up, repo, "style.safetensors", safetensors_bytes({"v": "2"}, b"retrained" * 20))
    style = {"type": "loras", "pathIndex": 0, "fullname": "style.safetensors"}

    def create(**extra):  # type: ignore[no-untyped-def]
        body = {"downloadUrl": f"{up.hf_url}/{REPO}/blob/main/style.safetensors", **style, **extra}
        return logged_in.post(reverse("api_download_create"), body, content_type="application/json")

    taken = await sync_to_async(create)()
    assert (taken.status_code, taken.json()["error"]) == (
        400,
        "style.safetensors already exists in that folder.",
    )
    other = await sync_to_async(create)(replaces={**style, "fullname": "nothing.safetensors"})
    assert other.status_code == 404
    created = await sync_to_async(create)(replaces=style)
    assert created.status_code == 201, created.json()
    async with Running():
        done = await wait_for(created.json()["data"]["taskId"], {"done", "failed"})
    assert (done.status, done.notice) == ("done", "The older file, loras/style.safetensors, is in the Trash.")
    assert hashlib.sha256((model_roots["loras"] / "style.safetensors").read_bytes()).hexdigest() == newer


async def test_the_download_dialog_asks_the_hub_again_when_opened_not_when_its_form_changes(hub, logged_in):
    up, repo = hub
    link = f"{up.hf_url}/{REPO}/blob/main/style.safetensors"
    await download(link)

    def open_dialog(**form: str) -> str:
        response = logged_in.get(
            reverse("download_choose"), {"url": link, **form}, headers={"HX-Request": "true"}
        )
        return response.content.decode()

    assert "You already have this file" in await sync_to_async(open_dialog)()
    push(up, repo, "style.safetensors", safetensors_bytes({"v": "2"}, b"retrained" * 20))
    up.requests.clear()
    assert "You already have this file" not in await sync_to_async(open_dialog)()
    await sync_to_async(open_dialog)(version="main", folder_type="checkpoints")  # the form changed
    assert resolves_asked(up) == [f"/{REPO}/resolve/main/style.safetensors"]


async def test_a_hub_out_of_reach_ends_the_check_at_the_first_file_and_says_why(hub, settings, model_roots):
    up, _repo = hub
    await download(f"{up.hf_url}/{REPO}/resolve/main/style.safetensors")
    await download(f"{up.hf_url}/{REPO}/resolve/main/pinned.safetensors")
    settings.HF_ENDPOINT = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    done = await check_for_updates()
    assert (done.status, done.total, done.processed) == ("failed", 2, 0)
    assert "cannot be reached" in done.error and done.error.endswith("The updates found so far are kept.")
