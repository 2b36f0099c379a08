from __future__ import annotations

import io
import json
import os
import re
import shutil
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.template.defaultfilters import filesizeformat
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from models_app import selectors, services
from models_app.models import InfoTask, ModelFile, ScanTask
from models_app.roots import get_roots
from models_app.scanner import scan_folder
from models_app.selectors import PAGE_SIZE
from tests.model_files import safetensors_bytes, write_model

pytestmark = pytest.mark.django_db


def card_names(response) -> list[str]:
    """The names as the cards read: the line-break opportunities (<wbr>) in them are not text."""
    html = response.content.decode()
    return [
        part.split("</div>")[0].replace("<wbr>", "") for part in html.split('<div class="card-name">')[1:]
    ]


def test_the_library_shows_a_card_per_model_with_type_counts(logged_in, scanned):
    response = logged_in.get("/")
    assert response.status_code == 200
    assert card_names(response) == ["alpha_xl", "beta_xl", "gamma_xl", "pepper", "poses"]
    html = response.content.decode()
    assert "5 models" in html
    assert '<span>LoRAs</span><span class="count">2</span>' in html
    assert '<span>Checkpoints</span><span class="count">3</span>' in html
    assert "SDXL 1.0" in html and "Flux.1 D" in html
    assert "{#" not in html and "#}" not in html  # a template comment left as text at the page's foot


def test_empty_folder_types_fold_under_one_disclosure_but_the_open_one_stays(
    logged_in, scanned, settings, tmp_path
):
    settings.MM_MODEL_ROOTS += f";vae={tmp_path / 'vae'};embeddings={tmp_path / 'embeddings'}"

    def sidebar(url: str) -> tuple[str, str]:
        html = (
            logged_in.get(url).content.decode().split('<nav aria-label="Folder types"')[1].split("</nav>")[0]
        )
        shown, _, folded = html.partition('<details id="empty-types" class="empty-types">')
        return shown, folded

    shown, folded = sidebar("/")
    assert "<span>LoRAs</span>" in shown and "<span>Checkpoints</span>" in shown
    assert "<summary>2 empty types</summary>" in folded
    assert "<span>VAE</span>" in folded and "<span>Embeddings</span>" in folded
    assert "<span>VAE</span>" not in shown

    shown, folded = sidebar("/?type=vae")
    assert 'aria-current="page" class="dim">\n        <span>VAE</span>' in shown
    assert "<summary>1 empty type</summary>" in folded and "<span>Embeddings</span>" in folded


def test_a_card_name_may_break_only_at_its_word_boundaries(logged_in, model_roots):
    for name in ("juggernautXL_v9Rundiffusionphoto2", "a&b<i>", "animagine-xl-3.1", "sd_xl_base_1.0.refiner"):
        write_model(model_roots["checkpoints"] / f"{name}.safetensors")
    scan_folder(get_roots())
    html = logged_in.get("/").content.decode()
    assert '<div class="card-name">a&amp;b&lt;i&gt;</div>' in html
    assert '<div class="card-name">juggernaut<wbr>XL_<wbr>v9<wbr>Rundiffusionphoto2</div>' in html
    assert '<div class="card-name">animagine-<wbr>xl-<wbr>3.1</div>' in html
    assert '<div class="card-name">sd_<wbr>xl_<wbr>base_<wbr>1.0.<wbr>refiner</div>' in html


def test_a_model_whose_header_cannot_be_read_says_so_on_its_card_and_in_its_dialog(logged_in, model_roots):
    (model_roots["checkpoints"] / "cut_short.safetensors").write_bytes(b"\x40\x00\x00\x00\x00\x00\x00\x00{")
    write_model(model_roots["checkpoints"] / "whole.safetensors")
    scan_folder(get_roots())
    html = logged_in.get("/").content.decode()
    assert html.count(">Unreadable</span>") == 1
    assert 'title="Header not readable: header length 64 is larger than the file or than 100 MB"' in html
    dialog = logged_in.get(
        reverse("model_detail", args=["checkpoints", 0, "cut_short.safetensors"]),
        headers={"HX-Request": "true"},
    ).content.decode()
    assert "The file may be damaged, or only partly downloaded or copied." in dialog


def test_filter_by_type_renders_the_library_partial(logged_in, scanned):
    response = logged_in.get("/?type=loras", headers={"HX-Request": "true", "HX-Target": "library"})
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="library"')
    assert "<html" not in html
    assert card_names(response) == ["pepper", "poses"]
    assert '<h1 class="visually-hidden">LoRAs</h1>' in html  # the page's title, for a screen reader


def test_search_renders_only_the_cards(logged_in, scanned):
    response = logged_in.get("/?q=ALPHA", headers={"HX-Request": "true", "HX-Target": "grid"})
    assert 'id="library"' not in response.content.decode()
    assert card_names(response) == ["alpha_xl"]


