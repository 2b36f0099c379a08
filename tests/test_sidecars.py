from __future__ import annotations

import json
import os
import shutil

from models_app.sidecars import read_sidecars, sidecar_names, strip_front_matter
from tests.model_files import REFERENCE, write_image

BY_HASH = next((REFERENCE / "civitai").glob("by_hash_*.json"))


def read(folder, model="m.safetensors"):
    return read_sidecars(folder, model, os.listdir(folder))


def test_civitai_helper_info_is_read(tmp_path):
    shutil.copy(BY_HASH, tmp_path / "m.civitai.info")
    info = read(tmp_path)
    assert info.base_model == "Flux.1 D"
    assert info.trained_words == ["aesthetic_pos3", "dynamic_pos3"]
    assert info.civitai_model_id == 706978
    assert info.civitai_version_id == 1050496
    assert info.civitai_name == "Realistic/Aesthetic Poses FluxDev – V.3"
    assert info.sha256 == "21437ec26670e230b067ca936f6657caf5ca063f15aec333ef249bec7c0f0dc0"
    assert info.nsfw_level == 2
    assert info.files == ["m.civitai.info"]


def test_lora_manager_metadata_json_is_read(tmp_path):
    (tmp_path / "m.metadata.json").write_text(
        json.dumps(
            {
                "file_name": "m",
                "model_name": "Pepper",
                "sha256": "ABCDEF",
                "base_model": "SDXL 1.0",
                "notes": "use at 0.8",
                "tags": ["witch", "cat"],
                "civitai": {"id": 11, "modelId": 22, "trainedWords": ["pepper"]},
            }
        )
    )
    info = read(tmp_path)
    assert (info.base_model, info.notes, info.tags, info.trained_words) == (
        "SDXL 1.0",
        "use at 0.8",
        ["witch", "cat"],
        ["pepper"],
    )
    assert (info.civitai_model_id, info.civitai_version_id, info.sha256) == (22, 11, "abcdef")


def test_stability_matrix_cm_info_is_read(tmp_path):
    (tmp_path / "m.cm-info.json").write_text(
        json.dumps(
            {
                "ModelId": 5,
                "VersionId": 6,
                "ModelName": "Cat",
                "VersionName": "v2",
                "BaseModel": "Pony",
                "Hashes": {"SHA256": "AA11", "BLAKE3": "bb"},
                "TrainedWords": ["catgirl", "ears"],
            }
        )
    )
    info = read(tmp_path)
    assert (info.civitai_model_id, info.civitai_version_id, info.base_model) == (5, 6, "Pony")
    assert info.trained_words == ["catgirl", "ears"]
    assert info.sha256 == "aa11"
    assert info.civitai_name == "Cat – v2"


def test_a1111_json_is_read(tmp_path):
    (tmp_path / "m.json").write_text(
        json.dumps(
            {
                "activation text": "pepper, witch",
                "description": "From A1111",
                "sd version": "SDXL",
                "notes": "n",
            }
        )
    )
    info = read(tmp_path)
    assert info.trained_words == ["pepper", "witch"]
    assert (info.description, info.base_model, info.notes) == ("From A1111", "SDXL", "n")


def test_sha256_file_and_description_with_front_matter(tmp_path):
    (tmp_path / "m.sha256").write_text("DEADBEEF  m.safetensors\n")
    (tmp_path / "m.md").write_text("---\ntitle: x\n---\n# Hello\n\nBody.\n")
    (tmp_path / "m.txt").write_text("ignored: the .md comes first")
    info = read(tmp_path)
    assert info.sha256 == "deadbeef"
    assert info.description == "# Hello\n\nBody."


def test_text_description_when_there_is_no_markdown(tmp_path):
    (tmp_path / "m.txt").write_text("plain words")
    assert read(tmp_path).description == "plain words"


def test_civitai_info_wins_over_other_tools(tmp_path):
    shutil.copy(BY_HASH, tmp_path / "m.civitai.info")
    (tmp_path / "m.cm-info.json").write_text(json.dumps({"BaseModel": "SD 1.5", "ModelId": 1}))
    info = read(tmp_path)
    assert (info.base_model, info.civitai_model_id) == ("Flux.1 D", 706978)


