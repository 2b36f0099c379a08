from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from mmsite import setup

pytestmark = pytest.mark.django_db


def test_first_run_setup_creates_the_admin_and_works_once(client, settings, tmp_path):
    settings.DATA_DIR = tmp_path
    token = setup.setup_token()
    assert token and (tmp_path / "setup_token").exists()
    assert setup.setup_token() == token  # stable across restarts until used
    assert client.get(f"/setup/{token}x/").status_code == 404
    page = client.get(f"/setup/{token}/")
    assert page.status_code == 200
    assert b"Create account" in page.content
    weak = client.post(f"/setup/{token}/", {"username": "root", "password1": "123", "password2": "123"})
    assert weak.status_code == 200
    assert b"too short" in weak.content
    response = client.post(
        f"/setup/{token}/",
        {"username": "root", "password1": "a-long-passphrase-1", "password2": "a-long-passphrase-1"},
    )
    assert response.status_code == 302
    user = get_user_model().objects.get(username="root")
    assert user.is_superuser and user.is_staff
    assert client.get("/").status_code == 200  # logged in
    assert not (tmp_path / "setup_token").exists()
    assert client.get(f"/setup/{token}/").status_code == 404
    assert setup.setup_token() is None


def test_no_setup_token_once_a_user_exists(user, settings, tmp_path):
    settings.DATA_DIR = tmp_path
    assert setup.setup_token() is None
    assert not setup.check_setup_token("anything")


def test_login_and_logout(client, user, db):
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    bad = client.post("/accounts/login/", {"username": "ada", "password": "wrong"})
    assert b"Please enter a correct username and password" in bad.content
    good = client.post(
        "/accounts/login/", {"username": "ada", "password": "a-long-test-password", "next": "/"}
    )
    assert good.status_code == 302
    assert client.get("/").status_code == 200
    assert client.get("/accounts/logout/").status_code == 405  # logging out is a POST
    client.post("/accounts/logout/")
    assert client.get("/").status_code == 302


def test_failed_logins_are_throttled_per_address_and_username(client, user, db, monkeypatch):
    from mmsite import login_throttle

    def log_in(password, address="10.0.0.5", username="ada", url="/accounts/login/"):
        return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=address)

    for _ in range(login_throttle.MAX_FAILURES):
        assert b"Please enter a correct username and password" in log_in("wrong").content
    refused = log_in("a-long-test-password")  # the right password, refused all the same
    assert refused.status_code == 200
    assert (
        "Too many failed logins as ada from this address. Try again in 15 minutes."
        in refused.content.decode()
    )
    assert b"Too many failed logins" in log_in("a-long-test-password", url="/admin/login/").content
    assert "_auth_user_id" not in client.session

    assert log_in("a-long-test-password", address="10.0.0.6").status_code == 302  # another address
    client.post("/accounts/logout/")
    assert b"Please enter a correct" in log_in("wrong", username="grace").content  # another username

    now = login_throttle.time.time()
    monkeypatch.setattr(login_throttle.time, "time", lambda: now + 14 * 60)
    assert "Try again in 1 minute." in log_in("a-long-test-password").content.decode()


def test_a_successful_login_forgets_the_failures_before_it(client, user, db):
    from mmsite import login_throttle

    for _ in range(login_throttle.MAX_FAILURES - 1):
        client.post("/accounts/login/", {"username": "ada", "password": "wrong"})
    assert (
        client.post("/accounts/login/", {"username": "ada", "password": "a-long-test-password"}).status_code
        == 302
    )
    client.post("/accounts/logout/")
    for _ in range(login_throttle.MAX_FAILURES - 1):
        client.post("/accounts/login/", {"username": "ada", "password": "wrong"})
    assert client.post("/accounts/login/", {"username": "ADA", "password": "wrong"}).status_code == 200
    assert (
        b"Too many failed logins"
        in client.post("/accounts/login/", {"username": "ada", "password": "x"}).content
    )


def test_admin_needs_staff(logged_in):
    assert logged_in.get("/admin/").status_code == 302


def test_apitoken_for_an_unknown_user_fails_clearly():
    with pytest.raises(CommandError, match="No user named 'ghost'"):
        call_command("apitoken", "ghost")


def test_an_unexpected_error_gets_an_answer_each_client_can_show(user, monkeypatch):
    """A bug is not bad input, but the answer still fits who asked: the envelope, a toast's text, a page."""
    from django.test import Client

    from models_app import selectors

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(selectors, "library_page", broken)
    client = Client(raise_request_exception=False)
    client.force_login(user)
    message = "Something went wrong on the server; the log of manage.py serve says what."
    page = client.get("/")
    assert page.status_code == 500 and message in page.content.decode()
    assert "Back to the library" in page.content.decode()
    toast = client.get("/?q=x", headers={"HX-Request": "true", "HX-Target": "grid"})
    assert toast.status_code == 500 and toast.content.decode() == message
    monkeypatch.setattr("models_app.api_views.get_roots", broken)
    api = client.get("/model-manager/models")
    assert api.status_code == 500 and api.json() == {"success": False, "error": message}
