"""Updates: a newer version of a library model out on Civitai (against the fake Civitai)."""

from __future__ import annotations

import json
import re
from html import unescape
from html.parser import HTMLParser

import pytest
from asgiref.sync import sync_to_async
from django.urls import reverse

from downloads_app import services as services_download
from downloads_app.models import DownloadTask
from downloads_app.selectors import resolution_get
from downloads_app.tasks import WorkerDownloadContext, download_task_run
from models_app import services
from models_app.info import info_toast, render_info_progress
from models_app.models import CivitaiModel, InfoTask, ModelFile, TrashItem
from models_app.roots import get_roots
from models_app.scanner import scan_folder
from models_app.updates import newest_of
from tests.conftest import free_port
from tests.model_files import write_model
from tests.test_download_tasks import WorkerView
from tests.test_library_views import card_names
from tests.worker_runs import run_until_ended

pytestmark = pytest.mark.django_db(transaction=True)

DREAMXL_V1 = {"id": 42011, "modelId": 4201, "name": "v1.0", "model": {"name": "DreamXL"}}
DREAMXL_V2 = {"id": 42012, "modelId": 4201, "name": "v2.0", "model": {"name": "DreamXL"}}
STORYBOOK = {"id": 1375453, "modelId": 1231067, "name": "v1.0", "model": {"name": "Storybook"}}


def with_info(folder, name: str, info: dict) -> None:
    """A model with the Civitai info sidecar of that version beside it."""
    write_model(folder / f"{name}.safetensors", payload=name.encode().ljust(64, b"\0"))
    (folder / f"{name}.civitai.info").write_text(json.dumps(info))


async def test_check_updates_asks_once_per_civitai_model_and_counts_what_is_newer(
    services_at_upstream, model_roots
):
    up = services_at_upstream
    story = up.models[1231067].versions[0]
    loras, checkpoints = model_roots["loras"], model_roots["checkpoints"]
    with_info(checkpoints, "dream_v1", DREAMXL_V1)
    with_info(checkpoints, "dream_v1_copy", DREAMXL_V1)
    with_info(loras, "storybook", {**STORYBOOK, "id": story.id})
    with_info(loras, "withdrawn", {"id": 5, "modelId": 999_999, "name": "v1"})
    write_model(loras / "homemade.safetensors")  # no Civitai info: nothing to ask
    await sync_to_async(scan_folder)(get_roots())

    task = await sync_to_async(services.info_start)(mode="updates")
    done = await run_until_ended(InfoTask, task.pk)
    assert (done.status, done.total, done.found, done.missing, done.failed) == ("done", 4, 2, 1, 0)
    asked = sorted(r.path for r in up.requests if r.path.startswith("/api/v1/models/"))
    assert asked == ["/api/v1/models/1231067", "/api/v1/models/4201", "/api/v1/models/999999"]
    newest = await sync_to_async(CivitaiModel.objects.get)(model_id=4201)
    assert (newest.version_id, newest.version_name) == (42012, "v2.0")
    assert "Check for updates done: 2 models with an update, 1 no longer on Civitai." in info_toast(done)
    progress = render_info_progress(done, finished=True)
    assert '<a href="/?updates=1">2 with an update</a>, 1 no longer on Civitai' in progress


async def test_without_a_connection_to_civitai_the_check_stops_at_once_and_says_why(model_roots, settings):
    settings.MM_CIVITAI_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with_info(model_roots["checkpoints"], "dream_v1", DREAMXL_V1)
    with_info(model_roots["checkpoints"], "dream_v1_copy", DREAMXL_V1)
    await sync_to_async(scan_folder)(get_roots())
    done = await run_until_ended(InfoTask, (await sync_to_async(services.info_start)(mode="updates")).pk)
    assert (done.status, done.processed) == ("failed", 0)
    assert "cannot be reached" in done.error and done.error.endswith("The updates found so far are kept.")


