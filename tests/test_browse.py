"""Browse Civitai: its search, types, order and pages, each model marked when the library has it."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from downloads_app import browse
from downloads_app.models import ApiKey, DownloadedFile
from mmsite.templatetags.mm_format import compact_count
from models_app.models import ModelFile
from models_app.roots import get_roots
from models_app.scanner import scan_folder
from tests.model_files import write_model

pytestmark = pytest.mark.django_db


def cards(html: str) -> list[tuple[str, str]]:
    """Each card's model name and what its badges and foot say."""
    found = re.findall(r'<div class="card-name">(.*?)</div>(.*?)</a>', html, re.S)
    return [
        (re.sub(r"<[^>]+>", "", name), " ".join(re.sub(r"<[^>]+>", " ", rest).split()))
        for name, rest in found
    ]


def test_the_most_downloaded_models_first_each_opening_its_download(
    logged_in, services_at_upstream, model_roots
):
    up = services_at_upstream
    # A Storybook LoRA in the library, by its Civitai info.
    write_model(model_roots["loras"] / "storybook.safetensors")
    (model_roots["loras"] / "storybook.civitai.info").write_text(
        json.dumps({"id": 1387174, "modelId": 1231067})
    )
    scan_folder(get_roots())
    html = logged_in.get(reverse("browse")).content.decode()
    assert "<h1>Browse Civitai</h1>" in html
    found = cards(html)
    assert [name for name, _ in found] == [
        "Vivid Impressions Storybook Style", "No Downloads", "Crisp Upscaler", "Old Archive", "Early Bird",
        "Members Only LoRA", "DreamXL",
    ]  # fmt: skip
    assert found[0][1] == "LoRAs Flux.1 D In library fake-creator ↓ 77.8k · ♥ 769"
    assert found[-1][1] == "Checkpoints SDXL 1.0 fake-creator ↓ 1.4k · ♥ 213"
    assert '<span title="77,799 downloads">' in html  # the exact count, on hover
    assert "In library" not in " ".join(said for _, said in found[1:])
    # A card is Civitai's page, and opens the download dialog of that model here.
    assert f'href="{up.civitai_url}/models/4201"' in html
    assert (
        f'hx-get="/downloads/choose/?url={up.civitai_url.replace(":", "%3A").replace("/", "%2F")}%2Fmodels%2F4201"'
        in html
    )
    assert f'src="{up.civitai_url}/images/storybook.png"' in html


@pytest.mark.parametrize(
    ("count", "shown"),
    [(769, "769"), (1000, "1k"), (1378, "1.4k"), (999_949, "999.9k"), (999_950, "1M"), (1_234_567, "1.2M")],
)
def test_counts_are_as_short_as_a_card_has_room_for(count, shown):
    assert compact_count(count) == shown


def test_a_search_a_type_and_an_order(logged_in, services_at_upstream):
    def names(**query: str) -> list[str]:
        html = logged_in.get(
            reverse("browse"), query, headers={"HX-Request": "true", "HX-Target": "browse-results"}
        )
        return [name for name, _ in cards(html.content.decode())]

    assert names(q="dream") == ["DreamXL"]
    assert names(type="Checkpoint", sort="Newest") == ["Old Archive", "DreamXL"]
    assert names(type="Upscaler") == ["Crisp Upscaler"]
    assert names(base="SD 1.5") == ["DreamXL"]  # its first version
    assert names(base="Flux.1 D", type="LORA") == ["Vivid Impressions Storybook Style"]
    nothing = logged_in.get(reverse("browse"), {"q": "no such model"}).content.decode()
    assert "<h2>Nothing found</h2>" in nothing
    searched = [r.path for r in services_at_upstream.requests if r.path.startswith("/api/v1/models?")]
    assert "query=dream" in searched[0] and "limit=24" in searched[0]


def test_safe_only_leaves_out_what_civitai_marks_nsfw(logged_in, services_at_upstream):
    services_at_upstream.models[4201].nsfw = True  # DreamXL
    every = cards(logged_in.get(reverse("browse"), {"type": "Checkpoint"}).content.decode())
    assert [name for name, _ in every] == ["Old Archive", "DreamXL"]
    html = logged_in.get(reverse("browse"), {"type": "Checkpoint", "rating": "safe"}).content.decode()
    assert [name for name, _ in cards(html)] == ["Old Archive"]
    assert '<option value="safe" selected>Safe only</option>' in html  # kept in the filters, and the address
    asked = [r.path for r in services_at_upstream.requests if r.path.startswith("/api/v1/models?")]
    # Mature models are asked for unless the user says Safe only: Civitai leaves them out by default.
    assert "nsfw=false" in asked[-1] and "nsfw=true" in asked[0]


def test_downloads_and_ratings_counted_over_a_period(logged_in, services_at_upstream):
    html = logged_in.get(reverse("browse"), {"sort": "Highest Rated", "period": "Week"}).content.decode()
    assert '<option value="Week" selected>This week</option>' in html
    assert len(cards(html)) == 7
    asked = [r.path for r in services_at_upstream.requests if r.path.startswith("/api/v1/models?")]
    assert "period=Week" in asked[0] and "sort=Highest+Rated" in asked[0]
    logged_in.get(reverse("browse"), {"period": "Fortnight"})  # not one of Civitai's: not sent
    asked = [r.path for r in services_at_upstream.requests if r.path.startswith("/api/v1/models?")]
    assert "period" not in asked[-1]


