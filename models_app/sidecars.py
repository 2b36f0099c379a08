"""The files other tools keep beside a model (DESIGN.md §5): read them all, so switching tools loses nothing.

Functions here take the names already listed in the model's folder, so finding sidecars costs no
extra system call; only sidecars that exist are opened.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from models_app.text import LARGEST_STORED_NUMBER, decode_text, fit_to_store, whole_number

logger = logging.getLogger("mm.sidecars")

IMAGE_EXTENSIONS = (".webp", ".png", ".jpg", ".jpeg", ".gif", ".avif")
VIDEO_EXTENSIONS = (".mp4", ".webm")
PREVIEW_SUFFIXES = (
    *IMAGE_EXTENSIONS,
    *(".preview" + ext for ext in IMAGE_EXTENSIONS),
    *VIDEO_EXTENSIONS,
    *(".preview" + ext for ext in VIDEO_EXTENSIONS),
)
DESCRIPTION_SUFFIXES = (".md", ".txt")
INFO_SUFFIXES = (".civitai.info", ".metadata.json", ".cm-info.json", ".json", ".sha256")
SIDECAR_SUFFIXES = (*PREVIEW_SUFFIXES, *DESCRIPTION_SUFFIXES, *INFO_SUFFIXES)
MAX_SIDECAR_BYTES = 20 * 1024 * 1024
MAX_NSFW_LEVEL = 32767  # ModelFile.nsfw_level is a PositiveSmallIntegerField


@dataclass
class SidecarInfo:
    """What the sidecars of one model say, merged (Civitai Helper first, then Lora-Manager, Stability
    Matrix, A1111)."""

    files: list[str] = field(default_factory=list)
    preview: str = ""
    description: str = ""
    base_model: str = ""
    trained_words: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    civitai_model_id: int | None = None
    civitai_version_id: int | None = None
    civitai_name: str = ""
    sha256: str = ""
    nsfw_level: int = 0
    notes: str = ""

    def fill(self, **values: Any) -> None:
        """Sets each value the fields do not have yet, so earlier (preferred) sources win. Text is taken
        only as text: another tool's file may hold a list or an object where a name belongs."""
        for name, value in values.items():
            current = getattr(self, name)
            if value and not current and (isinstance(value, str) or not isinstance(current, str)):
                setattr(self, name, value)


def model_base(model_name: str, *, is_dir: bool = False) -> str:
    """The name a model's sidecars start with: its file name without the extension."""
    return model_name if is_dir else model_name.rsplit(".", 1)[0]


class FolderSidecars:
    """The sidecars of every model in one folder, found in one pass over its listing.

    A scan looks up each model's sidecars with one dict access instead of trying every suffix on every
    model: most models have none, and a folder holds far fewer sidecars than suffixes × models.
    """

    def __init__(self, names: Iterable[str]) -> None:
        by_base: dict[str, list[tuple[int, str]]] = {}
        for name in names:
            if name.endswith(SIDECAR_SUFFIXES):
                for order, suffix in enumerate(SIDECAR_SUFFIXES):
                    if name.endswith(suffix):
                        by_base.setdefault(name[: -len(suffix)], []).append((order, name))
        self._by_base = by_base

    def of(self, model_name: str, *, is_dir: bool = False) -> list[str]:
        """The sidecars of `model_name`, in SIDECAR_SUFFIXES order."""
        found = self._by_base.get(model_base(model_name, is_dir=is_dir))
        return [name for _, name in sorted(found) if name != model_name] if found else []


def sidecar_names(model_name: str, names: Iterable[str], *, is_dir: bool = False) -> list[str]:
    """The sidecars of `model_name` among `names` (the folder's listing), in SIDECAR_SUFFIXES order."""
    return FolderSidecars(names).of(model_name, is_dir=is_dir)


def strip_front_matter(text: str) -> tuple[str, str]:
    """Splits `---\\nyaml\\n---\\n` front matter (the original plugin writes it) from the markdown body."""
    if text.startswith("---\n") or text.startswith("---\r\n"):
        end = text.find("\n---", 3)
        if end != -1:
            after = text.find("\n", end + 4)
            body = "" if after == -1 else text[after + 1 :]
            return text[: end + 4], body
    return "", text


def _read_text(path: str | os.PathLike[str]) -> str:
    """The file's text (see decode_text), or "" when it is too large to be a sidecar. Plain descriptor
    reads: a scan reads thousands of these, and a text file object costs more than the read. A pipe or
    a folder under a sidecar's name reads as "": opening a pipe without O_NONBLOCK waits for a writer,
    and the scan with it."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        size = st.st_size
        if size > MAX_SIDECAR_BYTES or not stat.S_ISREG(st.st_mode):
            return ""
        chunks = []
        while size > 0 and (chunk := os.read(fd, size)):
            chunks.append(chunk)
            size -= len(chunk)
    finally:
        os.close(fd)
    return decode_text(b"".join(chunks))


def read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON object in the file, or {} when it holds none."""
    text = _read_text(path)
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        logger.warning("ignoring %s: not valid JSON", path)
        return {}
    if "\\u0000" in text or "\\ud" in text or "\\uD" in text:  # escapes no column takes as they decode
        data = fit_to_store(data)
    return data if isinstance(data, dict) else {}


