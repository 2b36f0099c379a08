"""Models picked in the library, moved into one folder by the worker (a copy of gigabytes across disks)."""

from __future__ import annotations

import json
import os
import re
import time

import pytest
from asgiref.sync import sync_to_async
from django.urls import reverse

from mmsite import files
from models_app import services
from models_app.models import ModelFile, MoveTask
from models_app.roots import get_roots
from models_app.scanner import scan_folder
from tests.model_files import write_model
from tests.worker_runs import run_until_ended

pytestmark = pytest.mark.django_db(transaction=True)

HX = {"HX-Request": "true", "HX-Target": "dialog"}


def picked(*names: str) -> dict[str, list[int]]:
    return {"ids": [ModelFile.objects.get(name=name).pk for name in names]}


def confirm_move(client, ids, **place):
    data = {**ids, "confirm": "1", "folder": "0:loras", "sub_folder": "", **place}
    return client.post(reverse("selection_move"), data, headers=HX)


async def test_picked_models_move_into_one_folder_in_the_worker(logged_in, scanned):
    ids = await sync_to_async(picked)("pepper", "poses")
    form = (await sync_to_async(logged_in.post)(reverse("selection_move"), ids, headers=HX)).content.decode()
    assert "Move 2 models" in form
    # Every model folder by its type and path, the picked models' own chosen.
    options = re.findall(r'<option value="([^"]+)"( selected)?>([^<]+)</option>', form)
    assert all(re.search(r" · [\d.]+\s[KMGT]?B free$", text) for *_, text in options), (
        options
    )  # of the disk there
    options = [(value, selected, text.rsplit(" · ", 1)[0]) for value, selected, text in options]
    assert options == [
        ("0:checkpoints", "", f"Checkpoints · {scanned['checkpoints']}"),
        ("0:loras", " selected", f"LoRAs · {scanned['loras']}"),
    ]
    (scanned["loras"] / "sorted").mkdir()
    (scanned["loras"] / "sorted" / "poses.safetensors").write_bytes(b"another")  # a clash: said, not fatal

    queued = await sync_to_async(confirm_move)(logged_in, ids, sub_folder="/sorted/")
    # The dialog closes, the picking ends, and the progress shows beside Scan.
    assert queued["HX-Retarget"] == "#move-progress" and queued["HX-Reswap"] == "outerHTML"
    assert json.loads(queued["HX-Trigger-After-Settle"]) == {"selectionDone": {}, "closeDialog": {}}
    assert json.loads(queued["HX-Trigger"])["toast"]["message"] == "Moving 2 models to loras/sorted…"
    assert "Move to loras/sorted queued…" in queued.content.decode()

    task = await run_until_ended(MoveTask, (await sync_to_async(MoveTask.objects.get)()).pk)
    assert (task.status, task.total, task.processed, task.moved) == ("done", 2, 2, 1)
    assert task.failures == [
        "poses.safetensors: poses.safetensors already exist(s) there: nothing was moved."
    ]
    assert sorted(p.name for p in (scanned["loras"] / "sorted").iterdir()) == [
        "pepper.md", "pepper.png", "pepper.safetensors", "poses.safetensors",
    ]  # fmt: skip
    assert (
        await sync_to_async(ModelFile.objects.get)(name="pepper")
    ).relative_path == "sorted/pepper.safetensors"
    assert (scanned["loras"] / "poses.safetensors").exists()  # left where it was

    # The library still says what could not move.
    page = (await sync_to_async(logged_in.get)(reverse("library"))).content.decode()
    assert "1 model moved to loras/sorted. 1 could not be moved." in page
    assert "What could not be moved" in page and "poses.safetensors: poses.safetensors already exist" in page


@pytest.mark.parametrize(
    ("place", "message"),
    [
        ({"sub_folder": "../../etc"}, "The new place must stay inside the model folders."),
        ({"folder": "0:vae"}, "There is no vae folder number 0."),
        ({"folder": "3:loras"}, "There is no loras folder number 3."),
    ],
)
def test_a_move_to_a_place_that_is_not_a_model_folder_is_refused_before_it_is_queued(
    logged_in, scanned, place, message
):
    response = confirm_move(logged_in, picked("pepper"), **place)
    html = response.content.decode()
    assert message in html and 'role="alert"' in html
    assert "HX-Retarget" not in response  # the dialog stays, with the form
    assert not MoveTask.objects.exists()
    assert (scanned["loras"] / "style" / "pepper.safetensors").exists()


def test_picked_models_all_gone_since_are_said_to_be_gone_and_nothing_is_queued(logged_in, scanned):
    response = confirm_move(logged_in, {"ids": [999999]})
    assert "None of the picked models is in the library any more." in response.content.decode()
    assert not MoveTask.objects.exists()


