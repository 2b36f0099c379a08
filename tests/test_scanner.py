from __future__ import annotations

import builtins
import io
import json
import os
import time

import pytest

from models_app import scanner
from models_app.models import ModelFile
from models_app.read_ahead import starts_are_cached
from models_app.roots import get_roots
from models_app.scanner import KeptPlace, ScanStopped, scan_folder
from tests.model_files import write_image, write_model

pytestmark = pytest.mark.django_db


@pytest.fixture
def opened(monkeypatch):
    """Every path opened through open(), Path.open/read_text or os.open while the test runs."""
    paths: list[str] = []
    real_open, real_os_open = builtins.open, os.open

    def recording_open(file, *args, **kwargs):
        paths.append(os.fspath(file) if isinstance(file, (str, os.PathLike)) else repr(file))
        return real_open(file, *args, **kwargs)

    def recording_os_open(path, *args, **kwargs):
        paths.append(os.fspath(path))
        return real_os_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", recording_open)
    monkeypatch.setattr(io, "open", recording_open)
    monkeypatch.setattr(os, "open", recording_os_open)
    return paths


def test_first_scan_stores_every_model_with_its_metadata_and_sidecars(library):
    result = scan_folder(get_roots())
    assert (result.total, result.added, result.removed) == (5, 5, 0)
    pepper = ModelFile.objects.get(relative_path="style/pepper.safetensors")
    assert (pepper.folder_type, pepper.path_index, pepper.sub_folder, pepper.name) == (
        "loras",
        0,
        "style",
        "pepper",
    )
    assert pepper.extension == ".safetensors"
    assert pepper.metadata["ss_output_name"] == "Pepper__Carrot"
    assert pepper.base_model == "SDXL 1.0"
    assert pepper.preview == "pepper.png"
    assert pepper.description == "Witch girl with a cat."
    assert pepper.sidecars == ["pepper.png", "pepper.md"]
    assert pepper.size == (library["loras"] / "style/pepper.safetensors").stat().st_size
    poses = ModelFile.objects.get(name="poses")
    assert (poses.base_model, poses.civitai_model_id, poses.trained_words[0]) == (
        "Flux.1 D",
        706978,
        "aesthetic_pos3",
    )
    assert ModelFile.objects.filter(folder_type="checkpoints", base_model="SDXL 1.0").count() == 3


def test_a_rescan_of_an_unchanged_library_opens_no_file(library, opened):
    scan_folder(get_roots())
    opened.clear()
    result = scan_folder(get_roots())
    assert (result.total, result.added, result.updated, result.removed) == (5, 0, 0, 0)
    assert [p for p in opened if str(library["loras"].parent) in p] == []


def test_a_changed_file_is_read_again_and_only_it(library, opened):
    scan_folder(get_roots())
    model = library["checkpoints"] / "beta_xl.safetensors"
    write_model(model, {"ss_base_model_version": "sd_v1"}, payload=b"\0" * 8)
    opened.clear()
    result = scan_folder(get_roots())
    assert (result.added, result.updated) == (0, 1)
    assert [p for p in opened if str(library["loras"].parent) in p] == [str(model)]
    assert ModelFile.objects.get(name="beta_xl").base_model == "SD 1.5"


def test_a_new_sidecar_is_picked_up_without_opening_the_model(library, opened):
    scan_folder(get_roots())
    write_image(library["checkpoints"] / "alpha_xl.preview.jpg")
    opened.clear()
    scan_folder(get_roots())
    assert ModelFile.objects.get(name="alpha_xl").preview == "alpha_xl.preview.jpg"
    assert str(library["checkpoints"] / "alpha_xl.safetensors") not in opened


def test_removed_files_lose_their_rows(library):
    scan_folder(get_roots())
    (library["checkpoints"] / "gamma_xl.safetensors").unlink()
    result = scan_folder(get_roots())
    assert result.removed == 1
    assert not ModelFile.objects.filter(name="gamma_xl").exists()
    assert ModelFile.objects.count() == 4