def test_preview_order_and_preview_suffix(tmp_path):
    write_image(tmp_path / "m.preview.png")
    assert read(tmp_path).preview == "m.preview.png"
    write_image(tmp_path / "m.jpg")
    assert read(tmp_path).preview == "m.jpg"
    write_image(tmp_path / "m.webp")
    assert read(tmp_path).preview == "m.webp"


def test_video_preview(tmp_path):
    (tmp_path / "m.mp4").write_bytes(b"\0")
    assert read(tmp_path).preview == "m.mp4"


def test_broken_json_is_skipped_not_fatal(tmp_path):
    (tmp_path / "m.civitai.info").write_text("{not json")
    (tmp_path / "m.sha256").write_text("ff")
    info = read(tmp_path)
    assert info.sha256 == "ff"
    assert info.base_model == ""


def test_values_of_the_wrong_shape_are_left_out_and_the_rest_is_read(tmp_path):
    # Hand-edited or written by a tool with bugs: objects where text belongs, ids no column holds.
    (tmp_path / "m.civitai.info").write_text(
        '{"id": 1e30, "modelId": Infinity, "model": "not an object", "files": [{"hashes": ["x"]}],'
        ' "images": [{"nsfwLevel": 100000}], "baseModel": {"x": 1}, "trainedWords": [{"a": 1}, "witch"]}'
    )
    (tmp_path / "m.metadata.json").write_text(
        '{"civitai": {"modelId": 99999999999999999999999, "id": -4}, "tags": 5, "base_model": ["x"],'
        ' "sha256": 5, "notes": {"x": 1}, "model_name": 7}'
    )
    (tmp_path / "m.cm-info.json").write_text(
        '{"ModelId": "12", "VersionId": "²", "BaseModel": "SDXL 1.0", "Hashes": 7, "ModelName": ["x"]}'
    )
    (tmp_path / "m.json").write_text('{"activation text": 5, "description": ["x"], "notes": "kept"}')
    info = read(tmp_path)
    assert (info.civitai_model_id, info.civitai_version_id) == (12, None)
    assert (info.base_model, info.trained_words, info.tags) == ("SDXL 1.0", ["witch"], [])
    assert (info.sha256, info.civitai_name, info.notes, info.description) == ("", "", "kept", "")
    assert info.nsfw_level == 32767  # beyond Civitai's levels: blurred, as the most explicit


def test_other_models_sidecars_are_not_mine(tmp_path):
    names = ["m.safetensors", "m.png", "m2.png", "m.v2.png", "other.md", "m.md"]
    assert sidecar_names("m.safetensors", names) == ["m.png", "m.md"]


def test_front_matter_is_split_off():
    assert strip_front_matter("---\na: 1\n---\nbody") == ("---\na: 1\n---", "body")
    assert strip_front_matter("no front matter") == ("", "no front matter")


def test_windows_line_endings_and_bad_bytes_in_a_description_are_read_as_text(tmp_path):
    (tmp_path / "m.safetensors").write_bytes(b"")
    (tmp_path / "m.md").write_bytes(b"---\r\nauthor: x\r\n---\r\n# Title\r\nline \xff two\rthree\r\n")
    (tmp_path / "m.sha256").write_bytes(b"ABCDEF  m.safetensors\r\n")
    info = read_sidecars(tmp_path, "m.safetensors", os.listdir(tmp_path))
    assert info.description == "# Title\nline \ufffd two\nthree"
    assert info.sha256 == "abcdef"


def test_windows_encodings_and_nul_characters_are_read_as_clean_text(tmp_path):
    (tmp_path / "m.safetensors").write_bytes(b"")
    (tmp_path / "m.txt").write_bytes(
        "Trigger: pepper\r\nLoRA für Hexen\r\n".encode("utf-16")
    )  # Notepad's "Unicode"
    info = json.loads(BY_HASH.read_text())
    info["trainedWords"] = ["aesthetic\u0000_pos3"]
    (tmp_path / "m.civitai.info").write_bytes(b"\xef\xbb\xbf" + json.dumps(info).encode())  # UTF-8 with a BOM
    read = read_sidecars(tmp_path, "m.safetensors", os.listdir(tmp_path))
    assert read.description == "Trigger: pepper\nLoRA für Hexen"
    assert read.civitai_model_id == 706978
    assert read.trained_words == ["aesthetic_pos3"]
