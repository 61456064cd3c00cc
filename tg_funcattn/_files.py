"""Atomic file writes, the removal of what killed writers left behind, and
``.npy`` arrays read with their size checked before allocating."""
from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import tempfile
import time
import zipfile
from pathlib import Path
from typing import BinaryIO, Callable, Optional

import numpy as np

log = logging.getLogger(__name__)

#: Age in seconds (one week) after which a temporary file or folder whose
#: writer cannot be checked (another host, or a name without the writer) is
#: taken for abandoned.
STALE_AFTER = 7 * 24 * 3600

_HOST = re.sub(r"[^A-Za-z0-9-]", "_", socket.gethostname()) or "localhost"
#: ``<pid>@<host>.<random>[.tmp]`` at the end of a name made with :func:`owner_tag`
_OWNED = re.compile(r"(\d+)@([A-Za-z0-9_-]+)\.[a-z0-9_]+(?:\.tmp)?$")


def owner_tag() -> str:
    """``<pid>@<host>``, put into the names of temporary files and folders so
    that a later run can tell whether their writer still exists."""
    return f"{os.getpid()}@{_HOST}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # a process of another user
        return True
    return True


def is_stale(path) -> bool:
    """Whether the temporary file or folder ``path`` is certainly abandoned:
    its name (made with :func:`owner_tag`) names a process of this host that
    no longer exists, or it was last modified more than :data:`STALE_AFTER`
    seconds ago.  A live writer's files are never stale (a reused pid keeps a
    dead writer's files until they are old).  Processes that share a host
    name are assumed to share one pid namespace (not so for containers with
    the host's name writing into one folder)."""
    path = Path(path)
    owner = _OWNED.search(path.name)
    if owner and owner[2] == _HOST and not _alive(int(owner[1])):
        return True
    try:
        return time.time() - path.lstat().st_mtime > STALE_AFTER
    except FileNotFoundError:  # removed by another process meanwhile
        return False


def remove_stale(folder, pattern: str) -> None:
    """Removes the entries of ``folder`` that match the glob ``pattern`` and
    are stale (:func:`is_stale`): the temporary files and folders of killed
    runs."""
    for path in Path(folder).glob(pattern):
        if not is_stale(path):
            continue
        log.info("removing %s, left behind by a run that was killed", path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)  # another process may be removing it too
            continue
        try:
            path.unlink(missing_ok=True)
        except OSError as error:  # e.g. another user's file in a shared folder
            log.warning("cannot remove %s, left behind by a killed run: %s", path, error)


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
    one; an interrupted or failed write leaves no temporary file behind, and
    the one of a killed process (``<name>.<pid>@<host>.<random>.tmp``) is
    recognised by :func:`is_stale`.  Two processes writing the same path each
    write their own temporary file, and the last rename wins with a complete
    file.  The file gets the permissions of the umask, like a file made by
    ``open``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.{owner_tag()}.", suffix=".tmp")
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


def read_npy(f: BinaryIO, name: str, limit: int, dtype: Optional[np.dtype] = None,
             shape: Optional[tuple] = None) -> np.ndarray:
    """The array of the ``.npy`` stream ``f`` (e.g. a member of an ``.npz``),
    read without pickle, once its header shows ``dtype`` and ``shape`` (any if
    ``None``) and at most ``limit`` bytes of data (what the file can hold); a
    ``ValueError`` naming the array ``name`` otherwise, and nothing allocated:
    a damaged or foreign header cannot make the reader allocate terabytes."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        found_shape, _, found_dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        found_shape, _, found_dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f"'{name}' has .npy format version {version}, expected 1.0 or 2.0")
    if (dtype is not None and found_dtype != dtype) or (shape is not None and found_shape != shape):
        expected = f"{dtype}" if shape is None else f"{dtype} of shape {shape}"
        raise ValueError(f"'{name}' is {found_dtype} of shape {found_shape}, expected {expected}")
    size = int(np.prod(found_shape, dtype=object)) * found_dtype.itemsize
    if size > limit:
        raise ValueError(f"'{name}' claims {size} bytes but the file has {limit}")
    f.seek(0)
    return np.lib.format.read_array(f, allow_pickle=False)


def read_npz_member(archive: zipfile.ZipFile, name: str, dtype: Optional[np.dtype] = None,
                    shape: Optional[tuple] = None) -> np.ndarray:
    """The array ``name`` of an open ``.npz`` archive, read with
    :func:`read_npy` and limited to the member's uncompressed size."""
    info = archive.getinfo(f"{name}.npy")
    with archive.open(info) as f:
        return read_npy(f, name, info.file_size, dtype, shape)