async def test_a_move_across_disks_reports_its_bytes_and_stops_mid_copy_leaving_the_model_whole(
    logged_in, scanned, other_disk, monkeypatch
):
    big = write_model(scanned["checkpoints"] / "big_xl.safetensors", payload=bytes(8 << 20))
    size = big.stat().st_size
    await sync_to_async(scan_folder)(get_roots())
    # Copied 1 MiB at a time, slowly enough to be stopped halfway.
    monkeypatch.setattr(files, "COPY_CHUNK", 1 << 20)
    sendfile = os.sendfile

    def slow_sendfile(out_fd, in_fd, offset, count):
        time.sleep(0.1)
        return sendfile(out_fd, in_fd, offset, count)

    monkeypatch.setattr(os, "sendfile", slow_sendfile)
    ids = await sync_to_async(picked)("big_xl")
    await sync_to_async(confirm_move)(logged_in, ids, folder="1:checkpoints")
    seen = []

    def stop_once_halfway(task: MoveTask) -> None:
        if task.size_done >= 2 << 20 and not seen:
            seen.append((task.size_done, task.size_total, task.current))
            logged_in.post(reverse("move_stop", args=[task.pk]), headers=HX)

    pk = (await sync_to_async(MoveTask.objects.get)()).pk
    task = await run_until_ended(MoveTask, pk, while_running=stop_once_halfway)
    size_done, size_total, current = seen[0]
    assert size_total == size and 0 < size_done < size and current == "checkpoints/big_xl.safetensors"
    assert (task.status, task.moved) == ("cancelled", 0)
    assert task.summary == f"Move stopped: 0 models moved to {other_disk}; the others stayed where they were."
    assert list(other_disk.iterdir()) == []  # not even the hidden half
    assert big.stat().st_size == size
    assert await sync_to_async(ModelFile.objects.filter(name="big_xl", path_index=0).exists)()


async def test_a_dialog_move_to_another_disk_is_handed_to_the_worker(logged_in, scanned, other_disk):
    url = reverse("model_move", args=["loras", 0, "style/pepper.safetensors"])
    form = {"folder": "1:checkpoints", "sub_folder": "ssd", "name": "carrot"}
    response = await sync_to_async(logged_in.post)(url, form, headers=HX)
    assert response["HX-Retarget"] == "#move-progress"
    assert json.loads(response["HX-Trigger-After-Settle"]) == {"closeDialog": {}}
    assert json.loads(response["HX-Trigger"])["toast"]["message"] == f"Moving 1 model to {other_disk}/ssd…"

    task = await run_until_ended(MoveTask, (await sync_to_async(MoveTask.objects.get)()).pk)
    assert (task.status, task.moved, task.failures) == ("done", 1, [])
    assert sorted(p.name for p in (other_disk / "ssd").iterdir()) == [
        "carrot.md", "carrot.png", "carrot.safetensors",
    ]  # fmt: skip
    carrot = await sync_to_async(ModelFile.objects.get)(name="carrot")
    assert (carrot.folder_type, carrot.path_index, carrot.relative_path) == (
        "checkpoints",
        1,
        "ssd/carrot.safetensors",
    )
    assert not (scanned["loras"] / "style" / "pepper.safetensors").exists()


def test_a_dialog_move_to_another_disk_that_would_clash_is_refused_before_it_is_queued(
    logged_in, scanned, other_disk
):
    (other_disk / "carrot.png").write_bytes(b"someone else's preview")
    url = reverse("model_move", args=["loras", 0, "style/pepper.safetensors"])
    response = logged_in.post(
        url, {"folder": "1:checkpoints", "sub_folder": "", "name": "carrot"}, headers=HX
    )
    assert "carrot.png already exist(s) there: nothing was moved." in response.content.decode()
    assert "HX-Retarget" not in response and not MoveTask.objects.exists()


def test_a_folder_on_a_drive_not_mounted_cannot_be_chosen_nor_moved_into(logged_in, scanned, settings):
    unmounted = scanned["loras"].parent.parent / "nas" / "models" / "loras"
    settings.MM_MODEL_ROOTS += f";loras={unmounted}"
    form = logged_in.post(reverse("selection_move"), picked("pepper"), headers=HX).content.decode()
    assert f'<option value="1:loras" disabled>LoRAs · {unmounted} (not there)</option>' in form
    message = f"{unmounted} is not there, nor the folder it goes in: is its drive mounted? Nothing was moved."
    assert message in confirm_move(logged_in, picked("pepper"), folder="1:loras").content.decode()
    assert not MoveTask.objects.exists()
    dialog_move = logged_in.post(
        reverse("model_move", args=["loras", 0, "style/pepper.safetensors"]),
        {"folder": "1:loras", "sub_folder": "", "name": "pepper"},
        headers=HX,
    )
    assert message in dialog_move.content.decode()
    assert (
        scanned["loras"] / "style" / "pepper.safetensors"
    ).exists() and not unmounted.parent.parent.exists()


async def test_a_move_that_breaks_unexpectedly_says_so_instead_of_running_on(logged_in, scanned, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(services, "model_move", broken)
    await sync_to_async(confirm_move)(logged_in, await sync_to_async(picked)("pepper"))
    task = await run_until_ended(MoveTask, (await sync_to_async(MoveTask.objects.get)()).pk)
    assert task.status == "failed"
    assert task.summary == "Move failed: 0 models moved to loras; the others stayed where they were."
    page = (await sync_to_async(logged_in.get)(reverse("library"))).content.decode()
    assert "Move failed: 0 models moved to loras" in page and "the database went away" in page
