"""Text from files other programs wrote, made fit to show and to store."""

from __future__ import annotations

import codecs
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


def without_nul(value: Any) -> Any:
    """`value` (a str, or JSON data) without NUL characters: no text needs them, and PostgreSQL
    refuses them in text and JSON columns."""
    if isinstance(value, str):
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    return value


def has_nul(value: Any) -> bool:
    """Whether `value` (a str, or JSON data) holds a NUL character anywhere, keys included."""
    return without_nul(value) != value