def test_a_full_scan_reads_everything_again(library, opened):
    scan_folder(get_roots())
    opened.clear()
    (library["checkpoints"] / "beta_xl.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    result = scan_folder(get_roots(), full=True)
    assert str(library["loras"] / "style/pepper.safetensors") in opened  # unchanged, read again all the same
    assert (result.total, result.updated) == (5, 1)  # what it counts as changed is beta_xl alone


def test_rows_of_folders_no_longer_configured_are_dropped(library, settings):
    scan_folder(get_roots())
    settings.MM_MODEL_ROOTS = f"loras={library['loras']}"
    scan_folder(get_roots())
    assert set(ModelFile.objects.values_list("folder_type", flat=True)) == {"loras"}


def test_hidden_files_and_other_extensions_are_skipped(model_roots):
    write_model(model_roots["loras"] / ".hidden.safetensors")
    write_model(model_roots["loras"] / ".cache" / "x.safetensors")
    (model_roots["loras"] / "readme.txt").write_text("x")
    write_model(model_roots["loras"] / "kept.ckpt")
    (model_roots["loras"] / "q.GGUF").write_bytes(b"GGUF")
    scan_folder(get_roots())
    assert sorted(ModelFile.objects.values_list("relative_path", flat=True)) == ["kept.ckpt", "q.GGUF"]


def test_a_name_that_is_not_utf8_is_skipped_and_reported(model_roots):
    loras = os.fsencode(model_roots["loras"])
    write_model(model_roots["loras"] / "good.safetensors")
    with open(os.path.join(loras, b"caf\xe9.safetensors"), "wb") as f:
        f.write(b"any")
    os.mkdir(os.path.join(loras, b"r\xe9sum\xe9"))
    with open(os.path.join(loras, b"r\xe9sum\xe9", b"inside.safetensors"), "wb") as f:
        f.write(b"any")
    with open(os.path.join(loras, b"notes \xff.txt"), "wb") as f:  # not a model: nothing to report
        f.write(b"x")
    progress = scan_folder(get_roots())
    assert list(ModelFile.objects.values_list("relative_path", flat=True)) == ["good.safetensors"]
    assert sorted(progress.errors) == [
        "loras/caf\ufffd.safetensors: the name is not valid UTF-8; rename it to scan it",
        "loras/r\ufffdsum\ufffd: the name is not valid UTF-8; rename it to scan it",
    ]


def test_nul_characters_in_metadata_and_sidecars_are_stored_without_them(model_roots):
    # PostgreSQL refuses NUL in text and JSON; UTF-16 text files are full of them when read as UTF-8.
    write_model(model_roots["loras"] / "nul.safetensors", {"ss_output_name": "pep\u0000per"})
    (model_roots["loras"] / "nul.txt").write_bytes("Trigger: pepper".encode("utf-16"))
    (model_roots["loras"] / "nul.civitai.info").write_text(json.dumps({"model": {"name": "Pep\u0000per"}}))
    assert scan_folder(get_roots()).errors == []
    model = ModelFile.objects.get()
    assert model.metadata == {"ss_output_name": "pepper"}
    assert (model.description, model.civitai_name) == ("Trigger: pepper", "Pepper")


def test_lone_surrogates_in_metadata_and_sidecars_are_stored_as_replacement_characters(
    model_roots, logged_in
):
    # JSON escapes half a UTF-16 pair ("\\udce9": what json.dumps writes for a name that is not UTF-8); no
    # database takes it, and before this one such LoRA ended the whole scan.
    half = "\udce9"
    write_model(model_roots["loras"] / "odd.safetensors", {"ss_output_name": f"caf{half}"})
    (model_roots["loras"] / "odd.civitai.info").write_text(json.dumps({"model": {"name": f"Caf{half}"}}))
    assert scan_folder(get_roots()).errors == []
    model = ModelFile.objects.get()
    assert (model.metadata, model.civitai_name) == ({"ss_output_name": "caf\ufffd"}, "Caf\ufffd")
    dialog = logged_in.get(
        "/model/loras/0/odd.safetensors", headers={"HX-Request": "true", "HX-Target": "dialog"}
    )
    assert dialog.status_code == 200 and "caf\ufffd" in dialog.content.decode()


def test_a_path_too_long_to_store_is_reported_and_the_rest_scanned(model_roots):
    deep = model_roots["loras"].joinpath(*["d" * 200] * 5)  # 1,005 characters of folders
    write_model(deep / "short.safetensors")
    write_model(deep / ("long" * 10 + ".safetensors"))
    progress = scan_folder(get_roots())
    assert [len(p) for p in ModelFile.objects.values_list("relative_path", flat=True)] == [1022]
    assert len(progress.errors) == 1
    assert progress.errors[0].endswith("long.safetensors: the path is longer than 1024 characters")


def test_a_folder_that_cannot_be_listed_is_reported_and_the_rest_scanned(model_roots, monkeypatch):
    write_model(model_roots["loras"] / "open.safetensors")
    write_model(model_roots["loras"] / "private" / "hidden_from_us.safetensors")
    real_scandir = os.scandir

    def scandir(path):  # the tests run as root, whom no permission stops
        if str(path).endswith("private"):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    progress = scan_folder(get_roots())
    assert list(ModelFile.objects.values_list("relative_path", flat=True)) == ["open.safetensors"]
    assert progress.errors == ["loras/private: cannot list the folder: Permission denied"]


def test_models_of_a_folder_that_cannot_be_listed_now_stay_listed(library, monkeypatch):
    scan_folder(get_roots())
    real_scandir = os.scandir

    def scandir(path):
        if str(path).endswith("style"):
            raise OSError(5, "Input/output error")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    (library["loras"] / "poses.safetensors").unlink()  # beside it, a model really removed
    progress = scan_folder(get_roots())
    assert progress.removed == 1
    assert ModelFile.objects.filter(relative_path="style/pepper.safetensors").exists()
    assert progress.errors == [
        "loras/style: cannot list the folder: Input/output error (a drive not mounted?); "
        "keeping the 1 model known there until it is back"
    ]


def test_models_of_a_missing_root_or_a_dangling_folder_link_stay_listed(library, settings, tmp_path):
    nas = tmp_path / "nas"
    write_model(nas / "far.safetensors")
    (library["loras"] / "on_nas").symlink_to(nas)
    scan_folder(get_roots())
    assert ModelFile.objects.count() == 6
    nas.rename(tmp_path / "unmounted")
    checkpoints = library["checkpoints"].rename(tmp_path / "checkpoints_away")
    progress = scan_folder(get_roots())
    assert (progress.removed, ModelFile.objects.count()) == (0, 6)
    assert sorted(progress.errors) == [
        f"checkpoints folder {library['checkpoints']}: not there (a drive not mounted?); "
        "keeping the 3 models known there until it is back",
        "loras/on_nas: the link leads nowhere (a drive not mounted?); keeping the 1 model known there until it is back",
    ]
    checkpoints.rename(library["checkpoints"])
    (library["loras"] / "on_nas").unlink()  # the link removed on purpose: its model is gone
    progress = scan_folder(get_roots())
    assert (progress.removed, progress.errors, ModelFile.objects.count()) == (1, [], 5)


def test_a_root_that_turned_empty_keeps_its_models_and_an_emptied_folder_does_not(library):
    scan_folder(get_roots())
    for path in library["checkpoints"].iterdir():  # as an unmounted mount point looks
        path.unlink()
    for path in (library["loras"] / "style").iterdir():
        path.unlink()
    progress = scan_folder(get_roots())
    assert progress.removed == 1  # style/pepper: its folder is still there, empty
    assert ModelFile.objects.filter(folder_type="checkpoints").count() == 3
    message = (
        f"checkpoints folder {library['checkpoints']}: empty (a drive not mounted?); "
        "keeping the 3 models known there until it is back"
    )
    assert progress.errors == [message]
    assert progress.kept == [KeptPlace("checkpoints", 0, "", 3, message)]
    assert scan_folder(get_roots(), full=True).errors == progress.errors


def test_a_new_empty_or_missing_root_is_not_an_error(model_roots, settings, tmp_path):
    settings.MM_MODEL_ROOTS += f";vae={tmp_path / 'no_such_folder'}"
    assert scan_folder(get_roots()).errors == []


def test_symlinks_are_followed_without_looping(model_roots, tmp_path):
    outside = tmp_path / "elsewhere"
    write_model(outside / "far.safetensors")
    (model_roots["loras"] / "linked").symlink_to(outside)
    (outside / "loop").symlink_to(model_roots["loras"])
    scan_folder(get_roots())
    paths = sorted(ModelFile.objects.values_list("relative_path", flat=True))
    assert paths == ["linked/far.safetensors"]


def test_a_diffusers_folder_is_one_model(model_roots):
    folder = model_roots["checkpoints"] / "sdxl-diffusers"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"x" * 100)
    write_image(model_roots["checkpoints"] / "sdxl-diffusers.png")
    scan_folder(get_roots())
    model = ModelFile.objects.get()
    assert (model.relative_path, model.is_dir, model.extension, model.preview) == (
        "sdxl-diffusers",
        True,
        "",
        "sdxl-diffusers.png",
    )
    assert model.size == 102


