"""Reading which model files a ComfyUI workflow needs: saved workflows, their API format, PNGs."""

from __future__ import annotations

import io
import json
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from PIL import Image, PngImagePlugin

from downloads_app import selectors
from downloads_app.models import ApiKey, DownloadTask
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


def test_a_legacy_group_node_needs_what_its_inner_loaders_load():
    """Group nodes came before subgraphs: `extra.groupNodes` defines them, and a group node's values
    are its inner nodes' values, one node's after another's."""
    grouped = {
        "nodes": [
            {"type": "CheckpointLoaderSimple", "index": 0, "widgets_values": ["old_xl.safetensors"]},
            {"type": "LoraLoader", "index": 1, "widgets_values": ["old_lora.safetensors", 1, 1]},
            {"type": "VAELoader", "index": 2, "widgets_values": ["sdxl_vae.safetensors"], "mode": 4},
        ],
        "links": [],
        "external": [],
    }
    instance = node(
        "workflow>Loaders", ["juggernaut_xl.safetensors", "pepper.safetensors", 0.8, 1, "x.safetensors"]
    )
    older = node("workflow/Loaders", ["dream_xl.safetensors", "ink.safetensors", 1, 1, "y.safetensors"])
    workflow = saved(instance, older, extra={"groupNodes": {"Loaders": grouped}})
    assert models_in_workflow(workflow) == [
        WorkflowModel(
            "juggernaut_xl.safetensors", "checkpoints"
        ),  # the group node's value, not the definition's
        WorkflowModel("pepper.safetensors", "loras"),
        WorkflowModel("dream_xl.safetensors", "checkpoints"),
        WorkflowModel("ink.safetensors", "loras"),
    ]  # the bypassed VAE loader inside the group needs nothing

    # A widget linked inside the group has no value there: a name grouped with a loader keeps its folder.
    linked = node("workflow>Loaders", ["old_lora.safetensors", 0.5, "z.safetensors"])
    assert models_in_workflow(saved(linked, extra={"groupNodes": {"Loaders": grouped}})) == [
        WorkflowModel("old_lora.safetensors", "loras"),
        WorkflowModel("z.safetensors", ""),
    ]


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


def test_a_webp_comfyui_saved_carries_its_workflow_in_exif():
    exif = Image.Exif()
    exif[0x0110] = "prompt:" + json.dumps(
        {"1": {"class_type": "VAELoader", "inputs": {"vae_name": "a.safetensors"}}}
    )
    exif[0x010F] = "workflow:" + saved(node("LoraLoader", ["ink.safetensors", 1, 1])).decode()
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "WEBP", exif=exif)
    assert models_in_workflow(out.getvalue()) == [WorkflowModel("ink.safetensors", "loras")]


def test_a_png_comfyui_saved_carries_its_workflow():
    workflow = saved(node("LoraLoader", ["ink.safetensors", 1, 1]))
    assert models_in_workflow(png_with(workflow=workflow.decode(), prompt="{}")) == [
        WorkflowModel("ink.safetensors", "loras")
    ]
    api = {"1": {"class_type": "VAELoader", "inputs": {"vae_name": "sdxl_vae.safetensors"}}}
    assert models_in_workflow(png_with(prompt=json.dumps(api))) == [
        WorkflowModel("sdxl_vae.safetensors", "vae")
    ]


A1111_PARAMETERS = """masterpiece, a witch and her cat, <lora:pepper:0.8> <lora:ink:0.5>
Negative prompt: easynegative, lowres
Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1, Size: 832x1216, Model hash: 31E35C80FC, \
Model: sd_xl_base_1.0, VAE hash: 63aeecb90f, VAE: sdxl_vae.safetensors, \
Lora hashes: "pepper: 6cbd5a2ef2, ink: 0123456789", TI hashes: "easynegative: c74b4e810b", Version: v1.9.4"""


