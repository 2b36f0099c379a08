from __future__ import annotations

import os
import re
import shutil

import pytest
from django.core.management import call_command

from models_app.models import ModelFile, ScanTask
from tests.model_files import write_model

pytestmark = pytest.mark.django_db


def test_scan_command_scans_in_the_foreground_and_records_the_scan(library, capsys):
    call_command("scan")
    out = capsys.readouterr().out
    assert "Scanned 5 models" in out and "5 added" in out
    assert ModelFile.objects.count() == 5
    (library["checkpoints"] / "alpha_xl.safetensors").unlink()
    call_command("scan", "--full")
    out = capsys.readouterr().out
    assert re.search(r"Scanned 4 models in \d+ ms: 0 added, 0 changed, 1 removed\.", out)
    assert list(ScanTask.objects.order_by("pk").values_list("mode", "status", "total")) == [
        ("diff", "done", 5),
        ("full", "done", 4),
    ]


def test_scan_command_without_folders_says_how_to_configure(settings, capsys):
    settings.MM_MODEL_ROOTS = ""
    settings.MM_COMFYUI_PATH = ""
    with pytest.raises(SystemExit):
        call_command("scan")
    assert "MM_COMFYUI_PATH" in capsys.readouterr().err


def test_scan_command_names_what_it_skipped(library, capsys):
    with open(os.path.join(os.fsencode(library["loras"]), b"caf\xe9.safetensors"), "wb") as f:
        f.write(b"any")
    call_command("scan")
    captured = capsys.readouterr()
    assert "Scanned 5 models" in captured.out
    assert captured.err.splitlines() == [
        "Skipped:",
        "  loras/caf\ufffd.safetensors: the name is not valid UTF-8; rename it to scan it",
    ]
    assert "caf\ufffd.safetensors" in ScanTask.objects.get().error


def test_scan_command_can_forget_the_models_of_places_it_cannot_reach(library, capsys):
    nas = library["loras"].parent / "nas"
    write_model(nas / "far.safetensors")
    (library["loras"] / "on_nas").symlink_to(nas)
    call_command("scan")
    for path in library["checkpoints"].iterdir():
        path.unlink()
    shutil.rmtree(nas)
    call_command("scan")
    assert ModelFile.objects.count() == 6
    assert "keeping the 3 models known there until it is back" in capsys.readouterr().err
    call_command("scan", "--forget-unreachable")
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-2:] == [
        f"Forgot 3 models in checkpoints folder {library['checkpoints']}.",
        "Forgot 1 model in loras/on_nas.",
    ]
    assert captured.err == ""
    assert sorted(ModelFile.objects.values_list("relative_path", flat=True)) == [
        "poses.safetensors",
        "style/pepper.safetensors",
    ]
    assert ScanTask.objects.latest("pk").kept == []
