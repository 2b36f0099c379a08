"""The scanner's row writer: a thread that writes while the scan reads, in as few statements as the
database takes."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from django.db import DatabaseError, transaction

from models_app import scanner
from models_app.models import ModelFile
from models_app.roots import get_roots
from models_app.row_writer import RowWriter, WriterThread, writer_for_scan
from models_app.scanner import scan_folder
from tests.model_files import write_model

pytestmark = pytest.mark.django_db(transaction=True)


def many_models(roots, count: int) -> list[str]:
    names = [f"model_{i:02d}" for i in range(count)]
    for name in names:
        write_model(roots["loras"] / "many" / f"{name}.safetensors", {"ss_output_name": name})
    return names


def test_a_scan_outside_a_transaction_writes_from_a_thread_of_its_own(model_roots, monkeypatch):
    monkeypatch.setattr(scanner, "BATCH_SIZE", 3)  # several batches go through the thread
    names = many_models(model_roots, 10)
    writers: list[str] = []
    real_write = RowWriter.write

    def recording_write(self, *args):
        writers.append(threading.current_thread().name)
        real_write(self, *args)

    monkeypatch.setattr(RowWriter, "write", recording_write)
    result = scan_folder(get_roots())
    assert result.added == 10
    assert sorted(ModelFile.objects.values_list("name", flat=True)) == names
    assert set(writers) == {"scan-row-writer"} and len(writers) == 4


def test_inside_a_transaction_the_rows_are_written_in_it():
    outside = writer_for_scan()
    outside.close()
    assert isinstance(outside, WriterThread)
    with transaction.atomic():
        assert isinstance(writer_for_scan(), RowWriter)


def test_an_error_in_the_writer_thread_ends_the_scan_with_that_error(model_roots, monkeypatch):
    monkeypatch.setattr(scanner, "BATCH_SIZE", 2)
    many_models(model_roots, 7)
    real_write = RowWriter.write
    calls = []

    def failing_second_write(self, *args):
        calls.append(1)
        if len(calls) == 2:
            raise DatabaseError("disk I/O error")
        real_write(self, *args)

    monkeypatch.setattr(RowWriter, "write", failing_second_write)
    with pytest.raises(DatabaseError, match="disk I/O error"):
        scan_folder(get_roots())
    assert ModelFile.objects.count() == 2  # the first batch, written before the error
    assert not [t for t in threading.enumerate() if t.name == "scan-row-writer"]


def test_a_batch_over_the_parameter_limit_is_split_into_several_inserts(model_roots, monkeypatch):
    names = many_models(model_roots, 5)
    statements = []
    real_inserts = RowWriter._inserts

    def small_inserts(self, rows):
        self.max_params = 2 * len(rows[0])  # two rows a statement
        result = real_inserts(self, rows)
        statements.extend(result)
        return result

    monkeypatch.setattr(RowWriter, "_inserts", small_inserts)
    scan_folder(get_roots())
    assert len(statements) == 3
    assert sorted(ModelFile.objects.values_list("name", flat=True)) == names


def test_dates_and_json_fields_are_stored_exactly(model_roots):
    path = write_model(model_roots["loras"] / "dated.safetensors", {"ss_base_model_version": "sd_v1"})
    (model_roots["loras"] / "dated.civitai.info").write_text(
        '{"modelId": 7, "id": 8, "trainedWords": ["pep", "carrot"], "model": {"name": "Dated"}}'
    )
    scan_folder(get_roots())
    model = ModelFile.objects.get(name="dated")
    mtime_ns = path.stat().st_mtime_ns
    assert model.modified_at == datetime.fromtimestamp(mtime_ns / 1e9, tz=UTC)
    assert model.mtime_ns == mtime_ns
    assert model.trained_words == ["pep", "carrot"]
    assert model.sidecars == ["dated.civitai.info"]
    assert model.tags == []
    assert model.metadata == {"ss_base_model_version": "sd_v1"}
    assert (model.base_model, model.civitai_model_id, model.civitai_version_id) == ("SD 1.5", 7, 8)


def test_a_closed_writer_thread_has_ended_and_closing_it_again_does_nothing():
    writer = WriterThread()
    writer.close()
    writer.close()
    assert not [t for t in threading.enumerate() if t.name == "scan-row-writer"]
