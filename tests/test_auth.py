from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

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


def test_behind_a_trusted_proxy_each_client_is_throttled_apart(client, user, db, settings, caplog):
    """The proxy's own address would make one count of every client: anyone could lock ada out."""
    from mmsite import login_throttle
    from mmsite.proxies import parse_trusted_proxies

    settings.MM_TRUSTED_PROXIES = parse_trusted_proxies("127.0.0.1, 172.18.0.0/16")

    def log_in(password, forwarded_for, proxy="172.18.0.3"):
        return client.post(
            "/accounts/login/",
            {"username": "ada", "password": password},
            REMOTE_ADDR=proxy,
            HTTP_X_FORWARDED_FOR=forwarded_for,
        )

    # Each failure comes with an address made up by the attacker, left of the one the proxy wrote.
    for i in range(login_throttle.MAX_FAILURES):
        assert log_in("wrong", f"192.0.2.{i}, 203.0.113.9").status_code == 200
    assert "failed login as 'ada' from 203.0.113.9" in caplog.text
    assert b"Too many failed logins" in log_in("a-long-test-password", "203.0.113.9").content
    # ada, at home behind the same proxy (through the outer proxy too), still gets in.
    assert log_in("a-long-test-password", "198.51.100.7, 127.0.0.1").status_code == 302


def test_a_forwarded_for_header_from_anyone_else_is_ignored(client, user, db, settings):
    from mmsite import login_throttle
    from mmsite.proxies import parse_trusted_proxies

    settings.MM_TRUSTED_PROXIES = parse_trusted_proxies("172.18.0.3")

    def log_in(password, forwarded_for):
        return client.post(
            "/accounts/login/",
            {"username": "ada", "password": password},
            REMOTE_ADDR="10.0.0.5",
            HTTP_X_FORWARDED_FOR=forwarded_for,
        )

    for i in range(login_throttle.MAX_FAILURES):
        log_in("wrong", f"192.0.2.{i}")
    assert b"Too many failed logins" in log_in("a-long-test-password", "192.0.2.99").content


def log_in_over_tls(user_agent, remote, proto="https"):
    """Log in from a page served at https://testserver, the way a browser behind a TLS proxy does."""
    client = Client(
        enforce_csrf_checks=True, REMOTE_ADDR=remote, HTTP_HOST="testserver", HTTP_X_FORWARDED_PROTO=proto
    )
    page = client.get("/accounts/login/")
    token = page.context["csrf_token"]
    response = client.post(
        "/accounts/login/",
        {"username": "ada", "password": "a-long-test-password", "csrfmiddlewaretoken": str(token)},
        HTTP_ORIGIN="https://testserver",
        HTTP_USER_AGENT=user_agent,
    )
    return page, response


def test_behind_a_trusted_tls_proxy_forms_pass_the_csrf_check_and_cookies_are_secure(user, db, settings):
    from mmsite.proxies import parse_trusted_proxies

    settings.MM_TRUSTED_PROXIES = parse_trusted_proxies("172.18.0.3")
    page, response = log_in_over_tls("firefox", "172.18.0.3")
    assert page.cookies["__Secure-csrftoken"]["secure"] is True
    assert response.status_code == 302  # logged in, with no MM_CSRF_TRUSTED_ORIGINS
    assert response.cookies["__Secure-sessionid"]["secure"] is True
    assert "sessionid" not in response.cookies and "csrftoken" not in response.cookies


def test_https_and_plain_http_on_one_host_name_keep_logins_and_csrf_cookies_apart(user, db, settings):
    """https://nas.local (a proxy) and http://nas.local:8000 share one cookie jar: with the same names, the
    Secure cookies of the HTTPS side would block the HTTP side (a browser lets no HTTP page replace them)."""
    from mmsite.proxies import parse_trusted_proxies

    settings.MM_TRUSTED_PROXIES = parse_trusted_proxies("172.18.0.3")
    _, over_tls = log_in_over_tls("firefox", "172.18.0.3")
    https_session = over_tls.cookies["__Secure-sessionid"].value
    # The plain-HTTP side logs in with its own cookies (the browser sends it none of the Secure ones).
    plain = Client(enforce_csrf_checks=True)
    token = plain.get("/accounts/login/").context["csrf_token"]
    login = {"username": "ada", "password": "a-long-test-password", "csrfmiddlewaretoken": str(token)}
    assert plain.post("/accounts/login/", login).status_code == 302
    http_session = plain.cookies["sessionid"].value
    assert http_session != https_session

    tls = Client(REMOTE_ADDR="172.18.0.3", HTTP_X_FORWARDED_PROTO="https")
    tls.cookies["sessionid"] = http_session  # the HTTP side's login does not count over HTTPS
    assert tls.get("/").status_code == 302
    tls.cookies["__Secure-sessionid"] = https_session
    assert tls.get("/").status_code == 200
    assert plain.get("/").status_code == 200


