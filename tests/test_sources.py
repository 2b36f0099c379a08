from __future__ import annotations

import json
import socket

import pytest
import requests

from downloads_app import sources
from downloads_app.sources import (
    Endpoints,
    Keys,
    Resolution,
    SourceError,
    civitai,
    huggingface,
    platform_of,
    resolve,
)

pytestmark = pytest.mark.usefixtures("upstream")


def endpoints(upstream) -> Endpoints:
    return Endpoints(civitai=upstream.civitai_url, huggingface=upstream.hf_url)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://civitai.com/models/1231067", (1231067, None, {})),
        ("https://civitai.com/models/1231067/pp-storybook?modelVersionId=1387174", (1231067, 1387174, {})),
        (
            "https://civitai.com/api/download/models/1387174?type=Model&format=SafeTensor",
            (None, 1387174, {"type": "Model", "format": "SafeTensor"}),
        ),
        ("1231067", (1231067, None, {})),
        ("urn:air:flux1:lora:civitai:706978@1050496", (706978, 1050496, {})),
    ],
)
def test_civitai_links(url, expected):
    assert civitai.parse(url) == expected


def test_a_version_id_that_is_not_a_number_to_store_is_left_out():
    for version in ("²", "99999999999999999999"):
        assert civitai.parse(f"https://civitai.com/models/12?modelVersionId={version}") == (12, None, {})
    assert not civitai.recognises("²", Endpoints(civitai="https://civitai.com", huggingface=""))


def test_a_civitai_link_that_is_not_a_model_is_explained():
    with pytest.raises(SourceError, match="not a model page"):
        civitai.parse("https://civitai.com/images/123")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://huggingface.co/black-forest-labs/FLUX.1-dev",
            ("black-forest-labs/FLUX.1-dev", "repo", "main", ""),
        ),
        (
            "https://huggingface.co/o/r/resolve/v1.0/vae/x.safetensors",
            ("o/r", "file", "v1.0", "vae/x.safetensors"),
        ),
        ("https://huggingface.co/o/r/blob/abc123/x.gguf?download=true", ("o/r", "file", "abc123", "x.gguf")),
        ("https://huggingface.co/o/r/tree/main/split_files", ("o/r", "tree", "main", "split_files")),
    ],
)
def test_hugging_face_links(url, expected):
    assert huggingface.parse(url) == expected


def test_datasets_are_not_models():
    with pytest.raises(SourceError, match="dataset"):
        huggingface.parse("https://huggingface.co/datasets/o/r")


class AnswersInAnotherShape(sources.HttpClient):
    """A service that answers 200 with JSON, but not shaped as its documentation says."""

    def __init__(self, answer: object) -> None:
        super().__init__()
        self.answer = answer

    def get(self, url, *, key="", **kwargs):
        response = requests.Response()
        response.status_code, response._content = 200, json.dumps(self.answer).encode()
        return response


@pytest.mark.parametrize(
    ("link", "answer", "service"),
    [
        ("https://civitai.com/models/1", {"modelVersions": ["not an object"]}, "Civitai"),
        ("https://civitai.com/models/1", {"modelVersions": [{"id": "one", "files": 5}]}, "Civitai"),
        (
            "https://huggingface.co/o/r",
            [{"path": "x.safetensors", "type": "file", "lfs": "x"}],
            "Hugging Face",
        ),
        (
            "https://huggingface.co/o/r",
            [{"path": "x.safetensors", "type": "file", "size": "big"}],
            "Hugging Face",
        ),
    ],
)
def test_an_answer_not_shaped_as_documented_is_said_to_be_unreadable(link, answer, service, caplog):
    ends = Endpoints(civitai="https://civitai.com", huggingface="https://huggingface.co")
    with pytest.raises(SourceError, match=f"^{service}'s answer could not be read"):
        resolve(link, endpoints=ends, keys=Keys(), client=AnswersInAnotherShape(answer))
    assert "Traceback" in caplog.text


def test_a_civitai_model_page_lists_versions_files_and_the_folder(upstream):
    resolution = resolve(f"{upstream.civitai_url}/models/4201", endpoints=endpoints(upstream), keys=Keys())
    assert (resolution.platform, resolution.title, resolution.folder_type) == (
        "civitai",
        "DreamXL",
        "checkpoints",
    )
    assert [v.name for v in resolution.versions] == ["v2.0", "v1.0"]
    files = resolution.versions[0].files
    assert [(f.name, f.precision, f.primary) for f in files] == [
        ("dreamxl_v2_fp16.safetensors", "fp16", True),
        ("dreamxl_v2_fp32.safetensors", "fp32", False),
    ]
    assert files[0].sha256 == upstream.files["dreamxl-v2-fp16"].sha256
    assert resolution.file(resolution.version()).name == "dreamxl_v2_fp16.safetensors"


def test_a_version_link_selects_that_version_and_a_download_link_its_file(upstream):
    e = endpoints(upstream)
    by_page = resolve(
        f"{upstream.civitai_url}/models/4201/dream?modelVersionId=42011", endpoints=e, keys=Keys()
    )
    assert by_page.version().name == "v1.0"
    by_download = resolve(
        f"{upstream.civitai_url}/api/download/models/42012?type=Model&format=SafeTensor&fp=fp32",
        endpoints=e,
        keys=Keys(),
    )
    assert by_download.file(by_download.version()).name == "dreamxl_v2_fp32.safetensors"


def test_the_civitai_info_names_its_model(upstream):
    resolution = resolve(f"{upstream.civitai_url}/models/1231067", endpoints=endpoints(upstream), keys=Keys())
    info = resolution.version().info
    assert (info["modelId"], info["model"]["name"], info["files"][0]["hashes"]["SHA256"]) == (
        1231067,
        resolution.title,
        upstream.files["storybook"].sha256.upper(),
    )
    assert resolution.folder_type == "loras"


