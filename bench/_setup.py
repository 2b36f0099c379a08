"""Shared set-up of the benchmarks: a throw-away data dir and a migrated database."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_django(**env: str) -> Path:
    sys.path.insert(0, str(ROOT))
    data_dir = Path(tempfile.mkdtemp(prefix="mm-bench-"))
    atexit.register(shutil.rmtree, data_dir, ignore_errors=True)
    os.environ.update({"MM_DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "mmsite.settings", **env})
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return data_dir