def test_typing_a_search_or_scrolling_reads_no_filter_list(logged_in, scanned):
    """The side bar's counts and the filter lists each read the whole table; the cards show none of them,
    so a keystroke or the next page of a 70,000-model library does not pay for them."""
    for target in ("grid", "grid-more"):
        with CaptureQueriesContext(connection) as queries:
            response = logged_in.get("/?q=alpha", headers={"HX-Request": "true", "HX-Target": target})
        assert card_names(response) == ["alpha_xl"]
        sql = "\n".join(query["sql"] for query in queries.captured_queries)
        assert "GROUP BY" not in sql and "DISTINCT" not in sql and '"labels"' not in sql
    full = logged_in.get("/?q=alpha")
    assert '<span>LoRAs</span><span class="count">2</span>' in full.content.decode()


def test_the_address_bar_gets_the_query_without_empty_fields(logged_in, scanned):
    form = {"type": "loras", "q": " pep ", "folder": "", "base": "", "tag": "", "sort": "name"}
    response = logged_in.get("/", form, headers={"HX-Request": "true", "HX-Target": "grid"})
    assert response["HX-Push-Url"] == "/?type=loras&q=pep"
    everything = logged_in.get("/", {"q": ""}, headers={"HX-Request": "true", "HX-Target": "library"})
    assert everything["HX-Push-Url"] == "/"


def test_a_refresh_after_a_scan_and_infinite_scroll_leave_the_address_bar_alone(logged_in, scanned):
    refresh = logged_in.get("/?refresh=1&type=loras", headers={"HX-Request": "true", "HX-Target": "library"})
    more = logged_in.get("/?page=2", headers={"HX-Request": "true", "HX-Target": "grid-more"})
    assert "HX-Push-Url" not in refresh and "HX-Push-Url" not in more
    assert card_names(refresh) == ["pepper", "poses"]


def test_search_matches_trigger_words_and_every_term(logged_in, scanned):
    assert card_names(logged_in.get("/?q=dynamic_pos3")) == ["poses"]
    assert card_names(logged_in.get("/?q=xl beta")) == ["beta_xl"]
    response = logged_in.get("/?q=nothing-like-this")
    assert card_names(response) == []
    assert "No models match" in response.content.decode()


def test_search_finds_a_model_by_its_hash_as_an_image_or_civitai_gives_it(logged_in, scanned):
    sha256 = "21437ec26670e230b067ca936f6657caf5ca063f15aec333ef249bec7c0f0dc0"  # poses.civitai.info's file
    for typed in ("21437EC266", sha256, sha256.upper(), "poses 21437ec26670e2"):  # AutoV2, the SHA256 whole
        assert card_names(logged_in.get("/", {"q": typed})) == ["poses"], typed
    assert card_names(logged_in.get("/", {"q": "437ec26670e230b"})) == []  # inside a hash is not a match
    assert card_names(logged_in.get("/", {"q": "21437ec26"})) == []  # nine digits: too short to tell


def test_filters_that_match_nothing_say_so_and_offer_to_clear_them(logged_in, scanned):
    response = logged_in.get("/?type=checkpoints&base=SDXL+1.0&tag=aesthetic_pos3")
    html = response.content.decode()
    assert card_names(response) == []
    assert "Nothing in Checkpoints matches base model SDXL 1.0, tag aesthetic_pos3." in html
    assert "found no model files" not in html
    assert 'href="?type=checkpoints"' in html
    html = logged_in.get("/?q=<b>x</b>&folder=style").content.decode()
    assert "Nothing matches “&lt;b&gt;x&lt;/b&gt;”, folder style." in html


def test_subfolder_filter_and_options(logged_in, scanned):
    response = logged_in.get("/?type=loras&folder=style")
    assert card_names(response) == ["pepper"]
    assert '<option value="style" selected>style</option>' in response.content.decode()


def test_sort_by_when_added_both_ways(logged_in, scanned):
    for days, name in enumerate(["gamma_xl", "pepper", "alpha_xl", "poses", "beta_xl"]):
        ModelFile.objects.filter(name=name).update(created_at=timezone.now() - timedelta(days=days))
    newest_first = ["gamma_xl", "pepper", "alpha_xl", "poses", "beta_xl"]
    assert card_names(logged_in.get("/?sort=-created")) == newest_first
    response = logged_in.get("/?sort=created")
    assert card_names(response) == newest_first[::-1]
    assert '<option value="created" selected>First added</option>' in response.content.decode()


def test_sort_by_size(logged_in, scanned):
    names = card_names(logged_in.get("/?sort=-size"))
    assert names[0] == "pepper"  # the real kohya header makes it the largest


def test_the_count_of_models_says_how_much_room_they_take_with_the_filters_of_now(logged_in, scanned):
    def summary(url: str) -> str:
        html = logged_in.get(url, headers={"HX-Request": "true", "HX-Target": "grid"}).content.decode()
        return re.search(r'<div class="grid-summary"><span class="muted">([^<]*)</span>', html)[1]

    on_disk = {p.stem: p.stat().st_size for p in scanned["checkpoints"].glob("*.safetensors")}
    assert summary("/?type=checkpoints") == f"3 models · {filesizeformat(sum(on_disk.values()))}"
    assert summary("/?q=alpha") == f"1 model · {filesizeformat(on_disk['alpha_xl'])}"
    pepper = (scanned["loras"] / "style" / "pepper.safetensors").stat().st_size
    assert summary("/?q=pepper") == f"1 model · {filesizeformat(pepper)}" and "KB" in summary("/?q=pepper")


