from __future__ import annotations

import io
import json
import struct

import pytest

from models_app.headers import (
    FIRST_READ,
    InvalidHeader,
    base_model_from_metadata,
    metadata_json_of_header,
    read_header_bytes_at,
    read_safetensors_header,
    read_safetensors_metadata,
    read_safetensors_metadata_json,
    training_tags,
)
from tests.model_files import REFERENCE, safetensors_bytes

TINY = REFERENCE / "safetensors" / "tiny_kohya_lora.safetensors"


def test_it_reads_the_kohya_metadata_of_a_real_header():
    data = TINY.read_bytes()
    metadata = read_safetensors_metadata(io.BytesIO(data), len(data))
    expected = json.loads((REFERENCE / "safetensors" / "lora_metadata.json").read_text())
    assert metadata == expected
    assert metadata["ss_output_name"] == "Pepper__Carrot"
    assert base_model_from_metadata(metadata) == "SDXL 1.0"


def test_the_training_tags_of_a_real_lora_are_its_commonest_caption_tags():
    data = TINY.read_bytes()
    tags = training_tags(read_safetensors_metadata(io.BytesIO(data), len(data)))
    assert tags[:4] == [("1girl", 96), ("brown hair", 75), ("hat", 63), ("solo", 63)]
    assert len(tags) == 40


def test_training_tags_add_up_across_dataset_folders_and_ignore_what_is_not_a_count():
    frequency = {"10_pepper": {"witch": 3, " cat ": 2, "odd": "7", "": 4}, "5_reg": {"cat": 1}, "x": [1]}
    assert training_tags({"ss_tag_frequency": json.dumps(frequency)}) == [("cat", 3), ("witch", 3)]
    for broken in ("not json", "[1, 2]", "null", '{"img": "hat"}'):
        assert training_tags({"ss_tag_frequency": broken}) == []
    assert training_tags({}) == []


def test_a_file_without_metadata_has_an_empty_map():
    data = safetensors_bytes()
    assert read_safetensors_metadata(io.BytesIO(data), len(data)) == {}
    assert "w" in read_safetensors_header(io.BytesIO(data), len(data))


def test_a_truncated_header_is_refused():
    data = TINY.read_bytes()[:500]
    with pytest.raises(InvalidHeader, match="larger than the file"):
        read_safetensors_header(io.BytesIO(data), len(data))


def test_a_header_cut_short_while_reading_is_refused():
    data = TINY.read_bytes()
    with pytest.raises(InvalidHeader, match="truncated"):
        read_safetensors_header(io.BytesIO(data[:500]), len(data))


def test_a_header_larger_than_100_mb_is_refused_without_reading_it():
    data = struct.pack("<Q", 200 * 1024 * 1024) + b"{}"
    with pytest.raises(InvalidHeader, match="100 MB"):
        read_safetensors_header(io.BytesIO(data), 300 * 1024 * 1024)


def test_garbage_is_refused():
    for data in (b"", b"1234", struct.pack("<Q", 4) + b"\xff\xfe{}", struct.pack("<Q", 2) + b"[]"):
        with pytest.raises(InvalidHeader):
            read_safetensors_header(io.BytesIO(data + b"\0" * 8), len(data) + 8)


def test_non_string_metadata_values_become_json_text():
    data = safetensors_bytes({"ss_tag_frequency": {"a": 1}})  # type: ignore[dict-item]
    assert read_safetensors_metadata(io.BytesIO(data), len(data)) == {"ss_tag_frequency": '{"a": 1}'}


def test_nul_characters_are_dropped_from_the_metadata_and_its_stored_json():
    data = safetensors_bytes({"ss_output_name": "pep\u0000per", "ss_tag_frequency": '{"a\u0000": 1}'})
    metadata, text = read_safetensors_metadata_json(io.BytesIO(data), len(data))
    assert metadata == {"ss_output_name": "pepper", "ss_tag_frequency": '{"a": 1}'}
    assert json.loads(text) == metadata
    assert "\\u0000" not in text


def test_lone_surrogates_become_replacement_characters_in_the_metadata_its_json_and_its_tags():
    # kohya writes its metadata with Python's json.dumps: a name that was not UTF-8 (a dataset folder, a
    # caption file's tag) comes out as "\\udce9", which decodes to half a UTF-16 pair that no database,
    # and no page, takes.
    tag = b"caf\xe9".decode("utf-8", "surrogateescape")
    data = safetensors_bytes(
        {"ss_output_name": f"pepper {tag}", "ss_tag_frequency": json.dumps({"img": {tag: 3, "cat": 2}})}
    )
    metadata, text = read_safetensors_metadata_json(io.BytesIO(data), len(data))
    assert metadata["ss_output_name"] == "pepper caf\ufffd"
    assert json.loads(text) == metadata and text.encode("utf-8")
    assert training_tags(metadata) == [("caf\ufffd", 3), ("cat", 2)]


def test_metadata_is_found_wherever_it_is_in_the_header():
    header = b'{"w":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}, "__metadata__" : {"k":"v"}}'
    data = struct.pack("<Q", len(header)) + header + b"\0\0"
    assert read_safetensors_metadata(io.BytesIO(data), len(data)) == {"k": "v"}


def test_a_value_that_mentions_the_key_is_not_taken_for_it():
    data = safetensors_bytes({"note": '"__metadata__": {"fake": "1"}', "real": "yes"})
    assert read_safetensors_metadata(io.BytesIO(data), len(data)) == {
        "note": '"__metadata__": {"fake": "1"}',
        "real": "yes",
    }


def test_a_broken_header_is_reported_even_when_its_metadata_reads():
    header = b'{"__metadata__":{"k":"v"}, "w": [1,2'
    data = struct.pack("<Q", len(header)) + header
    with pytest.raises(InvalidHeader, match="not JSON"):
        read_safetensors_metadata(io.BytesIO(data), len(data))


def test_the_scanner_s_path_reader_gives_the_same_header_in_one_read_or_several(tmp_path):
    long_value = "x" * (FIRST_READ * 2)  # a header longer than the first read
    for name, data in (
        ("tiny.safetensors", TINY.read_bytes()),
        ("long.safetensors", safetensors_bytes({"ss_long": long_value}, b"\0" * 16)),
    ):
        path = tmp_path / name
        path.write_bytes(data)
        raw = read_header_bytes_at(str(path), len(data))
        assert metadata_json_of_header(raw) == read_safetensors_metadata_json(io.BytesIO(data), len(data))
    assert metadata_json_of_header(raw)[0]["ss_long"] == long_value
    (tmp_path / "short.safetensors").write_bytes(b"\x10\0\0")
    with pytest.raises(InvalidHeader, match="8-byte"):
        read_header_bytes_at(str(tmp_path / "short.safetensors"), 3)
    cut = TINY.read_bytes()[:500]
    (tmp_path / "cut.safetensors").write_bytes(cut)
    with pytest.raises(InvalidHeader, match="truncated"):
        read_header_bytes_at(str(tmp_path / "cut.safetensors"), len(TINY.read_bytes()))