def test_an_image_made_with_a1111_names_its_models_by_hash():
    expected = [
        WorkflowModel("sd_xl_base_1.0", "checkpoints", autov2="31e35c80fc", exact=False),
        WorkflowModel("sdxl_vae.safetensors", "vae", autov2="63aeecb90f", exact=False),
        WorkflowModel("pepper", "loras", autov2="6cbd5a2ef2", exact=False),
        WorkflowModel("ink", "loras", autov2="0123456789", exact=False),
        WorkflowModel("easynegative", "embeddings", autov2="c74b4e810b", exact=False),
    ]  # the prompt's <lora:…> tags join the hashes of the same names
    assert models_in_workflow(png_with(parameters=A1111_PARAMETERS)) == expected
    # A JPEG or a WebP keeps them in its EXIF comment, in UTF-16.
    for image_format, byte_order in (("JPEG", "utf-16-be"), ("WEBP", "utf-16-le")):
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + A1111_PARAMETERS.encode(byte_order)
        out = io.BytesIO()
        Image.new("RGB", (8, 8)).save(out, image_format, exif=exif)
        assert models_in_workflow(out.getvalue()) == expected, image_format


def test_an_image_made_on_civitai_names_the_versions_of_its_resources():
    parameters = (
        "a cat\nSteps: 25, Sampler: Euler a, Civitai resources: "
        '[{"type":"checkpoint","modelVersionId":42012,"modelName":"DreamXL","modelVersionName":"v2.0"},'
        '{"type":"lora","weight":0.8,"modelVersionId":1255556,"modelName":"Storybook, Redmond"}], '
        "Civitai metadata: {}"
    )
    assert models_in_workflow(png_with(parameters=parameters)) == [
        WorkflowModel("DreamXL", "checkpoints", civitai_version_id=42012, exact=False),
        WorkflowModel("Storybook, Redmond", "loras", civitai_version_id=1255556, exact=False),
    ]
    assert models_in_workflow(png_with(parameters="a cat\nSteps: 20, Seed: 3")) == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "it is not JSON"),
        (b'{"nodes": "x"}', "it has no nodes"),
        (b"[1, 2]", "it has no nodes"),
        (b"\xff\xfe\x00garbage", "save it from ComfyUI as JSON"),
        (png_with(Software="GIMP"), "holds no workflow"),
        (b"\x89PNG\r\n\x1a\nbroken", "That image cannot be read."),
        (b" " * (20 * 1024 * 1024 + 1), "over 20 MB"),
    ],
)
def test_what_is_not_a_workflow_is_refused_in_words(data, message):
    with pytest.raises(WorkflowError, match=message):
        models_in_workflow(data)


def test_a_huge_image_is_refused_in_words_and_its_pixels_are_not_decoded(monkeypatch):
    data = png_with(workflow=saved(node("LoraLoader", ["ink.safetensors", 1, 1])).decode())
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("the pixels were decoded"))
    assert models_in_workflow(data) == [WorkflowModel("ink.safetensors", "loras")]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 16)  # 8 × 8 is four times that: a "decompression bomb"
    with pytest.raises(WorkflowError, match="That image is too large to be read"):
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
    assert "flux.json needs 5 models" in html
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
            "VAE There is no vae folder among your model folders .",
        ),
    ]
    # The template's link is ticked; the LoRA the library has elsewhere is not.
    assert f'value="{schnell}"' in html
    assert '<input type="checkbox" name="pick" value="3" checked>' in html
    assert '<input type="checkbox" name="pick" value="1">' in html
    assert 'href="/model/loras/0/style/pepper.safetensors"' in html
    assert '<a href="/settings/#model-folders">model folders</a>' in html