def test_infinite_scroll_pages(logged_in, model_roots):
    for i in range(PAGE_SIZE + 5):
        write_model(model_roots["loras"] / f"m{i:03d}.safetensors")
    from models_app.roots import get_roots
    from models_app.scanner import scan_folder

    scan_folder(get_roots())
    first = logged_in.get("/")
    assert len(card_names(first)) == PAGE_SIZE
    assert 'id="grid-more"' in first.content.decode()
    assert "page=2" in first.content.decode()
    second = logged_in.get("/?page=2", headers={"HX-Request": "true", "HX-Target": "grid-more"})
    assert card_names(second) == [f"m{i:03d}" for i in range(PAGE_SIZE, PAGE_SIZE + 5)]
    assert 'id="grid-more"' not in second.content.decode()
    for page in ("3", "99999999999999999999", "-4", "two"):  # an edited address: no error, no surprise
        beyond = logged_in.get(f"/?page={page}", headers={"HX-Request": "true", "HX-Target": "grid-more"})
        assert beyond.status_code == 200
        assert card_names(beyond) == ([] if page[0].isdigit() else card_names(first))


def test_a_refresh_draws_again_as_many_cards_as_the_page_showed(logged_in, model_roots, monkeypatch):
    """After a rename deep down the grid, the library comes back as long as it was: the user keeps their place."""
    for i in range(PAGE_SIZE * 3 + 5):
        write_model(model_roots["loras"] / f"m{i:03d}.safetensors")
    scan_folder(get_roots())
    refresh = logged_in.get(
        f"/?refresh=1&shown={PAGE_SIZE * 2 + 7}", headers={"HX-Request": "true", "HX-Target": "library"}
    )
    assert card_names(refresh) == [f"m{i:03d}" for i in range(PAGE_SIZE * 3)]
    html = refresh.content.decode()
    assert "page=4" in html and 'id="grid-more"' in html  # the next page follows the ones drawn
    monkeypatch.setattr(selectors, "MAX_PAGES_AT_ONCE", 2)
    assert len(card_names(logged_in.get("/?shown=100000"))) == PAGE_SIZE * 2  # capped, not refused
    assert len(card_names(logged_in.get("/?shown=junk"))) == PAGE_SIZE


def test_empty_states_tell_the_user_what_to_do(logged_in, settings, db):
    settings.MM_MODEL_ROOTS = ""
    settings.MM_COMFYUI_PATH = ""
    assert "MM_COMFYUI_PATH" in logged_in.get("/").content.decode()


def test_files_a_scan_skipped_are_listed_under_its_status(logged_in, model_roots):
    write_model(model_roots["loras"] / "good.safetensors")
    with open(os.path.join(os.fsencode(model_roots["loras"]), b"caf\xe9.safetensors"), "wb") as f:
        f.write(b"any")
    call_command("scan", stdout=io.StringIO(), stderr=io.StringIO())
    html = logged_in.get("/").content.decode()
    # What the scan changed; how many it found, on hover.
    assert re.search(r'title="[^"]*: 1 model found">\s*Scanned just now: 1 new\s', html), html.split(
        'id="scan-progress"'
    )[1][:600]
    assert "Not everything could be read" in html
    assert "loras/caf\ufffd.safetensors: the name is not valid UTF-8; rename it to scan it" in html
    call_command("scan", stdout=io.StringIO(), stderr=io.StringIO())
    assert re.search(r"Scanned just now: nothing changed\s", logged_in.get("/").content.decode())


def test_the_models_of_a_place_gone_for_good_can_be_forgotten(logged_in, library, tmp_path):
    call_command("scan", stdout=io.StringIO(), stderr=io.StringIO())
    away = tmp_path / "away"
    library["checkpoints"].rename(away)
    library["checkpoints"].mkdir()  # emptied on purpose, or a drive not mounted: the scan cannot tell
    call_command("scan", stdout=io.StringIO(), stderr=io.StringIO())
    scan = ScanTask.objects.latest("pk")
    forget = reverse("scan_forget", args=[scan.pk, 0])
    html = logged_in.get("/").content.decode()
    assert "Scanned just now: 3 out of reach" in html
    assert "empty (a drive not mounted?); keeping the 3 models known there until it is back" in html
    assert f'hx-post="{forget}"' in html
    (away / "alpha_xl.safetensors").rename(library["checkpoints"] / "alpha_xl.safetensors")

    assert logged_in.get(forget).status_code == 405
    response = logged_in.post(forget)
    assert response.status_code == 204
    trigger = json.loads(response["HX-Trigger"])
    assert trigger["toast"]["message"] == "Forgot 2 models whose files are gone."
    assert "libraryChanged" in trigger  # the page reads the library again
    assert sorted(ModelFile.objects.values_list("relative_path", flat=True)) == [
        "alpha_xl.safetensors",  # its file is back: the next scan reads it
        "poses.safetensors",
        "style/pepper.safetensors",
    ]
    html = logged_in.get("/").content.decode()
    assert "keeping the 3 models" not in html and "Forget them" not in html and "out of reach" not in html
    again = logged_in.post(forget)
    assert json.loads(again["HX-Trigger"])["toast"] == {
        "message": "That place is no longer listed; scan again.",
        "level": "error",
    }