def test_an_unknown_civitai_model_says_so(upstream):
    with pytest.raises(SourceError, match="Civitai has no such model"):
        resolve(f"{upstream.civitai_url}/models/999", endpoints=endpoints(upstream), keys=Keys())


def test_a_hugging_face_repo_lists_its_model_files_across_pages(upstream):
    upstream.tree_page_size = 1
    resolution = resolve(
        f"{upstream.hf_url}/demo-org/demo-models", endpoints=endpoints(upstream), keys=Keys()
    )
    names = [f.id for f in resolution.version().files]
    assert names == [
        "flux1-schnell-fp8.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
    ]  # not README.md
    # The folder a file sits in tells its ComfyUI folder; its name alone does not.
    assert [f.folder_type for f in resolution.version().files] == ["", "vae"]
    assert resolution.version().files[0].sha256 == upstream.files["hf-schnell"].sha256
    assert len([r for r in upstream.requests if "/tree/" in r.path]) == 3


def test_a_civitai_versions_vae_file_goes_to_the_vae_folder():
    files = [{"name": "dream.safetensors", "type": "Model"}, {"name": "dream_vae.safetensors", "type": "VAE"}]
    version = civitai._version({"id": 7, "files": files}, 4, "https://civitai.com")
    resolution = Resolution(
        platform="civitai", url="", title="", versions=[version], folder_type="checkpoints"
    )
    assert [resolution.folder_type_of(f) for f in version.files] == ["checkpoints", "vae"]


@pytest.mark.parametrize(
    ("path", "saved_as"),
    [
        ("vae/diffusion_pytorch_model.safetensors", "sdxl-base-1.0_vae.safetensors"),
        ("vae/diffusion_pytorch_model.fp16.safetensors", "sdxl-base-1.0_vae.fp16.safetensors"),
        ("text_encoder_2/model.safetensors", "sdxl-base-1.0_text_encoder_2.safetensors"),
        ("model.safetensors", "sdxl-base-1.0.safetensors"),
        ("sd_xl_base_1.0.safetensors", "sd_xl_base_1.0.safetensors"),  # a name of its own is kept
        (
            "unet/diffusion_pytorch_model-00001-of-00002.safetensors",
            "diffusion_pytorch_model-00001-of-00002.safetensors",
        ),
        ("model_index.safetensors", "model_index.safetensors"),
    ],
)
def test_a_generic_hugging_face_file_name_is_saved_under_its_repos_name(path, saved_as):
    assert huggingface.name_to_save("stabilityai/sdxl-base-1.0", path) == saved_as


def test_a_hugging_face_file_link_at_a_revision(upstream):
    url = f"{upstream.hf_url}/demo-org/demo-models/blob/v1.0/vae/diffusion_pytorch_model.safetensors"
    resolution = resolve(url, endpoints=endpoints(upstream), keys=Keys())
    remote = resolution.file(resolution.version())
    assert (
        remote.download_url
        == f"{upstream.hf_url}/demo-org/demo-models/resolve/v1.0/vae/diffusion_pytorch_model.safetensors"
    )
    assert (remote.size, remote.sha256) == (upstream.files["hf-vae"].size, upstream.files["hf-vae"].sha256)
    assert resolution.folder_type == "vae"


@pytest.mark.parametrize(
    ("url", "token", "message"),
    [
        ("/gated-org/gated-model", "", "gated: add a Hugging Face token"),
        ("/gated-org/gated-model", "hf_bad", "not been granted access"),
        ("/nobody/nothing", "", "no such repository"),
        ("/demo-org/demo-models/tree/nope", "", "branch, tag or commit does not exist"),
        ("/demo-org/demo-models/resolve/main/missing.safetensors", "", "file does not exist"),
    ],
)
def test_hugging_face_errors_are_explained(upstream, url, token, message):
    with pytest.raises(SourceError, match=message):
        resolve(upstream.hf_url + url, endpoints=endpoints(upstream), keys=Keys(huggingface=token))


def test_a_direct_link_is_named_by_content_disposition(upstream):
    stored = upstream.files["hf-schnell"]
    resolution = resolve(
        f"{upstream.storage_url}/files/{stored.key}", endpoints=endpoints(upstream), keys=Keys()
    )
    remote = resolution.file(resolution.version())
    assert (resolution.platform, remote.name, remote.size) == ("direct", stored.name, stored.size)


def test_a_site_that_cannot_be_reached_is_explained(monkeypatch):
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(
        SourceError, match=rf"127.0.0.1:{port} cannot be reached: no connection \(check the address"
    ):
        resolve(f"http://127.0.0.1:{port}/m.safetensors", endpoints=Endpoints(), keys=Keys())
    monkeypatch.setattr(sources, "TIMEOUT", (2, 0.3))
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/m.safetensors"
        with pytest.raises(SourceError, match="cannot be reached: it did not answer in time"):
            resolve(url, endpoints=Endpoints(), keys=Keys())


def test_not_a_link():
    for bad in ("", "hello", "ftp://x/y.safetensors"):
        with pytest.raises(SourceError):
            resolve(bad, endpoints=Endpoints(), keys=Keys())


def test_platform_of(upstream):
    e = endpoints(upstream)
    assert platform_of("https://civitai.com/models/1", e) == "civitai"
    assert platform_of(f"{upstream.hf_url}/a/b", e) == "huggingface"
    assert platform_of("https://example.com/x.safetensors", e) == "direct"
