"""Reading which model files a ComfyUI workflow needs: saved workflows, their API format, PNGs."""

from __future__ import annotations

import io
import json
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from PIL import Image, PngImagePlugin

from downloads_app.models import DownloadTask
from downloads_app.workflows import WorkflowError, WorkflowModel, models_in_workflow
from models_app.roots import get_roots
from models_app.scanner import scan_folder

CLIP_L = "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors"


def node(node_type: str, widgets: object, *, mode: int = 0, models: list[dict] | None = None) -> dict:
    properties: dict[str, object] = {"Node name for S&R": node_type}
    if models is not None:
        properties["models"] = models
    return {"id": 1, "type": node_type, "mode": mode, "properties": properties, "widgets_values": widgets}


def saved(*nodes: dict, **extra: object) -> bytes:
    return json.dumps(
        {"last_node_id": 9, "nodes": list(nodes), "links": [], "version": 0.4, **extra}
    ).encode()


def test_loader_nodes_name_their_files_in_their_folders():
    workflow = saved(
        node("CheckpointLoaderSimple", ["sdxl\\juggernautXL_v9.safetensors"]),
        node("LoraLoader", ["style/pepper.safetensors", 0.8, 1.0]),
        node("VAELoader", ["taesd"]),  # a name ComfyUI makes up, not a file
        node("KSampler", [42, "randomize", 20, 7.0, "euler", "normal", 1.0]),
        node("UpscaleModelLoader", ["4x-UltraSharp.pth"]),
    )
    assert models_in_workflow(workflow) == [
        WorkflowModel("sdxl/juggernautXL_v9.safetensors", "checkpoints"),
        WorkflowModel("style/pepper.safetensors", "loras"),
        WorkflowModel("4x-UltraSharp.pth", "upscale_models"),
    ]


def test_a_templates_models_give_links_and_join_the_nodes_that_load_them():
    t5 = {
        "name": "t5xxl_fp16.safetensors",
        "url": CLIP_L.replace("clip_l", "t5xxl_fp16"),
        "directory": "clip",
    }
    workflow = saved(
        node(
            "DualCLIPLoader",
            ["clip_l.safetensors", "t5xxl_fp16.safetensors", "flux", "default"],
            models=[{"name": "clip_l.safetensors", "url": CLIP_L, "directory": "text_encoders"}, t5],
        ),
        models=[
            {
                "name": "ae.safetensors",
                "url": "https://huggingface.co/Comfy-Org/Lumina_Image_2.0_Repackaged/resolve/main/split_files/vae/ae.safetensors",
                "directory": "vae",
                "hash": "AFC8E28272CD15DB3919BACDB6918CE9C1ED22E96CB12C4D5ED0FBA823529E38",
                "hash_type": "SHA256",
            }
        ],
    )
    found = models_in_workflow(workflow)
    assert found[0] == WorkflowModel(
        "ae.safetensors",
        "vae",
        "https://huggingface.co/Comfy-Org/Lumina_Image_2.0_Repackaged/resolve/main/split_files/vae/ae.safetensors",
        "afc8e28272cd15db3919bacdb6918ce9c1ed22e96cb12c4d5ed0fba823529e38",
    )
    # "clip" is ComfyUI's older name of text_encoders: one entry each, with its link.
    assert found[1:] == [
        WorkflowModel("clip_l.safetensors", "text_encoders", CLIP_L),
        WorkflowModel("t5xxl_fp16.safetensors", "text_encoders", t5["url"]),
    ]


def test_muted_and_bypassed_nodes_need_nothing_and_subgraphs_do():
    workflow = saved(
        node("LoraLoader", ["muted.safetensors", 1, 1], mode=2),
        node("LoraLoader", ["bypassed.safetensors", 1, 1], mode=4),
        definitions={
            "subgraphs": [{"id": "a", "nodes": [node("UNETLoader", ["flux1-dev.safetensors", "default"])]}]
        },
    )
    assert models_in_workflow(workflow) == [WorkflowModel("flux1-dev.safetensors", "diffusion_models")]


def test_a_custom_nodes_files_are_found_by_name_with_no_folder():
    stack = node(
        "Power Lora Loader (rgthree)",
        [{}, {"on": True, "lora": "detail.safetensors", "strength": 1}, {"type": "AddButton"}, ""],
    )
    found = models_in_workflow(saved(stack, node("LoraLoader", ["detail.safetensors", 1, 1])))
    assert found == [WorkflowModel("detail.safetensors", "loras")]
    assert models_in_workflow(saved(stack)) == [WorkflowModel("detail.safetensors", "")]


def test_the_api_format():
    workflow = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
        "10": {"class_type": "LoraLoader", "inputs": {"lora_name": "ink.safetensors", "model": ["4", 0]}},
        "3": {"class_type": "KSampler", "inputs": {"seed": 1, "model": ["10", 0]}},
    }
    assert models_in_workflow(json.dumps(workflow).encode()) == [
        WorkflowModel("sd_xl_base_1.0.safetensors", "checkpoints"),
        WorkflowModel("ink.safetensors", "loras"),
    ]


