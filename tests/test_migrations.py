"""Migrations that carry data over: what a database written by an earlier version holds afterwards."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [("downloads_app", "0005_downloadtask_replaces")]
AFTER = [("downloads_app", "0007_downloadedfile_from_finished_downloads")]


@pytest.fixture
def migrated_back(transactional_db, settings):
    """The database as the version before DownloadedFile left it; migrated forward again afterwards."""
    settings.MM_CIVITAI_URL = "https://civitai.com"
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    yield executor
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_finished_downloads_say_where_their_files_came_from_after_the_upgrade(migrated_back):
    old = migrated_back.loader.project_state(BEFORE).apps
    tasks = old.get_model("downloads_app", "DownloadTask")
    earlier, later = timezone.now() - timezone.timedelta(days=2), timezone.now() - timezone.timedelta(days=1)
    common = {"folder_type": "loras", "filename": "x.safetensors", "status": "done"}
    tasks.objects.create(
        **common, platform="huggingface", sha256="a" * 64, finished_at=later, title="org/repo",
        source_url="https://huggingface.co/org/repo", download_url="https://huggingface.co/org/repo/resolve/main/sub/x%20y.safetensors",
    )  # fmt: skip
    tasks.objects.create(  # the same file, downloaded once before
        **common, platform="direct", sha256="a" * 64, finished_at=earlier,
        source_url="https://example.com/x.safetensors", download_url="https://example.com/x.safetensors",
    )  # fmt: skip
    tasks.objects.create(
        **common, platform="civitai", sha256="b" * 64, finished_at=earlier, title="Storybook", version_name="v1.0",
        source_url="https://civitai.com/api/download/models/42", download_url="https://civitai.com/api/download/models/42",
        info={"id": 42, "modelId": 7},
    )  # fmt: skip
    tasks.objects.create(
        **common, platform="civitai", sha256="", source_url="https://x", download_url="https://x"
    )
    tasks.objects.create(  # a download that did not finish says nothing
        **(common | {"status": "failed"}), platform="civitai", sha256="c" * 64, source_url="https://y", download_url="https://y"
    )  # fmt: skip

    migrated_back.loader.build_graph()
    migrated_back.migrate(AFTER)

    files = migrated_back.loader.project_state(AFTER).apps.get_model("downloads_app", "DownloadedFile")
    came_from = {
        row.sha256[0]: (row.platform, row.page_url, row.title, row.version_name, row.downloaded_at)
        for row in files.objects.all()
    }
    assert came_from == {
        "a": (
            "huggingface",
            "https://huggingface.co/org/repo/blob/main/sub/x%20y.safetensors",
            "org/repo",
            "",
            later,
        ),
        "b": ("civitai", "https://civitai.com/models/7?modelVersionId=42", "Storybook", "v1.0", earlier),
    }


def test_a_waiting_download_that_replaces_a_model_says_which_after_the_upgrade(migrated_back):
    library = next(node for node in migrated_back.loader.graph.leaf_nodes() if node[0] == "models_app")
    before = [("downloads_app", "0008_downloadedfile_hub_check"), library]
    after = [("downloads_app", "0009_downloadtask_replaces_path"), library]
    migrated_back.loader.build_graph()
    migrated_back.migrate(before)
    old = migrated_back.loader.project_state(before).apps
    older = old.get_model("models_app", "ModelFile").objects.create(
        folder_type="loras", path_index=0, relative_path="style/old.safetensors", sub_folder="style",
        name="old", extension=".safetensors", size=1, mtime_ns=1, created_at=timezone.now(), modified_at=timezone.now(),
    )  # fmt: skip
    tasks = old.get_model("downloads_app", "DownloadTask")
    common = {"folder_type": "loras", "filename": "new.safetensors", "platform": "civitai", "source_url": "https://x", "download_url": "https://x"}  # fmt: skip
    waiting = tasks.objects.create(**common, status="queued", replaces=older.pk)
    finished = tasks.objects.create(**common, status="done", replaces=older.pk)
    gone = tasks.objects.create(**common, status="paused", replaces=older.pk + 1)

    migrated_back.loader.build_graph()
    migrated_back.migrate(after)

    new = migrated_back.loader.project_state(after).apps.get_model("downloads_app", "DownloadTask")
    paths = {task.pk: task.replaces_path for task in new.objects.all()}
    assert paths == {waiting.pk: "loras/style/old.safetensors", finished.pk: "", gone.pk: ""}
