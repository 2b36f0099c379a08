"""A NUL character in a request gets a clear 400 and changes nothing.

PostgreSQL refuses NUL in every text column, so before this a search, a file name or a description with
one ended in a server error there (`make test` runs these on PostgreSQL too)."""

from __future__ import annotations

import pytest
from django.test.client import encode_multipart
from django.urls import reverse

from models_app.models import ModelFile

pytestmark = pytest.mark.django_db

REFUSED = "The request holds a NUL character, which no name, path or text may contain."
PEPPER_MD = "---\nsource: civitai\n---\nWitch girl with a cat.\n"


@pytest.mark.parametrize(
    "url",
    [
        "/?q=pep%00per",
        "/?type=loras&folder=style%00",
        "/?tag=a%00&base=b",
        "/model/loras/0/style/pep%00per.safetensors",
        "/thumbnail/loras/0/style/pepper%00.safetensors",
    ],
)
def test_pages_answer_a_nul_with_a_clear_400(logged_in, scanned, url):
    response = logged_in.get(url, headers={"HX-Request": "true", "HX-Target": "grid"})
    assert response.status_code == 400
    assert response.content.decode() == REFUSED  # short plain text: the page shows it as a toast


def test_a_description_with_a_nul_is_refused_and_the_file_is_untouched(logged_in, scanned):
    url = reverse("description_save", args=["loras", 0, "style/pepper.safetensors"])
    response = logged_in.post(url, {"description": "Witch\x00girl"})
    assert response.status_code == 400 and response.content.decode() == REFUSED
    assert (scanned["loras"] / "style" / "pepper.md").read_text() == PEPPER_MD
    assert ModelFile.objects.get(name="pepper").description == "Witch girl with a cat."


def test_a_rename_with_a_nul_is_refused_and_nothing_moves(logged_in, scanned):
    url = reverse("model_move", args=["loras", 0, "style/pepper.safetensors"])
    response = logged_in.post(url, {"folder_type": "loras", "sub_folder": "style", "name": "pep\x00"})
    assert response.status_code == 400
    assert (scanned["loras"] / "style" / "pepper.safetensors").exists()


def test_the_api_answers_a_nul_in_its_envelope(logged_in, scanned):
    url = "/model-manager/model/loras/0/style/pepper.safetensors"
    for response in (
        logged_in.get("/model-manager/models/lo%00ras"),
        logged_in.put(url, {"description": "a\x00b"}, content_type="application/json"),
        logged_in.put(
            url,
            encode_multipart("BoUnDaRy", {"description": "a\x00b"}),
            content_type="multipart/form-data; boundary=BoUnDaRy",
        ),
        logged_in.post(
            "/model-manager/model",
            {"downloadUrl": "https://civitai.com/models/1\x00"},
            content_type="application/json",
        ),
    ):
        assert response.status_code == 400
        assert response.json() == {"success": False, "error": REFUSED}
    assert (scanned["loras"] / "style" / "pepper.md").read_text() == PEPPER_MD