def test_a_forwarded_proto_header_from_anyone_else_is_ignored(user, db, settings):
    from mmsite.proxies import parse_trusted_proxies

    settings.MM_TRUSTED_PROXIES = parse_trusted_proxies("172.18.0.3")
    page, response = log_in_over_tls("curl", "10.0.0.5")
    assert page.cookies["csrftoken"]["secure"] == ""
    assert response.status_code == 403  # the page's https origin is not this plain-HTTP server's
    assert "sessionid" not in response.cookies


def test_over_plain_http_cookies_are_not_marked_secure(client, user, db):
    response = client.post("/accounts/login/", {"username": "ada", "password": "a-long-test-password"})
    assert response.status_code == 302
    assert response.cookies["sessionid"]["secure"] == ""


def test_the_trusted_proxies_setting_takes_addresses_and_networks_and_refuses_the_rest():
    from django.core.exceptions import ImproperlyConfigured

    from mmsite.proxies import parse_trusted_proxies

    assert [str(n) for n in parse_trusted_proxies(" 10.0.0.2 ,fd00::/8,, ")] == ["10.0.0.2/32", "fd00::/8"]
    assert parse_trusted_proxies("") == ()
    with pytest.raises(ImproperlyConfigured, match=r"'proxy\.lan' is neither an IP address nor a network"):
        parse_trusted_proxies("10.0.0.2, proxy.lan")


@pytest.mark.parametrize(
    ("remote", "forwarded_for", "client"),
    [
        ("10.0.0.5", "192.0.2.1", "10.0.0.5"),  # not a proxy of ours: its header is anyone's
        ("172.18.0.3", "", "172.18.0.3"),  # a request from the proxy's own machine
        ("172.18.0.3", "192.0.2.1, 198.51.100.7", "198.51.100.7"),
        ("172.18.0.3", "198.51.100.7:51234", "198.51.100.7"),  # with the client's port
        ("172.18.0.3", "[2001:db8::7]:443, 172.18.0.9", "2001:db8::7"),
        ("172.18.0.3", "172.18.0.8, 172.18.0.9", "172.18.0.8"),  # only proxies: the farthest
        ("172.18.0.3", "198.51.100.7, unknown", "unknown"),  # what the proxy wrote, even if odd
    ],
)
def test_the_client_address_is_read_from_the_right_of_a_trusted_proxys_header(
    settings, rf, remote, forwarded_for, client
):
    from mmsite.proxies import client_address, parse_trusted_proxies

    settings.MM_TRUSTED_PROXIES = parse_trusted_proxies("172.18.0.0/16")
    request = rf.get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded_for)
    assert client_address(request) == client


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


def test_a_name_the_server_does_not_answer_to_is_explained(client, db):
    page = client.get("/", HTTP_HOST="nas.example:8000")
    assert page.status_code == 400
    html = page.content.decode()
    assert "<h1>Bad request</h1>" in html
    assert "does not answer to the name nas.example. Add it to MM_ALLOWED_HOSTS" in html
    assert "Back to the library" not in html  # it is behind the same name
    api = client.get("/model-manager/models", HTTP_HOST="nas.example")
    assert api.status_code == 400 and "MM_ALLOWED_HOSTS" in api.json()["error"]


def test_a_server_error_page_needs_nothing_but_its_template(rf):
    from mmsite.views import server_error

    response = server_error(rf.get("/"))  # no session, no user: the database may be what failed
    assert response.status_code == 500
    assert "<h1>Server error</h1>" in response.content.decode()
    assert "the log of manage.py serve says what" in response.content.decode()
