"""Every page, form, API route and link field, sent what no form of the app sends: each answers with a page
or a clear refusal, never a server error (a script, a stale tab or a hand-edited address sends such things)."""

from __future__ import annotations

import itertools

import pytest
from django.urls import reverse

from downloads_app.sources import NOT_A_LINK

pytestmark = pytest.mark.django_db

MODEL = "loras/0/style/pepper.safetensors"
HUGE = "99999999999999999999"  # more than a database integer holds
DIALOG = {"HX-Request": "true", "HX-Target": "dialog"}

PAGES = [
    "/?type=x", "/?type=loras&folder=../..", "/?sort=nope", "/?page=-1", "/?page=abc", f"/?page={HUGE}",
    "/?q=%25%25_", "/?base=x&tag=y", "/?older=x", "/?updates=1", f"/model/{MODEL}", f"/edit/nope/{MODEL}",
    f"/sidecar/{MODEL}", f"/sidecar/{MODEL}?name=", f"/thumbnail/{MODEL}?v=x", f"/model/loras/{HUGE}/x.safetensors",
    f"/thumbnail/loras/{HUGE}/x.safetensors", "/model/loras/0/" + "a" * 3000, "/downloads/choose/",
    "/downloads/choose/?url=x", "/downloads/choose/?url=https://civitai.com/models/1&version=abc&file=x",
    f"/model-manager/model/loras/{HUGE}/x", f"/model-manager/model-info/scan/{HUGE}",
    "/model-manager/models/" + "x" * 300, "/model-manager/model-info?model-page=",
]  # fmt: skip
FORMS = [
    "/library/scan/", "/library/scan/1/forget/0/", f"/library/scan/1/forget/{HUGE}/", f"/library/scan/{HUGE}/stop/",
    "/library/info/", "/library/selection/trash/", "/library/selection/move/", f"/library/move/{HUGE}/stop/",
    f"/library/info/{HUGE}/stop/", f"/description/{MODEL}", f"/preview/{MODEL}", f"/move/{MODEL}",
    f"/move/loras/{HUGE}/x.safetensors", f"/edit/move/loras/{HUGE}/x.safetensors", "/markdown-preview/",
    f"/trash/{HUGE}/restore/", "/trash/1/nope/", "/downloads/create/", "/downloads/choose/", f"/downloads/{HUGE}/pause/",
    "/downloads/1/nope/", "/downloads/every/nope/", "/settings/",
]  # fmt: skip
FIELDS = [
    {}, {"mode": "x"}, {"mode": ["a", "b"]}, {"folder": "abc"}, {"folder": f"{HUGE}:loras"}, {"folder": ":"},
    {"model": ["x", "-1", "²", HUGE]}, {"ids": ["x", "²", HUGE]},
    {"path_index": "x", "folder_type": "", "sub_folder": "../..", "name": ""}, {"name": "a/b"}, {"name": "."},
    {"name": "x" * 600}, {"description": "x" * 100_000},
    {"url": "x", "version": "x", "file": "x", "folder_type": "loras", "path_index": HUGE, "filename": ""},
    {"service": "civitai", "key": "x" * 5000}, {"speed_limit": ["1", "x"]}, {"speed_limit": "1e400"},
    {"speed_limit": HUGE}, {"speed_limit": "-0"},
]  # fmt: skip


def test_no_page_or_form_answers_a_server_error_to_odd_input(admin_client, scanned, settings):
    settings.MM_CIVITAI_URL = "http://127.0.0.1:9"  # nothing listens: no request leaves this machine
    admin_client.raise_request_exception = False
    failed = []
    for url in PAGES:
        for headers in ({}, DIALOG):
            if admin_client.get(url, headers=headers).status_code >= 500:
                failed.append(("GET", url, headers))
    for url, fields in itertools.product(FORMS, FIELDS):
        if admin_client.post(url, fields, headers={"HX-Request": "true"}).status_code >= 500:
            failed.append(("POST", url, fields))
    assert failed == []


