"""SHA256 of model files: large reads, one file at a time, cached by (device, inode, size, mtime_ns)."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
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
    """Reads with 8 MiB buffers (hashlib releases the GIL for them), reporting bytes done.

    Only a regular file is read: a pipe put under a model's name since the scan would hold the job up
    (opening it waits for a writer, unless opened without blocking), and a device would never end."""
    digest = hashlib.sha256()
    buffer = bytearray(READ_SIZE)
    view = memoryview(buffer)
    done = 0
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with open(fd, "rb", buffering=0) as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        while size := f.readinto(buffer):
            digest.update(view[:size])
            done += size
            on_progress(done)
            if should_stop():
                raise HashStopped
    return digest.hexdigest()


def autov2(sha256: str) -> str:
    return sha256[:10].upper()