def test_a_model_with_a_newer_version_shows_it_and_offers_to_download_it_beside_it(
    services_at_upstream, model_roots, logged_in
):
    (model_roots["checkpoints"] / "xl").mkdir()
    with_info(model_roots["checkpoints"] / "xl", "dream_v1", DREAMXL_V1)
    write_model(model_roots["loras"] / "homemade.safetensors")
    scan_folder(get_roots())
    CivitaiModel.objects.create(model_id=4201, version_id=42012, version_name="v2.0")

    page = logged_in.get(reverse("library")).content.decode()
    assert page.count('class="badge update"') == 1 and "v2.0 is out on Civitai" in page
    assert re.search(r'href="\?updates=1".*?<span>Updates</span><span class="count">1</span>', page, re.S)
    only = logged_in.get(reverse("library") + "?updates=1").content.decode()
    assert "dream_v1" in only and "homemade" not in only

    args = ["checkpoints", 0, "xl/dream_v1.safetensors"]
    dialog = logged_in.get(
        reverse("model_detail", args=args), headers={"HX-Request": "true"}
    ).content.decode()
    assert "?modelVersionId=42012" in dialog and "v2.0 ↗</a> is out on Civitai." in dialog
    (link,) = re.findall(r'hx-get="([^"]*)"[^>]*>Download it…', dialog)
    choose = logged_in.get(unescape(link), headers={"HX-Request": "true"}).content.decode()
    assert re.search(r'<option value="42012"\s+selected>v2.0', choose)
    assert 'name="sub_folder" value="xl"' in choose and "dreamxl_v2_fp16.safetensors" in choose

    api = logged_in.get(reverse("api_model", args=args)).json()["data"]
    assert api["civitai"]["newerVersion"] == {"id": 42012, "name": "v2.0"}


