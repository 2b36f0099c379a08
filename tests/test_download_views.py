from __future__ import annotations

import hashlib
import json
import re
import shutil

import pytest
from django.urls import reverse

from downloads_app import services
from downloads_app.models import ApiKey, DownloadSettings, DownloadTask
from downloads_app.selectors import resolution_get
from models_app.models import ScanTask
from models_app.roots import get_roots
from models_app.scanner import scan_folder
from tests.model_files import write_model

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true", "HX-Target": "dialog"}


def choose(client, url, **fields):
    return client.post(reverse("download_choose"), {"url": url, **fields}, headers=HX)


def test_the_downloads_page_lists_tasks_with_progress(logged_in, services_at_upstream):
    DownloadTask.objects.create(
        platform="civitai", source_url="https://civitai.com/models/1", download_url="https://civitai.com/api/download/models/2",
        folder_type="loras", filename="half.safetensors", status="paused", downloaded_size=512, total_size=1024,
    )  # fmt: skip
    html = logged_in.get(reverse("downloads")).content.decode()
    assert "half.safetensors" in html
    assert '<progress max="100" value="50"' in html
    assert "Resume" in html and "Cancel" in html


def test_step_one_refuses_what_is_not_a_link(logged_in, services_at_upstream):
    response = choose(logged_in, "not a link")
    assert response.status_code == 200
    assert "That is not a link" in response.content.decode()


def test_a_missing_key_links_to_the_settings_where_it_is_added(logged_in, services_at_upstream):
    up = services_at_upstream
    settings_link = f'in <a href="{reverse("settings")}#api-keys">Settings</a>'
    html = choose(logged_in, f"{up.hf_url}/gated-org/gated-model").content.decode()
    assert f"add a Hugging Face token {settings_link}, and accept" in html
    DownloadTask.objects.create(
        platform="civitai", source_url="https://civitai.com/models/5001", download_url="https://civitai.com/api/download/models/5",
        folder_type="loras", filename="members.safetensors", status="failed",
        error="This model needs a Civitai API key: add one in Settings. <b>not markup</b>",
    )  # fmt: skip
    html = logged_in.get(reverse("downloads")).content.decode()
    assert f"add one {settings_link}. &lt;b&gt;not markup&lt;/b&gt;" in html


def test_without_a_civitai_key_the_dialog_says_so_before_the_download(logged_in, services_at_upstream):
    up = services_at_upstream
    hint = "No Civitai API key is set"
    html = choose(logged_in, f"{up.civitai_url}/models/4201").content.decode()
    assert hint in html and f'Add one in <a href="{reverse("settings")}#api-keys">Settings</a>.' in html
    assert hint not in choose(logged_in, f"{up.hf_url}/demo-org/demo-models").content.decode()
    ApiKey.objects.create(service="civitai", key="civitai-good-key")
    assert hint not in choose(logged_in, f"{up.civitai_url}/models/4201").content.decode()


def test_step_two_offers_versions_files_and_the_suggested_folder(logged_in, services_at_upstream):
    up = services_at_upstream
    html = choose(logged_in, f"{up.civitai_url}/models/4201").content.decode()
    assert "DreamXL" in html
    assert '<option value="42012" selected>v2.0' in html
    assert "dreamxl_v2_fp32.safetensors" in html
    assert '<option value="checkpoints" selected>' in html
    assert 'name="filename" value="dreamxl_v2_fp16.safetensors"' in html
    assert "the Civitai info (.civitai.info)" in html
    # Civitai's description, to read before choosing, with its script gone.
    assert "<summary>Description</summary>" in html
    assert "<b>Bold</b>" in html and "<script>" not in html and "alert(" not in html


def test_the_versions_example_images_are_shown_before_downloading_it(logged_in, services_at_upstream):
    up = services_at_upstream
    html = choose(logged_in, f"{up.civitai_url}/models/1231067").content.decode()
    assert "Example images <span" in html
    assert f'<img src="{up.civitai_url}/images/storybook.png" alt="" loading="lazy"' in html
    assert "Use as preview" not in html  # nothing in the library yet to give a preview to
    hub = choose(logged_in, f"{up.hf_url}/demo-org/demo-models").content.decode()
    assert "Example images" not in hub


def test_a_file_already_in_the_library_is_pointed_out_before_downloading_it_again(
    logged_in, services_at_upstream, model_roots
):
    up = services_at_upstream
    data = up.files["storybook"].path.read_bytes()
    mine = model_roots["loras"] / "mine" / "story.safetensors"
    mine.parent.mkdir()
    mine.write_bytes(data)
    mine.with_suffix(".sha256").write_text(hashlib.sha256(data).hexdigest().upper())
    scan_folder(get_roots())
    html = choose(logged_in, f"{up.civitai_url}/models/1231067").content.decode()
    link = reverse("model_detail", args=["loras", 0, "mine/story.safetensors"])
    assert "You already have this file (same SHA256)" in html
    assert f'<a href="{link}" target="_blank">LoRAs · mine/story.safetensors</a>' in html
    assert "You already have" not in choose(logged_in, f"{up.civitai_url}/models/4201").content.decode()


