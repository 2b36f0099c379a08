"""SHA256 of model files: large reads, one file at a time, cached by (device, inode, size, mtime_ns)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

READ_SIZE = 8 << 20


class HashStopped(Exception):
    pass


def hash_key(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def file_sha256(
    path: Path,
    *,
    on_progress: Callable[[int], None] = lambda done: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> str:
    """Reads with 8 MiB buffers (hashlib releases the GIL for them), reporting bytes done."""
    digest = hashlib.sha256()
    buffer = bytearray(READ_SIZE)
    view = memoryview(buffer)
    done = 0
    with path.open("rb", buffering=0) as f:
        while size := f.readinto(buffer):
            digest.update(view[:size])
            done += size
            on_progress(done)
            if should_stop():
                raise HashStopped
    return digest.hexdigest()


def autov2(sha256: str) -> str:
    return sha256[:10].upper()
