"""Atomic file writes."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def umask_mode(directory: bool = False) -> int:
    """The permissions a new file (``0o666``) or folder (``0o777``) gets under
    the process umask, for files made by :mod:`tempfile`, which are private
    (``0o600``/``0o700``) whatever the umask."""
    mask = os.umask(0o022)  # reading the umask means setting it; restored at once
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def atomic_write(path, write: Callable[[BinaryIO], None]) -> Path:
    """Writes ``path`` with ``write(file)`` into a temporary file in the same
    folder, flushed to disk and renamed into place (``os.replace``).

    A reader sees the previous file or the complete new one, never a partial
    one; an interrupted or failed write leaves no temporary file behind.  Two
    processes writing the same path each write their own temporary file, and
    the last rename wins with a complete file.  The file gets the permissions
    of the umask, like a file made by ``open``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
