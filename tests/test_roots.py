from __future__ import annotations

from pathlib import Path

import pytest

from models_app.roots import (
    PathOutsideRoot,
    RootsConfigError,
    UnknownRoot,
    build_roots,
    clean_relative_path,
    get_roots,
    parse_extra_model_paths,
    parse_model_roots_setting,
    resolve_model_path,
)
from tests.model_files import REFERENCE

EXAMPLES = REFERENCE / "comfyui"


def test_it_parses_the_a1111_section_of_comfyuis_example(tmp_path):
    entries = parse_extra_model_paths((EXAMPLES / "extra_model_paths.yaml.example").read_text(), tmp_path)
    by_type: dict[str, list[Path]] = {}
    for folder_type, path, is_default in entries:
        by_type.setdefault(folder_type, []).append(path)
        assert is_default is False
    base = tmp_path / "path/to/stable-diffusion-webui"
    assert by_type["checkpoints"] == [base / "models/Stable-diffusion"]
    assert by_type["loras"] == [base / "models/Lora", base / "models/LyCORIS"]
    assert by_type["upscale_models"] == [
        base / "models/ESRGAN",
        base / "models/RealESRGAN",
        base / "models/SwinIR",
    ]
    assert by_type["embeddings"] == [base / "embeddings"]


def test_the_newer_example_is_all_comments(tmp_path):
    text = (EXAMPLES / "extra_model_paths.yaml.example.newer_fork_variant").read_text()
    assert parse_extra_model_paths(text, tmp_path) == []


def test_uncommented_comfyui_section_maps_legacy_keys_and_keeps_is_default(tmp_path):
    text = (EXAMPLES / "extra_model_paths.yaml.example.newer_fork_variant").read_text()
    section = text.split("#comfyui:")[1].split("#config for a1111")[0]
    uncommented = "comfyui:\n" + "\n".join(
        line.replace("#", "", 1) for line in section.splitlines() if line.strip().startswith("#")
    ).replace("#is_default: true", "is_default: true")
    yaml_file = tmp_path / "extra_model_paths.yaml"
    yaml_file.write_text(uncommented.replace("path/to/comfyui/", str(tmp_path / "comfy")))
    roots = build_roots(extra_model_paths=str(yaml_file))
    comfy = tmp_path / "comfy"
    assert roots.folders["text_encoders"] == (comfy / "models/text_encoders", comfy / "models/clip")
    assert roots.folders["diffusion_models"] == (comfy / "models/diffusion_models", comfy / "models/unet")
    assert "configs" not in roots.folders


def test_relative_base_path_is_relative_to_the_yaml_folder(tmp_path):
    (tmp_path / "conf").mkdir()
    yaml_file = tmp_path / "conf" / "extra.yaml"
    yaml_file.write_text("mine:\n  base_path: ../store\n  loras: lora\n  unet: big\n")
    roots = build_roots(extra_model_paths=str(yaml_file))
    assert roots.folders["loras"] == (tmp_path / "store" / "lora",)
    assert roots.folders["diffusion_models"] == (tmp_path / "store" / "big",)


def test_base_path_expands_home_and_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELS_HOME", str(tmp_path / "m"))
    yaml_file = tmp_path / "extra.yaml"
    yaml_file.write_text("a:\n  base_path: $MODELS_HOME\n  vae: vae\n")
    assert build_roots(extra_model_paths=str(yaml_file)).folders["vae"] == (tmp_path / "m" / "vae",)


def test_windows_paths_are_read_through_wsl_s_drive_mounts(tmp_path, monkeypatch):
    monkeypatch.setattr("models_app.roots.WSL_DRIVES", tmp_path / "mnt")
    (tmp_path / "mnt" / "c").mkdir(parents=True)
    yaml_file = tmp_path / "extra.yaml"
    yaml_file.write_text("win:\n  base_path: C:\\ComfyUI\\models\n  loras: |\n    loras\n    more\\loras\n")
    roots = build_roots(extra_model_paths=str(yaml_file), model_roots="vae=c:/Models/VAE;unet=Z:\\away")
    drive = tmp_path / "mnt" / "c"
    assert roots.folders["loras"] == (
        drive / "ComfyUI" / "models" / "loras",
        drive / "ComfyUI" / "models" / "more" / "loras",
    )
    assert roots.folders["vae"] == (drive / "Models" / "VAE",)
    assert roots.folders["diffusion_models"][0].name == "Z:\\away"  # no such drive mounted: as written