def _int_or_none(value: object) -> int | None:
    """An id as the file gives it, a number or its digits, if it is one a database column can hold:
    a hand-edited file's 1e30 or -1 would otherwise fail the writing of a whole batch of rows."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 <= value <= LARGEST_STORED_NUMBER else None
    return whole_number(value) if isinstance(value, str) else None


def _nsfw_level(value: object) -> int:
    """Civitai's levels are 1 to 32; a larger one is kept as the most explicit the column holds."""
    return min(_int_or_none(value) or 0, MAX_NSFW_LEVEL)


def mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _words(value: object) -> list[str]:
    if isinstance(value, str):
        return [w.strip() for w in value.split(",") if w.strip()]
    if isinstance(value, list):
        return [str(w).strip() for w in value if isinstance(w, str | int | float) and str(w).strip()]
    return []


def _joined_names(*names: object) -> str:
    return " – ".join(n for n in names if isinstance(n, str) and n)


def _primary_sha256(files: object) -> str:
    if not isinstance(files, list):
        return ""
    for f in sorted(files, key=lambda f: not (isinstance(f, dict) and f.get("primary"))):
        if isinstance(f, dict) and isinstance(sha := mapping(f.get("hashes")).get("SHA256"), str):
            return sha
    return ""


def _preview_nsfw_level(images: object) -> int:
    """The level of the first image, which is the one tools save as the preview."""
    if not isinstance(images, list) or not images or not isinstance(images[0], dict):
        return 0
    return _nsfw_level(images[0].get("nsfwLevel"))


def _read_civitai_info(info: SidecarInfo, data: dict[str, Any]) -> None:
    model = mapping(data.get("model"))
    info.fill(
        base_model=data.get("baseModel"),
        trained_words=_words(data.get("trainedWords")),
        tags=_words(model.get("tags")),
        civitai_model_id=_int_or_none(data.get("modelId")),
        civitai_version_id=_int_or_none(data.get("id")),
        civitai_name=_joined_names(model.get("name"), data.get("name")),
        sha256=_primary_sha256(data.get("files")),
        nsfw_level=_preview_nsfw_level(data.get("images")),
    )


def _read_lora_manager(info: SidecarInfo, data: dict[str, Any]) -> None:
    civitai = mapping(data.get("civitai"))
    info.fill(
        base_model=data.get("base_model") or civitai.get("baseModel"),
        trained_words=_words(civitai.get("trainedWords")),
        tags=_words(data.get("tags")),
        civitai_model_id=_int_or_none(civitai.get("modelId")),
        civitai_version_id=_int_or_none(civitai.get("id")),
        civitai_name=data.get("model_name"),
        sha256=data.get("sha256"),
        nsfw_level=_nsfw_level(data.get("preview_nsfw_level")),
        notes=data.get("notes"),
    )


def _read_stability_matrix(info: SidecarInfo, data: dict[str, Any]) -> None:
    info.fill(
        base_model=data.get("BaseModel"),
        trained_words=_words(data.get("TrainedWords")),
        tags=_words(data.get("Tags")),
        civitai_model_id=_int_or_none(data.get("ModelId")),
        civitai_version_id=_int_or_none(data.get("VersionId")),
        civitai_name=_joined_names(data.get("ModelName"), data.get("VersionName")),
        sha256=mapping(data.get("Hashes")).get("SHA256"),
    )


def _read_a1111(info: SidecarInfo, data: dict[str, Any]) -> None:
    info.fill(
        base_model=data.get("sd version"),
        trained_words=_words(data.get("activation text")),
        notes=data.get("notes"),
        description=data.get("description"),
    )


def read_sidecars(
    folder: str | os.PathLike[str], model_name: str, names: Iterable[str], *, is_dir: bool = False
) -> SidecarInfo:
    """Reads every sidecar of the model `folder/model_name`; a broken sidecar is logged and skipped.
    Paths are joined as text: a scan reads thousands of sidecars, and Path objects cost more."""
    folder = os.fspath(folder)
    files = sidecar_names(model_name, names, is_dir=is_dir)
    info = SidecarInfo(files=files)
    base = model_base(model_name, is_dir=is_dir)
    present = set(files)
    info.preview = next((base + s for s in PREVIEW_SUFFIXES if base + s in present), "")
    readers = (
        (".civitai.info", _read_civitai_info),
        (".metadata.json", _read_lora_manager),
        (".cm-info.json", _read_stability_matrix),
        (".json", _read_a1111),
    )
    try:
        for suffix in DESCRIPTION_SUFFIXES:
            if base + suffix in present:
                text = _read_text(os.path.join(folder, base + suffix))
                info.description = strip_front_matter(text)[1].strip()
                break
        for suffix, reader in readers:
            if base + suffix in present:
                reader(info, read_json(os.path.join(folder, base + suffix)))
        if base + ".sha256" in present:
            info.fill(sha256=(_read_text(os.path.join(folder, base + ".sha256")).split() or [""])[0])
    except OSError as exc:
        logger.warning("could not read the sidecars of %s: %s", os.path.join(folder, model_name), exc)
    info.sha256 = info.sha256.strip().lower()
    return info
