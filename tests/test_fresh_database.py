"""The commands on a data dir whose database was never migrated: they say what to run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_on_a_database_not_yet_migrated_the_commands_say_what_to_run(tmp_path):
    # `make run` migrates first; `manage.py serve` typed by hand on a new data dir must say so, not crash.
    env = {**os.environ, "MM_DATA_DIR": str(tmp_path), "MM_PORT": str(free_port()), "MM_MODEL_ROOTS": "",
           "MM_COMFYUI_PATH": "", "DJANGO_SETTINGS_MODULE": "mmsite.settings"}  # fmt: skip
    for command in (["serve"], ["worker"], ["scan"], ["download", "https://civitai.com/models/1"]):
        done = subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1, command
        said = f"CommandError: The database ({tmp_path / 'db.sqlite3'}) lacks "
        assert said in done.stderr, done.stderr
        assert done.stderr.endswith(
            " migrations: run `python manage.py migrate` first (`make run` does both).\n"
        )
        assert "Traceback" not in done.stderr
