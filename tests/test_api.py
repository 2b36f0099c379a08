from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.test import Client

from mmsite.models import ApiToken
from models_app.models import ScanTask

pytestmark = pytest.mark.django_db


def test_folders_lists_types_with_their_paths(logged_in, scanned):
    body = logged_in.get("/model-manager/models").json()
    assert body["success"] is True
    assert body["data"] == {
        "checkpoints": [str(scanned["checkpoints"])],
        "loras": [str(scanned["loras"])],
    }


def test_models_of_a_type_follow_the_seed_contract(logged_in, scanned):
    body = logged_in.get("/model-manager/models/loras").json()
    assert body["success"] is True
    by_name = {m["basename"]: m for m in body["data"]}
    pepper = by_name["pepper"]
    assert {k: pepper[k] for k in ("type", "pathIndex", "subFolder", "extension", "baseModel")} == {
        "type": "loras",
        "pathIndex": 0,
        "subFolder": "style",
        "extension": ".safetensors",
        "baseModel": "SDXL 1.0",
    }
    assert pepper["sizeBytes"] == (scanned["loras"] / "style/pepper.safetensors").stat().st_size
    assert pepper["preview"].startswith("/thumbnail/loras/0/style/pepper.safetensors?v=")
    assert pepper["description"] == "Witch girl with a cat."
    assert isinstance(pepper["createdAt"], float) and isinstance(pepper["updatedAt"], float)
    assert by_name["poses"]["preview"] is None


def test_models_of_a_type_can_be_searched_as_the_library_is(logged_in, scanned):
    def names(q: str) -> list[str]:
        return [m["basename"] for m in logged_in.get("/model-manager/models/loras", {"q": q}).json()["data"]]

    assert names("") == ["poses", "pepper"]  # by path: poses.safetensors, then style/pepper.safetensors
    assert names("PEPPER") == ["pepper"]
    assert names("21437ec266") == ["poses"]  # the start of its SHA256, as its Civitai info gives it
    assert names("pepper nothing-like-this") == []


def test_unknown_type_is_404(logged_in, scanned):
    response = logged_in.get("/model-manager/models/nope")
    assert response.status_code == 404
    assert response.json() == {"success": False, "error": "Unknown model type 'nope'."}


def test_one_model_with_metadata_and_sidecars(logged_in, scanned):
    body = logged_in.get("/model-manager/model/loras/0/style/pepper.safetensors").json()
    data = body["data"]
    assert data["metadata"]["ss_network_dim"]
    assert data["sidecars"] == ["pepper.png", "pepper.md"]
    poses = logged_in.get("/model-manager/model/loras/0/poses.safetensors").json()["data"]
    assert poses["civitai"]["modelId"] == 706978
    assert poses["sha256"].startswith("21437ec2")


def test_unknown_model_is_404_and_traversal_is_400(logged_in, scanned):
    missing = logged_in.get("/model-manager/model/loras/0/missing.safetensors")
    assert missing.status_code == 404
    assert missing.json()["success"] is False
    assert logged_in.get("/model-manager/model/loras/9/x.safetensors").status_code == 404
    climbing = logged_in.get("/model-manager/model/loras/0/a/../../../etc/passwd")
    assert climbing.status_code == 400
    assert "not a path inside" in climbing.json()["error"]


def test_scan_starts_once_and_returns_its_id(logged_in, scanned):
    response = logged_in.post(
        "/model-manager/model-info/scan", {"mode": "full"}, content_type="application/json"
    )
    assert response.status_code == 202
    data = response.json()["data"]
    task = ScanTask.objects.get(pk=data["taskId"])
    assert (task.mode, task.status, data["created"]) == ("full", "queued", True)
    again = logged_in.post(
        "/model-manager/model-info/scan", {"mode": "diff"}, content_type="application/json"
    )
    assert again.status_code == 200
    assert again.json()["data"]["taskId"] == task.pk


@pytest.mark.parametrize("job", ["scan", "fetch"])
def test_a_script_reads_a_jobs_state_by_its_id_and_can_stop_it(logged_in, scanned, job):
    body = {"mode": "full"} if job == "scan" else {"models": "all"}
    started = logged_in.post(f"/model-manager/model-info/{job}", body, content_type="application/json")
    url = f"/model-manager/model-info/{job}/{started.json()['data']['taskId']}"
    state = logged_in.get(url).json()
    assert state["success"] is True
    assert (state["data"]["status"], state["data"]["processed"]) == ("queued", 0)

    refused = logged_in.put(url, {"status": "pause"}, content_type="application/json")
    assert (refused.status_code, refused.json()["error"]) == (400, 'status must be "stop".')
    stopped = logged_in.put(url, {"status": "stop"}, content_type="application/json")
    assert stopped.json()["data"]["status"] == "cancelled"
    assert logged_in.get(url).json()["data"]["status"] == "cancelled"

    unknown = logged_in.get(f"/model-manager/model-info/{job}/999999")
    assert (unknown.status_code, unknown.json()["success"]) == (404, False)


def test_scan_refuses_bad_input(logged_in, db):
    bad_mode = logged_in.post(
        "/model-manager/model-info/scan", {"mode": "x"}, content_type="application/json"
    )
    assert bad_mode.status_code == 400
    assert "mode must be one of" in bad_mode.json()["error"]
    not_json = logged_in.post("/model-manager/model-info/scan", "{", content_type="application/json")
    assert not_json.status_code == 400
    assert not_json.json()["error"] == "The request body is not valid JSON."


