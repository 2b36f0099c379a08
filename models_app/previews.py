"""Preview images beside models: checked to be images, stored as `<base>.webp` (DESIGN.md §5)."""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from pathlib import Path

import requests
import urllib3
from PIL import Image, ImageOps, UnidentifiedImageError

from downloads_app.engine import USER_AGENT, describe_request_error

MAX_PREVIEW_BYTES = 20 * 1024 * 1024
MAX_PREVIEW_SIDE = 1024


class PreviewError(ValueError):
    """A message for the user: the file is not an image we accept."""


def fetch_image(url: str) -> bytes:
    """The image at `url` (one of Civitai's), read up to the size a preview may have."""
    try:
        with requests.get(url, timeout=(10, 30), stream=True, headers={"User-Agent": USER_AGENT}) as response:
            response.raise_for_status()
            data = response.raw.read(MAX_PREVIEW_BYTES + 1, decode_content=True)
    except requests.RequestException as exc:
        raise PreviewError(f"The image could not be fetched: {describe_request_error(exc)}.") from None
    except (urllib3.exceptions.HTTPError, OSError):  # the body, read through urllib3, broke off
        raise PreviewError("The image could not be fetched: the connection broke off.") from None
    if len(data) > MAX_PREVIEW_BYTES:
        raise PreviewError("The image is larger than 20 MB.")
    return data


def save_preview(data: bytes, model_path: Path) -> Path:
    """Verifies `data` is an image and writes it as `<base>.webp` (at most 1024 px a side), atomically."""
    if len(data) > MAX_PREVIEW_BYTES:
        raise PreviewError(f"The image is {len(data) / 1048576:.0f} MB; previews may be 20 MB at most.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                probe.verify()
            with Image.open(io.BytesIO(data)) as opened:
                opened.seek(0)
                image = ImageOps.exif_transpose(opened)
                image.thumbnail((MAX_PREVIEW_SIDE, MAX_PREVIEW_SIDE), Image.Resampling.LANCZOS)
                if image.mode not in ("RGB", "RGBA"):
                    image = image.convert(
                        "RGBA" if "transparency" in image.info or "A" in image.getbands() else "RGB"
                    )
                buffer = io.BytesIO()
                image.save(buffer, "WEBP", quality=88, method=4)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PreviewError("The image has too many pixels to be opened safely.") from None
    except UnidentifiedImageError:
        raise PreviewError("That file is not an image: choose a PNG, JPEG, WebP, GIF or AVIF.") from None
    except (OSError, SyntaxError, ValueError):
        raise PreviewError("That image is damaged or cut short: it cannot be read.") from None
    base = model_path if model_path.is_dir() else model_path.with_suffix("")
    target = base.parent / (base.name + ".webp")
    write_atomically(target, buffer.getvalue())
    return target


def write_atomically(path: Path, data: bytes) -> None:
    """Writes to a temporary name in the same folder, then renames: readers never see half a file."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(temp, 0o644)  # mkstemp makes 0600; sidecars are read by ComfyUI and other tools too
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