API_ROUTES = [
    ("post", "/model-manager/model-info/scan"), ("post", "/model-manager/model-info/fetch"),
    ("put", "/model-manager/model-info/scan/1"), ("put", f"/model-manager/model-info/fetch/{HUGE}"),
    ("put", f"/model-manager/model/{MODEL}"), ("delete", f"/model-manager/model/loras/{HUGE}/x"),
    ("post", "/model-manager/model"), ("put", "/model-manager/download/1"), ("delete", f"/model-manager/download/{HUGE}"),
    ("post", "/model-manager/download/setting"), ("put", "/model-manager/download/task"), ("put", "/model-manager/trash"),
    ("put", "/model-manager/trash/1"), ("put", f"/model-manager/trash/{HUGE}"), ("delete", f"/model-manager/trash/{HUGE}"),
]  # fmt: skip
API_BODIES = [
    "[]", '"x"', "5", "null", '{"models": 5}', '{"models": [5]}', '{"models": [{"type": 5, "fullname": 5}]}',
    '{"models": [{"type": "loras", "pathIndex": -1, "fullname": "x"}]}',
    f'{{"models": [{{"type": "loras", "pathIndex": {HUGE}, "fullname": "x"}}]}}', '{"status": {}}', '{"mode": {}}',
    '{"key": {}, "value": []}', f'{{"type": "loras", "pathIndex": {HUGE}, "fullname": "a"}}', '{"pathIndex": -5}',
    '{"pathIndex": 1.5}', '{"fullname": ""}', '{"fullname": "/"}', '{"fullname": "a/../../b"}',
    f'{{"downloadUrl": "https://civitai.com/models/{HUGE}{HUGE}", "type": "loras"}}', '{"subFolder": 5, "downloadUrl": "x"}',
    '{"description": "\\ud800"}', '{"fullname": "\\udcff.safetensors"}', '{"key": "civitai", "value": "\\ud800"}',
    '{"key": "speedLimit", "value": 1e400}', f'{{"key": "speedLimit", "value": {HUGE}{HUGE}}}', '{"key": "speedLimit"}',
]  # fmt: skip


def test_no_api_route_answers_a_server_error_to_odd_json(admin_client, scanned, settings):
    settings.MM_CIVITAI_URL = "http://127.0.0.1:9"
    admin_client.raise_request_exception = False
    failed = []
    for (method, url), body in itertools.product(API_ROUTES, API_BODIES):
        response = getattr(admin_client, method)(url, body, content_type="application/json")
        if response.status_code >= 500 or "success" not in response.json():  # always the envelope
            failed.append((method, url, body, response.status_code))
    assert failed == []
    refused = admin_client.put(
        f"/model-manager/model/{MODEL}", '{"description": "\\ud800"}', "application/json"
    )
    assert refused.json()["error"] == (
        "The request holds text that is not valid Unicode (an unpaired surrogate such as \\ud800)."
    )


LINKS = [
    "https://huggingface.co/", "https://huggingface.co/a", "https://huggingface.co/a/b/tree",
    "https://huggingface.co/a/b/blob/main/../../x.safetensors", "https://huggingface.co/a/b/resolve/",
    "https://civitai.com/models/", "https://civitai.com/models/abc", "civitai.com/models/1", "http://[::1",
    "http://example.com:port/x.safetensors", "file:///etc/passwd", "ftp://x/y.safetensors", "https://", "   ",
    "https://civitai.com/api/download/models/", "urn:air:x:y:civitai:1@", "https://huggingface.co/datasets/a/b",
    "https://huggingface.co/" + "a/" * 500, "https://civitai.com/models/4201?modelVersionId=abc",
    "http://127.0.0.1:1/x.safetensors", "https://huggingface.co/demo-org/demo-models/tree/nope",
    "https://huggingface.co/demo-org/demo-models/blob/main/missing.safetensors", "https://civitai.com/models/99999",
]  # fmt: skip


def test_no_link_gets_a_server_error_from_the_new_download_dialog_or_the_api(logged_in, services_at_upstream):
    logged_in.raise_request_exception = False
    failed = []
    for link in LINKS:
        dialog = logged_in.post(reverse("download_choose"), {"url": link}, headers=DIALOG)
        api = logged_in.get("/model-manager/model-info", {"model-page": link})
        if dialog.status_code >= 500 or api.status_code >= 500:
            failed.append((link, dialog.status_code, api.status_code))
    assert failed == []
    unclosed = logged_in.get("/model-manager/model-info", {"model-page": "http://[::1"}).json()
    assert unclosed["error"] == NOT_A_LINK