def png_with(**texts: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in texts.items():
        info.add_text(key, value)
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "#7a5cff").save(out, "PNG", pnginfo=info)
    return out.getvalue()


def test_a_png_comfyui_saved_carries_its_workflow():
    workflow = saved(node("LoraLoader", ["ink.safetensors", 1, 1]))
    assert models_in_workflow(png_with(workflow=workflow.decode(), prompt="{}")) == [
        WorkflowModel("ink.safetensors", "loras")
    ]
    api = {"1": {"class_type": "VAELoader", "inputs": {"vae_name": "sdxl_vae.safetensors"}}}
    assert models_in_workflow(png_with(prompt=json.dumps(api))) == [
        WorkflowModel("sdxl_vae.safetensors", "vae")
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "it is not JSON"),
        (b'{"nodes": "x"}', "it has no nodes"),
        (b"[1, 2]", "it has no nodes"),
        (b"\xff\xfe\x00garbage", "save it from ComfyUI as JSON"),
        (png_with(parameters="Steps: 20"), "holds no ComfyUI workflow"),
        (b"\x89PNG\r\n\x1a\nbroken", "cannot be read"),
        (b" " * (20 * 1024 * 1024 + 1), "over 20 MB"),
    ],
)
def test_what_is_not_a_workflow_is_refused_in_words(data, message):
    with pytest.raises(WorkflowError, match=message):
        models_in_workflow(data)


def test_a_workflow_that_needs_no_model_file():
    assert models_in_workflow(saved(node("KSampler", [1, "fixed"]))) == []


HX = {"HX-Request": "true", "HX-Target": "dialog"}


@pytest.fixture
def flux_roots(settings, library, tmp_path):
    """The small library, scanned, with a diffusion_models folder besides (and none for vae)."""
    (tmp_path / "models" / "diffusion_models").mkdir()
    settings.MM_MODEL_ROOTS += f";diffusion_models={tmp_path / 'models' / 'diffusion_models'}"
    scan_folder(get_roots())
    return library


def upload(client, data: bytes, name: str = "flux.json"):
    return client.post(reverse("download_workflow"), {"workflow": SimpleUploadedFile(name, data)}, headers=HX)


def rows_of(html: str) -> list[tuple[str, str, str]]:
    """Each listed model's state, name and what its row says, tags and spaces taken out."""
    rows = re.findall(
        r'<li class="(\w+)">\s*<div class="need-name"><span class="mono break">([^<]*)</span>(.*?)</li>',
        html,
        re.S,
    )
    return [(state, name, " ".join(re.sub(r"<[^>]+>", " ", said).split())) for state, name, said in rows]


@pytest.mark.django_db
def test_the_dialog_says_what_the_library_has_and_offers_the_rest(
    logged_in, flux_roots, services_at_upstream
):
    up = services_at_upstream
    schnell = f"{up.hf_url}/demo-org/demo-models/resolve/main/flux1-schnell-fp8.safetensors"
    DownloadTask.objects.create(
        platform="civitai", source_url="https://civitai.com/models/1", download_url="https://civitai.com/api/download/models/2",
        folder_type="loras", filename="ink.safetensors", status="running",
    )  # fmt: skip
    workflow = saved(
        node("CheckpointLoaderSimple", ["alpha_xl.safetensors"]),
        node("LoraLoader", ["pepper.safetensors", 1, 1]),  # the library has it in style/
        node("LoraLoader", ["ink.safetensors", 1, 1]),
        node("UNETLoader", ["flux1-schnell-fp8.safetensors", "default"], models=[
            {"name": "flux1-schnell-fp8.safetensors", "url": schnell, "directory": "diffusion_models"}
        ]),
        node("VAELoader", ["ae.safetensors"]),
    )  # fmt: skip
    html = upload(logged_in, workflow).content.decode()
    assert "flux.json needs 5 model files" in html
    assert "1 in the library · 2 missing · 1 downloading." in html
    assert rows_of(html) == [
        ("have", "alpha_xl.safetensors", "Checkpoints ✓ In the library: Checkpoints · alpha_xl.safetensors"),
        (
            "missing",
            "pepper.safetensors",
            "LoRAs You have it as LoRAs · style/pepper.safetensors : pick that in the node, or download it here too."
            " Download",
        ),
        ("queued", "ink.safetensors", "LoRAs Downloading: see Downloads"),
        ("missing", "flux1-schnell-fp8.safetensors", "Diffusion models Download"),
        (
            "no_folder",
            "ae.safetensors",
            "VAE There is no vae folder among your model folders (Settings → Model folders).",
        ),
    ]
    # The template's link is ticked; the LoRA the library has elsewhere is not.
    assert f'value="{schnell}"' in html
    assert '<input type="checkbox" name="pick" value="3" checked>' in html
    assert '<input type="checkbox" name="pick" value="1">' in html
    assert 'href="/model/loras/0/style/pepper.safetensors"' in html


