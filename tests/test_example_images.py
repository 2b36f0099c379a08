"""Example images: what Civitai's images of a model's version say about how it was used, in its dialog."""

from __future__ import annotations

import json
import re

from django.urls import reverse

from models_app.examples import example_images
from models_app.models import ModelFile
from models_app.roots import get_roots
from models_app.scanner import scan_folder
from tests.model_files import REFERENCE, write_model

HX = {"HX-Request": "true", "HX-Target": "dialog"}
POSES = ["loras", 0, "poses.safetensors"]


def test_each_image_gives_its_prompt_settings_and_resources_once():
    version = {
        "images": [
            {
                "url": "https://image.civitai.com/x/width=450/1.jpeg",
                "type": "image",
                "nsfwLevel": 8,
                "width": 832,
                "height": 1216,
                "meta": {
                    "prompt": "  a fox reading  ",
                    "negativePrompt": "blurry",
                    "sampler": "DPM++ 2M",
                    "scheduler": "karras",
                    "steps": 30,
                    "cfgScale": 7,
                    "seed": 42,
                    "Size": "832x1216",
                    "clipSkip": 2,
                    "Clip skip": "2",  # A1111's name for the same: shown once
                    "Model": {"not": "text"},
                    "resources": [{"name": "fox_style", "type": "lora", "weight": 0.8}],
                    "additionalResources": [{"name": "fox_style", "type": "lora", "strength": 0.8}],
                    "civitaiResources": [{"modelName": "DreamXL", "type": "checkpoint"}, {"type": "lora"}],
                },
            },
            {"url": "https://image.civitai.com/x/2.mp4", "type": "video"},
            {"url": "javascript:alert(1)", "type": "image"},
            "not an image",
            {"url": "https://image.civitai.com/x/3.jpeg", "nsfwLevel": "X", "meta": None},
        ]
    }
    first, bare = example_images(version)
    assert first.url == "https://image.civitai.com/x/width=450/1.jpeg"
    assert (first.nsfw_level, first.width, first.height) == (8, 832, 1216)
    assert (first.prompt, first.negative_prompt) == ("a fox reading", "blurry")
    assert first.settings == [
        ("Sampler", "DPM++ 2M"),
        ("Scheduler", "karras"),
        ("Steps", "30"),
        ("CFG scale", "7"),
        ("Seed", "42"),
        ("Size", "832x1216"),
        ("Clip skip", "2"),
    ]
    assert first.resources == ["fox_style (LoRA, 0.8)", "DreamXL (Checkpoint)"]
    assert (bare.url, bare.nsfw_level, bare.has_meta, first.has_meta) == (
        "https://image.civitai.com/x/3.jpeg",
        0,
        False,
        True,
    )
    assert example_images({"images": {"url": "x"}}) == []


def test_civitais_own_answer_reads_as_it_is_stored():
    version = json.loads(next((REFERENCE / "civitai").glob("by_hash_*.json")).read_text())
    (image,) = example_images(version)
    assert image.prompt.startswith("aesthetic_pos3, dynamic_pos3, Retro-inspired outdoor shot")
    assert ("Sampler", "Euler") in image.settings and ("Steps", "26") in image.settings
    assert ("CFG scale", "3.5") in image.settings and ("Seed", "185666893452671") in image.settings
    assert image.resources == ["aeshteticv5.safetensors (LoRA, 1)"]


def test_the_dialog_shows_the_examples_escaped_and_blurred_when_explicit(logged_in, scanned):
    info = scanned["loras"] / "poses.civitai.info"
    data = json.loads(info.read_text())
    data["images"] = [
        {"url": "https://image.civitai.com/a.jpeg", "nsfwLevel": 1, "meta": {"prompt": "<script>alert(1)</script> a cat"}},
        {"url": "https://image.civitai.com/b.jpeg", "nsfwLevel": 16, "meta": {"negativePrompt": "ugly"}},
    ]  # fmt: skip
    info.write_text(json.dumps(data))
    html = logged_in.get(reverse("model_detail", args=POSES), headers=HX).content.decode()
    assert "Example images <span" in html and "(2, with the prompts and settings Civitai gives)" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; a cat" in html and "<script>alert" not in html
    thumbs = re.findall(r'<label class="example-thumb( nsfw)?">', html)
    assert thumbs == ["", " nsfw"]
    assert re.search(r'id="example-2" hidden>.*?Negative prompt.*?ugly', html, re.S)
    assert html.count("Use as preview") == 2


def test_lora_managers_metadata_gives_the_examples_when_there_is_no_civitai_info(logged_in, scanned):
    write_model(scanned["loras"] / "fox.safetensors")
    (scanned["loras"] / "fox.metadata.json").write_text(
        json.dumps({"sha256": "", "civitai": {"id": 7, "images": [{"url": "https://x.test/1.png", "meta": {"prompt": "a fox"}}]}})
    )  # fmt: skip
    scan_folder(get_roots())
    html = logged_in.get(reverse("model_detail", args=["loras", 0, "fox.safetensors"]), headers=HX).content
    assert b'<p class="example-prompt">a fox</p>' in html
    pepper = logged_in.get(reverse("model_detail", args=["loras", 0, "style/pepper.safetensors"]), headers=HX)
    assert b"Example images" not in pepper.content  # no Civitai info: nothing to show


def test_use_as_preview_saves_that_example_beside_the_model(logged_in, scanned, services_at_upstream):
    info = scanned["loras"] / "poses.civitai.info"
    url = f"{services_at_upstream.civitai_url}/images/fox.png"
    info.write_text(json.dumps({**json.loads(info.read_text()), "images": [{"url": url, "type": "image"}]}))
    dialog = logged_in.get(reverse("model_detail", args=POSES), headers=HX).content.decode()
    (form,) = re.findall(
        r'<form class="row-end" hx-post="([^"]+)"[^>]*>\s*<input type="hidden" name="image_url" value="([^"]+)"',
        dialog,
    )
    assert form == (reverse("preview_save", args=POSES), url)
    response = logged_in.post(form[0], {"image_url": url}, headers=HX)
    assert "Preview saved." in response["HX-Trigger"]
    assert (scanned["loras"] / "poses.webp").exists()
    assert ModelFile.objects.get(name="poses").preview == "poses.webp"


def test_the_api_gives_a_models_examples_with_their_settings(logged_in, scanned):
    civitai = logged_in.get("/model-manager/model/loras/0/poses.safetensors").json()["data"]["civitai"]
    (example,) = civitai["examples"]
    assert example["url"].startswith("https://image.civitai.com/")
    assert example["prompt"].startswith("aesthetic_pos3, dynamic_pos3")
    assert example["settings"]["Sampler"] == "Euler" and example["settings"]["Steps"] == "26"
    assert example["resources"] == ["aeshteticv5.safetensors (LoRA, 1)"]
    pepper = logged_in.get("/model-manager/model/loras/0/style/pepper.safetensors").json()["data"]["civitai"]
    assert pepper["examples"] == []