def test_an_unreadable_header_is_recorded_not_fatal(model_roots):
    (model_roots["loras"] / "broken.safetensors").write_bytes(b"\xff" * 30)
    scan_folder(get_roots())
    model = ModelFile.objects.get()
    assert "larger than the file" in model.header_error
    assert model.metadata == {}


def test_progress_is_reported_and_a_stop_request_ends_the_scan(library):
    seen = []

    def on_progress(progress):
        seen.append((progress.processed, progress.total))
        if progress.processed == 2:
            raise ScanStopped("cancel")

    with pytest.raises(ScanStopped):
        scan_folder(get_roots(), on_progress=on_progress)
    assert seen == [(0, 0)] * 5 + [(0, 5), (1, 5), (2, 5)]  # the listing finds 5 models, then reads


def test_the_listing_tells_its_folder_and_hears_a_stop_request_before_reading(library, opened):
    listed = []

    def on_progress(progress):
        listed.append(progress.current_path)
        if progress.current_path == "loras/style":
            raise ScanStopped("cancel")

    with pytest.raises(ScanStopped):
        scan_folder(get_roots(), on_progress=on_progress)
    assert listed[-1] == "loras/style" and "checkpoints/" in listed
    assert opened == []
    assert not ModelFile.objects.exists()


def test_mtime_change_with_the_same_size_is_noticed(library):
    scan_folder(get_roots())
    model = library["checkpoints"] / "alpha_xl.safetensors"
    later = time.time() + 10
    os.utime(model, (later, later))
    assert scan_folder(get_roots()).updated == 1