def test_a_wrong_method_gets_405_in_the_envelope(logged_in, scanned):
    for method, url, allowed in (
        ("post", "/model-manager/models", "GET"),
        ("get", "/model-manager/model-info/scan", "POST"),
        ("patch", "/model-manager/model/loras/0/poses.safetensors", "GET, PUT, DELETE"),
        ("get", "/model-manager/download/1", "PUT, DELETE"),
    ):
        response = getattr(logged_in, method)(url)
        assert response.status_code == 405 and response["Allow"] == allowed
        assert response.json() == {"success": False, "error": f"Use {allowed.replace(', ', ' or ')} here."}


def test_anonymous_api_calls_get_401_json_not_a_login_page(client, scanned):
    for method, url in (
        ("get", "/model-manager/models"),
        ("get", "/model-manager/models/loras"),
        ("get", "/model-manager/model/loras/0/poses.safetensors"),
        ("post", "/model-manager/model-info/scan"),
        ("get", "/model-manager/model-info/scan/1"),
        ("get", "/model-manager/trash"),
        ("put", "/model-manager/trash"),
        ("delete", "/model-manager/trash/1"),
        ("put", "/model-manager/download/task"),
    ):
        response = getattr(client, method)(url)
        assert response.status_code == 401, url
        assert response.json() == {"success": False, "error": "Authentication required."}


def test_bearer_token_from_the_apitoken_command(user, scanned, capsys):
    call_command("apitoken", user.username)
    token = capsys.readouterr().out.strip()
    assert token.startswith("mm_")
    assert not ApiToken.objects.filter(digest=token).exists()  # only the hash is kept
    client = Client(enforce_csrf_checks=True)
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/model-manager/models", headers=auth).json()["success"] is True
    scan = client.post(
        "/model-manager/model-info/scan", json.dumps({"mode": "diff"}), "application/json", headers=auth
    )
    assert scan.status_code == 202  # a token request carries no cookie, so no CSRF token is needed
    wrong = client.get("/model-manager/models", headers={"Authorization": "Bearer mm_wrong"})
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "Invalid API token."


def test_a_token_does_not_open_the_pages(user, scanned, capsys):
    call_command("apitoken", user.username)
    token = capsys.readouterr().out.strip()
    response = Client().get("/", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 302


def test_session_api_posts_need_csrf(user, scanned):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post("/model-manager/model-info/scan", "{}", content_type="application/json")
    assert response.status_code == 403
    assert response.json() == {
        "success": False,
        "error": "CSRF check failed: with a session, send its token as X-CSRFToken.",
    }


def test_unknown_api_route_is_404_json(logged_in, db):
    response = logged_in.get("/model-manager/nothing-here")
    assert response.status_code == 404
    assert response.json() == {"success": False, "error": "Not found."}


def _put(client, url, body):
    return client.put(url, json.dumps(body), content_type="application/json")


def test_fields_of_the_wrong_kind_are_refused_and_change_nothing(logged_in, scanned):
    from downloads_app.models import ApiKey, DownloadTask

    pepper = "/model-manager/model/loras/0/style/pepper.safetensors"
    for body, error in (
        ({"description": None}, None),  # null leaves it empty, as a blank form field does
        ({"description": 5}, "description must be text."),
        ({"description": ["a"]}, "description must be text."),
        ({"fullname": 7}, "fullname must be text."),
        ({"pathIndex": "one"}, "pathIndex must be a whole number."),
        ({"pathIndex": True}, "pathIndex must be a whole number."),
    ):
        response = _put(logged_in, pepper, body)
        if error is None:
            assert response.status_code == 200
            assert response.json()["data"]["description"] == ""
        else:
            assert (response.status_code, response.json()["error"]) == (400, error), body
    assert (scanned["loras"] / "style/pepper.md").read_text().strip() == "---\nsource: civitai\n---"
    assert (scanned["loras"] / "style/pepper.safetensors").exists()

    fetch = logged_in.post(
        "/model-manager/model-info/fetch",
        {"models": [{"type": "loras", "pathIndex": "x", "fullname": "style/pepper.safetensors"}]},
        content_type="application/json",
    )
    assert (fetch.status_code, fetch.json()["error"]) == (400, "pathIndex must be a whole number.")
    no_type = logged_in.post(
        "/model-manager/model-info/fetch",
        {"models": [{"pathIndex": 0, "fullname": "style/pepper.safetensors"}]},
        content_type="application/json",
    )
    assert (no_type.status_code, no_type.json()["error"]) == (
        400,
        "Each model is {type, pathIndex, fullname}.",
    )

    for body in ({"key": "civitai", "value": 12345}, {"key": ["civitai"], "value": "k"}):
        response = logged_in.post("/model-manager/download/setting", body, content_type="application/json")
        assert response.status_code == 400 and response.json()["error"].endswith("must be text."), body
    cleared = logged_in.post(
        "/model-manager/download/setting", {"key": "civitai", "value": None}, content_type="application/json"
    )
    assert cleared.json() == {"success": True, "data": {"key": "civitai", "value": ""}}
    assert not ApiKey.objects.exists()  # never the text "None"

    download = logged_in.post(
        "/model-manager/model",
        {"downloadUrl": 5, "type": "loras", "pathIndex": 0, "fullname": "a.safetensors"},
        content_type="application/json",
    )
    assert (download.status_code, download.json()["error"]) == (400, "downloadUrl must be text.")
    task = DownloadTask.objects.create(
        platform="civitai", source_url="https://civitai.com/models/1", download_url="https://civitai.com/api/download/models/2",
        folder_type="loras", filename="half.safetensors", status="paused", downloaded_size=512, total_size=1024,
    )  # fmt: skip
    control = _put(logged_in, f"/model-manager/download/{task.pk}", {"status": ["resume"]})
    assert (control.status_code, control.json()["error"]) == (400, "status must be text.")
    assert list(DownloadTask.objects.values_list("status", flat=True)) == ["paused"]