def test_forgetting_needs_csrf(user, library):
    call_command("scan", stdout=io.StringIO(), stderr=io.StringIO())
    for path in library["checkpoints"].iterdir():
        path.unlink()
    call_command("scan", stdout=io.StringIO(), stderr=io.StringIO())
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(reverse("scan_forget", args=[ScanTask.objects.latest("pk").pk, 0])).status_code == 403
    assert ModelFile.objects.count() == 5


def test_a_scan_still_listing_tells_where_it_looks(logged_in, model_roots):
    ScanTask.objects.create(status="running", total=0, current_path="loras/style")
    html = logged_in.get("/").content.decode()
    assert "Looking for models…" in html and 'title="loras/style">loras/style</span>' in html


def test_no_scan_yet(logged_in, model_roots):
    assert "No scan yet" in logged_in.get("/").content.decode()


def test_the_model_dialog_shows_fields_metadata_and_sidecars(logged_in, scanned):
    url = reverse("model_detail", args=["loras", 0, "style/pepper.safetensors"])
    response = logged_in.get(url, headers={"HX-Request": "true", "HX-Target": "dialog"})
    html = response.content.decode()
    assert "<html" not in html
    assert "Pepper__Carrot" in html  # a metadata value
    assert "ss_network_dim" in html
    assert "pepper.md" in html and "pepper.png" in html
    assert 'data-copy="style/pepper.safetensors"' in html  # the name ComfyUI's LoRA loader lists
    assert "Witch girl with a cat." in html
    # The commonest tags of its training captions, from ss_tag_frequency, ready to copy.
    training = html.split("<h3>Training tags")[1].split("</section>")[0]
    assert '<button type="button" class="chip" data-copy="1girl" title="In 96 captions">' in training
    assert training.index('data-copy="1girl"') < training.index('data-copy="brown hair"')
    # Its own address (a card opened in a new tab) is the library, showing that card, with the dialog in it.
    response = logged_in.get(url)
    assert card_names(response) == ["pepper"]
    full_page = response.content.decode()
    assert "<title>pepper · Library · Model Manager</title>" in full_page
    dialog = full_page.split('<dialog id="dialog"')[1].split("</dialog>")[0]
    assert dialog.startswith(
        ' class="dialog" aria-labelledby="dialog-title" data-close-url="/?type=loras&amp;folder=style&amp;q=pepper"'
    )
    assert 'id="model-detail-' in dialog and "Witch girl with a cat." in dialog
    one_key = logged_in.get(reverse("model_detail", args=["checkpoints", 0, "alpha_xl.safetensors"]))
    assert 'safetensors metadata <span class="muted small">(1 key)</span>' in one_key.content.decode()


def test_the_dialog_gives_what_a_prompt_calls_an_embedding_or_a_lora_by(
    logged_in, scanned, settings, tmp_path
):
    embeddings = tmp_path / "models" / "embeddings"
    (embeddings / "negative").mkdir(parents=True)
    (embeddings / "negative" / "bad-hands-5.safetensors").write_bytes(safetensors_bytes({}, b"\0" * 8))
    settings.MM_MODEL_ROOTS += f";embeddings={embeddings}"
    scan_folder(get_roots())

    def in_a_prompt(folder_type: str, path: str) -> str:
        html = logged_in.get(reverse("model_detail", args=[folder_type, 0, path])).content.decode()
        return (
            html.split("<dt>In a prompt</dt>")[1].split("</dd>")[0] if "<dt>In a prompt</dt>" in html else ""
        )

    # ComfyUI finds an embedding by its path under the folder, with no extension.
    assert 'data-copy="embedding:negative/bad-hands-5"' in in_a_prompt(
        "embeddings", "negative/bad-hands-5.safetensors"
    )
    assert 'data-copy="&lt;lora:pepper:1&gt;"' in in_a_prompt("loras", "style/pepper.safetensors")
    assert in_a_prompt("checkpoints", "alpha_xl.safetensors") == ""  # a loader node takes it, not a prompt


def test_the_dialog_of_a_civitai_model_links_to_it(logged_in, scanned):
    html = logged_in.get(reverse("model_detail", args=["loras", 0, "poses.safetensors"])).content.decode()
    assert "https://civitai.com/models/706978?modelVersionId=1050496" in html
    assert 'data-copy="aesthetic_pos3"' in html
    assert 'data-copy="aesthetic_pos3, dynamic_pos3"' in html  # "Copy all"
    assert "Training tags" not in html  # no kohya captions in its header