def _rows() -> list[dict[str, object]]:
    return [
        {k: v for k, v in row.items() if k != "id"}
        for row in ModelFile.objects.order_by("relative_path").values()
    ]


def test_a_scan_from_a_cold_cache_reads_ahead_and_stores_the_same_rows(library, monkeypatch):
    scan_folder(get_roots())
    without_read_ahead = _rows()
    ModelFile.objects.all().delete()
    monkeypatch.setattr(scanner, "starts_are_cached", lambda paths: False)  # as after a reboot
    read_ahead: list[str] = []
    real_read_into_cache = scanner._read_into_cache

    def recording(found):
        read_ahead.append(found.relative_path)
        real_read_into_cache(found)

    monkeypatch.setattr(scanner, "_read_into_cache", recording)
    result = scan_folder(get_roots())
    assert result.added == 5 and not result.errors
    assert sorted(read_ahead) == sorted(row["relative_path"] for row in without_read_ahead)
    assert _rows() == without_read_ahead


def test_a_failed_read_ahead_costs_nothing_but_time(library, monkeypatch):
    monkeypatch.setattr(scanner, "starts_are_cached", lambda paths: None)  # a system that cannot tell

    def failing(found):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(scanner, "_read_into_cache", failing)
    result = scan_folder(get_roots())
    assert (result.added, result.errors) == (5, [])


def test_files_just_written_are_known_to_be_in_the_page_cache(tmp_path):
    paths = []
    for i in range(3):
        write_model(tmp_path / f"m{i}.safetensors")
        paths.append(str(tmp_path / f"m{i}.safetensors"))
    assert starts_are_cached(paths) is (True if hasattr(os, "RWF_NOWAIT") else None)
    assert starts_are_cached([]) is None


@pytest.mark.django_db(transaction=True)  # the scan's writer thread has its own connection
def test_a_model_read_on_its_own_while_a_scan_runs_is_no_clash(model_roots):
    # A download that ends during a scan is read into the library at once; the scan, which did not know
    # that row when it began, then finds the same file.
    write_model(model_roots["loras"] / "a.safetensors")
    write_model(model_roots["loras"] / "b.safetensors")

    def on_progress(progress):
        if progress.processed == 1:
            scanner.scan_one_model(get_roots(), "loras", 0, "b.safetensors")

    done = scan_folder(get_roots(), on_progress=on_progress)
    assert not done.errors
    assert sorted(ModelFile.objects.values_list("relative_path", flat=True)) == [
        "a.safetensors",
        "b.safetensors",
    ]


def test_a_model_renamed_while_the_scan_runs_is_no_error(model_roots):
    write_model(model_roots["loras"] / "a.safetensors")
    write_model(model_roots["loras"] / "b.safetensors")

    def on_progress(progress):
        if progress.processed == 1:  # b was listed and is about to be read
            os.rename(model_roots["loras"] / "b.safetensors", model_roots["loras"] / "c.safetensors")

    done = scan_folder(get_roots(), on_progress=on_progress)
    assert done.errors == []
    assert list(ModelFile.objects.values_list("relative_path", flat=True)) == ["a.safetensors"]
    scan_folder(get_roots())  # the next scan finds it under its new name
    assert sorted(ModelFile.objects.values_list("relative_path", flat=True)) == [
        "a.safetensors",
        "c.safetensors",
    ]