@pytest.mark.django_db
def test_the_ticked_models_are_queued_under_the_names_the_workflow_loads(
    logged_in, flux_roots, services_at_upstream
):
    up = services_at_upstream
    schnell = f"{up.hf_url}/demo-org/demo-models/resolve/main/flux1-schnell-fp8.safetensors"
    response = logged_in.post(
        reverse("download_workflow_queue"),
        {
            "pick": ["0", "1", "2", "3"],
            "name_0": "flux/flux1-schnell-fp8.safetensors", "folder_0": "diffusion_models", "link_0": schnell,
            "name_1": "ae.safetensors", "folder_1": "checkpoints", "link_1": " ",
            "name_2": "dream.safetensors", "folder_2": "", "link_2": f"{up.civitai_url}/models/4201",
            "name_3": "../escape.safetensors", "folder_3": "loras", "link_3": f"{up.civitai_url}/models/1231067",
            "name_4": "not-ticked.safetensors", "folder_4": "loras", "link_4": f"{up.civitai_url}/models/1231067",
        },
        headers=HX,
    )  # fmt: skip
    html = response.content.decode()
    assert json.loads(response["HX-Trigger"])["toast"]["message"] == "2 downloads queued. 2 could not be."
    tasks = DownloadTask.objects.order_by("pk").values_list("folder_type", "sub_folder", "filename")
    assert list(tasks) == [
        ("diffusion_models", "flux", "flux1-schnell-fp8.safetensors"),
        ("checkpoints", "", "dream.safetensors"),  # no folder said: the link's kind says
    ]
    assert "No link: paste one where to get it." in html
    assert "The subfolder must stay inside the model folder" in html
    assert "Another workflow" in html


@pytest.mark.django_db
def test_nothing_ticked_or_not_a_workflow_is_said_in_words(logged_in, flux_roots):
    nothing = logged_in.post(reverse("download_workflow_queue"), {"name_0": "a.safetensors"}, headers=HX)
    assert nothing.status_code == 204
    assert json.loads(nothing["HX-Trigger"])["toast"] == {
        "message": "Tick the models to download.",
        "level": "error",
    }
    assert "That is not a ComfyUI workflow: it is not JSON." in upload(logged_in, b"<html>").content.decode()
    missing = logged_in.post(reverse("download_workflow"), {}, headers=HX).content.decode()
    assert "Choose a workflow: a .json file ComfyUI saved, or a PNG it made." in missing
    many = {"pick": [str(n) for n in range(51)]} | {f"name_{n}": f"m{n}.safetensors" for n in range(51)}
    refused = logged_in.post(reverse("download_workflow_queue"), many, headers=HX)
    assert (
        json.loads(refused["HX-Trigger"])["toast"]["message"] == "At most 50 downloads at once: these are 51."
    )
    assert (
        "It loads no model file by name." in upload(logged_in, saved(node("KSampler", [1]))).content.decode()
    )
    assert not DownloadTask.objects.exists()


def test_the_workflow_dialog_needs_a_login(client):
    for name in ("download_workflow", "download_workflow_queue"):
        response = client.post(reverse(name), {})
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.django_db
def test_the_api_lists_a_workflows_models_from_its_json_or_a_png(logged_in, flux_roots):
    workflow = saved(
        node("LoraLoader", ["pepper.safetensors", 1, 1]),
        node("CheckpointLoaderSimple", ["alpha_xl.safetensors"]),
        node("VAELoader", ["ae.safetensors"]),
    )
    answer = logged_in.post(
        "/model-manager/workflow/models", workflow, content_type="application/json"
    ).json()
    assert answer == {
        "success": True,
        "data": [
            {
                "name": "pepper.safetensors", "type": "loras", "url": "", "sha256": "", "state": "missing",
                "model": None, "elsewhere": {"type": "loras", "pathIndex": 0, "fullname": "style/pepper.safetensors"},
            },
            {
                "name": "alpha_xl.safetensors", "type": "checkpoints", "url": "", "sha256": "", "state": "have",
                "model": {"type": "checkpoints", "pathIndex": 0, "fullname": "alpha_xl.safetensors"}, "elsewhere": None,
            },
            {
                "name": "ae.safetensors", "type": "vae", "url": "", "sha256": "", "state": "no_folder",
                "model": None, "elsewhere": None,
            },
        ],
    }  # fmt: skip
    png = SimpleUploadedFile("flux.png", png_with(workflow=workflow.decode()), "image/png")
    from_png = logged_in.post("/model-manager/workflow/models", {"workflow": png}).json()
    assert from_png == answer
    refused = logged_in.post("/model-manager/workflow/models", b"{}", content_type="application/json")
    assert refused.status_code == 400
    assert refused.json() == {
        "success": False,
        "error": "That JSON is not a ComfyUI workflow: it has no nodes.",
    }
    anonymous = Client().post("/model-manager/workflow/models", workflow, content_type="application/json")
    assert anonymous.status_code == 401 and anonymous.json()["success"] is False