def test_changing_the_version_renames_the_file(logged_in, services_at_upstream):
    up = services_at_upstream
    response = logged_in.get(
        reverse("download_choose"),
        {
            "url": f"{up.civitai_url}/models/4201",
            "version": "42011",
            "filename": "mine.safetensors",
            "folder_type": "checkpoints",
        },
        headers={**HX, "HX-Trigger-Name": "version"},
    )
    assert 'name="filename" value="dreamxl_v1.safetensors"' in response.content.decode()


def test_picking_a_file_of_a_repos_vae_folder_picks_the_vae_folder_and_back(
    logged_in, services_at_upstream, model_roots, settings
):
    url = f"{services_at_upstream.hf_url}/demo-org/demo-models"
    vae_file = f"{services_at_upstream.hf_url}/demo-org/demo-models/blob/main/vae/diffusion_pytorch_model.safetensors"
    # No VAE folder configured: the folder suggested is one there is.
    assert '<option value="checkpoints" selected>' in choose(logged_in, vae_file).content.decode()
    settings.MM_MODEL_ROOTS += f";vae={model_roots['loras'].parent / 'vae'}"
    assert '<option value="vae" selected>' in choose(logged_in, vae_file).content.decode()
    first = choose(logged_in, url).content.decode()
    assert '<option value="checkpoints" selected>' in first  # the repo's name tells nothing

    def pick(file: str, **form: str) -> str:
        data = {"url": url, "file": file, "filename": "mine.safetensors", **form}
        headers = {**HX, "HX-Trigger-Name": "file"}
        return logged_in.get(reverse("download_choose"), data, headers=headers).content.decode()

    vae = pick("vae/diffusion_pytorch_model.safetensors", folder_type="checkpoints", path_index="1")
    assert '<option value="vae" selected>' in vae
    # Its generic name would clash with every other repo's VAE: the repo's name and folder stand in for it.
    assert 'name="filename" value="demo-models_vae.safetensors"' in vae
    back = pick("flux1-schnell-fp8.safetensors", folder_type="vae", path_index="0")
    assert '<option value="checkpoints" selected>' in back
    assert 'name="filename" value="flux1-schnell-fp8.safetensors"' in back


def test_a_versions_training_data_is_listed_but_cannot_be_picked(logged_in, services_at_upstream):
    url = f"{services_at_upstream.civitai_url}/models/4201"
    html = choose(logged_in, url, version="42011").content.decode()
    files = re.sub(r"\s+", " ", html.split('<fieldset class="files">')[1].split("</fieldset>")[0])
    training = files.split("dreamxl_v1_training_data.zip")[0].rsplit("<label", 1)[1]
    assert " disabled " in training and "checked" not in training
    assert "dreamxl_v1_training_data.zip (Training Data · Other)</span>" in files
    assert "· not a model file ComfyUI loads</span>" in files
    assert 'name="filename" value="dreamxl_v1.safetensors"' in html  # the model, though listed second
    # Sent anyway (by hand), it is refused.
    zip_id = re.search(r'value="([^"]+)"', training)[1]
    form = {"url": url, "version": "42011", "file": zip_id, "folder_type": "checkpoints", "path_index": "0",
            "filename": "dreamxl_v1_training_data.zip"}  # fmt: skip
    refused = logged_in.post(reverse("download_create"), form, headers=HX).content.decode()
    assert "must end in a model extension" in refused and not DownloadTask.objects.exists()


def test_a_typed_file_name_is_kept_when_the_folder_changes(logged_in, services_at_upstream):
    up = services_at_upstream
    response = logged_in.get(
        reverse("download_choose"),
        {
            "url": f"{up.civitai_url}/models/4201",
            "version": "42012",
            "filename": "mine.safetensors",
            "folder_type": "loras",
        },
        headers={**HX, "HX-Trigger-Name": "folder_type"},
    )
    html = response.content.decode()
    assert 'name="filename" value="mine.safetensors"' in html
    assert '<option value="loras" selected>' in html


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"filename": "../evil.safetensors"}, "may not contain /"),
        ({"filename": "model.exe"}, "must end in a model extension"),
        ({"filename": ".hidden.safetensors"}, "start with a dot"),
        ({"sub_folder": "../../outside"}, "must stay inside the model folder"),
        ({"sub_folder": "/".join(["d" * 250] * 5)}, "pass 1024 characters together"),
        ({"folder_type": "nope"}, "There is no nope folder"),
        ({"path_index": "7"}, "There is no checkpoints folder number 7"),
    ],
)
def test_bad_destinations_get_a_clear_message(logged_in, services_at_upstream, fields, message):
    up = services_at_upstream
    data = {"url": f"{up.civitai_url}/models/4201", "version": "42012", "folder_type": "checkpoints", "path_index": "0",
            "filename": "ok.safetensors", **fields}  # fmt: skip
    response = logged_in.post(reverse("download_create"), data, headers=HX)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not DownloadTask.objects.exists()


