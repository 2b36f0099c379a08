from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from downloads_app.models import DownloadTask

pytestmark = pytest.mark.django_db


def test_download_runs_in_the_foreground_with_a_progress_bar(services_at_upstream, model_roots, capsys):
    up = services_at_upstream
    call_command(
        "download", f"{up.civitai_url}/models/4201", "--subfolder", "sdxl", "--name", "dream.safetensors"
    )
    out = capsys.readouterr().out
    assert "[" in out and "100%" in out
    assert "Done:" in out
    target = model_roots["checkpoints"] / "sdxl" / "dream.safetensors"
    assert target.read_bytes() == up.files["dreamxl-v2-fp16"].path.read_bytes()
    assert DownloadTask.objects.get().status == "done"


def test_download_picks_a_version_and_queues_only(services_at_upstream, model_roots, capsys):
    up = services_at_upstream
    call_command("download", f"{up.civitai_url}/models/4201", "--model-version", "42011", "--queue")
    assert "Queued download" in capsys.readouterr().out
    task = DownloadTask.objects.get()
    assert (task.filename, task.status) == ("dreamxl_v1.safetensors", "queued")


def test_download_errors_are_clear(services_at_upstream, model_roots):
    up = services_at_upstream
    with pytest.raises(CommandError, match="needs a Civitai API key"):
        call_command("download", f"{up.civitai_url}/models/5001", "--type", "loras")
    with pytest.raises(CommandError, match="Civitai has no such model"):
        call_command("download", f"{up.civitai_url}/models/1")
    with pytest.raises(CommandError, match="Which folder type"):
        call_command("download", f"{up.storage_url}/files/hf-schnell")
    with pytest.raises(CommandError, match="There is no diffusion_models folder"):
        call_command(
            "download", f"{up.hf_url}/demo-org/demo-models/resolve/main/flux1-schnell-fp8.safetensors"
        )
