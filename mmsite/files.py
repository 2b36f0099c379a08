"""Moving files so that no reader ever meets half of one under its final name."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

# Hidden, so that neither the scanner nor ComfyUI lists a copy still being written.
PARTIAL_SUFFIX = ".mm-moving"


def move_whole(src: Path, dst: Path) -> None:
    """Moves `src` (a file, a folder or a symlink) to `dst`, which must not exist.

    On one disk this is a rename. Across disks, where shutil.move would write the copy under its final
    name for as long as it takes, the copy is written under a hidden name, flushed, and renamed into place
    when whole; the source is removed only then. ComfyUI, a scan running meanwhile or a crash (the server
    stopped mid-copy, the power lost) never meet half a model where the model should be, and never lose
    the only copy.
    """
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
            shutil.copytree(src, partial, symlinks=True, copy_function=_copy_flushed)
            for folder, _dirs, _files in os.walk(partial):
                fsync_dir(Path(folder))
        else:
            _copy_flushed(src, partial)
        os.rename(partial, dst)
    except BaseException:
        remove(partial)
        raise
    fsync_dir(dst.parent)
    remove(src)


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


def _copy_flushed(src: str | Path, dst: str | Path) -> str | Path:
    shutil.copy2(src, dst, follow_symlinks=False)
    if not os.path.islink(dst):
        with open(dst, "rb+") as f:
            os.fsync(f.fileno())
    return dst