def test_the_dialog_says_the_space_free_in_each_folder_and_when_the_file_will_not_fit(
    logged_in, services_at_upstream, monkeypatch
):
    url = f"{services_at_upstream.civitai_url}/models/4201"
    html = choose(logged_in, url).content.decode()
    (option,) = re.findall(r'<select name="path_index".*?(<option.*?</option>)', html, re.S)
    assert re.search(r"/checkpoints · [\d.]+\s[KMGT]?B free</option>", option), option
    assert "Not enough space" not in html

    import models_app.selectors

    disk = shutil.disk_usage("/")
    monkeypatch.setattr(
        models_app.selectors.shutil, "disk_usage", lambda path: disk._replace(free=100 * 1024)
    )
    html = choose(logged_in, url).content.decode()  # v2.0's primary file: 195.4 KB
    assert "/checkpoints · 100.0\xa0KB free</option>" in html
    assert (
        "Not enough space in that folder: the file takes 195.4\xa0KB, and 100.0\xa0KB are free. "
        "Free some, or pick another folder." in html
    )


def test_an_existing_file_is_a_clash(logged_in, services_at_upstream, model_roots):
    up = services_at_upstream
    (model_roots["checkpoints"] / "taken.safetensors").write_bytes(b"x")
    data = {
        "url": f"{up.civitai_url}/models/4201",
        "folder_type": "checkpoints",
        "path_index": "0",
        "filename": "taken.safetensors",
    }
    assert "already exists" in logged_in.post(reverse("download_create"), data, headers=HX).content.decode()


def test_a_folder_on_a_drive_not_mounted_is_refused_and_a_new_type_folder_is_not(
    logged_in, services_at_upstream, model_roots, settings
):
    models = model_roots["loras"].parent
    unmounted, new_type = models.parent / "nas" / "models" / "loras", models / "vae"
    settings.MM_MODEL_ROOTS += f";loras={unmounted};vae={new_type}"
    data = {"url": f"{services_at_upstream.civitai_url}/models/4201", "version": "42012",
            "filename": "ok.safetensors"}  # fmt: skip
    listed = logged_in.get(
        reverse("download_choose"), {"url": data["url"], "folder_type": "loras"}, headers=HX
    )
    assert f'<option value="1" >{unmounted} (not there)</option>' in listed.content.decode()
    refused = logged_in.post(reverse("download_create"), {**data, "folder_type": "loras", "path_index": "1"})
    assert (
        f"{unmounted} is not there, nor the folder it goes in: is its drive mounted? Nothing was downloaded."
        in refused.content.decode()
    )
    assert not DownloadTask.objects.exists() and not unmounted.parent.parent.exists()
    # ComfyUI's models folder without a vae folder yet: the download makes it.
    queued = logged_in.post(reverse("download_create"), {**data, "folder_type": "vae", "path_index": "0"})
    assert "Download queued" in queued.content.decode()


def test_creating_queues_a_task_with_what_was_chosen(logged_in, services_at_upstream):
    up = services_at_upstream
    data = {"url": f"{up.civitai_url}/models/4201", "version": "42012", "file": None, "folder_type": "checkpoints",
            "path_index": "0", "sub_folder": "sdxl/new", "filename": "dream.safetensors", "save_info": "on"}  # fmt: skip
    data["file"] = next(f.id for f in resolution_get(data["url"]).versions[0].files if "fp32" in f.name)
    response = logged_in.post(reverse("download_create"), data, headers=HX)
    assert "Download queued" in response.content.decode()
    assert "queued" in response["HX-Trigger"]
    assert "See downloads" in response.content.decode()  # asked from the library: the list is a page away
    task = DownloadTask.objects.get()
    assert (task.sub_folder, task.filename, task.status, task.platform) == (
        "sdxl/new",
        "dream.safetensors",
        "queued",
        "civitai",
    )
    assert task.download_url.endswith("fp=fp32")
    assert task.expected_sha256 == up.files["dreamxl-v2-fp32"].sha256
    assert (task.save_info, task.save_description) == (True, False)


