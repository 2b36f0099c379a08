"""Preview thumbnails, made once and kept in a cache keyed by (path, size, mtime)."""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path

from django.conf import settings
from PIL import Image, ImageOps

THUMBNAIL_SIZE = 512
# Past this many pixels Pillow's decoder is a denial-of-service risk; such a "preview" is refused.
Image.MAX_IMAGE_PIXELS = 64_000_000


class ThumbnailError(ValueError):
    """The preview is not an image Pillow can read."""


def thumbnail_path(source: Path) -> Path:
    st = source.stat()
    if not stat.S_ISREG(st.st_mode):  # Pillow would wait forever on a pipe named like an image
        raise ThumbnailError("The preview is not a file.")
    key = hashlib.sha256(f"{source}|{st.st_size}|{st.st_mtime_ns}|{THUMBNAIL_SIZE}".encode()).hexdigest()
    return Path(settings.MM_THUMBNAIL_DIR) / key[:2] / f"{key}.webp"


def get_thumbnail(source: Path) -> Path:
    """The cached WebP thumbnail of `source`, made now if missing (written to a temp name, then renamed,
    so a reader never sees half a file)."""
    target = thumbnail_path(source)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with Image.open(source) as opened:
            opened.seek(0)
            image = ImageOps.exif_transpose(opened)
            image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.LANCZOS)
            if image.mode not in ("RGB", "RGBA"):
                image = image.convert(
                    "RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB"
                )
            fd, temp_name = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    image.save(f, "WEBP", quality=82, method=4)
                os.replace(temp_name, target)
            except BaseException:
                Path(temp_name).unlink(missing_ok=True)
                raise
    except (OSError, Image.DecompressionBombError, ValueError) as exc:
        raise ThumbnailError(f"{source.name} is not a readable image: {exc}") from None
    return target
