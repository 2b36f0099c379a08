"""First run: while no user exists, a one-time token in the data dir lets the person at the console
create the admin account (as Jupyter prints a token URL)."""

from __future__ import annotations

import hmac
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model


def _token_file():  # type: ignore[no-untyped-def]
    return settings.DATA_DIR / "setup_token"


def needs_setup() -> bool:
    return not get_user_model().objects.exists()


def setup_token() -> str | None:
    """The token to print at start-up, made if missing; None once a user exists."""
    if not needs_setup():
        _token_file().unlink(missing_ok=True)
        return None
    try:
        return _token_file().read_text().strip()
    except FileNotFoundError:
        token = secrets.token_urlsafe(24)
        _token_file().write_text(token)
        _token_file().chmod(0o600)
        return token


def check_setup_token(token: str) -> bool:
    if not needs_setup():
        return False
    try:
        expected = _token_file().read_text().strip()
    except FileNotFoundError:
        return False
    return bool(expected) and hmac.compare_digest(expected, token)


def finish_setup() -> None:
    _token_file().unlink(missing_ok=True)
