"""Moving files so that no reader ever meets half of one under its final name."""

from __future__ import annotations

import errno
import functools
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

# Hidden, so that neither the scanner nor ComfyUI lists a copy still being written.
PARTIAL_SUFFIX = ".mm-moving"
# Bytes per step of a copy: how often it reports progress and can be stopped.
COPY_CHUNK = 32 << 20
# A copy's step may not work between these two files (macOS's sendfile wants a socket): read and write.
NO_SENDFILE = {errno.EINVAL, errno.ENOSYS, errno.ENOTSOCK, errno.EOPNOTSUPP, errno.ENOTSUP}


def move_whole(src: Path, dst: Path, *, on_copied: Callable[[int], object] | None = None) -> None:
    """Moves `src` (a file, a folder or a symlink) to `dst`, which must not exist.

    On one disk this is a rename. Across disks, where shutil.move would write the copy under its final
    name for as long as it takes, the copy is written under a hidden name, flushed, and renamed into place
    when whole; the source is removed only then. ComfyUI, a scan running meanwhile or a crash (the server
    stopped mid-copy, the power lost) never meet half a model where the model should be, and never lose
    the only copy. `on_copied(n)` hears of each step of a copy; what it raises stops the move, and the
    hidden copy is removed.
    """
    if src.is_symlink() and src.parent != dst.parent and not os.path.isabs(text := os.readlink(src)):
        _move_relative_link(src, dst, text)
        return
    try:
        os.rename(src, dst)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    partial = dst.with_name(f".{dst.name[:200]}{PARTIAL_SUFFIX}")
    remove(partial)  # what a move killed mid-copy left
    try:
        if src.is_symlink():
            os.symlink(os.readlink(src), partial)
        elif src.is_dir():
            copy = functools.partial(_copy_flushed, on_copied=on_copied)
            shutil.copytree(src, partial, symlinks=True, copy_function=copy)
            for folder, _dirs, _files in os.walk(partial):
                fsync_dir(Path(folder))
        else:
            _copy_flushed(src, partial, on_copied=on_copied)
        os.rename(partial, dst)
    except BaseException:
        remove(partial)
        raise
    fsync_dir(dst.parent)
    try:
        remove(src)
    except OSError:
        remove(dst)  # a source that cannot go (a read-only folder) leaves one copy, not two
        raise


def _move_relative_link(src: Path, dst: Path, text: str) -> None:
    """A relative link is read from its own folder: moved as it is to another, it would lead elsewhere
    or nowhere. It is written anew, relative to its new folder, so that it leads where it led. Folders
    are taken as they really are, since the system reads a link's `..` from the real folder."""
    target = os.path.normpath(os.path.join(os.path.realpath(src.parent), text))
    partial = dst.with_name(f".{dst.name[:200]}{PARTIAL_SUFFIX}")
    remove(partial)
    os.symlink(os.path.relpath(target, os.path.realpath(dst.parent)), partial)
    try:
        os.rename(partial, dst)
    except BaseException:
        remove(partial)
        raise
    try:
        src.unlink()
    except OSError:
        remove(dst)  # as for a file: one link, not two
        raise


def remove(path: Path) -> None:
    """Removes a file, a symlink or a whole folder; nothing there is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def fsync_dir(path: Path) -> None:
    """Makes a folder's entries (a file just renamed into it) survive a power loss."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_flushed(
    src: str | Path, dst: str | Path, *, on_copied: Callable[[int], object] | None = None
) -> str | Path:
    """Copies a file's bytes, mode and times (as shutil.copy2 does, in steps) and flushes it to the disk."""
    with open(src, "rb") as source, open(dst, "wb") as target:
        for copied in _copy_steps(source.fileno(), target.fileno()):
            if on_copied is not None:
                on_copied(copied)
        os.fsync(target.fileno())
    shutil.copystat(src, dst)
    return dst


def _copy_steps(in_fd: int, out_fd: int) -> Iterator[int]:
    try:
        while sent := os.sendfile(out_fd, in_fd, None, COPY_CHUNK):
            yield sent
        return
    except OSError as exc:
        if exc.errno not in NO_SENDFILE:
            raise
    # Both files' offsets are where sendfile stopped: the rest is read and written.
    while data := os.read(in_fd, 1 << 20):
        view = memoryview(data)
        while view:
            view = view[os.write(out_fd, view) :]
        yield len(data)