def test_a_pipe_or_a_folder_under_a_sidecars_name_does_not_hold_up_the_scan(model_roots, fails_if_blocked):
    write_model(model_roots["loras"] / "a.safetensors")
    os.mkfifo(model_roots["loras"] / "a.md")  # opened for reading, a pipe waits for a writer
    os.mkfifo(model_roots["loras"] / "a.civitai.info")
    (model_roots["loras"] / "a.sha256").mkdir()
    (model_roots["loras"] / "a.metadata.json").write_text('{"notes": "read all the same"}')
    done = scan_folder(get_roots())
    assert done.errors == []
    model = ModelFile.objects.get()
    assert (model.description, model.notes, model.sha256) == ("", "read all the same", "")


def test_sidecars_of_the_wrong_shape_do_not_stop_the_scan(model_roots):
    # Each of these once ended the whole scan: a str where an object belongs, an id no column holds.
    sidecars = {
        "a.civitai.info": '{"id": 1e30, "modelId": 99999999999999999999, "model": "x", "images": 5}',
        "b.metadata.json": '{"civitai": "x", "preview_nsfw_level": 100000}',
        "c.cm-info.json": '{"ModelId": -1, "Hashes": 7, "ModelName": {"x": 1}}',
    }
    for name, text in sidecars.items():
        write_model(model_roots["loras"] / f"{name.split('.')[0]}.safetensors")
        (model_roots["loras"] / name).write_text(text)
    write_model(model_roots["loras"] / "d.safetensors")
    done = scan_folder(get_roots())
    assert done.errors == []
    rows = ModelFile.objects.order_by("name").values_list("name", "civitai_model_id", "nsfw_level")
    assert list(rows) == [("a", None, 0), ("b", None, 32767), ("c", None, 0), ("d", None, 0)]


def test_a_model_no_reader_foresaw_is_reported_and_the_rest_scanned(model_roots, monkeypatch, caplog):
    for name in ("a", "b", "c"):
        write_model(model_roots["loras"] / f"{name}.safetensors")
        (model_roots["loras"] / f"{name}.md").write_text("a description")
    read_sidecars = scanner.read_sidecars

    def failing_on_b(folder, model_name, names, **kwargs):
        if model_name == "b.safetensors":
            raise RuntimeError("a case nobody thought of")
        return read_sidecars(folder, model_name, names, **kwargs)

    monkeypatch.setattr(scanner, "read_sidecars", failing_on_b)
    done = scan_folder(get_roots())
    assert done.errors == ["loras/b.safetensors: could not be read (RuntimeError: a case nobody thought of)"]
    assert sorted(ModelFile.objects.values_list("name", flat=True)) == ["a", "c"]
    assert "Traceback" in caplog.text  # for the bug report


def test_a_failed_write_fails_the_scan_and_is_not_blamed_on_a_file(model_roots, monkeypatch):
    from models_app.row_writer import RowWriter

    for name in ("a", "b", "c"):
        write_model(model_roots["loras"] / f"{name}.safetensors")

    def database_full(self, inserts, *updates):
        raise RuntimeError("database or disk is full")

    monkeypatch.setattr(scanner, "BATCH_SIZE", 1)
    monkeypatch.setattr(RowWriter, "write", database_full)
    with pytest.raises(RuntimeError, match="database or disk is full"):
        scan_folder(get_roots())


def test_reading_one_model_again_looks_up_its_own_hash_only(model_roots):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from models_app.hashing import hash_key
    from models_app.models import HashCache

    path = write_model(model_roots["loras"] / "one.safetensors")
    scan_folder(get_roots())
    HashCache.objects.create(device=1, inode=2, size=3, mtime_ns=4, sha256="b" * 64)  # another file's
    device, inode, size, mtime_ns = hash_key(path.stat())
    HashCache.objects.create(device=device, inode=inode, size=size, mtime_ns=mtime_ns, sha256="a" * 64)
    with CaptureQueriesContext(connection) as queries:
        scanner.scan_one_model(get_roots(), "loras", 0, "one.safetensors")
    assert ModelFile.objects.get().sha256 == "a" * 64
    # After an edit of one model, not the whole table of every hash ever computed.
    lookups = [q["sql"] for q in queries if '"models_app_hashcache"' in q["sql"]]
    assert lookups and all('"models_app_hashcache"."inode" =' in sql for sql in lookups), lookups