@pytest.mark.django_db
def test_a_model_of_a_similar_name_in_its_folder_is_pointed_out_and_not_ticked(
    logged_in, flux_roots, services_at_upstream
):
    link = f"{services_at_upstream.civitai_url}/models/4201"
    workflow = saved(
        node("CheckpointLoaderSimple", ["SDXL/Alpha-XL.ckpt"], models=[{"name": "SDXL/Alpha-XL.ckpt", "url": link}]),
        node("CheckpointLoaderSimple", ["alpha_xl_v2.safetensors"], models=[{"name": "alpha_xl_v2.safetensors", "url": link}]),
        node("LoraLoader", ["Beta XL.safetensors", 1, 1]),  # a checkpoint's name, but LoRAs are looked for
    )  # fmt: skip
    html = upload(logged_in, workflow).content.decode()
    assert rows_of(html) == [
        (
            "missing",
            "SDXL/Alpha-XL.ckpt",
            "Checkpoints You may have it as Checkpoints · alpha_xl.safetensors , of a similar name: if it is the"
            " same model, pick that in the node. Download",
        ),
        ("missing", "alpha_xl_v2.safetensors", "Checkpoints Download"),
        (
            "missing",
            "Beta XL.safetensors",
            "LoRAs Search Civitai for “Beta XL” , then paste its link below. Download",
        ),
    ]
    assert '<input type="checkbox" name="pick" value="0">' in html  # the user says whether it is the same
    assert '<input type="checkbox" name="pick" value="1" checked>' in html


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
    assert "Another file" in html


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
    assert "Choose a workflow: a .json file ComfyUI saved, or an image it made." in missing
    many = {"pick": [str(n) for n in range(51)]} | {f"name_{n}": f"m{n}.safetensors" for n in range(51)}
    refused = logged_in.post(reverse("download_workflow_queue"), many, headers=HX)
    assert (
        json.loads(refused["HX-Trigger"])["toast"]["message"] == "At most 50 downloads at once: these are 51."
    )
    assert "It names no model." in upload(logged_in, saved(node("KSampler", [1]))).content.decode()
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
        node("CheckpointLoaderSimple", ["Beta-XL.ckpt"]),
    )
    answer = logged_in.post(
        "/model-manager/workflow/models", workflow, content_type="application/json"
    ).json()
    assert answer == {
        "success": True,
        "data": [
            {
                "name": "pepper.safetensors", "type": "loras", "url": "", "sha256": "", "autov2": "", "state": "missing",
                "model": None, "elsewhere": {"type": "loras", "pathIndex": 0, "fullname": "style/pepper.safetensors"},
                "similar": None,
            },
            {
                "name": "alpha_xl.safetensors", "type": "checkpoints", "url": "", "sha256": "", "autov2": "", "state": "have",
                "model": {"type": "checkpoints", "pathIndex": 0, "fullname": "alpha_xl.safetensors"}, "elsewhere": None,
                "similar": None,
            },
            {
                "name": "ae.safetensors", "type": "vae", "url": "", "sha256": "", "autov2": "", "state": "no_folder",
                "model": None, "elsewhere": None, "similar": None,
            },
            {
                "name": "Beta-XL.ckpt", "type": "checkpoints", "url": "", "sha256": "", "autov2": "", "state": "missing",
                "model": None, "elsewhere": None,
                "similar": {"type": "checkpoints", "pathIndex": 0, "fullname": "beta_xl.safetensors"},
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


@pytest.mark.django_db
def test_an_images_models_are_found_by_hash_and_asked_of_civitai(logged_in, flux_roots, services_at_upstream):
    up = services_at_upstream
    fp32 = up.files["dreamxl-v2-fp32"].sha256[:10]  # the version's second file, not its primary one
    storybook = up.files["storybook"].sha256[:10]
    parameters = (
        "a witch, <lora:pepper:0.7>\nNegative prompt: lowres\nSteps: 30, Seed: 1, "
        f'Model hash: {fp32}, Model: dreamxl_v2_fp32, Lora hashes: "poses: 21437ec266, pepper: {storybook}, '
        'ink: 0000000000", Version: f2.0.1'
    )
    html = upload(logged_in, png_with(parameters=parameters), "witch.png").content.decode()
    assert "witch.png needs 4 models" in html
    assert "1 in the library · 3 missing." in html
    assert rows_of(html) == [
        (
            "missing",
            "dreamxl_v2_fp32",
            f"{fp32} Checkpoints On Civitai: DreamXL · v2.0 Download",
        ),
        # poses.civitai.info gives the SHA256 of poses.safetensors: its AutoV2 finds it.
        ("have", "poses", "21437ec266 LoRAs ✓ In the library: LoRAs · poses.safetensors"),
        (
            "missing",
            "pepper",
            f"{storybook} LoRAs You have a model of that name, LoRAs · style/pepper.safetensors : its hash is not"
            " computed yet. On Civitai: Vivid Impressions Storybook Style · v1.0 Download",
        ),
        (
            "missing",
            "ink",
            "0000000000 LoRAs Civitai does not know this hash. Search Civitai for “ink” , then paste its link below."
            " Download",
        ),
    ]
    assert '<input type="checkbox" name="pick" value="0" checked>' in html  # a link, and no file of its name
    assert '<input type="checkbox" name="pick" value="2">' in html  # one of its name: the user decides
    # One Civitai does not know can be looked for on Browse, by its name, in a tab of its own.
    assert '<a href="/browse/?q=ink" target="_blank">Search Civitai for “ink”</a>' in html
    link = re.search(r'name="link_0" value="([^"]+)"', html)[1].replace("&amp;", "&")
    assert link == f"{up.civitai_url}/api/download/models/42012?type=Model&format=SafeTensor&fp=fp32"

    # Queued, each file keeps its own name: the image gives none.
    queued = logged_in.post(
        reverse("download_workflow_queue"),
        {"pick": ["0"], "name_0": "", "folder_0": "checkpoints", "link_0": link},
        headers=HX,
    )
    assert "1 of 1 queued" in queued.content.decode()
    task = DownloadTask.objects.get()
    assert (task.folder_type, task.sub_folder, task.filename) == (
        "checkpoints",
        "",
        "dreamxl_v2_fp32.safetensors",
    )
    # Looked at again, it is on its way (the hash of the file it downloads is Civitai's).
    again = rows_of(upload(logged_in, png_with(parameters=parameters), "witch.png").content.decode())
    assert again[0] == ("queued", "dreamxl_v2_fp32", f"{fp32} Checkpoints Downloading: see Downloads")


@pytest.mark.django_db
def test_civitai_refusing_the_key_is_asked_once_and_said_for_every_hash(
    logged_in, flux_roots, services_at_upstream
):
    ApiKey.objects.create(service="civitai", key="a-key-civitai-does-not-know")
    parameters = 'a cat\nSteps: 20, Model hash: 1234567890, Lora hashes: "ink: 0000000000, clay: 1111111111"'
    html = upload(logged_in, png_with(parameters=parameters)).content.decode()
    said = [text.split(" ", 2)[2] for _, _, text in rows_of(html)]
    assert [text.split(" Search Civitai for")[0] for text in said] == [
        "Your Civitai key was refused: check it in Settings . Download",  # a hash with no name to search for
        "Your Civitai key was refused: check it in Settings .",
        "Your Civitai key was refused: check it in Settings .",
    ]
    assert html.count('in <a href="/settings/#api-keys">Settings</a>.') == 3
    assert len([r for r in services_at_upstream.requests if "/by-hash/" in r.path]) == 1


@pytest.mark.django_db
def test_civitai_asking_to_wait_longer_than_a_page_can_is_said_for_every_hash(
    logged_in, flux_roots, services_at_upstream, monkeypatch
):

    services_at_upstream.by_hash_statuses = [429]  # Retry-After: 1
    monkeypatch.setattr(selectors, "IN_A_REQUEST", 0.5)
    parameters = 'a cat\nSteps: 20, Model hash: 1234567890, Lora hashes: "ink: 0000000000"'
    said = [
        text.split(" ", 2)[2]
        for _, _, text in rows_of(upload(logged_in, png_with(parameters=parameters)).content.decode())
    ]
    assert [text.split(" Search Civitai for")[0] for text in said] == [
        "Civitai asks to wait 1 s (too many requests): try again then. Download",
        "Civitai asks to wait 1 s (too many requests): try again then.",
    ]
    assert len([r for r in services_at_upstream.requests if "/by-hash/" in r.path]) == 1


@pytest.mark.django_db
def test_the_hashes_after_the_first_are_asked_of_civitai_together(
    logged_in, flux_roots, services_at_upstream
):
    up = services_at_upstream
    up.by_hash_hold = 0.3  # each answer takes that long: lookups asked together overlap
    fp32, storybook = up.files["dreamxl-v2-fp32"].sha256[:10], up.files["storybook"].sha256[:10]
    parameters = (
        f'a cat\nSteps: 20, Model hash: {fp32}, Lora hashes: "ink: 0000000000, clay: 1111111111, '
        f'story: {storybook}"'
    )
    rows = rows_of(upload(logged_in, png_with(parameters=parameters)).content.decode())
    assert [text.split(" Download")[0].split(" Search")[0] for _, _, text in rows] == [
        f"{fp32} Checkpoints On Civitai: DreamXL · v2.0",
        "0000000000 LoRAs Civitai does not know this hash.",
        "1111111111 LoRAs Civitai does not know this hash.",
        f"{storybook} LoRAs On Civitai: Vivid Impressions Storybook Style · v1.0",
    ]
    assert len([r for r in up.requests if "/by-hash/" in r.path]) == 4
    assert up.by_hash_most_at_once == 3  # the first alone, then the other three at once


@pytest.mark.django_db
def test_a_civitai_resource_on_its_way_is_said_to_be_downloading(logged_in, flux_roots, services_at_upstream):
    parameters = (
        'a cat\nSteps: 25, Civitai resources: [{"type":"checkpoint","modelVersionId":42012,'
        '"modelName":"DreamXL"}, {"type":"lora","modelVersionId":1255556,"modelName":"Storybook"}]'
    )
    rows = rows_of(upload(logged_in, png_with(parameters=parameters)).content.decode())
    assert [(state, name) for state, name, _ in rows] == [("missing", "DreamXL"), ("missing", "Storybook")]

    link = f"{services_at_upstream.civitai_url}/api/download/models/42012"
    queued = logged_in.post(
        reverse("download_workflow_queue"), {"pick": ["0"], "name_0": "", "folder_0": "checkpoints", "link_0": link},
        headers=HX,
    )  # fmt: skip
    assert "1 of 1 queued" in queued.content.decode()
    assert "/api/download/models/42012?" in DownloadTask.objects.get().download_url  # the file's own address

    again = rows_of(upload(logged_in, png_with(parameters=parameters)).content.decode())
    assert again == [
        ("queued", "DreamXL", "Checkpoints Downloading: see Downloads"),
        ("missing", "Storybook", "LoRAs On Civitai: Storybook Download"),
    ]


@pytest.mark.django_db
def test_an_images_models_without_a_hash_are_found_by_name_as_a1111_finds_them(logged_in, flux_roots):
    parameters = (
        "a witch <lora:style/pepper:0.8> <lora:poses:1> <lora:style/poses:1>\nSteps: 20, Model: alpha_xl"
    )
    rows = rows_of(upload(logged_in, png_with(parameters=parameters)).content.decode())
    assert [(state, name) for state, name, _ in rows] == [
        ("have", "alpha_xl"),
        ("have", "style/pepper"),
        ("have", "poses"),
        ("missing", "style/poses"),  # no such LoRA in style/
    ]
    assert rows[1][2] == "LoRAs ✓ In the library: LoRAs · style/pepper.safetensors"


@pytest.mark.django_db
def test_the_workflow_command_lists_the_models_and_queues_the_missing_ones(
    flux_roots, services_at_upstream, tmp_path, capsys
):
    schnell = f"{services_at_upstream.hf_url}/demo-org/demo-models/resolve/main/flux1-schnell-fp8.safetensors"
    workflow = tmp_path / "flux.json"
    workflow.write_bytes(
        saved(
            node("CheckpointLoaderSimple", ["alpha_xl.safetensors"]),
            node("LoraLoader", ["pepper.safetensors", 1, 1]),
            node(
                "UNETLoader",
                ["flux/flux1-schnell-fp8.safetensors"],
                models=[
                    {
                        "name": "flux/flux1-schnell-fp8.safetensors",
                        "url": schnell,
                        "directory": "diffusion_models",
                    }
                ],
            ),
        )
    )
    call_command("workflow", str(workflow))
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in lines[:3]] == [
        ["have", "checkpoints", "alpha_xl.safetensors"],
        ["missing", "loras", "pepper.safetensors"],
        ["missing", "diffusion_models", "flux/flux1-schnell-fp8.safetensors"],
    ]
    assert lines[1].endswith("elsewhere: loras/style/pepper.safetensors · no link")
    assert lines[2].endswith(schnell)
    assert lines[3] == "3 models: 1 in the library, 2 missing."
    assert not DownloadTask.objects.exists()

    call_command("workflow", str(workflow), "--queue")  # as the dialog ticks them: the one with a link
    assert "Queued download #" in capsys.readouterr().out
    task = DownloadTask.objects.get()
    assert (task.folder_type, task.sub_folder, task.filename) == (
        "diffusion_models",
        "flux",
        "flux1-schnell-fp8.safetensors",
    )
    with pytest.raises(CommandError, match="cannot be read"):
        call_command("workflow", str(tmp_path / "nothing.json"))
    (tmp_path / "page.html").write_text("<html>")
    with pytest.raises(CommandError, match="it is not JSON"):
        call_command("workflow", str(tmp_path / "page.html"))


def test_what_browse_is_asked_to_search_for_a_model_with_no_link():
    assert WorkflowModel("sdxl/juggernautXL_v9.safetensors").search_words == "juggernautXL v9"
    assert WorkflowModel("detail-tweaker_xl", exact=False).search_words == "detail tweaker xl"
    assert WorkflowModel("31e35c80fc", "checkpoints", autov2="31e35c80fc", exact=False).search_words == ""
