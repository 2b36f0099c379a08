"""Test settings: the real settings, with a throw-away data dir.

MM_TEST_DB=postgres runs the database tests on MM_TEST_DATABASE_URL instead of SQLite (`make test` does
both when that variable is set), and MM_TEST_REDIS_URL enables the scale-out tests.
"""

import os
import tempfile

os.environ.setdefault("MM_DATA_DIR", tempfile.mkdtemp(prefix="mm-test-data-"))
os.environ.setdefault("MM_SECRET_KEY", "test-secret-key-that-is-long-enough-for-django-checks")

from mmsite.settings import *  # noqa: F403
from mmsite.settings import _database

MM_PROGRESS_INTERVAL = 0.2
MM_SCAN_EVERY = 0.0  # a worker of a test scans only when the test asks (tests/test_automatic_scans.py)
MM_UPDATES_EVERY = 0.0  # nor asks Civitai for updates (tests/test_updates.py)
TIME_ZONE = "UTC"  # the same dates on every machine the tests run on
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

if os.environ.get("MM_TEST_DB") == "postgres":
    DATABASES = {"default": _database(os.environ["MM_TEST_DATABASE_URL"])}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
else:
    # A file, not SQLite's shared in-memory database: threads then see the same WAL and busy timeout
    # as in production instead of in-memory table locks.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}  # noqa: F405
