"""Read-ahead for scans of files that are not in memory: the first scan after a boot, or of a library
just copied in.

The scanner reads each model's header and sidecars one after the other, so on a cold page cache it
waits on the disk for every file in turn. A couple of threads reading the next few hundred files keep
the disk busy while the scanner parses and writes. When the files are already cached the threads
would only compete with the scanner for the GIL, so they are not started then.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

logger = logging.getLogger("mm.scanner")

THREADS = 2  # more only fought over the GIL on a two-core machine; the disk was already busy
WINDOW = 512  # how many items ahead of the scanner the threads may be
CHUNK = 32  # items per thread task: one task per item cost more than the reads it saved
SAMPLE = 32


def starts_are_cached(paths: Sequence[str], sample: int = SAMPLE) -> bool | None:
    """Whether the first bytes of a sample of `paths` are in the page cache, or None where the
    system cannot tell (no RWF_NOWAIT: not Linux, or a file system without it)."""
    nowait = getattr(os, "RWF_NOWAIT", None)
    if nowait is None or not paths:
        return None
    buffer = bytearray(4096)
    tried = cached = 0
    for path in paths[:: max(1, len(paths) // sample)][:sample]:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.preadv(fd, [buffer], 0, nowait)
            cached += 1
        except BlockingIOError:
            pass
        except OSError:
            return None
        finally:
            os.close(fd)
        tried += 1
    return cached >= tried * 0.9 if tried else None


def read_through(path: str, limit: int) -> None:
    """Reads up to `limit` bytes of the file, for the page cache only."""
    fd = os.open(path, os.O_RDONLY)
    try:
        left = limit
        while left > 0 and (block := os.read(fd, min(left, 1 << 20))):
            left -= len(block)
    finally:
        os.close(fd)


class ReadAhead[Item]:
    """Runs `touch` on the items ahead of the caller's position, on background threads.

    `touch` only brings files into the page cache: what it reads is dropped, and what it cannot read is
    ignored, since the caller reads everything again and reports its own errors.
    """

    def __init__(
        self, items: Sequence[Item], touch: Callable[[Item], object], *, enabled: bool = True
    ) -> None:
        self._items = items
        self._touch = touch
        self._position = 0  # items the caller has reached
        self._submitted = 0
        self._pool = ThreadPoolExecutor(THREADS, thread_name_prefix="scan-read-ahead") if enabled else None

    def advance(self) -> None:
        """The caller moves on to its next item: keep the WINDOW items from there on being read."""
        if self._pool is None:
            return
        end = min(len(self._items), self._position + WINDOW)
        self._position += 1
        while self._submitted < end:
            chunk = self._items[self._submitted : self._submitted + CHUNK]
            self._pool.submit(self._touch_all, chunk)
            self._submitted += len(chunk)

    def _touch_all(self, chunk: Sequence[Item]) -> None:
        for item in chunk:
            try:
                self._touch(item)
            except Exception as exc:  # the scanner reads it again and reports it
                logger.debug("read-ahead of %s failed: %s", item, exc)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ReadAhead[Item]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
