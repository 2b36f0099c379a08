"""Text from files other programs wrote, made fit to show and to store."""

from __future__ import annotations

import codecs
from collections.abc import Callable
from typing import Any

# Windows editors mark UTF-8 with a BOM, and Notepad's "Unicode" is UTF-16 with one.
_BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def decode_text(data: bytes) -> str:
    """The text of `data`: UTF-8, or whatever its byte-order mark says, with universal newlines."""
    encoding = next((name for bom, name in _BYTE_ORDER_MARKS if data.startswith(bom)), "utf-8")
    text = without_nul(data.decode(encoding, errors="replace"))
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


# The largest number a database integer column holds (a BigIntegerField's, on SQLite and PostgreSQL).
LARGEST_STORED_NUMBER = 2**63 - 1


def whole_number(text: str) -> int | None:
    """`text` (a form field, a header, a part of a link) as a whole number fit to store, or None.
    str.isdigit() alone lets "²" through, which int() refuses, and numbers no column can hold."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        return None
    number = int(text)
    return number if number <= LARGEST_STORED_NUMBER else None


def without_nul(value: Any) -> Any:
    """`value` (a str, or JSON data) without NUL characters: no text needs them, and PostgreSQL
    refuses them in text and JSON columns."""
    return _each_text(value, _drop_nul)


def fit_to_store(value: Any) -> Any:
    """`value` (a str, or JSON data) as every database column takes it: without NUL characters, and with
    each lone UTF-16 surrogate (JSON's "\\udce9", which Python's json.dumps writes for a file name that
    is not UTF-8, as in a kohya LoRA's dataset folders) made a replacement character. No UTF-8 encoder,
    SQLite's driver or PostgreSQL's, takes such a surrogate."""
    return _each_text(value, _fit_text)


def _each_text(value: Any, change: Callable[[str], str]) -> Any:
    """`value` with `change` applied to each text in it, keys included."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {_each_text(k, change): _each_text(v, change) for k, v in value.items()}
    if isinstance(value, list):
        return [_each_text(v, change) for v in value]
    return value


def _drop_nul(text: str) -> str:
    return text.replace("\x00", "") if "\x00" in text else text


def _fit_text(text: str) -> str:
    text = _drop_nul(text)
    if text.isascii() or _encodes(text):
        return text
    try:  # the bytes of a name that was not UTF-8: one replacement character each
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # any other half pair
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_fit_to_store(text: str) -> bool:
    """Whether fit_to_store would leave `text` as it is; at once for ASCII text (Python knows it is)."""
    return "\x00" not in text and (text.isascii() or _encodes(text))


def has_nul(value: Any) -> bool:
    """Whether `value` (a str, or JSON data) holds a NUL character anywhere, keys included."""
    return without_nul(value) != value
