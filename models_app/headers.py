"""Reading a safetensors header without touching the tensors (DESIGN.md §6)."""

from __future__ import annotations

import json
import os
import struct
from collections import Counter
from typing import BinaryIO

from models_app.text import fit_to_store, is_fit_to_store

MAX_HEADER_BYTES = 100 * 1024 * 1024


class InvalidHeader(ValueError):
    """The file does not start with a readable safetensors header."""


def _parse_header(raw: bytes) -> dict[str, object]:
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidHeader(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise InvalidHeader("header is not a JSON object")
    return header


def read_safetensors_header(file: BinaryIO, file_size: int) -> dict[str, object]:
    """The whole header JSON: tensor entries plus the optional `__metadata__` str→str map."""
    return _parse_header(_read_header_bytes(file, file_size))


_METADATA_KEY = b'"__metadata__"'
_DECODER = json.JSONDecoder()


def _check_length(length: int, file_size: int) -> None:
    if length > MAX_HEADER_BYTES or length > file_size - 8:
        raise InvalidHeader(f"header length {length} is larger than the file or than 100 MB")


def _read_header_bytes(file: BinaryIO, file_size: int) -> bytes:
    prefix = file.read(8)
    if len(prefix) < 8:
        raise InvalidHeader("file is shorter than the 8-byte header length")
    (length,) = struct.unpack("<Q", prefix)
    _check_length(length, file_size)
    raw = file.read(length)
    if len(raw) < length:
        raise InvalidHeader("header is truncated")
    return raw


FIRST_READ = 64 * 1024


def read_header_bytes_at(path: str, file_size: int) -> bytes:
    """The header bytes of the file at `path` (see read_header_bytes_from)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_header_bytes_from(fd, file_size)
    finally:
        os.close(fd)


def read_header_bytes_from(fd: int, file_size: int) -> bytes:
    """The header bytes of the open file `fd`, in one read for most files: a scan opens thousands, and
    a file object's buffering costs more than the read itself."""
    head = os.read(fd, FIRST_READ)
    if len(head) < 8:
        raise InvalidHeader("file is shorter than the 8-byte header length")
    (length,) = struct.unpack_from("<Q", head)
    _check_length(length, file_size)
    raw = head[8 : 8 + length]
    while len(raw) < length and (more := os.read(fd, length - len(raw))):
        raw += more
    if len(raw) < length:
        raise InvalidHeader("header is truncated")
    return raw


def _metadata_only(raw: bytes) -> tuple[dict[str, object], str] | None:
    """Decodes just the `__metadata__` object, skipping the tensor table (most of a LoRA's header), and
    returns it with its JSON text as it stands in the file.

    A quoted "__metadata__" followed by a colon can only be that key: inside a JSON string its quotes
    would be escaped. Returns None when the fast path does not apply.
    """
    stripped = raw.strip()
    if not (stripped.startswith(b"{") and stripped.endswith(b"}")):
        return None
    at = raw.find(_METADATA_KEY)
    if at == -1:
        return {}, "{}"
    try:
        rest = raw[at + len(_METADATA_KEY) :].decode("utf-8").lstrip()
        if not rest.startswith(":"):
            return None
        rest = rest[1:].lstrip()
        value, end = _DECODER.raw_decode(rest)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return (value, rest[:end]) if isinstance(value, dict) else None


class MetadataJSON(str):
    """The JSON text of a str→str metadata map, ready to store without serializing it again."""


def read_safetensors_metadata_json(file: BinaryIO, file_size: int) -> tuple[dict[str, str], MetadataJSON]:
    """`__metadata__` (non-string values turned into their JSON text) and that map as JSON text."""
    return metadata_json_of_header(_read_header_bytes(file, file_size))


def _is_plain_text_map(metadata: dict[str, object]) -> bool:
    """Whether every value is text and every key and value is fit to store as it is (see fit_to_store).
    Joining the values fails on any that is not a str, so one check covers all: a search of the header
    for the escapes crawled through kohya's metadata, which is full of backslashes."""
    try:
        return is_fit_to_store("".join(metadata.values())) and is_fit_to_store("".join(metadata))  # type: ignore[arg-type]
    except TypeError:
        return False


def metadata_json_of_header(raw: bytes) -> tuple[dict[str, str], MetadataJSON]:
    """`__metadata__` of the header bytes `raw`, as read_safetensors_metadata_json returns it."""
    fast = _metadata_only(raw)
    if fast is not None and _is_plain_text_map(fast[0]):
        return fast[0], MetadataJSON(fast[1])  # type: ignore[return-value]
    # Unusual layout, non-string values, NUL characters, lone surrogates or a broken header: the full
    # parse says which.
    metadata = fit_to_store(fast[0] if fast is not None else _parse_header(raw).get("__metadata__") or {})
    if not isinstance(metadata, dict):
        metadata = {}
    normalized = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    return normalized, MetadataJSON(json.dumps(normalized, ensure_ascii=False))


def read_safetensors_metadata(file: BinaryIO, file_size: int) -> dict[str, str]:
    """Only `__metadata__`, with any non-string value turned into its JSON text."""
    return read_safetensors_metadata_json(file, file_size)[0]


# kohya's ss_base_model_version and modelspec.architecture → the names Civitai uses.
_BASE_MODEL_NAMES = {
    "sd_v1": "SD 1.5",
    "sd_v2": "SD 2.1",
    "sd_v2_768_v": "SD 2.1 768",
    "sdxl_base_v1-0": "SDXL 1.0",
    "sd3": "SD 3",
    "flux1": "Flux.1 D",
    "stable-diffusion-v1": "SD 1.5",
    "stable-diffusion-xl-v1-base": "SDXL 1.0",
    "flux-1-dev": "Flux.1 D",
    "flux-1-schnell": "Flux.1 S",
}


def base_model_from_metadata(metadata: dict[str, str]) -> str:
    raw = metadata.get("ss_base_model_version") or metadata.get("modelspec.architecture", "").split("/")[0]
    return _BASE_MODEL_NAMES.get(raw, raw)


def training_tags(metadata: dict[str, str], limit: int = 40) -> list[tuple[str, int]]:
    """The caption tags a kohya LoRA was trained on, most frequent first, with how many captions had
    each: without Civitai info they are the best hint of its trigger words. `ss_tag_frequency` maps each
    dataset folder to {tag: count}; a value that is not that shape gives nothing rather than an error."""
    try:
        folders = json.loads(metadata.get("ss_tag_frequency") or "{}")
    except (TypeError, ValueError):
        return []
    counts: Counter[str] = Counter()
    for tags in folders.values() if isinstance(folders, dict) else ():
        if isinstance(tags, dict):
            counts.update(
                # A tag of a caption file that was not UTF-8 holds half a UTF-16 pair: no page shows that.
                {
                    fit_to_store(tag.strip()): n
                    for tag, n in tags.items()
                    if type(n) is int and n > 0 and tag.strip()
                }
            )
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]