def test_more_pages_come_as_the_grid_is_scrolled(logged_in, services_at_upstream, monkeypatch):
    monkeypatch.setattr(browse, "PAGE_SIZE", 3)
    first = logged_in.get(reverse("browse"), {"sort": "Newest"}).content.decode()
    assert len(cards(first)) == 3
    more = re.search(r'id="browse-more" class="grid-more" hx-get="([^"]+)"', first)[1].replace("&amp;", "&")
    second = logged_in.get(more, headers={"HX-Request": "true", "HX-Target": "browse-more"}).content.decode()
    assert "<h1>" not in second and len(cards(second)) == 3
    assert not {name for name, _ in cards(first)} & {name for name, _ in cards(second)}
    last_link = re.search(r'id="browse-more" class="grid-more" hx-get="([^"]+)"', second)[1].replace(
        "&amp;", "&"
    )
    last = logged_in.get(
        last_link, headers={"HX-Request": "true", "HX-Target": "browse-more"}
    ).content.decode()
    assert len(cards(last)) == 1 and "browse-more" not in last  # 7 models in all


def test_civitai_out_of_reach_is_said_on_the_page(logged_in, settings, db):
    settings.MM_CIVITAI_URL = "http://127.0.0.1:9"  # nothing listens there
    response = logged_in.get(reverse("browse"), {"q": "dream"})
    assert response.status_code == 200
    html = response.content.decode()
    assert '<p class="error" role="alert">127.0.0.1:9 cannot be reached: no connection' in html
    assert 'value="dream"' in html  # the search stays, to try again


def test_civitai_asking_to_wait_is_waited_out_a_little_then_said(
    logged_in, services_at_upstream, monkeypatch
):
    up = services_at_upstream
    up.models_list_statuses = [429]  # Retry-After: 1
    assert len(cards(logged_in.get(reverse("browse")).content.decode())) == 7  # waited, asked again
    up.models_list_statuses = [429]
    monkeypatch.setattr(browse, "IN_A_REQUEST", 0.5)  # a page that waits less than Civitai asks
    html = logged_in.get(reverse("browse")).content.decode()
    assert "Civitai asks to wait 1 s (too many requests): try again then." in html


def repo_cards(html: str) -> list[tuple[str, str]]:
    """Each Hugging Face card's repository and what it says, but for when it was updated (which moves
    with the day the test runs)."""
    found = re.findall(r'<a class="card repo-card"[^>]* title="([^"]+)">(.*?)</a>', html, re.S)
    return [
        (
            repo,
            " ".join(
                re.sub(
                    r"<[^>]+>",
                    " ",
                    re.sub(r'<div class="card-folder" title="[^"]*">Updated [^<]*</div>', "", said),
                ).split()
            ),
        )
        for repo, said in found
    ]


def test_hugging_faces_most_downloaded_models_each_opening_its_files(logged_in, services_at_upstream):
    up = services_at_upstream
    html = logged_in.get(reverse("browse_huggingface")).content.decode()
    assert "<h1>Browse Hugging Face</h1>" in html
    assert repo_cards(html) == [
        ("gated-org/gated-model", "gated-model gated-org Gated ↓ 2.5M · ♥ 4.5k"),  # a token needed
        ("demo-org/flux-gguf", "flux-gguf demo-org Text to image ↓ 98.8k · ♥ 1.2k"),
        ("demo-org/demo-models", "demo-models demo-org Text to image ↓ 12.3k · ♥ 321"),
    ]
    # When each was last changed, as the hub says, in as few words as a card has room for.
    services_at_upstream.repos["demo-org/flux-gguf"].last_modified = (
        (timezone.now() - timezone.timedelta(days=3, hours=5)).isoformat().replace("+00:00", "Z")
    )
    html = logged_in.get(reverse("browse_huggingface")).content.decode()
    assert re.search(r'<div class="card-folder" title="[^"]+">Updated 3\xa0days ago</div>', html)  # one line
    assert '<div class="card-folder" title="2025-01-02T03:04:05+00:00">Updated ' in html
    # A card is the repository's page, and opens the download dialog at its model files.
    assert f'href="{up.hf_url}/demo-org/flux-gguf"' in html
    chosen = logged_in.get(
        reverse("download_choose"), {"url": f"{up.hf_url}/demo-org/flux-gguf"}
    ).content.decode()
    assert "flux1-dev-Q4_K_S.gguf" in chosen
    # Both sources are a tab away; the Browse link of the top bar stays current.
    assert '<a href="/browse/">Civitai</a>' in html
    assert 'aria-current="page">Hugging Face</a>' in html and 'aria-current="page">Browse</a>' in html