def test_several_links_at_once_are_each_queued_as_named_or_say_why_not(
    logged_in, services_at_upstream, model_roots
):
    up = services_at_upstream
    (model_roots["loras"] / "mine.sha256").write_text(up.files["storybook"].sha256)
    write_model(model_roots["loras"] / "mine.safetensors")  # the Storybook LoRA, under another name
    scan_folder(get_roots())
    assert 'hx-get="/downloads/batch/"' in logged_in.get(reverse("download_new"), headers=HX).content.decode()
    assert 'name="urls"' in logged_in.get(reverse("download_batch"), headers=HX).content.decode()
    pasted = f"""
        {up.civitai_url}/models/4201
        {up.civitai_url}/models/4201?modelVersionId=42011, {up.civitai_url}/models/4201
        {up.civitai_url}/models/1231067
        {up.storage_url}/files/hf-schnell
        not-a-link
    """
    response = logged_in.post(reverse("download_batch"), {"urls": pasted}, headers=HX)
    html = response.content.decode()
    assert json.loads(response["HX-Trigger"])["toast"] == {
        "message": "2 downloads queued. 1 you have already. 2 could not be.",
        "level": "info",
    }
    assert "2 of 5 queued" in html
    tasks = DownloadTask.objects.order_by("pk")
    assert [(t.folder_type, t.filename, t.version_name) for t in tasks] == [
        ("checkpoints", "dreamxl_v2_fp16.safetensors", "v2.0"),  # the newest version, its primary file
        ("checkpoints", "dreamxl_v1.safetensors", "v1.0"),  # the version the link names
    ]
    outcomes = re.findall(
        r'<li class="(queued|had|refused)">\s*<span class="mono small break">([^<]*)</span>\s*(.*?)</li>',
        html,
        re.S,
    )
    assert [(kind, link) for kind, link, _ in outcomes] == [
        ("queued", f"{up.civitai_url}/models/4201"),
        ("queued", f"{up.civitai_url}/models/4201?modelVersionId=42011"),
        ("had", f"{up.civitai_url}/models/1231067"),
        ("refused", f"{up.storage_url}/files/hf-schnell"),
        ("refused", "not-a-link"),
    ]  # each once, in the order pasted
    said = [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", text)).strip() for _, _, text in outcomes]
    assert said[0] == "→ dreamxl_v2_fp16.safetensors in Checkpoints (DreamXL, v2.0)"
    assert said[2] == "You have it already: LoRAs · mine.safetensors"
    assert 'href="/model/loras/0/mine.safetensors"' in outcomes[2][2]  # its dialog
    assert said[3] == "The link does not say what kind of model it is: add it on its own to pick its folder."
    assert said[4] == "That is not a link: paste an http(s) address, a Civitai link or a Hugging Face link."
    assert "See downloads" in html


def test_several_links_go_into_one_subfolder_of_each_ones_folder_when_asked(logged_in, services_at_upstream):
    up = services_at_upstream
    pasted = f"{up.civitai_url}/models/4201\n{up.civitai_url}/models/1231067"
    html = logged_in.post(
        reverse("download_batch"), {"urls": pasted, "sub_folder": " /new/2026-12/ "}, headers=HX
    ).content.decode()
    assert "→ <strong>dreamxl_v2_fp16.safetensors</strong> in Checkpoints / new/2026-12" in html
    tasks = DownloadTask.objects.order_by("pk").values_list("folder_type", "sub_folder")
    assert list(tasks) == [("checkpoints", "new/2026-12"), ("loras", "new/2026-12")]


def test_several_links_refuses_none_or_too_many_and_keeps_what_was_pasted(logged_in, services_at_upstream):
    empty = logged_in.post(reverse("download_batch"), {"urls": " \n "}, headers=HX).content.decode()
    assert "Paste one link a line." in empty
    outside = logged_in.post(
        reverse("download_batch"), {"urls": "https://civitai.com/models/1", "sub_folder": "../up"}, headers=HX
    ).content.decode()
    assert "The subfolder must stay inside the model folder" in outside and 'value="../up"' in outside
    many = "\n".join(f"https://civitai.com/models/{n}" for n in range(51))
    refused = logged_in.post(reverse("download_batch"), {"urls": many}, headers=HX).content.decode()
    assert (
        "At most 50 links at once: these are 51." in refused
        and "https://civitai.com/models/50</textarea>" in refused
    )
    assert not DownloadTask.objects.exists()


def test_queued_from_the_downloads_page_the_dialog_just_closes(logged_in, services_at_upstream):
    up = services_at_upstream
    data = {"url": f"{up.civitai_url}/models/4201", "version": "42012", "folder_type": "checkpoints",
            "path_index": "0", "filename": "dream.safetensors"}  # fmt: skip
    on_downloads = {**HX, "HX-Current-URL": f"http://testserver{reverse('downloads')}"}
    html = logged_in.post(reverse("download_create"), data, headers=on_downloads).content.decode()
    assert "Download queued" in html and "See downloads" not in html
    assert '<form method="dialog"><button class="button primary">Done</button></form>' in html


def test_a_nul_in_a_civitai_description_is_dropped_not_fatal(logged_in, services_at_upstream, monkeypatch):
    up = services_at_upstream
    monkeypatch.setattr(up.models[4201], "name", "Dream\x00XL")
    monkeypatch.setattr(up.models[4201], "description", "<p>The be\x00st</p>")
    data = {"url": f"{up.civitai_url}/models/4201?nul", "version": "42012", "folder_type": "checkpoints",
            "path_index": "0", "filename": "dream.safetensors", "save_description": "on", "save_info": "on"}  # fmt: skip
    response = logged_in.post(reverse("download_create"), data, headers=HX)
    assert "Download queued" in response.content.decode()
    task = DownloadTask.objects.get()
    assert task.title == "DreamXL"
    assert "The best" in task.description_html
    assert task.info["model"]["name"] == "DreamXL"


def test_task_buttons_pause_resume_cancel_and_remove(logged_in, db):
    task = DownloadTask.objects.create(platform="direct", source_url="https://x.test/a", download_url="https://x.test/a",
                                       folder_type="loras", filename="a.safetensors")  # fmt: skip
    url = lambda action: reverse("download_action", args=[task.pk, action])  # noqa: E731
    assert "Resume" in logged_in.post(url("pause"), headers={"HX-Request": "true"}).content.decode()
    assert DownloadTask.objects.get().status == "paused"
    logged_in.post(url("resume"))
    assert DownloadTask.objects.get().status == "queued"
    logged_in.post(url("cancel"))
    assert DownloadTask.objects.get().status == "cancelled"
    assert logged_in.post(url("explode")).status_code == 400
    DownloadTask.objects.filter(pk=task.pk).update(status="queued")
    row = logged_in.post(url("next"), headers={"HX-Request": "true"}).content.decode()
    assert "Up next" in row and "Download next" not in row and DownloadTask.objects.get().priority == 1
    logged_in.post(url("cancel"))
    logged_in.post(url("delete"))
    assert not DownloadTask.objects.exists()
    assert logged_in.post(url("pause")).status_code == 404


def test_the_line_under_the_title_sums_up_the_unfinished_downloads(logged_in, db):
    def line() -> str:
        html = logged_in.get(reverse("downloads")).content.decode()
        return " ".join(
            re.search(r'<p id="downloads-summary"[^>]*>(.*?)</p>', html, re.S)[1].split()
        )  # \xa0 too

    common = {"platform": "direct", "source_url": "https://x.test/a", "download_url": "https://x.test/a", "folder_type": "loras"}  # fmt: skip
    assert line() == ""
    DownloadTask.objects.create(
        **common, filename="a", status="running", downloaded_size=40, total_size=100, bps=10
    )
    DownloadTask.objects.create(**common, filename="b", status="queued", total_size=200)
    DownloadTask.objects.create(**common, filename="c", status="queued")  # its size is not known yet
    DownloadTask.objects.create(**common, filename="d", status="paused", downloaded_size=10, total_size=50)
    DownloadTask.objects.create(**common, filename="e", status="done", downloaded_size=5, total_size=5)
    DownloadTask.objects.create(**common, filename="f", status="failed", total_size=999)
    assert line() == (
        "1 running · 2 queued · 1 paused — 260 bytes to go at 10 bytes/s, about 26 s (40 bytes more paused)"
    )
    DownloadTask.objects.exclude(status__in=["done", "failed"]).update(status="paused", bps=0)
    assert line() == "4 paused — 300 bytes to go once resumed"
    DownloadTask.objects.update(status="done")
    assert line() == ""


def test_clear_finished_takes_done_and_cancelled_downloads_off_the_list(logged_in, db):
    def task(name: str, status: str) -> DownloadTask:
        return DownloadTask.objects.create(platform="direct", source_url="https://x.test/a", download_url="https://x.test/a",
                                           folder_type="loras", filename=name, status=status)  # fmt: skip

    kept = [
        task("failed.safetensors", "failed"),
        task("paused.safetensors", "paused"),
        task("queued.safetensors", "queued"),
    ]
    task("done.safetensors", "done")
    task("cancelled.safetensors", "cancelled")
    page = logged_in.get(reverse("downloads")).content.decode()
    assert 'class="button ghost clear-finished"' in page
    response = logged_in.post(reverse("downloads_clear"), headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="download-tasks"')
    assert "failed.safetensors" in html and "paused.safetensors" in html and "queued.safetensors" in html
    assert "done.safetensors" not in html and "cancelled.safetensors" not in html
    assert (
        json.loads(response["HX-Trigger"])["toast"]["message"]
        == "2 finished downloads cleared from the list."
    )
    assert sorted(DownloadTask.objects.values_list("pk", flat=True)) == sorted(t.pk for t in kept)
    assert logged_in.get(reverse("downloads_clear")).status_code == 405


def test_pause_all_and_resume_all_act_on_every_download_they_apply_to(logged_in, db):
    def task(name: str, status: str, requested: str = "") -> DownloadTask:
        return DownloadTask.objects.create(platform="direct", source_url="https://x.test/a", download_url="https://x.test/a",
                                           folder_type="loras", filename=name, status=status, requested=requested)  # fmt: skip

    def state(task: DownloadTask) -> tuple[str, str]:
        task.refresh_from_db()
        return task.status, task.requested

    queued, running, paused = task("q", "queued"), task("r", "running"), task("p", "paused")
    failed, done, cancelling = task("f", "failed"), task("d", "done"), task("c", "running", "cancel")
    page = logged_in.get(reverse("downloads")).content.decode()
    assert 'class="button ghost pause-all"' in page and 'class="button ghost resume-all"' in page

    response = logged_in.post(reverse("downloads_every", args=["pause"]), headers={"HX-Request": "true"})
    assert json.loads(response["HX-Trigger"])["toast"]["message"] == "2 downloads paused."
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="download-tasks"') and "Pausing…" in html
    assert (state(queued), state(running)) == (("paused", ""), ("running", "pause"))
    assert (state(paused), state(failed), state(done)) == (("paused", ""), ("failed", ""), ("done", ""))
    assert state(cancelling) == ("running", "cancel")  # a cancel asked for is not turned into a pause

    response = logged_in.post(reverse("downloads_every", args=["resume"]), headers={"HX-Request": "true"})
    assert json.loads(response["HX-Trigger"])["toast"]["message"] == "3 downloads resumed."
    assert (state(queued), state(running), state(paused)) == (("queued", ""), ("running", ""), ("queued", ""))
    assert state(failed) == ("failed", "")  # a failed download waits for its own Retry
    response = logged_in.post(reverse("downloads_every", args=["resume"]), headers={"HX-Request": "true"})
    assert json.loads(response["HX-Trigger"])["toast"]["message"] == "No download to resume."

    DownloadTask.objects.filter(pk=failed.pk).update(error="This model needs a Civitai API key")
    assert 'class="button ghost retry-failed"' in logged_in.get(reverse("downloads")).content.decode()
    response = logged_in.post(reverse("downloads_every", args=["retry"]), headers={"HX-Request": "true"})
    assert json.loads(response["HX-Trigger"])["toast"]["message"] == "1 download retried."
    failed.refresh_from_db()
    assert (failed.status, failed.error) == ("queued", "")
    assert (state(done), state(cancelling)) == (("done", ""), ("running", "cancel"))
    assert logged_in.post(reverse("downloads_every", args=["explode"])).status_code == 400
    assert logged_in.get(reverse("downloads_every", args=["pause"])).status_code == 405


def test_api_pauses_resumes_and_retries_every_download_at_once(logged_in, db):
    def task(name: str, status: str) -> DownloadTask:
        return DownloadTask.objects.create(platform="direct", source_url="https://x.test/a", download_url="https://x.test/a",
                                           folder_type="loras", filename=name, status=status)  # fmt: skip

    def put(body: object):
        return logged_in.put(reverse("api_download_tasks"), body, content_type="application/json")

    queued, paused, failed = task("q", "queued"), task("p", "paused"), task("f", "failed")
    assert put({"status": "pause"}).json() == {"success": True, "data": {"count": 1}}
    assert put({"status": "resume"}).json()["data"] == {"count": 2}
    assert put({"status": "retry"}).json()["data"] == {"count": 1}
    assert set(DownloadTask.objects.values_list("status", flat=True)) == {"queued"}
    assert {queued.pk, paused.pk, failed.pk} == set(DownloadTask.objects.values_list("pk", flat=True))
    for refused in ({"status": "delete"}, {"status": ["pause"]}, {}):
        response = put(refused)
        assert response.status_code == 400 and response.json()["success"] is False, refused
    assert set(DownloadTask.objects.values_list("status", flat=True)) == {"queued"}
    assert logged_in.get(reverse("api_download_tasks")).json()["success"] is True


def test_pause_and_resume_act_on_the_task_as_it_is_now_not_as_it_was_read(db):
    """Pause all read a queued task that a worker has taken up since, Resume all a pausing one that has
    paused since."""
    seen_queued = DownloadTask.objects.create(platform="direct", source_url="https://x.test/a", download_url="https://x.test/a",
                                              folder_type="loras", filename="a.safetensors")  # fmt: skip
    DownloadTask.objects.filter(pk=seen_queued.pk).update(status="running")  # a worker took it up
    assert services.download_pause(task=seen_queued).requested == "pause"
    seen_pausing = DownloadTask.objects.get()
    DownloadTask.objects.filter(pk=seen_pausing.pk).update(
        status="paused", requested=""
    )  # the worker stopped it
    assert services.download_resume(task=seen_pausing).status == "queued"


def test_the_speed_limit_is_set_in_mb_per_second_shown_on_the_downloads_page_and_removed(logged_in, db):
    def save(typed: str):
        return logged_in.post(reverse("settings"), {"speed_limit": typed}, headers={"HX-Request": "true"})

    assert "Held to" not in logged_in.get(reverse("downloads")).content.decode()
    response = save("2.5")
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="download-speed"') and 'value="2.5"' in html
    assert (
        json.loads(response["HX-Trigger"])["toast"]["message"]
        == "Downloads are held to 2.5\xa0MB/s together."
    )
    assert DownloadSettings.current().speed_limit == 2.5 * 2**20
    assert "Held to 2.5\xa0MB/s together" in logged_in.get(reverse("downloads")).content.decode()
    assert 'value="2.5"' in logged_in.get(reverse("settings")).content.decode()

    for typed in ("fast", "-1", "nan", "inf", "0.001", "1e9", "²"):
        refused = save(typed).content.decode()
        assert 'role="alert"' in refused and f'value="{typed}"' in refused, typed  # kept, to be mended
    assert DownloadSettings.current().speed_limit == 2.5 * 2**20

    response = save("")
    assert (
        json.loads(response["HX-Trigger"])["toast"]["message"] == "Downloads are no longer held to a speed."
    )
    assert DownloadSettings.current().speed_limit == 0
    assert "Held to" not in logged_in.get(reverse("downloads")).content.decode()


def test_settings_store_keys_and_show_them_masked(logged_in, db):
    response = logged_in.post(
        reverse("settings"), {"service": "civitai", "key": "abcdef123456WXYZ"}, headers={"HX-Request": "true"}
    )
    html = response.content.decode()
    assert "••••WXYZ" in html
    assert "abcdef123456" not in html
    assert "Civitai key saved" in response["HX-Trigger"]
    assert ApiKey.objects.get().key == "abcdef123456WXYZ"
    assert "abcdef" not in logged_in.get(reverse("settings")).content.decode()
    logged_in.post(reverse("settings"), {"service": "civitai", "key": ""})
    assert not ApiKey.objects.exists()
    bad = logged_in.post(reverse("settings"), {"service": "civitai", "key": "has space"})
    assert "one word without spaces" in bad.content.decode()
    too_long = logged_in.post(reverse("settings"), {"service": "civitai", "key": "k" * 501})
    assert "at most 500 characters" in too_long.content.decode()
    assert not ApiKey.objects.exists()


def test_the_admin_is_the_apps_own(admin_client):
    html = admin_client.get("/admin/").content.decode()
    assert "<title>Site administration | Model Manager admin</title>" in html
    assert '<a href="/admin/">Model Manager administration</a>' in html
    assert (
        '<link rel="icon" href="/static/img/icon.svg" type="image/svg+xml">' in html
    )  # no 404 for a favicon
    for listing in (
        "downloads_app/downloadtask",
        "downloads_app/apikey",
        "downloads_app/downloadedfile",
        "models_app/scantask",
        "models_app/infotask",
    ):
        assert f'href="/admin/{listing}/"' in html
        assert admin_client.get(f"/admin/{listing}/").status_code == 200


def test_the_admin_shows_and_stops_tasks_but_neither_adds_nor_edits_them(admin_client, model_roots):
    # A task written here would skip the app's checks: of the link, and of the folder it writes to.
    scan = ScanTask.objects.create()
    download = DownloadTask.objects.create(
        source_url="https://civitai.com/models/1",
        download_url="https://civitai.com/api/download/models/1",
        folder_type="loras",
        filename="x.safetensors",
        status="done",
    )
    for model, task in (("models_app/scantask", scan), ("downloads_app/downloadtask", download)):
        assert admin_client.get(f"/admin/{model}/add/").status_code == 403
        change_url = f"/admin/{model}/{task.pk}/change/"
        page = admin_client.get(change_url).content.decode()
        assert "| View " in page.split("<title>")[1].split("</title>")[0] and 'name="_save"' not in page
        admin_client.post(change_url, {"status": "queued"})
    assert (ScanTask.objects.get().status, DownloadTask.objects.get().status) == ("queued", "done")
    done = admin_client.post(
        "/admin/models_app/scantask/", {"action": "stop_selected", "_selected_action": [scan.pk]}, follow=True
    )
    assert "Asked 1 task(s) to stop; the others had ended." in done.content.decode()
    assert ScanTask.objects.get().status == "cancelled"  # not started yet: over at once


def test_the_admins_download_actions_say_how_many_they_changed(admin_client, db):
    def task(name: str, status: str) -> DownloadTask:
        return DownloadTask.objects.create(platform="direct", source_url="https://x.test/a", download_url="https://x.test/a",
                                           folder_type="loras", filename=name, status=status)  # fmt: skip

    picked = [task("q", "queued").pk, task("p", "paused").pk, task("d", "done").pk]
    done = admin_client.post(
        "/admin/downloads_app/downloadtask/", {"action": "pause", "_selected_action": picked}, follow=True
    )
    assert "Paused 1 task(s). 2 left as they were." in done.content.decode()
    assert sorted(DownloadTask.objects.values_list("status", flat=True)) == ["done", "paused", "paused"]


def speed_limit_field(html: str) -> str:
    return re.search(r'<input[^>]*name="speed_limit"[^>]*>', html)[0]  # type: ignore[index]


def test_admin_sets_the_speed_limit_in_mb_per_second_as_the_settings_page_does(admin_client, logged_in):
    listing = admin_client.get("/admin/downloads_app/downloadsettings/", follow=True)
    change_url = "/admin/downloads_app/downloadsettings/1/change/"
    assert listing.redirect_chain[-1][0] == change_url  # one row: the list opens it
    assert "value=" not in speed_limit_field(listing.content.decode())  # no limit yet
    assert admin_client.get("/admin/downloads_app/downloadsettings/add/").status_code == 403
    refused = admin_client.post(change_url, {"speed_limit": "fast"})
    assert "Give the speed limit in MB/s, such as 2.5" in refused.content.decode()
    refused = admin_client.post(change_url, {"speed_limit": "200000"})
    assert "between 0.01 and 100,000 MB/s" in refused.content.decode()
    assert not DownloadSettings.objects.exists()
    admin_client.post(change_url, {"speed_limit": "2.5"})
    assert DownloadSettings.objects.get().speed_limit == 2.5 * 1024 * 1024
    assert 'value="2.5"' in speed_limit_field(admin_client.get(change_url).content.decode())
    assert 'value="2.5"' in speed_limit_field(logged_in.get(reverse("settings")).content.decode())
    admin_client.post(change_url, {"speed_limit": ""})
    assert DownloadSettings.objects.get().speed_limit == 0


def test_admin_edits_api_keys_without_showing_them(admin_client):
    assert 'type="password"' in admin_client.get("/admin/downloads_app/apikey/add/").content.decode()
    admin_client.post("/admin/downloads_app/apikey/add/", {"service": "civitai", "key": " abcdef123456WXYZ "})
    key = ApiKey.objects.get()
    assert key.key == "abcdef123456WXYZ"
    listing = admin_client.get("/admin/downloads_app/apikey/").content.decode()
    change_url = f"/admin/downloads_app/apikey/{key.pk}/change/"
    page = admin_client.get(change_url).content.decode()
    for html in (listing, page):
        assert "••••WXYZ" in html
        assert "abcdef123456" not in html
    admin_client.post(change_url, {"service": "civitai", "key": ""})  # left empty: kept
    assert ApiKey.objects.get().key == "abcdef123456WXYZ"
    refused = admin_client.post(change_url, {"service": "civitai", "key": "pasted two words"})
    assert "one word without spaces" in refused.content.decode()
    admin_client.post(change_url, {"service": "civitai", "key": "newkey98765"})
    assert ApiKey.objects.get().key == "newkey98765"


def test_download_pages_need_login(client, db):
    for url in (reverse("downloads"), reverse("settings"), reverse("download_new")):
        assert client.get(url).status_code == 302


# -- JSON API ------------------------------------------------------------------------------------------


def test_api_model_info_resolves_a_page(logged_in, services_at_upstream):
    up = services_at_upstream
    body = logged_in.get(reverse("api_model_info"), {"model-page": f"{up.civitai_url}/models/4201"}).json()
    assert body["success"] is True
    assert [v["name"] for v in body["data"]["versions"]] == ["v2.0", "v1.0"]
    bad = logged_in.get(reverse("api_model_info"), {"model-page": f"{up.civitai_url}/models/999"})
    assert bad.status_code == 422
    assert bad.json() == {"success": False, "error": "Civitai has no such model or file (404)."}


def test_api_create_list_pause_resume_delete(logged_in, services_at_upstream):
    up = services_at_upstream
    created = logged_in.post(
        reverse("api_download_create"),
        {
            "downloadUrl": f"{up.civitai_url}/api/download/models/42012",
            "type": "checkpoints",
            "pathIndex": 0,
            "fullname": "sub/d.safetensors",
        },
        content_type="application/json",
    )
    assert created.status_code == 201
    data = created.json()["data"]
    assert (data["fullname"], data["status"], data["platform"]) == ("sub/d.safetensors", "queued", "civitai")
    listed = logged_in.get(reverse("api_download_tasks")).json()["data"]
    assert [t["taskId"] for t in listed] == [data["taskId"]]
    assert set(listed[0]) == {
        "taskId",
        "fullname",
        "type",
        "pathIndex",
        "status",
        "downloadedSize",
        "totalSize",
        "progress",
        "bps",
        "error",
        "platform",
    }
    task_url = reverse("api_download_task", args=[data["taskId"]])
    paused = logged_in.put(task_url, {"status": "pause"}, content_type="application/json").json()["data"]
    assert paused["status"] == "paused"
    assert (
        logged_in.put(task_url, {"status": "resume"}, content_type="application/json").json()["data"][
            "status"
        ]
        == "queued"
    )
    logged_in.put(task_url, {"status": "next"}, content_type="application/json")
    assert DownloadTask.objects.get(pk=data["taskId"]).priority == 1  # first in the queue
    assert logged_in.put(task_url, {"status": "fly"}, content_type="application/json").status_code == 400
    assert logged_in.delete(task_url).json() == {"success": True, "data": {"taskId": data["taskId"]}}
    assert logged_in.delete(task_url).status_code == 404


def test_api_create_refuses_bad_input(logged_in, services_at_upstream):
    up = services_at_upstream
    outside = logged_in.post(
        reverse("api_download_create"),
        {
            "downloadUrl": f"{up.civitai_url}/models/4201",
            "type": "checkpoints",
            "pathIndex": 0,
            "fullname": "../../x.safetensors",
        },
        content_type="application/json",
    )
    assert outside.status_code == 400
    assert "inside the model folder" in outside.json()["error"]
    no_url = logged_in.post(reverse("api_download_create"), {}, content_type="application/json")
    assert no_url.status_code == 400
    untyped = logged_in.post(
        reverse("api_download_create"),
        {"downloadUrl": f"{up.storage_url}/files/hf-schnell"},
        content_type="application/json",
    )  # a direct link says nothing of its kind
    assert untyped.status_code == 400
    assert (
        untyped.json()["error"]
        == 'Which folder type? The link does not say: give "type" (checkpoints, loras, …).'
    )
    assert not DownloadTask.objects.exists()


def test_api_setting_stores_a_key_and_answers_masked(logged_in, db):
    body = logged_in.post(
        reverse("api_download_setting"),
        {"key": "huggingface", "value": "hf_abcdefgh1234"},
        content_type="application/json",
    ).json()
    assert body == {"success": True, "data": {"key": "huggingface", "value": "••••1234"}}
    bad = logged_in.post(
        reverse("api_download_setting"), {"key": "other", "value": "x"}, content_type="application/json"
    )
    assert bad.status_code == 400


def test_api_sets_the_speed_limit_in_bytes_per_second(logged_in, db):
    def set_limit(value):
        return logged_in.post(
            reverse("api_download_setting"),
            {"key": "speedLimit", "value": value},
            content_type="application/json",
        )

    assert set_limit(1 << 20).json() == {"success": True, "data": {"key": "speedLimit", "value": 1 << 20}}
    assert DownloadSettings.current().speed_limit == 1 << 20
    for bad, message in ((-1, "between 0.01 and 100,000 MB/s"), ("fast", "value must be a whole number")):
        refused = set_limit(bad)
        assert refused.status_code == 400 and message in refused.json()["error"]
    assert DownloadSettings.current().speed_limit == 1 << 20
    assert set_limit(0).json()["data"]["value"] == 0


def test_api_needs_auth(client, db):
    assert client.get(reverse("api_download_tasks")).status_code == 401
    assert (
        client.put(reverse("api_download_task", args=[1]), "{}", content_type="application/json").status_code
        == 401
    )


def test_task_json_event_shape(logged_in, services_at_upstream):
    from downloads_app.events import task_data

    task = DownloadTask.objects.create(platform="huggingface", source_url="https://h/x", download_url="https://h/x",
                                       folder_type="vae", sub_folder="a", filename="v.safetensors", total_size=200, downloaded_size=50)  # fmt: skip
    assert json.loads(json.dumps(task_data(task)))["progress"] == 25
