"""Linking a model to Civitai by hand, when Civitai does not know its file by its hash."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from html import unescape

import pytest
from django.urls import reverse

from models_app.info import ensure_sha256
from models_app.models import ModelFile
from models_app.roots import get_roots
from models_app.scanner import scan_folder
from tests.model_files import write_model

pytestmark = pytest.mark.django_db(transaction=True)


def unknown_to_civitai(path) -> ModelFile:  # type: ignore[no-untyped-def]
    """The model at `path`, hashed, which Civitai said it does not know (what Fetch Civitai info leaves)."""
    scan_folder(get_roots())
    sha256, _computed = ensure_sha256(
        ModelFile.objects.get(name=path.stem), on_progress=lambda done: None, should_stop=lambda: False
    )
    assert sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    ModelFile.objects.filter(name=path.stem).update(civitai_missing=True)
    return ModelFile.objects.get(name=path.stem)


def test_a_model_civitai_does_not_know_by_its_hash_is_linked_by_hand(
    services_at_upstream, model_roots, logged_in
):
    up = services_at_upstream
    merged = write_model(model_roots["checkpoints"] / "dream_merged.safetensors", payload=b"my own merge" * 8)
    model = unknown_to_civitai(merged)
    args = ["checkpoints", 0, "dream_merged.safetensors"]

    def dialog() -> str:
        return logged_in.get(
            reverse("model_detail", args=args), headers={"HX-Request": "true"}
        ).content.decode()

    (form_link,) = re.findall(r'hx-get="([^"]*)"[^>]*>Link it by hand…', dialog())
    form = logged_in.get(unescape(form_link), headers={"HX-Request": "true"}).content.decode()
    assert 'name="url"' in form and f'hx-post="{reverse("civitai_link_save", args=args)}"' in form

    def link(url: str) -> str:
        response = logged_in.post(
            reverse("civitai_link_save", args=args), {"url": url}, headers={"HX-Request": "true"}
        )
        return response.content.decode()

    refused = link(f"{up.hf_url}/demo-org/demo-models")
    assert '<p class="error" role="alert">That is not a Civitai link' in refused
    assert f'value="{up.hf_url}/demo-org/demo-models"' in refused  # kept, to be mended
    assert "Civitai has no such model or file (404)." in link(f"{up.civitai_url}/models/999999")
    assert not (model_roots["checkpoints"] / "dream_merged.civitai.info").exists()

    linked = link(f"{up.civitai_url}/models/4201?modelVersionId=42011")
    assert "DreamXL – v1.0 ↗" in linked and ">Change…</button>" in linked and "Not on Civitai" not in linked
    info = json.loads((model_roots["checkpoints"] / "dream_merged.civitai.info").read_text())
    assert (info["modelId"], info["id"], info["model"]["name"]) == (4201, 42011, "DreamXL")
    assert info["files"] and all("hashes" not in f for f in info["files"])  # not this file's hashes
    row = ModelFile.objects.get(pk=model.pk)
    assert (row.civitai_model_id, row.civitai_version_id, row.civitai_missing) == (4201, 42011, False)
    assert row.sha256 == model.sha256  # the file's own hash, not one of the version's


def test_the_very_file_of_a_version_keeps_its_hash_in_the_info(services_at_upstream, model_roots, logged_in):
    up = services_at_upstream
    copy = model_roots["checkpoints"] / "dream_v2.safetensors"
    shutil.copy(up.files["dreamxl-v2-fp16"].path, copy)
    model = unknown_to_civitai(copy)  # a Civitai outage when it was looked up, say
    logged_in.post(
        reverse("civitai_link_save", args=["checkpoints", 0, "dream_v2.safetensors"]),
        {"url": f"{up.civitai_url}/models/4201?modelVersionId=42012"},
        headers={"HX-Request": "true"},
    )
    info = json.loads((model_roots["checkpoints"] / "dream_v2.civitai.info").read_text())
    assert model.sha256 in [f["hashes"]["SHA256"].lower() for f in info["files"]]