def test_unknown_or_escaping_models_are_404(logged_in, scanned):
    assert logged_in.get("/model/loras/0/missing.safetensors").status_code == 404
    assert logged_in.get("/model/loras/0/../../etc/passwd").status_code == 404
    assert logged_in.get("/thumbnail/loras/0/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_thumbnails_are_made_once_as_small_webp(logged_in, scanned, settings):
    url = reverse("model_thumbnail", args=["loras", 0, "style/pepper.safetensors"])
    response = logged_in.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/webp"
    cached = list(settings.MM_THUMBNAIL_DIR.rglob("*.webp"))
    assert len(cached) == 1
    with Image.open(cached[0]) as image:
        assert image.format == "WEBP"
        assert max(image.size) <= 512
    mtime = cached[0].stat().st_mtime_ns
    logged_in.get(url)
    assert cached[0].stat().st_mtime_ns == mtime


def test_a_model_without_preview_has_no_thumbnail(logged_in, scanned):
    assert (
        logged_in.get(reverse("model_thumbnail", args=["checkpoints", 0, "alpha_xl.safetensors"])).status_code
        == 404
    )


def test_a_tag_in_the_dialog_shows_every_model_with_it(logged_in, library):
    tags = {"tags": ["Anime Style", "character"]}
    (library["loras"] / "poses.metadata.json").write_text(json.dumps(tags))
    (library["checkpoints"] / "beta_xl.metadata.json").write_text(json.dumps({"tags": ["anime style"]}))
    scan_folder(get_roots())
    url = reverse("model_detail", args=["loras", 0, "poses.safetensors"])
    html = logged_in.get(url, headers={"HX-Request": "true", "HX-Target": "dialog"}).content.decode()
    links = re.findall(r'href="([^"]+)"', html.split("<dt>Tags</dt>")[1].split("</dd>")[0])
    assert links == ["/?tag=anime%20style", "/?tag=character"]
    link = links[0]
    assert card_names(logged_in.get(link)) == ["beta_xl", "poses"]


def test_a_sidecar_is_served_as_text_never_as_html(logged_in, scanned, library):
    (library["loras"] / "style" / "pepper.md").write_text("<script>alert(1)</script>")
    url = reverse("model_sidecar", args=["loras", 0, "style/pepper.safetensors"]) + "?name=pepper.md"
    response = logged_in.get(url)
    assert response["Content-Type"].startswith("text/plain")
    assert b"".join(response.streaming_content) == b"<script>alert(1)</script>"
    other = reverse("model_sidecar", args=["loras", 0, "style/pepper.safetensors"]) + "?name=../../secret"
    assert logged_in.get(other).status_code == 404


def test_a_pipe_named_like_a_preview_or_a_sidecar_gets_a_404_not_a_request_that_hangs(
    logged_in, library, fails_if_blocked
):
    os.mkfifo(library["loras"] / "poses.png")
    os.mkfifo(library["loras"] / "poses.md")
    scan_folder(get_roots())
    args = ["loras", 0, "poses.safetensors"]
    assert logged_in.get(reverse("model_thumbnail", args=args)).status_code == 404
    assert logged_in.get(reverse("model_sidecar", args=args) + "?name=poses.md").status_code == 404


def test_scan_button_queues_one_scan_and_shows_progress(logged_in, scanned):
    response = logged_in.post(reverse("scan_start"), {"mode": "full"}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert 'id="scan-progress"' in response.content.decode()
    assert "Scan queued" in response.content.decode()
    assert "Full rescan started." in response["HX-Trigger"]
    again = logged_in.post(reverse("scan_start"), {"mode": "diff"}, headers={"HX-Request": "true"})
    assert "already running" in again["HX-Trigger"]
    assert ScanTask.objects.filter(status="queued").count() == 1
    assert logged_in.post(reverse("scan_start"), {"mode": "bogus"}).status_code == 400


def test_a_scan_or_hashing_that_waits_stops_at_once_and_a_running_one_is_asked_to(logged_in, scanned):
    queued = ScanTask.objects.create(mode="full")
    html = logged_in.get("/").content.decode()
    assert f'hx-post="{reverse("scan_stop", args=[queued.pk])}"' in html
    response = logged_in.post(reverse("scan_stop", args=[queued.pk]), headers={"HX-Request": "true"})
    assert "Last scan cancelled" in response.content.decode()
    assert ScanTask.objects.get(pk=queued.pk).status == "cancelled"

    running = ScanTask.objects.create(status="running", total=10, processed=3)
    html = logged_in.post(reverse("scan_stop", args=[running.pk])).content.decode()
    assert "Stopping…" in html and ">Stop</button>" not in html
    assert ScanTask.objects.filter(pk=running.pk).values_list("status", "requested").get() == (
        "running",
        "cancel",
    )

    done = ScanTask.objects.create(status="done")
    logged_in.post(reverse("scan_stop", args=[done.pk]))
    assert ScanTask.objects.filter(pk=done.pk).values_list("status", "requested").get() == ("done", "")

    hashing = InfoTask.objects.create(mode="hash", status="running", total=40, processed=12)
    html = logged_in.get("/").content.decode()
    assert f'hx-post="{reverse("info_stop", args=[hashing.pk])}"' in html
    assert "Stopping…" in logged_in.post(reverse("info_stop", args=[hashing.pk])).content.decode()
    InfoTask.objects.filter(pk=hashing.pk).update(status="cancelled")
    assert "Compute hashes stopped after 12 of 40." in logged_in.get("/").content.decode()
    assert logged_in.post(reverse("info_stop", args=[999999])).status_code == 404


def test_stopping_needs_csrf(user, scanned):
    task = ScanTask.objects.create()
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(reverse("scan_stop", args=[task.pk])).status_code == 403
    assert ScanTask.objects.get(pk=task.pk).status == "queued"


def test_a_page_not_found_says_what_is_missing_and_nothing_more(logged_in, scanned):
    unknown = logged_in.get("/no-such-page/")
    assert unknown.status_code == 404
    html = unknown.content.decode()
    assert "There is nothing at this address." in html
    assert "URLPattern" not in html and "tried" not in html  # Django's list of routes stays inside
    missing = logged_in.get("/model/loras/0/missing.safetensors")
    assert missing.status_code == 404 and "No such model." in missing.content.decode()


def test_pages_need_a_login(client, scanned):
    for url in ("/", "/model/loras/0/poses.safetensors", "/thumbnail/loras/0/style/pepper.safetensors"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
    partial = client.get("/", headers={"HX-Request": "true"})
    assert partial["HX-Redirect"].startswith("/accounts/login/")


def test_scan_post_needs_csrf(user, scanned):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    refused = client.post(reverse("scan_start"), {"mode": "diff"})
    assert refused.status_code == 403
    stale = "This page is out of date (its security token was refused): reload it and try again."
    assert stale in refused.content.decode() and "<h1>Not allowed</h1>" in refused.content.decode()
    # From a page, the same words come as plain text, which the page shows as a toast.
    from_page = client.post(reverse("scan_start"), {"mode": "diff"}, headers={"HX-Request": "true"})
    assert (from_page.status_code, from_page.content.decode()) == (403, stale)
    assert not ScanTask.objects.exists()
    page = client.get("/")
    token = page.cookies["csrftoken"].value
    assert (
        client.post(reverse("scan_start"), {"mode": "diff"}, headers={"X-CSRFToken": token}).status_code
        == 200
    )


def test_model_file_rows_are_not_touched_by_page_views(logged_in, scanned):
    before = list(ModelFile.objects.values_list("pk", "mtime_ns"))
    logged_in.get("/")
    assert list(ModelFile.objects.values_list("pk", "mtime_ns")) == before


def test_filter_by_base_model_and_by_trigger_word(logged_in, scanned):
    html = logged_in.get("/").content.decode()
    assert '<option value="Flux.1 D"' in html and '<option value="aesthetic_pos3"' in html
    assert card_names(logged_in.get("/?base=SDXL+1.0")) == ["alpha_xl", "beta_xl", "gamma_xl", "pepper"]
    assert card_names(logged_in.get("/?tag=dynamic_pos3")) == ["poses"]
    assert card_names(logged_in.get("/?tag=dynamic")) == []  # a whole word, not a part of one


def test_the_menus_follow_the_library(logged_in, scanned):
    def menus() -> str:
        return logged_in.get("/").content.decode().split('<div class="scan-controls">')[0]

    assert '<option value="style"' in menus()
    # A sidecar added beside a known model: its row is rewritten in place, and its words are offered.
    (scanned["checkpoints"] / "alpha_xl.civitai.info").write_text(
        json.dumps({"trainedWords": ["glass_style"], "baseModel": "Pony"})
    )
    scan_folder(get_roots())
    html = menus()
    assert '<option value="glass_style"' in html and '<option value="Pony"' in html
    # A model moved to the trash: its subfolder, now empty of models, leaves the folder menu.
    services.model_trash(model=ModelFile.objects.get(name="pepper"))
    html = menus()
    assert '<option value="style"' not in html
    assert '<span>LoRAs</span><span class="count">1</span>' in html


def test_the_menus_are_read_once_per_library_version(logged_in, scanned):
    logged_in.get("/")
    with CaptureQueriesContext(connection) as queries:
        html = logged_in.get("/").content.decode()
    assert '<option value="aesthetic_pos3"' in html and '<span class="count">3</span>' in html
    sql = "\n".join(query["sql"] for query in queries.captured_queries)
    assert "GROUP BY" not in sql and "DISTINCT" not in sql and '"labels"' not in sql


def test_duplicates_page_groups_copies_with_the_same_sha256(logged_in, scanned, settings, tmp_path):
    ModelFile.objects.filter(name__in=["alpha_xl", "beta_xl"]).update(sha256="ab" * 32)
    html = logged_in.get(reverse("duplicates")).content.decode()
    assert "2 copies" in html and "alpha_xl.safetensors" in html and "beta_xl.safetensors" in html
    assert "Checkpoints · beta_xl.safetensors" in html  # one checkpoints folder: no need to say which
    settings.MM_MODEL_ROOTS += f";checkpoints={tmp_path}"
    ModelFile.objects.filter(name="beta_xl").update(path_index=1)
    html = logged_in.get(reverse("duplicates")).content.decode()
    assert "Checkpoints (folder 2 of 2) · beta_xl.safetensors" in html
    ModelFile.objects.filter(name="beta_xl").update(path_index=0)
    settings.MM_MODEL_ROOTS = settings.MM_MODEL_ROOTS.rsplit(";", 1)[0]
    html = logged_in.get(reverse("duplicates")).content.decode()
    assert f'href="{reverse("model_detail", args=["checkpoints", 0, "beta_xl.safetensors"])}"' in html
    assert "gamma_xl" not in html and html.count('class="dup-group"') == 1
    # Keep only this: the trash dialog of Select, with the other copy picked.
    alpha, beta = (ModelFile.objects.get(name=name).pk for name in ("alpha_xl", "beta_xl"))
    keep_alpha = html.split(f'id="keep-{alpha}"')[0].rsplit("<form", 1)[1]
    assert f'hx-post="{reverse("selection_trash")}"' in keep_alpha
    assert f'name="ids" value="{beta}"' in keep_alpha and f'value="{alpha}"' not in keep_alpha
    ModelFile.objects.filter(name="beta_xl").update(size=12345)  # a sidecar's hash, not the file's
    assert 'class="dup-group"' not in logged_in.get(reverse("duplicates")).content.decode()
    ModelFile.objects.update(sha256="")
    html = logged_in.get(reverse("duplicates")).content.decode()
    assert 'class="dup-group"' not in html and "No duplicates found" in html


def test_nsfw_previews_are_blurred_unless_the_user_says_otherwise(logged_in, user, scanned):
    ModelFile.objects.filter(name="pepper").update(nsfw_level=8)
    html = logged_in.get("/").content.decode()
    assert 'class="thumb nsfw"' in html
    assert '<body class=""' in html
    response = logged_in.post(reverse("settings"), {"show_nsfw": "on"}, headers={"HX-Request": "true"})
    assert "now shown" in response["HX-Trigger"]
    assert '<body class="show-nsfw"' in logged_in.get("/").content.decode()
    # The choice belongs to the account: another browser of the same user sees it, another user does not.
    same_user = Client()
    same_user.force_login(user)
    assert '<body class="show-nsfw"' in same_user.get("/").content.decode()
    assert (
        "checked"
        in same_user.get(reverse("settings")).content.decode().split('name="show_nsfw" value="on"')[1][:20]
    )
    other = Client()
    other.force_login(get_user_model().objects.create_user("other", password="x" * 20))
    assert '<body class=""' in other.get("/").content.decode()
    logged_in.post(reverse("settings"), {"show_nsfw": "off"}, headers={"HX-Request": "true"})
    assert '<body class=""' in same_user.get("/").content.decode()


def test_the_library_shows_a_list_of_rows_once_the_user_chooses_it_in_every_browser(logged_in, user, scanned):
    def grid_of(client: Client) -> tuple[str, str]:
        html = client.get("/").content.decode()
        (grid,) = re.findall(r'<div id="grid" class="([^"]*)"', html)
        (pressed,) = re.findall(r'data-layout="(\w+)"[^>]*aria-pressed="true"', html)
        return grid, pressed

    assert grid_of(logged_in) == ("grid", "grid")
    assert '<span class="card-date" title="Modified">' in logged_in.get("/").content.decode()
    assert logged_in.post(reverse("library_layout"), {"layout": "table"}).status_code == 400
    assert logged_in.get(reverse("library_layout")).status_code == 405
    assert logged_in.post(reverse("library_layout"), {"layout": "list"}).status_code == 204
    assert grid_of(logged_in) == ("grid list", "list")
    same_user = Client()
    same_user.force_login(user)
    assert grid_of(same_user) == ("grid list", "list")
    # A search as you type draws the cards again, with the switch as it stands.
    cards = same_user.get("/?q=pepper", headers={"HX-Request": "true", "HX-Target": "grid"}).content.decode()
    assert re.search(r'data-layout="list"[^>]*aria-pressed="true"', cards)
    other = Client()
    other.force_login(get_user_model().objects.create_user("other", password="x" * 20))
    assert grid_of(other) == ("grid", "grid")
    anonymous = Client(enforce_csrf_checks=True)
    assert anonymous.post(reverse("library_layout"), {"layout": "grid"}).status_code in (302, 403)
    assert grid_of(same_user) == ("grid list", "list")


def test_duplicates_says_what_keeping_one_copy_of_each_frees_and_that_hard_links_free_nothing(
    logged_in, scanned
):
    def summary() -> str:
        html = logged_in.get(reverse("duplicates")).content.decode()
        return re.sub(r"[ \n]+", " ", re.search(r'<p class="dup-summary">(.*?)</p>', html, re.S)[1])

    checkpoints = scanned["checkpoints"]
    for name in ("copy_a", "copy_b"):
        shutil.copy(checkpoints / "alpha_xl.safetensors", checkpoints / f"{name}.safetensors")
    os.link(checkpoints / "beta_xl.safetensors", checkpoints / "beta_link.safetensors")
    scan_folder(get_roots())
    for group, names in (("a" * 64, ["alpha_xl", "copy_a", "copy_b"]), ("b" * 64, ["beta_xl", "beta_link"])):
        ModelFile.objects.filter(name__in=names).update(sha256=group)
    two_copies = filesizeformat(2 * (checkpoints / "alpha_xl.safetensors").stat().st_size)
    assert summary() == f"2 models with copies · keeping one of each frees <strong>{two_copies}</strong>"
    ModelFile.objects.filter(name__in=["copy_a", "copy_b"]).update(sha256="")
    assert summary() == "1 model with copies · keeping one of each frees <strong>0\xa0bytes</strong>"
    assert "2 copies of" in (page := logged_in.get(reverse("duplicates")).content.decode())
    assert "(one file, hard-linked: deleting a copy frees nothing)" in page


def test_the_model_page_still_opens_when_its_folder_is_no_longer_configured(logged_in, scanned, settings):
    settings.MM_MODEL_ROOTS = f"checkpoints={scanned['checkpoints']}"
    response = logged_in.get(reverse("model_detail", args=["loras", 0, "poses.safetensors"]))
    assert response.status_code == 200
    assert "On disk" not in response.content.decode()


def test_the_settings_page_lists_each_model_folder_with_the_models_known_there(
    logged_in, scanned, settings, tmp_path
):
    settings.MM_MODEL_ROOTS += f";loras={tmp_path / 'nas' / 'loras'}"
    html = logged_in.get(reverse("settings")).content.decode()
    section = html.split('id="model-folders"')[1]
    assert "What the scan reads, from MM_MODEL_ROOTS." in section
    assert "They are scanned only when asked" in section  # MM_SCAN_EVERY is 0 in the tests
    settings.MM_SCAN_EVERY = 15
    section = logged_in.get(reverse("settings")).content.decode().split('id="model-folders"')[1]
    assert "The worker looks in them for changes 15 minutes after each scan" in section
    assert "Civitai is asked for newer versions only when you check for updates" in section
    settings.MM_UPDATES_EVERY = 24
    section = logged_in.get(reverse("settings")).content.decode().split('id="model-folders"')[1]
    assert "It asks Civitai for newer versions of the models 24 hours after each check for updates" in section
    rows = [
        tuple(" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in row)
        for row in re.findall(
            r'<th scope="row">(.*?)</th>\s*<td class="mono">(.*?)</td>\s*<td class="num">(.*?)</td>'
            r'\s*<td class="num nowrap">(.*?)</td>',
            section,
            re.S,
        )
    ]
    free = [row[3] for row in rows]
    assert all(re.fullmatch(r"[\d.]+\s[KMGT]?B", f) for f in free[:2]) and free[2] == "", (
        free
    )  # the disk's space
    assert [row[:3] for row in rows] == [
        ("Checkpoints", str(scanned["checkpoints"]), "3"),
        ("LoRAs", str(scanned["loras"]), "2"),
        ("LoRAs", f"{tmp_path / 'nas' / 'loras'} not there", "0"),  # to a screen reader; blank to the eye
    ]
    assert '<th scope="row"><span class="visually-hidden">LoRAs</span></th>' in section
    assert '<a href="/?type=loras">2</a>' in section

    settings.MM_MODEL_ROOTS = ""
    html = logged_in.get(reverse("settings")).content.decode()
    assert "No model folder is configured." in html.split('id="model-folders"')[1]


def test_the_tag_menu_offers_the_labels_most_models_of_the_type_share(logged_in, scanned):
    labels = {"alpha_xl": "\nshared\nBeta\nalpha\n", "beta_xl": "\nshared\nBeta\n", "gamma_xl": "\nshared\n"}
    for name, text in labels.items():
        ModelFile.objects.filter(name=name).update(labels=text)
    ModelFile.objects.filter(folder_type="loras").update(labels="\nlora_only\n")
    from models_app.selectors import common_labels

    assert common_labels("checkpoints", limit=2) == ["Beta", "shared"]  # the two commonest, by name
    assert common_labels("checkpoints") == ["alpha", "Beta", "shared"]
    assert common_labels("") == ["alpha", "Beta", "lora_only", "shared"]
    menu = logged_in.get("/?type=checkpoints").content.decode()
    assert re.findall(r'<option value="([^"]+)" >', menu.split('name="tag"')[1].split("</select>")[0]) == [
        "alpha", "Beta", "shared",
    ]  # fmt: skip
