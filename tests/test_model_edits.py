"""Editing a model from its dialog: description, preview, rename / move, delete to the trash and back."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
from datetime import timedelta
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from mmsite.events import EVENTS_GROUP
from models_app import services
from models_app.markdown import render_markdown, sanitize_html
from models_app.models import ModelFile, TrashItem
from models_app.roots import get_roots
from models_app.scanner import scan_folder
from tests.model_files import REFERENCE, write_image, write_model

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true", "HX-Target": "dialog"}
PEPPER = ["loras", 0, "style/pepper.safetensors"]


def png(size=(1600, 1200), color="#3366ff") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


# -- description ---------------------------------------------------------------------------------------


def test_the_description_is_saved_as_markdown_keeping_the_front_matter(logged_in, scanned):
    url = reverse("description_save", args=PEPPER)
    response = logged_in.post(url, {"description": "# Pepper\n\nUse **0.8**."}, headers=HX)
    assert "Description saved" in response["HX-Trigger"]
    html = response.content.decode()
    assert "<h1>Pepper</h1>" in html and "<strong>0.8</strong>" in html
    on_disk = (scanned["loras"] / "style" / "pepper.md").read_text()
    assert on_disk == "---\nsource: civitai\n---\n# Pepper\n\nUse **0.8**.\n"
    assert ModelFile.objects.get(name="pepper").description == "# Pepper\n\nUse **0.8**."


def test_a_new_description_file_is_created(logged_in, scanned):
    logged_in.post(
        reverse("description_save", args=["checkpoints", 0, "alpha_xl.safetensors"]), {"description": "Hi"}
    )
    assert (scanned["checkpoints"] / "alpha_xl.md").read_text() == "Hi\n"
    assert "alpha_xl.md" in ModelFile.objects.get(name="alpha_xl").sidecars


def disk_full(*args, **kwargs):
    raise OSError(28, "No space left on device")


def test_a_description_that_cannot_be_written_is_kept_in_the_form(logged_in, scanned, monkeypatch):
    monkeypatch.setattr("tempfile.mkstemp", disk_full)
    url = reverse("description_save", args=PEPPER)
    response = logged_in.post(url, {"description": "My long notes <3"}, headers=HX)
    html = response.content.decode()
    assert "Could not write pepper.md (No space left on device): nothing changed." in html
    assert ">My long notes &lt;3</textarea>" in html
    assert "No space left on device" in response["HX-Trigger"]
    assert (
        scanned["loras"] / "style" / "pepper.md"
    ).read_text() == "---\nsource: civitai\n---\nWitch girl with a cat.\n"


XSS = """<script>alert(1)</script>
<img src=x onerror="alert(2)">
[click](javascript:alert(3))
<iframe src="https://evil.test"></iframe>
<a href="https://ok.test" onclick="alert(4)">fine link</a>
<svg onload=alert(5)>"""


def test_no_script_handler_javascript_url_or_iframe_reaches_the_page(logged_in, scanned):
    logged_in.post(reverse("description_save", args=PEPPER), {"description": XSS})
    for html in (
        logged_in.get(reverse("model_detail", args=PEPPER), headers=HX).content.decode(),
        logged_in.post(reverse("markdown_preview"), {"description": XSS}).content.decode(),
    ):
        lowered = html.lower()
        assert "<script>alert" not in lowered and "onerror" not in lowered and "onclick" not in lowered
        assert "javascript:" not in lowered and "<iframe" not in lowered and "onload" not in lowered
        assert 'href="https://ok.test"' in html


def test_civitai_html_is_sanitized_the_same_way():
    clean = sanitize_html(
        "<p>A checkpoint. <script>alert('x')</script><b>Bold</b><a href='javascript:x'>y</a></p>"
    )
    assert "script" not in clean and "javascript" not in clean and "<b>Bold</b>" in clean
    assert render_markdown("*hi*") == "<p><em>hi</em></p>"


# -- preview -------------------------------------------------------------------------------------------


def test_an_uploaded_preview_replaces_the_old_one_as_webp(logged_in, scanned, settings):
    old_url = ModelFile.objects.get(name="pepper")
    old_version = f"{old_url.mtime_ns}-{old_url.sidecar_signature[:8]}"
    response = logged_in.post(
        reverse("preview_save", args=PEPPER),
        {"previewFile": SimpleUploadedFile("p.png", png(), "image/png")},
        headers=HX,
    )
    assert "Preview saved" in response["HX-Trigger"]
    folder = scanned["loras"] / "style"
    assert not (folder / "pepper.png").exists()
    with Image.open(folder / "pepper.webp") as image:
        assert image.format == "WEBP" and max(image.size) == 1024
    model = ModelFile.objects.get(name="pepper")
    assert model.preview == "pepper.webp"
    assert f"{model.mtime_ns}-{model.sidecar_signature[:8]}" != old_version  # the thumbnail URL changes
    thumbnail = logged_in.get(reverse("model_thumbnail", args=PEPPER))
    assert thumbnail.status_code == 200


def _png_cut_in_half() -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 64).save(buffer, "PNG")  # noise: the image data does not compress away
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not an image at all", "That file is not an image: choose a PNG, JPEG, WebP, GIF or AVIF."),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "That file is not an image"),
        (_png_cut_in_half(), "That image is damaged or cut short: it cannot be read."),
    ],
)
def test_a_bad_upload_is_refused_and_nothing_changes(logged_in, scanned, content, message):
    response = logged_in.post(
        reverse("preview_save", args=PEPPER),
        {"previewFile": SimpleUploadedFile("x.png", content)},
        headers=HX,
    )
    assert message in response.content.decode()
    assert "error" in response["HX-Trigger"]
    assert (scanned["loras"] / "style" / "pepper.png").exists()
    assert not (scanned["loras"] / "style" / "pepper.webp").exists()


def test_a_decompression_bomb_and_a_huge_file_are_refused(logged_in, scanned, monkeypatch):
    from PIL import Image as PILImage

    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1000)
    bomb = logged_in.post(
        reverse("preview_save", args=PEPPER),
        {"previewFile": SimpleUploadedFile("b.png", png((100, 100)))},
        headers=HX,
    )
    assert "too many pixels" in bomb.content.decode()
    monkeypatch.setattr("models_app.views.dialog.MAX_PREVIEW_BYTES", 10)
    huge = logged_in.post(
        reverse("preview_save", args=PEPPER),
        {"previewFile": SimpleUploadedFile("h.png", png((20, 20)))},
        headers=HX,
    )
    assert "20 MB at most" in huge.content.decode()


def test_only_the_models_own_civitai_images_are_fetched(logged_in, scanned):
    response = logged_in.post(
        reverse("preview_save", args=["loras", 0, "poses.safetensors"]),
        {"image_url": "http://169.254.169.254/latest"},
        headers=HX,
    )
    assert "Choose an image file" in response.content.decode()


def test_a_civitai_info_whose_images_are_not_a_list_offers_none(logged_in, scanned):
    (scanned["loras"] / "poses.civitai.info").write_text('{"modelId": 1, "images": 5}')
    scan_folder(get_roots())
    response = logged_in.get(
        reverse("model_edit", args=["preview", "loras", 0, "poses.safetensors"]), headers=HX
    )
    html = response.content.decode()
    assert response.status_code == 200 and "or choose one" in html and "Civitai's images" not in html


def test_a_civitai_image_that_cannot_be_fetched_is_explained(logged_in, scanned):
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/preview.jpeg"
    info = scanned["loras"] / "poses.civitai.info"
    info.write_text(json.dumps({**json.loads(info.read_text()), "images": [{"url": url, "type": "image"}]}))
    response = logged_in.post(
        reverse("preview_save", args=["loras", 0, "poses.safetensors"]), {"image_url": url}, headers=HX
    )
    assert (
        "The image could not be fetched: no connection (check the address and this machine&#x27;s network)."
        in response.content.decode()
    )
    assert not (scanned["loras"] / "poses.webp").exists()


# -- delete, trash, restore ---------------------------------------------------------------------------


def test_delete_lists_every_file_then_moves_them_to_the_trash(logged_in, scanned):
    confirm = logged_in.get(reverse("model_edit", args=["delete", *PEPPER]), headers=HX).content.decode()
    assert "pepper.safetensors" in confirm and "pepper.png" in confirm and "pepper.md" in confirm
    assert "Move 3 files to the trash" in confirm
    model = ModelFile.objects.get(name="pepper")
    response = logged_in.post(reverse("model_delete", args=PEPPER), headers=HX)
    assert f'id="card-{model.pk}" hx-swap-oob="delete"' in response.content.decode()
    assert "pepper.safetensors and the 2 files beside it are in the trash." in response.content.decode()
    assert response["HX-Trigger-After-Settle"] == "libraryChanged"  # the counts follow
    folder = scanned["loras"] / "style"
    assert not any(folder.iterdir())
    item = TrashItem.objects.get()
    trashed = scanned["loras"] / ".trash" / item.trash_folder
    assert sorted(p.name for p in trashed.iterdir()) == ["pepper.md", "pepper.png", "pepper.safetensors"]
    assert not ModelFile.objects.filter(name="pepper").exists()
    trash_page = logged_in.get(reverse("trash")).content.decode()
    assert '<strong class="break">pepper.safetensors</strong>' in trash_page
    row = '<div class="muted small">from style · 14.0\xa0KB · <span title="pepper.safetensors, pepper.png, pepper.md">'
    assert row + "3 files</span> · deleted now</div>" in trash_page
    alone = logged_in.post(
        reverse("model_delete", args=["checkpoints", 0, "alpha_xl.safetensors"]), headers=HX
    )
    assert "alpha_xl.safetensors is in the trash." in alone.content.decode()


def test_models_picked_in_the_library_go_to_the_trash_together(logged_in, scanned):
    pepper, alpha = ModelFile.objects.get(name="pepper"), ModelFile.objects.get(name="alpha_xl")
    # An id no longer in the library is left out, and so are ones no form of the app sends.
    picked = {"ids": [pepper.pk, alpha.pk, 999999, "99999999999999999999", "²", "-3"]}
    confirm = logged_in.post(reverse("selection_trash"), picked, headers=HX).content.decode()
    assert "Move 2 models to the trash?" in confirm
    assert "LoRAs · style/pepper.safetensors" in confirm and "Checkpoints · alpha_xl.safetensors" in confirm
    assert "Move 4 files to the trash" in confirm  # pepper has two files beside it
    assert ModelFile.objects.filter(pk__in=[pepper.pk, alpha.pk]).count() == 2  # nothing moved yet

    (scanned["checkpoints"] / "alpha_xl.safetensors").unlink()  # gone since the scan: said, not fatal
    done = logged_in.post(reverse("selection_trash"), {**picked, "confirm": "1"}, headers=HX)
    html = done.content.decode()
    assert "1 model moved to the trash" in html
    assert "alpha_xl.safetensors: The model is no longer on disk" in html
    for model in (pepper, alpha):
        assert f'<div id="card-{model.pk}" hx-swap-oob="delete"></div>' in html
    assert json.loads(done["HX-Trigger-After-Settle"]) == {"libraryChanged": True, "selectionDone": True}
    assert (
        json.loads(done["HX-Trigger"])["toast"]["message"]
        == "1 model moved to the trash. 1 could not be moved."
    )
    item = TrashItem.objects.get()
    assert sorted(p.name for p in (scanned["loras"] / ".trash" / item.trash_folder).iterdir()) == [
        "pepper.md", "pepper.png", "pepper.safetensors",
    ]  # fmt: skip
    assert not ModelFile.objects.filter(pk__in=[pepper.pk, alpha.pk]).exists()


def test_info_for_the_picked_models_only(logged_in, scanned):
    from models_app.models import InfoTask

    ids = list(ModelFile.objects.filter(folder_type="checkpoints").values_list("pk", flat=True))
    response = logged_in.post(reverse("info_start"), {"mode": "fetch", "ids": ids}, headers=HX)
    assert json.loads(response["HX-Trigger"])["toast"]["message"] == "Fetch Civitai info for 3 models queued."
    assert sorted(InfoTask.objects.get().model_ids) == sorted(ids)
    garbled = logged_in.post(reverse("info_start"), {"mode": "fetch", "ids": ["x", "²"]}, headers=HX)
    assert garbled.status_code == 400 and InfoTask.objects.count() == 1  # not a job for every model


def test_a_preview_that_cannot_be_written_leaves_the_old_one(logged_in, scanned, monkeypatch):
    monkeypatch.setattr("tempfile.mkstemp", disk_full)
    upload = {"previewFile": SimpleUploadedFile("p.png", png(), "image/png")}
    response = logged_in.post(reverse("preview_save", args=PEPPER), upload, headers=HX)
    assert "Could not write the preview (No space left on device)" in response.content.decode()
    assert sorted(p.name for p in (scanned["loras"] / "style").iterdir()) == [
        "pepper.md",
        "pepper.png",
        "pepper.safetensors",
    ]


def test_a_restore_that_fails_halfway_leaves_everything_in_the_trash(logged_in, scanned, monkeypatch):
    services.model_trash(model=ModelFile.objects.get(name="pepper"))
    item = TrashItem.objects.get()
    monkeypatch.setattr(os, "rename", failing_on_the_preview(os.rename, OSError(5, "Input/output error")))
    response = logged_in.post(reverse("trash_action", args=[item.pk, "restore"]))
    assert "Could not restore the files (Input/output error): nothing moved." in response["HX-Trigger"]
    trashed = scanned["loras"] / ".trash" / item.trash_folder
    assert sorted(p.name for p in trashed.iterdir()) == ["pepper.md", "pepper.png", "pepper.safetensors"]
    assert not any((scanned["loras"] / "style").iterdir())
    assert TrashItem.objects.filter(pk=item.pk).exists()


def test_restore_puts_everything_back_and_offers_another_name_when_its_own_is_taken(logged_in, scanned):
    services.model_trash(model=ModelFile.objects.get(name="pepper"))
    item = TrashItem.objects.get()
    style = scanned["loras"] / "style"
    (style / "pepper.safetensors").write_bytes(b"a new file with that name")
    (style / "pepper-2.png").write_bytes(b"someone else's preview")
    clash = logged_in.post(reverse("trash_action", args=[item.pk, "restore"])).content.decode()
    assert "Its name is taken there now (pepper.safetensors)." in clash
    assert 'name="name" value="pepper-3.safetensors"' in clash  # pepper-2 would take pepper-2.png
    assert "its 2 sidecar files renamed with it" in clash
    assert sorted(p.name for p in style.iterdir()) == ["pepper-2.png", "pepper.safetensors"]

    refused = logged_in.post(reverse("trash_action", args=[item.pk, "restore"]), {"name": "../escape"})
    assert "The name may not be empty, contain / or \\, or start with a dot." in refused.content.decode()
    assert 'value="../escape"' in refused.content.decode()
    cancelled = logged_in.get(reverse("trash_item", args=[item.pk])).content.decode()
    assert ">Restore</button>" in cancelled and "restore-as" not in cancelled

    restored = logged_in.post(reverse("trash_action", args=[item.pk, "restore"]), {"name": "pepper old"})
    assert "pepper old.safetensors is back in loras." in restored["HX-Trigger"]
    assert sorted(p.name for p in style.iterdir()) == [
        "pepper old.md", "pepper old.png", "pepper old.safetensors", "pepper-2.png", "pepper.safetensors",
    ]  # fmt: skip
    assert (style / "pepper old.md").read_text().endswith("Witch girl with a cat.\n")
    assert ModelFile.objects.get(name="pepper old").preview == "pepper old.png"
    assert not TrashItem.objects.exists()


def test_restore_puts_everything_back(logged_in, scanned):
    services.model_trash(model=ModelFile.objects.get(name="pepper"))
    item = TrashItem.objects.get()
    response = logged_in.post(reverse("trash_action", args=[item.pk, "restore"]))
    assert "is back in loras" in response["HX-Trigger"]
    assert sorted(p.name for p in (scanned["loras"] / "style").iterdir()) == [
        "pepper.md",
        "pepper.png",
        "pepper.safetensors",
    ]
    assert ModelFile.objects.get(name="pepper").preview == "pepper.png"
    assert not TrashItem.objects.exists()


def test_restore_all_puts_back_every_model_it_can_and_says_which_stay(logged_in, scanned):
    for name in ("pepper", "alpha_xl", "beta_xl"):
        services.model_trash(model=ModelFile.objects.get(name=name))
    assert 'class="button ghost restore-all"' in logged_in.get(reverse("trash")).content.decode()
    (scanned["checkpoints"] / "beta_xl.safetensors").write_bytes(b"a new file with that name")
    response = logged_in.post(reverse("trash_restore_all"), headers={"HX-Request": "true"})
    toast = json.loads(response["HX-Trigger"])["toast"]
    assert toast["level"] == "error"
    assert toast["message"] == (
        "2 models restored. Still in the trash: "
        "beta_xl.safetensors already exist(s) there again; move them away first."
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="trash-items"') and html.count('<article class="task"') == 1
    assert "beta_xl" in html and [item.name for item in TrashItem.objects.all()] == ["beta_xl.safetensors"]
    assert (scanned["loras"] / "style" / "pepper.md").exists()
    assert (scanned["checkpoints"] / "alpha_xl.safetensors").exists()
    assert set(ModelFile.objects.values_list("name", flat=True)) >= {"pepper", "alpha_xl"}
    assert logged_in.get(reverse("trash_restore_all")).status_code == 405


def test_a_restore_tells_the_library_pages_open_elsewhere(logged_in, scanned):
    """Each open library page reads the library again on this event: one for a model, one for all."""
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(EVENTS_GROUP, channel)

    def library_changes() -> list[dict]:
        found = []
        while True:
            try:
                message = async_to_sync(asyncio.wait_for)(layer.receive(channel), 0.2)
            except TimeoutError:
                return found
            if message["event"] == "library_changed":
                found.append(message["data"])

    for name in ("pepper", "alpha_xl", "beta_xl"):
        services.model_trash(model=ModelFile.objects.get(name=name))
    library_changes()  # what the trashing said
    pepper = TrashItem.objects.get(relative_path="style/pepper.safetensors")
    logged_in.post(reverse("trash_action", args=[pepper.pk, "restore"]))
    assert library_changes() == [{"type": "loras", "pathIndex": 0, "path": "style/pepper.safetensors"}]
    logged_in.post(reverse("trash_restore_all"))
    assert library_changes() == [{}]
    logged_in.post(reverse("trash_restore_all"))  # nothing left to restore: nothing to say
    assert library_changes() == []


def test_empty_trash_and_purge_of_old_items(logged_in, scanned):
    services.model_trash(model=ModelFile.objects.get(name="pepper"))
    services.model_trash(model=ModelFile.objects.get(name="alpha_xl"))
    TrashItem.objects.filter(relative_path="alpha_xl.safetensors").update(
        trashed_at=timezone.now() - timedelta(days=8)
    )
    assert services.trash_purge(older_than_days=7) == 1
    assert TrashItem.objects.count() == 1
    assert list((scanned["checkpoints"] / ".trash").iterdir()) == []
    logged_in.post(reverse("trash_empty"))
    assert not TrashItem.objects.exists()
    assert list((scanned["loras"] / ".trash").iterdir()) == []


# -- rename and move -----------------------------------------------------------------------------------


def test_the_move_form_names_the_files_that_go_along(logged_in, scanned):
    def move_form(model: list) -> str:
        html = logged_in.get(reverse("model_edit", args=["move", *model]), headers=HX).content.decode()
        return " ".join(html.split())

    assert "The 2 files beside the model (pepper.png, pepper.md) move and are renamed with it." in move_form(
        PEPPER
    )
    assert "No other file lies beside the model." in move_form(["checkpoints", 0, "alpha_xl.safetensors"])


def test_rename_and_move_carry_every_sidecar(logged_in, scanned):
    response = logged_in.post(
        reverse("model_move", args=PEPPER),
        {"folder_type": "checkpoints", "path_index": "0", "sub_folder": "moved/here", "name": "carrot"},
        headers=HX,
    )
    assert "Moved to checkpoints/moved/here/carrot.safetensors" in response["HX-Trigger"]
    target = scanned["checkpoints"] / "moved" / "here"
    assert sorted(p.name for p in target.iterdir()) == ["carrot.md", "carrot.png", "carrot.safetensors"]
    assert not (scanned["loras"] / "style" / "pepper.safetensors").exists()
    model = ModelFile.objects.get(name="carrot")
    assert (model.folder_type, model.relative_path, model.preview) == (
        "checkpoints",
        "moved/here/carrot.safetensors",
        "carrot.png",
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "beta_xl", "folder_type": "checkpoints", "sub_folder": ""}, "already exist"),
        ({"name": "x", "sub_folder": "../../outside"}, "must stay inside the model folders"),
        ({"name": "a/b"}, "may not be empty, contain /"),
        ({"name": "x", "folder_type": "vae"}, "There is no vae folder"),
        ({"name": "p" * 250}, "The name is too long"),  # its .safetensors fits, not its .png
        ({"name": "x", "sub_folder": "/".join(["d" * 250] * 5)}, "longer than 1024 characters"),
    ],
)
def test_bad_moves_are_refused_and_nothing_moves(logged_in, scanned, fields, message):
    data = {"folder_type": "loras", "path_index": "0", "sub_folder": "style", **fields}
    response = logged_in.post(
        reverse("model_move", args=PEPPER)
        if fields.get("name") != "beta_xl"
        else reverse("model_move", args=["checkpoints", 0, "alpha_xl.safetensors"]),
        data,
        headers=HX,
    )
    assert message in response.content.decode()
    assert (scanned["loras"] / "style" / "pepper.safetensors").exists()
    assert (scanned["checkpoints"] / "alpha_xl.safetensors").exists()


def failing_on_the_preview(move, error):
    """`move` (os.rename), failing as a broken disk would when it gets to the .png."""

    def failing(src, dst):
        if str(dst).endswith(".png"):
            raise error
        return move(src, dst)

    return failing


def move_pepper_to_the_other_disk() -> ModelFile:
    """What the worker does with a move across disks (test_moves.py: the dialog hands it over)."""
    pepper = ModelFile.objects.get(name="pepper")
    return services.model_move(
        model=pepper, folder_type="checkpoints", path_index=1, sub_folder="", name="carrot"
    )


@pytest.mark.parametrize("across_disks", [False, True], ids=["same disk", "across disks"])
def test_a_relative_link_moved_to_another_folder_still_leads_to_its_file(scanned, request, across_disks):
    # Models kept on a big disk and linked into the model folders, with links that survive the whole
    # tree being mounted elsewhere: relative ones.
    store = scanned["loras"].parent.parent / "store"
    write_model(store / "real.safetensors", {"ss_network_dim": "8"})
    write_image(store / "real.png")
    (scanned["loras"] / "linked.safetensors").symlink_to("../../store/real.safetensors")
    (scanned["loras"] / "linked.png").symlink_to("../../store/real.png")
    scan_folder(get_roots())
    linked = ModelFile.objects.get(name="linked")
    if across_disks:
        target, path_index, sub_folder = request.getfixturevalue("other_disk"), 1, ""
        folder_type = "checkpoints"
    else:
        target, path_index, sub_folder = scanned["loras"] / "deep" / "er", 0, "deep/er"
        folder_type = "loras"
    moved = services.model_move(
        model=linked, folder_type=folder_type, path_index=path_index, sub_folder=sub_folder, name="moved"
    )
    for name, real in (("moved.safetensors", "real.safetensors"), ("moved.png", "real.png")):
        link = target / name
        assert link.is_symlink() and not os.path.isabs(os.readlink(link))
        assert link.resolve() == (store / real).resolve()
    assert not (scanned["loras"] / "linked.safetensors").is_symlink()
    assert moved.metadata == {"ss_network_dim": "8"} and moved.preview == "moved.png"


def test_a_move_across_disks_shows_no_half_model_and_keeps_the_source_until_the_copy_is_whole(
    scanned, other_disk, monkeypatch
):
    during_copies = []
    sendfile = os.sendfile

    def watched_sendfile(out_fd, in_fd, offset, count):
        # What ComfyUI or a scan would list in the destination during each step of a copy, and whether
        # the source is still there.
        shown = sorted(p.name for p in other_disk.iterdir() if not p.name.startswith("."))
        source = Path(os.readlink(f"/proc/self/fd/{in_fd}"))
        copied_to = Path(os.readlink(f"/proc/self/fd/{out_fd}")).name
        during_copies.append((copied_to, shown, source.exists()))
        return sendfile(out_fd, in_fd, offset, count)

    monkeypatch.setattr(os, "sendfile", watched_sendfile)
    moved = move_pepper_to_the_other_disk()
    assert {copied_to for copied_to, _, _ in during_copies} == {
        ".carrot.safetensors.mm-moving", ".carrot.png.mm-moving", ".carrot.md.mm-moving",
    }  # fmt: skip
    for copied_to, shown, source_kept in during_copies:
        final_name = copied_to.removeprefix(".").removesuffix(".mm-moving")
        assert final_name.startswith("carrot.") and final_name not in shown and source_kept
    assert sorted(p.name for p in other_disk.iterdir()) == ["carrot.md", "carrot.png", "carrot.safetensors"]
    pepper = REFERENCE / "safetensors" / "tiny_kohya_lora.safetensors"
    assert (other_disk / "carrot.safetensors").read_bytes() == pepper.read_bytes()
    assert list((scanned["loras"] / "style").iterdir()) == []
    assert (moved.folder_type, moved.path_index, moved.name) == ("checkpoints", 1, "carrot")


def test_a_move_across_disks_that_fails_halfway_puts_back_what_moved(scanned, other_disk, monkeypatch):
    sendfile = os.sendfile

    def disk_full_at_the_preview(out_fd, in_fd, offset, count):
        if ".png" in os.readlink(f"/proc/self/fd/{out_fd}"):
            raise OSError(28, "No space left on device")
        return sendfile(out_fd, in_fd, offset, count)

    monkeypatch.setattr(os, "sendfile", disk_full_at_the_preview)
    with pytest.raises(services.ModelEditError) as refused:
        move_pepper_to_the_other_disk()
    assert str(refused.value) == "Could not move the files (No space left on device): nothing was moved."
    style = scanned["loras"] / "style"
    assert sorted(p.name for p in style.iterdir()) == ["pepper.md", "pepper.png", "pepper.safetensors"]
    assert list(other_disk.iterdir()) == []  # nor a hidden half copy
    assert ModelFile.objects.filter(name="pepper").exists()


def test_what_a_move_killed_mid_copy_left_is_hidden_and_replaced_by_the_next_move(scanned, other_disk):
    # The server stopped while the model was being copied: its half sits under a hidden name.
    (other_disk / ".carrot.safetensors.mm-moving").write_bytes(b"the first half")
    scan_folder(get_roots())
    assert not ModelFile.objects.filter(path_index=1).exists()
    move_pepper_to_the_other_disk()
    assert sorted(p.name for p in other_disk.iterdir()) == ["carrot.md", "carrot.png", "carrot.safetensors"]


def test_a_delete_that_fails_halfway_puts_back_what_moved(logged_in, scanned, monkeypatch):
    monkeypatch.setattr(os, "rename", failing_on_the_preview(os.rename, OSError(5, "Input/output error")))
    response = logged_in.post(reverse("model_delete", args=PEPPER), headers=HX)
    assert "Input/output error" in response.content.decode() + response.get("HX-Trigger", "")
    style = scanned["loras"] / "style"
    assert sorted(p.name for p in style.iterdir()) == ["pepper.md", "pepper.png", "pepper.safetensors"]
    assert not (scanned["loras"] / ".trash").exists() or not any((scanned["loras"] / ".trash").iterdir())
    assert ModelFile.objects.filter(name="pepper").exists()
    assert not TrashItem.objects.exists()


# -- JSON API ------------------------------------------------------------------------------------------


def test_api_put_description_and_move(logged_in, scanned):
    url = "/model-manager/model/loras/0/style/pepper.safetensors"
    body = logged_in.put(url, {"description": "via API"}, content_type="application/json").json()
    assert body["success"] and body["data"]["description"] == "via API"
    moved = logged_in.put(
        url,
        {"type": "loras", "pathIndex": 0, "fullname": "renamed/pep.safetensors"},
        content_type="application/json",
    ).json()
    assert moved["data"]["fullname"] == "renamed/pep.safetensors"
    assert (scanned["loras"] / "renamed" / "pep.md").read_text() == "---\nsource: civitai\n---\nvia API\n"
    clash = logged_in.put(
        "/model-manager/model/checkpoints/0/alpha_xl.safetensors",
        {"fullname": "beta_xl.safetensors"},
        content_type="application/json",
    )
    assert clash.status_code == 400 and "already exist" in clash.json()["error"]


def test_api_put_a_preview_as_multipart_and_get_it(logged_in, scanned):
    from django.test.client import encode_multipart

    url = "/model-manager/model/checkpoints/0/alpha_xl.safetensors"
    payload = encode_multipart(
        "BoUnDaRy", {"previewFile": SimpleUploadedFile("a.png", png((300, 300)), "image/png")}
    )
    response = logged_in.put(url, payload, content_type="multipart/form-data; boundary=BoUnDaRy")
    assert response.json()["data"]["preview"].startswith("/thumbnail/checkpoints/0/alpha_xl.safetensors")
    assert (scanned["checkpoints"] / "alpha_xl.webp").exists()
    thumbnail = logged_in.get("/model-manager/preview/checkpoints/0/alpha_xl.safetensors")
    assert thumbnail.status_code == 200 and thumbnail["Content-Type"] == "image/webp"
    bad = logged_in.put(
        url,
        encode_multipart("B", {"previewFile": SimpleUploadedFile("a.png", b"nope")}),
        content_type="multipart/form-data; boundary=B",
    )
    assert bad.status_code == 400 and "not an image" in bad.json()["error"]
    assert logged_in.get("/model-manager/preview/checkpoints/0/beta_xl.safetensors").status_code == 404


def test_api_delete_moves_to_the_trash(logged_in, scanned):
    response = logged_in.delete("/model-manager/model/loras/0/poses.safetensors")
    assert sorted(response.json()["data"]["trashed"]) == ["poses.civitai.info", "poses.safetensors"]
    assert logged_in.delete("/model-manager/model/loras/0/poses.safetensors").status_code == 404
    assert logged_in.delete("/model-manager/model/loras/0/../../x").status_code == 400


def test_api_lists_the_trash_restores_from_it_and_deletes_for_good(logged_in, scanned):
    def put(url: str, body: object):
        return logged_in.put(url, body, content_type="application/json")

    poses = logged_in.delete("/model-manager/model/loras/0/poses.safetensors").json()["data"]["trashId"]
    logged_in.delete("/model-manager/model/checkpoints/0/alpha_xl.safetensors")
    listed = logged_in.get("/model-manager/trash").json()["data"]
    assert [(item["type"], item["fullname"]) for item in listed] == [
        ("checkpoints", "alpha_xl.safetensors"),  # the latest first
        ("loras", "poses.safetensors"),
    ]
    assert listed[1]["trashId"] == poses and sorted(listed[1]["files"]) == [
        "poses.civitai.info",
        "poses.safetensors",
    ]
    assert listed[1]["sizeBytes"] > 0 and isinstance(listed[1]["trashedAt"], float)

    assert put(f"/model-manager/trash/{poses}", {"status": "undelete"}).status_code == 400
    restored = put(f"/model-manager/trash/{poses}", {"status": "restore"})
    assert restored.status_code == 200 and restored.json()["data"]["fullname"] == "poses.safetensors"
    assert (scanned["loras"] / "poses.civitai.info").exists()
    assert logged_in.get("/model-manager/model/loras/0/poses.safetensors").status_code == 200
    assert put(f"/model-manager/trash/{poses}", {"status": "restore"}).status_code == 404

    logged_in.delete("/model-manager/model/loras/0/poses.safetensors")
    (scanned["checkpoints"] / "alpha_xl.safetensors").write_bytes(b"a new file with that name")
    clash = TrashItem.objects.get(relative_path="alpha_xl.safetensors").pk
    refused = put(f"/model-manager/trash/{clash}", {"status": "restore"})
    assert refused.status_code == 409 and refused.json()["error"] == (
        "alpha_xl.safetensors already exist(s) there again; move them away first. "
        'Or restore it under another name: "name": "alpha_xl-2.safetensors".'
    )
    assert put("/model-manager/trash", {"status": "restore"}).json()["data"] == {
        "restored": 1,
        "errors": ["alpha_xl.safetensors already exist(s) there again; move them away first."],
    }
    assert (scanned["loras"] / "poses.safetensors").exists()

    trash_folder = scanned["checkpoints"] / ".trash" / TrashItem.objects.get().trash_folder
    assert trash_folder.is_dir()
    assert logged_in.delete(f"/model-manager/trash/{clash}").json()["data"] == {"trashId": clash}
    assert not trash_folder.exists() and not TrashItem.objects.exists()

    logged_in.delete("/model-manager/model/checkpoints/0/beta_xl.safetensors")
    (scanned["checkpoints"] / "beta_xl.safetensors").write_bytes(b"a new file with that name")
    beta = TrashItem.objects.get().pk
    assert put(f"/model-manager/trash/{beta}", {"status": "restore", "name": 7}).status_code == 400
    renamed = put(f"/model-manager/trash/{beta}", {"status": "restore", "name": "beta_xl-old.safetensors"})
    assert renamed.json()["data"]["fullname"] == "beta_xl-old.safetensors"
    assert (scanned["checkpoints"] / "beta_xl-old.safetensors").exists()
    assert logged_in.get("/model-manager/trash").json() == {"success": True, "data": []}


def test_api_put_takes_a_preview_larger_than_the_form_memory_limit(logged_in, scanned):
    import random

    from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

    buffer = io.BytesIO()
    Image.frombytes("RGB", (1100, 1100), random.Random(7).randbytes(1100 * 1100 * 3)).save(buffer, "PNG")
    assert len(buffer.getvalue()) > 2_621_440  # Django's DATA_UPLOAD_MAX_MEMORY_SIZE
    # A browser's long random boundary: a short one like "B" turns up inside 3 MB of noise by chance.
    payload = encode_multipart(
        BOUNDARY, {"previewFile": SimpleUploadedFile("big.png", buffer.getvalue(), "image/png")}
    )
    response = logged_in.put(
        "/model-manager/model/checkpoints/0/beta_xl.safetensors",
        payload,
        content_type=MULTIPART_CONTENT,
    )
    assert response.status_code == 200, response.content[:300]
    assert (scanned["checkpoints"] / "beta_xl.webp").exists()


def test_a_move_across_disks_from_a_folder_that_keeps_its_files_leaves_no_second_copy(
    scanned, other_disk, monkeypatch
):
    from mmsite import files

    unlink = Path.unlink

    def read_only_source(path, missing_ok=False):
        if other_disk not in path.parents:
            raise PermissionError(13, "Permission denied")
        return unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(files.Path, "unlink", read_only_source)
    with pytest.raises(services.ModelEditError, match=r"Permission denied\): nothing was moved"):
        move_pepper_to_the_other_disk()
    monkeypatch.undo()
    assert sorted(p.name for p in (scanned["loras"] / "style").iterdir()) == [
        "pepper.md", "pepper.png", "pepper.safetensors",
    ]  # fmt: skip
    assert list(other_disk.iterdir()) == []