def test_is_default_puts_the_folder_first(tmp_path):
    comfy = tmp_path / "ComfyUI"
    (comfy / "models").mkdir(parents=True)
    (comfy / "extra_model_paths.yaml").write_text(
        f"nas:\n  base_path: {tmp_path / 'nas'}\n  is_default: true\n  checkpoints: ckpt\n"
    )
    roots = build_roots(comfyui_path=str(comfy))
    assert roots.folders["checkpoints"] == (tmp_path / "nas" / "ckpt", comfy / "models" / "checkpoints")
    assert roots.folders["controlnet"] == (comfy / "models" / "controlnet", comfy / "models" / "t2i_adapter")


def test_comfyui_path_then_extra_files_then_model_roots(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text(f"x:\n  loras: {tmp_path / 'b'}\n")
    roots = build_roots(
        comfyui_path=str(tmp_path / "C"), extra_model_paths=str(extra), model_roots=f"loras={tmp_path / 'c'}"
    )
    assert roots.folders["loras"] == (tmp_path / "C/models/loras", tmp_path / "b", tmp_path / "c")


def test_model_roots_setting_refuses_entries_without_a_type():
    assert parse_model_roots_setting("loras=/a; vae=/b ;") == [("loras", Path("/a")), ("vae", Path("/b"))]
    with pytest.raises(ValueError, match="type=path"):
        parse_model_roots_setting("/just/a/path")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"comfyui:\n  loras: [unclosed\n", "is not valid YAML (line 3: expected ',' or ']'"),
        (b"- just\n- a list\n", "it must map section names to folder settings"),
        (b"loras: \xff\xfe\n", "is not UTF-8 text"),
        (None, "cannot be read: No such file or directory"),
    ],
)
def test_an_unreadable_extra_model_paths_file_is_named_with_what_is_wrong(tmp_path, content, message):
    extra = tmp_path / "extra_model_paths.yaml"
    if content is not None:
        extra.write_bytes(content)
    with pytest.raises(RootsConfigError) as error:
        build_roots(extra_model_paths=str(extra))
    assert str(error.value).startswith(f"{extra}: {message}")
    assert "\n" not in str(error.value)


@pytest.mark.django_db
def test_a_broken_setting_stops_the_start_with_one_clear_line(settings, tmp_path):
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    (tmp_path / "extra.yaml").write_text("a: [unclosed\n")
    settings.MM_EXTRA_MODEL_PATHS = str(tmp_path / "extra.yaml")
    for command, options in (
        ("check", {}),
        ("serve", {"skip_checks": False}),
        ("scan", {"skip_checks": False}),
    ):
        with pytest.raises(
            SystemCheckError, match=r"models_app\.E001\) Where the models are cannot be read: "
        ):
            call_command(command, **options)
    settings.MM_EXTRA_MODEL_PATHS = ""
    settings.MM_MODEL_ROOTS = "/data/loras"
    with pytest.raises(
        SystemCheckError, match="MM_MODEL_ROOTS entries look like type=path, not '/data/loras'"
    ):
        call_command("check")


@pytest.mark.django_db
def test_a_comfyui_path_without_models_is_a_warning_only(settings, tmp_path):
    from django.core import checks

    settings.MM_COMFYUI_PATH = str(tmp_path / "ComfyUl")  # a typo
    assert [(m.id, m.level) for m in checks.run_checks()] == [("models_app.W001", checks.WARNING)]
    (tmp_path / "ComfyUl" / "models").mkdir(parents=True)
    assert checks.run_checks() == []


@pytest.mark.parametrize("bad", ["../x", "a/../../x", "/etc/passwd", "", "..\\..\\x"])
def test_paths_that_climb_out_are_refused(bad):
    with pytest.raises(PathOutsideRoot):
        clean_relative_path(bad)


def test_resolve_refuses_a_symlink_that_climbs_out_only_through_the_name(model_roots, tmp_path):
    (tmp_path / "secret").write_text("x")
    assert resolve_model_path("loras", 0, "a/b.safetensors") == model_roots["loras"] / "a/b.safetensors"
    with pytest.raises(PathOutsideRoot):
        resolve_model_path("loras", 0, "../../secret")
    with pytest.raises(UnknownRoot):
        resolve_model_path("loras", 5, "a.safetensors")
    with pytest.raises(UnknownRoot):
        resolve_model_path("nope", 0, "a.safetensors")


def test_a_symlinked_folder_inside_a_root_is_followed(model_roots, tmp_path):
    elsewhere = tmp_path / "big-disk"
    elsewhere.mkdir()
    (model_roots["loras"] / "linked").symlink_to(elsewhere)
    assert (
        resolve_model_path("loras", 0, "linked/x.safetensors")
        == model_roots["loras"] / "linked/x.safetensors"
    )


def test_settings_changes_reach_the_roots(settings, tmp_path):
    settings.MM_MODEL_ROOTS = f"vae={tmp_path}"
    assert get_roots().folders == {"vae": (tmp_path,)}