def test_a_repository_a_library_file_was_downloaded_from_is_marked(
    logged_in, services_at_upstream, model_roots
):
    up = services_at_upstream
    write_model(model_roots["checkpoints"] / "flux1-schnell-fp8.safetensors")
    scan_folder(get_roots())
    ModelFile.objects.update(sha256="ab" * 32)
    came_from = {"platform": "huggingface", "downloaded_at": timezone.now()}
    DownloadedFile.objects.create(
        **came_from,
        sha256="ab" * 32,
        page_url=f"{up.hf_url}/demo-org/demo-models/blob/main/flux1-schnell-fp8.safetensors",
    )
    DownloadedFile.objects.create(  # a file since deleted from the library
        **came_from, sha256="cd" * 32, page_url=f"{up.hf_url}/demo-org/flux-gguf/blob/main/f.gguf"
    )
    said = dict(repo_cards(logged_in.get(reverse("browse_huggingface")).content.decode()))
    assert said["demo-org/demo-models"] == "demo-models demo-org Text to image In library ↓ 12.3k · ♥ 321"
    assert "In library" not in said["demo-org/flux-gguf"] + said["gated-org/gated-model"]


def test_a_private_repository_the_token_lists_is_marked(logged_in, services_at_upstream):
    services_at_upstream.repos["demo-org/flux-gguf"].private = True
    said = dict(repo_cards(logged_in.get(reverse("browse_huggingface")).content.decode()))
    assert said["demo-org/flux-gguf"] == "flux-gguf demo-org Text to image Private ↓ 98.8k · ♥ 1.2k"
    assert "Private" not in said["demo-org/demo-models"]


def test_hugging_face_searched_by_name_task_and_format_in_an_order(logged_in, services_at_upstream):
    def repos(**query: str) -> list[str]:
        html = logged_in.get(
            reverse("browse_huggingface"),
            query,
            headers={"HX-Request": "true", "HX-Target": "browse-results"},
        ).content.decode()
        return [repo for repo, _ in repo_cards(html)]

    assert repos(q="GGUF") == ["demo-org/flux-gguf"]
    assert repos(q="demo-org", sort="Most Liked") == ["demo-org/flux-gguf", "demo-org/demo-models"]
    assert repos(task="text-to-image", format="safetensors") == ["demo-org/demo-models"]
    assert repos(format="gguf") == ["demo-org/flux-gguf"]
    asked = [r.path for r in services_at_upstream.requests if r.path.startswith("/api/models?")]
    assert "search=GGUF" in asked[0] and "sort=downloads" in asked[0] and "direction=-1" in asked[0]
    assert "sort=likes" in asked[1]
    # Only the fields a card shows, as the hub's own JavaScript client asks for them.
    assert "&expand=pipeline_tag&expand=private&expand=gated&expand=downloads&expand=likes" in asked[0]
    assert "pipeline_tag=text-to-image" in asked[2] and "filter=safetensors" in asked[2]
    html = logged_in.get(reverse("browse_huggingface"), {"q": "no such repo"}).content.decode()
    assert "<h2>Nothing found</h2>" in html and 'value="no such repo"' in html


def test_hugging_faces_next_pages_follow_its_cursor(logged_in, services_at_upstream, monkeypatch):
    monkeypatch.setattr(browse, "PAGE_SIZE", 2)
    first = logged_in.get(reverse("browse_huggingface")).content.decode()
    more = re.search(r'id="browse-more" class="grid-more" hx-get="([^"]+)"', first)[1].replace("&amp;", "&")
    assert more.startswith("/browse/huggingface/?") and "cursor=2" in more  # the hub's cursor, not its link
    second = logged_in.get(more, headers={"HX-Request": "true", "HX-Target": "browse-more"}).content.decode()
    assert [repo for repo, _ in repo_cards(first)] == ["gated-org/gated-model", "demo-org/flux-gguf"]
    assert [repo for repo, _ in repo_cards(second)] == ["demo-org/demo-models"]
    assert "<h1>" not in second and "browse-more" not in second


def test_hugging_face_refusing_the_token_or_out_of_reach_is_said_on_the_page(
    logged_in, services_at_upstream, settings
):
    ApiKey.objects.create(service="huggingface", key="hf_not_a_token_it_knows")
    html = logged_in.get(reverse("browse_huggingface"), {"q": "flux"}).content.decode()
    assert (
        '<p class="error" role="alert">Your Hugging Face token was refused: check it in <a href="/settings/#api-keys">'
        in html
    )
    assert 'value="flux"' in html
    settings.HF_ENDPOINT = "http://127.0.0.1:9"  # nothing listens there
    html = logged_in.get(reverse("browse_huggingface")).content.decode()
    assert '<p class="error" role="alert">127.0.0.1:9 cannot be reached: no connection' in html


def test_the_empty_downloads_page_points_to_browse(logged_in):
    html = logged_in.get(reverse("downloads")).content.decode()
    assert 'browse <a href="/browse/">Civitai</a> or <a href="/browse/huggingface/">Hugging Face</a>.' in html


@pytest.mark.parametrize("page", ["browse", "browse_huggingface"])
def test_browsing_needs_a_login(client, page):
    response = client.get(reverse(page))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