class FormFields(HTMLParser):
    """What a browser sends for the form: its inputs, the checked boxes and radios, the selected options."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.data: dict[str, str] = {}
        self._select = ""
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "input" and a.get("name"):
            if a.get("type") not in ("checkbox", "radio") or "checked" in a:
                self.data[a["name"]] = a.get("value", "on")
        elif tag == "select":
            self._select = a.get("name", "")
        elif tag == "option" and self._select and "selected" in a:
            self.data[self._select] = a["value"]


def test_the_update_downloaded_from_the_dialog_puts_the_older_version_in_the_trash_when_asked(
    services_at_upstream, model_roots, logged_in
):
    xl = model_roots["checkpoints"] / "xl"
    xl.mkdir()
    with_info(xl, "dream_v1", DREAMXL_V1)
    (xl / "dream_v1.md").write_text("My own notes")
    scan_folder(get_roots())
    CivitaiModel.objects.create(model_id=4201, version_id=42012, version_name="v2.0")
    older = ModelFile.objects.get()

    def download_the_update(replace: bool) -> DownloadTask:
        dialog = logged_in.get(
            reverse("model_detail", args=["checkpoints", 0, "xl/dream_v1.safetensors"]),
            headers={"HX-Request": "true"},
        ).content.decode()
        (link,) = re.findall(r'hx-get="([^"]*)"[^>]*>Download it…', dialog)
        choose = logged_in.get(unescape(link), headers={"HX-Request": "true"}).content.decode()
        assert re.search(
            r'name="replace_older" checked> Move\s+<span[^>]*>Checkpoints / xl/dream_v1.safetensors', choose
        )
        form = FormFields(choose.split('id="download-form"')[1]).data
        if not replace:
            del form["replace_older"]  # the user unticks it
        queued = logged_in.post(reverse("download_create"), form, headers={"HX-Request": "true"})
        assert "Download queued" in queued.content.decode()
        row = logged_in.get(reverse("downloads")).content.decode().split('class="task ')[1]
        said = (
            'Once it is in, the older version, <span class="mono">checkpoints/xl/dream_v1.safetensors</span>'
        )
        assert (said in row) is replace
        task = DownloadTask.objects.latest("pk")
        DownloadTask.objects.filter(pk=task.pk).update(status="running", owner="worker-1")
        task.refresh_from_db()
        download_task_run(task, WorkerDownloadContext(WorkerView(lambda: "")))
        task.refresh_from_db()
        assert task.status == "done", task.error
        finished = logged_in.get(reverse("downloads")).content.decode().split('class="task ')[1]
        assert "goes to the Trash" not in finished  # the notice says what became of it
        return task

    kept = download_the_update(replace=False)
    assert (xl / "dream_v1.safetensors").exists() and (xl / "dreamxl_v2_fp16.safetensors").exists()
    assert kept.notice == "" and not TrashItem.objects.exists()

    (xl / "dreamxl_v2_fp16.safetensors").unlink()
    ModelFile.objects.filter(relative_path="xl/dreamxl_v2_fp16.safetensors").delete()
    replaced = download_the_update(replace=True)
    assert replaced.notice == "The older version, checkpoints/xl/dream_v1.safetensors, is in the Trash."
    assert (xl / "dreamxl_v2_fp16.safetensors").exists()
    assert sorted(p.name for p in xl.iterdir()) == [
        "dreamxl_v2_fp16.civitai.info", "dreamxl_v2_fp16.md", "dreamxl_v2_fp16.safetensors",
    ]  # fmt: skip
    item = TrashItem.objects.get()
    assert (item.relative_path, sorted(item.files)) == (
        "xl/dream_v1.safetensors", ["dream_v1.civitai.info", "dream_v1.md", "dream_v1.safetensors"],
    )  # fmt: skip
    assert not ModelFile.objects.filter(pk=older.pk).exists()
    assert list(ModelFile.objects.values_list("relative_path", flat=True)) == [
        "xl/dreamxl_v2_fp16.safetensors"
    ]


def test_an_older_version_that_cannot_go_to_the_trash_leaves_the_update_done_and_says_why(
    services_at_upstream, model_roots, settings
):
    with_info(model_roots["loras"], "dream_as_lora", DREAMXL_V1)  # filed among the LoRAs
    scan_folder(get_roots())
    older = ModelFile.objects.get()
    resolution = resolution_get(f"{services_at_upstream.civitai_url}/models/4201")
    task = services_download.download_as_linked(resolution)
    DownloadTask.objects.filter(pk=task.pk).update(replaces=older.pk, status="running", owner="worker-1")
    settings.MM_MODEL_ROOTS = f"checkpoints={model_roots['checkpoints']}"  # the LoRA folder left the settings
    task.refresh_from_db()
    download_task_run(task, WorkerDownloadContext(WorkerView(lambda: "")))
    task.refresh_from_db()
    assert task.status == "done", task.error
    assert task.notice == (
        "The older version, loras/dream_as_lora.safetensors, was not moved to the Trash: "
        "its model folder is no longer configured."
    )
    assert (model_roots["loras"] / "dream_as_lora.safetensors").exists()
    assert (model_roots["checkpoints"] / "dreamxl_v2_fp16.safetensors").exists()


def test_only_another_version_of_the_same_civitai_model_is_offered_to_replace(
    services_at_upstream, model_roots, logged_in
):
    with_info(model_roots["checkpoints"], "dream_v2", DREAMXL_V2)
    with_info(model_roots["loras"], "storybook", STORYBOOK)
    scan_folder(get_roots())
    same, other_model = ModelFile.objects.get(name="dream_v2"), ModelFile.objects.get(name="storybook")
    url = f"{services_at_upstream.civitai_url}/models/4201"
    for version, replaces, offered in (("42011", same.pk, True), ("42012", same.pk, False),
                                       ("42011", other_model.pk, False), ("42011", "x", False)):  # fmt: skip
        choose = logged_in.get(
            reverse("download_choose"), {"url": url, "version": version, "replaces": replaces},
            headers={"HX-Request": "true"},
        ).content.decode()  # fmt: skip
        assert ('name="replace_older"' in choose) is offered, (version, replaces)
    # A form that names one anyway (forged, or the version changed meanwhile) replaces nothing.
    form = {"url": url, "version": "42012", "folder_type": "checkpoints", "path_index": "0",
            "filename": "again.safetensors", "replaces": same.pk, "replace_older": "on"}  # fmt: skip
    logged_in.post(reverse("download_create"), form, headers={"HX-Request": "true"})
    assert DownloadTask.objects.get().replaces is None


def test_the_api_queues_an_update_that_replaces_the_older_version(
    services_at_upstream, model_roots, logged_in
):
    with_info(model_roots["checkpoints"], "dream_v1", DREAMXL_V1)
    with_info(model_roots["loras"], "storybook", STORYBOOK)
    scan_folder(get_roots())
    older = ModelFile.objects.get(name="dream_v1")

    def create(replaces: object):  # type: ignore[no-untyped-def]
        body = {
            "downloadUrl": f"{services_at_upstream.civitai_url}/models/4201",
            "fullname": "dream_v2.safetensors",
        }
        return logged_in.post(
            reverse("api_download_create"), {**body, "replaces": replaces}, content_type="application/json"
        )

    other = create({"type": "loras", "pathIndex": 0, "fullname": "storybook.safetensors"})
    assert other.status_code == 400
    assert other.json()["error"] == (
        "storybook.safetensors is not another version of this Civitai model: it cannot be replaced by it."
    )
    gone = create({"type": "checkpoints", "pathIndex": 0, "fullname": "nothing.safetensors"})
    assert (gone.status_code, gone.json()["error"]) == (404, "Model not found.")
    shapeless = create("dream_v1.safetensors")
    assert shapeless.json()["error"] == "replaces is {type, pathIndex, fullname}."
    assert not DownloadTask.objects.exists()
    created = create({"type": "checkpoints", "pathIndex": 0, "fullname": "dream_v1.safetensors"})
    assert created.status_code == 201
    assert DownloadTask.objects.get().replaces == older.pk  # the worker trashes it once the new one is in


def test_once_the_newer_version_is_in_the_library_the_older_one_has_no_update(model_roots, logged_in):
    with_info(model_roots["checkpoints"], "dream_v1", DREAMXL_V1)
    scan_folder(get_roots())
    CivitaiModel.objects.create(model_id=4201, version_id=42012, version_name="v2.0")
    assert 'class="badge update"' in logged_in.get(reverse("library")).content.decode()

    with_info(model_roots["checkpoints"], "dream_v2", DREAMXL_V2)  # downloaded since
    scan_folder(get_roots())
    page = logged_in.get(reverse("library")).content.decode()
    assert 'class="badge update"' not in page and "?updates=1" not in page
    none_left = logged_in.get(reverse("library") + "?updates=1").content.decode()
    assert "<h2>No updates</h2>" in none_left and "dream_v1" not in none_left


def test_a_models_dialog_lists_its_other_versions_in_the_library_and_which_is_newest(model_roots, logged_in):
    checkpoints = model_roots["checkpoints"]
    with_info(checkpoints, "dream_v1", DREAMXL_V1)
    with_info(checkpoints, "dream_v1_copy", DREAMXL_V1)
    (checkpoints / "new").mkdir()
    with_info(checkpoints / "new", "dream_v2", DREAMXL_V2)
    write_model(checkpoints / "homemade.safetensors")
    scan_folder(get_roots())

    def dialog(path: str) -> str:
        """The dialog's list of the model's other files, or "" when it has none."""
        url = reverse("model_detail", args=["checkpoints", 0, path])
        html = logged_in.get(url, headers={"HX-Request": "true"}).content.decode()
        _, found, rest = html.partition("<dt>Other versions</dt>")
        return re.sub(r"\s+", " ", rest.split("</dd>")[0]) if found else ""

    older = dialog("dream_v1.safetensors")
    # Newest version first, then the copy of the same version; each opens in the dialog.
    assert older.index("DreamXL – v2.0</a>") < older.index("A copy of this version</a>")
    assert 'hx-get="/model/checkpoints/0/new/dream_v2.safetensors" hx-target="#dialog"' in older
    # Newer by its version id; the newest, once Civitai was asked.
    assert (
        'Checkpoints · <span class="mono break">new/dream_v2.safetensors</span></span> <span class="muted small">newer</span>'
        in older
    )
    assert "newest" not in older and older.count(">newer</span>") == 1  # not the copy of the same version
    CivitaiModel.objects.create(model_id=4201, version_id=42012, version_name="v2.0")
    older = dialog("dream_v1.safetensors")
    assert 'new/dream_v2.safetensors</span></span> <span class="badge update">newest</span>' in older
    newer_url = reverse("model_detail", args=["checkpoints", 0, "new/dream_v2.safetensors"])
    newer = logged_in.get(newer_url, headers={"HX-Request": "true"}).content.decode()
    assert 'DreamXL – v2.0 ↗</a> <span class="muted">(the newest version)</span>' in newer
    assert dialog("new/dream_v2.safetensors").count("DreamXL – v1.0</a>") == 2
    assert dialog("homemade.safetensors") == ""  # no Civitai info: nothing to list


def test_older_versions_lists_the_models_a_newer_version_in_the_library_supersedes(model_roots, logged_in):
    checkpoints = model_roots["checkpoints"]
    with_info(checkpoints, "dream_v1", DREAMXL_V1)
    with_info(checkpoints, "dream_v1_copy", DREAMXL_V1)  # a copy of v1.0 is no newer version of it
    write_model(model_roots["loras"] / "homemade.safetensors")
    scan_folder(get_roots())
    page = logged_in.get(reverse("library")).content.decode()
    assert "?older=1" not in page  # no entry in the side bar while there is nothing to list
    assert "<h2>No older versions</h2>" in logged_in.get(reverse("library") + "?older=1").content.decode()

    with_info(checkpoints, "dream_v2", DREAMXL_V2)  # downloaded since
    scan_folder(get_roots())
    page = logged_in.get(reverse("library")).content.decode()
    assert re.search(
        r'href="\?older=1".*?<span>Older versions</span><span class="count">2</span>', page, re.S
    )
    older = logged_in.get(reverse("library") + "?older=1")
    assert card_names(older) == ["dream_v1", "dream_v1_copy"]
    assert '<h1 class="visually-hidden">Older versions</h1>' in older.content.decode()
    assert '<input type="hidden" name="older" value="1">' in older.content.decode()  # a search stays in it
    assert card_names(logged_in.get(reverse("library") + "?older=1&q=copy")) == ["dream_v1_copy"]


def test_the_api_starts_a_check_for_updates(logged_in):
    url = reverse("api_fetch")
    started = logged_in.post(url, {"mode": "updates"}, content_type="application/json")
    assert started.status_code == 202 and started.json()["data"]["mode"] == "updates"
    refused = logged_in.post(url, {"mode": "everything"}, content_type="application/json")
    assert refused.status_code == 400 and refused.json() == {
        "success": False,
        "error": 'mode must be "fetch" or "updates".',
    }


def test_the_admin_lists_what_civitai_said_last(admin_client):
    CivitaiModel.objects.create(model_id=4201, version_id=42012, version_name="v2.0")
    page = admin_client.get(reverse("admin:models_app_civitaimodel_changelist")).content.decode()
    assert "42012" in page and "v2.0" in page


def test_the_newest_version_is_the_first_published_one_on_the_models_page():
    versions = [
        {"id": 3, "index": 1, "status": "Published"},
        {"id": 4, "index": 0, "status": "Draft"},
        {"id": 2, "index": 0, "status": "Published"},
        {"name": "no id"},
    ]
    assert newest_of(versions)["id"] == 2
    assert newest_of([{"id": 7}, {"id": 6}])["id"] == 7  # no index: the order listed
    assert newest_of([{"id": 4, "status": "Draft"}]) is None
