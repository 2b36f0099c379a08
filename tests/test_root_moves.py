"""A folder that the configuration moves to another index keeps its rows (models_app/root_moves.py)."""

from __future__ import annotations

import pytest

from downloads_app.models import DownloadTask, Platform
from models_app.models import ModelFile, TrashItem
from models_app.roots import UnknownRoot, get_roots
from models_app.scanner import scan_folder
from models_app.services import model_path
from tests.model_files import write_model

pytestmark = pytest.mark.django_db


def rows(folder_type: str) -> dict[str, tuple[int, int]]:
    """relative path → (id, path index) of that type's models."""
    return {
        path: (pk, index)
        for pk, index, path in ModelFile.objects.filter(folder_type=folder_type).values_list(
            "pk", "path_index", "relative_path"
        )
    }


def test_a_folder_added_in_front_leaves_no_model_twice_and_rereads_none(library, settings, tmp_path):
    scan_folder(get_roots())
    before = rows("loras")
    ModelFile.objects.filter(relative_path="poses.safetensors").update(sha256="ab" * 32, civitai_missing=True)
    # The user sets up a new, still empty, drive as the first LoRA folder.
    (tmp_path / "new_drive").mkdir()
    settings.MM_MODEL_ROOTS = f"loras={tmp_path / 'new_drive'};" + settings.MM_MODEL_ROOTS

    progress = scan_folder(get_roots())

    assert (progress.added, progress.removed, progress.errors) == (0, 0, [])
    assert rows("loras") == {path: (pk, 1) for path, (pk, _) in before.items()}  # same rows, next index
    poses = ModelFile.objects.get(relative_path="poses.safetensors")
    assert (poses.sha256, poses.civitai_missing) == ("ab" * 32, True)
    assert model_path(poses) == library["loras"] / "poses.safetensors"


def test_two_folders_that_swap_places_keep_their_own_models(model_roots, settings, tmp_path):
    second = tmp_path / "second"
    write_model(model_roots["loras"] / "first_one.safetensors")
    write_model(second / "second_one.safetensors")
    settings.MM_MODEL_ROOTS = f"loras={model_roots['loras']};loras={second}"
    scan_folder(get_roots())
    before = rows("loras")

    settings.MM_MODEL_ROOTS = f"loras={second};loras={model_roots['loras']}"
    progress = scan_folder(get_roots())

    assert (progress.added, progress.removed) == (0, 0)
    assert rows("loras") == {
        "first_one.safetensors": (before["first_one.safetensors"][0], 1),
        "second_one.safetensors": (before["second_one.safetensors"][0], 0),
    }


def test_trash_and_downloads_follow_their_folder_and_a_folder_taken_out_is_named_nowhere(
    library, settings, tmp_path
):
    scan_folder(get_roots())
    trashed = TrashItem.objects.create(
        folder_type="loras", path_index=0, relative_path="old.safetensors", trash_folder="x", files=[]
    )
    download = DownloadTask.objects.create(
        platform=Platform.DIRECT,
        source_url="https://example.com/a.safetensors",
        download_url="https://example.com/a.safetensors",
        folder_type="loras",
        path_index=0,
        filename="a.safetensors",
    )
    unmoved = TrashItem.objects.create(
        folder_type="checkpoints", path_index=0, relative_path="c.safetensors", trash_folder="y", files=[]
    )
    (tmp_path / "in_front").mkdir()
    loras, checkpoints = library["loras"], library["checkpoints"]
    settings.MM_MODEL_ROOTS = f"checkpoints={checkpoints};loras={tmp_path / 'in_front'};loras={loras}"
    scan_folder(get_roots())
    trashed.refresh_from_db()
    download.refresh_from_db()
    unmoved.refresh_from_db()
    assert (trashed.path_index, download.path_index, unmoved.path_index) == (1, 1, 0)

    # The LoRA folder taken out of the configuration: its models leave the library, its trash and
    # downloads name no folder any more, rather than the folder that took their index.
    settings.MM_MODEL_ROOTS = f"checkpoints={checkpoints};loras={tmp_path / 'in_front'}"
    scan_folder(get_roots())
    assert rows("loras") == {}
    trashed.refresh_from_db()
    download.refresh_from_db()
    for row in (trashed, download):
        with pytest.raises(UnknownRoot):
            get_roots().get(row.folder_type, row.path_index)
    assert ModelFile.objects.filter(folder_type="checkpoints").count() == 3
