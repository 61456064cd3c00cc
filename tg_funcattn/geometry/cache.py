"""On-disk cache of eigenbases, keyed by a hash of the geometry."""
from __future__ import annotations

import hashlib
import logging
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np

from .._io import atomic_write
from .eigen import Eigenbasis

log = logging.getLogger(__name__)

#: Bumped whenever the stored content or its computation changes meaning.
FORMAT_VERSION = 1


class EigenbasisCache:
    """Eigenbases stored as ``<root>/<key[:2]>/<key>.npz``.

    * The key is a SHA-256 of the exact bytes of ``pos`` and ``face`` and of
      the computation's settings (``config``), not of the number of
      eigenpairs: an entry with more eigenpairs serves every request for fewer.
    * A hit is accepted only if the stored ``pos`` and ``face`` equal the
      query exactly (a hash collision, or a file copied under another name,
      never returns another shape's basis).
    * Entries are written to a temporary file in the same folder and renamed
      into place, so an interrupted write leaves no partial entry; a corrupt,
      truncated or foreign file is reported in the log and treated as a miss.
    * Eigenvectors and masses are stored as float32, eigenvalues as float64.
    """

    def __init__(self, root):
        self.root = Path(root)

    @staticmethod
    def key(pos: np.ndarray, face: Optional[np.ndarray], config: str) -> str:
        digest = hashlib.sha256(f"tg_funcattn-eigenbasis-v{FORMAT_VERSION}|{config}|".encode())
        for array in (pos, face):
            if array is None:
                digest.update(b"none|")
            else:
                array = np.ascontiguousarray(array)
                digest.update(f"{array.dtype.str}{array.shape}|".encode())
                digest.update(array.tobytes())
        return digest.hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def load(self, key: str, pos: np.ndarray, face: Optional[np.ndarray],
             num_eigenpairs: int) -> Optional[Eigenbasis]:
        """The cached basis truncated to ``num_eigenpairs``, or ``None`` (miss,
        fewer eigenpairs stored, another geometry, or an unreadable entry)."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as entry:
                if int(entry["version"]) != FORMAT_VERSION:
                    return None
                same = np.array_equal(entry["pos"], pos) and (
                    entry["face"].size == 0 if face is None else np.array_equal(entry["face"], face))
                if not same:
                    log.warning("cache entry %s holds another geometry under the same key; "
                                "recomputing", path)
                    return None
                evals, evecs, mass = entry["evals"], entry["evecs"], entry["mass"]
            n = pos.shape[0]
            if evecs.ndim != 2 or evecs.shape[0] != n or evals.shape != (evecs.shape[1],) \
                    or mass.shape != (n,):
                raise ValueError(f"inconsistent shapes evals {evals.shape}, evecs {evecs.shape}, "
                                 f"mass {mass.shape} for {n} vertices")
            if not (np.isfinite(evals).all() and np.isfinite(evecs).all() and np.isfinite(mass).all()):
                raise ValueError("non-finite values")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            log.warning("unreadable cache entry %s (%s); recomputing it", path, error)
            return None
        if evecs.shape[1] < num_eigenpairs:
            return None
        return Eigenbasis(evals[:num_eigenpairs], evecs[:, :num_eigenpairs], mass)

    def store(self, key: str, pos: np.ndarray, face: Optional[np.ndarray], basis: Eigenbasis) -> None:
        """Writes an entry atomically; a cache that cannot be written is
        reported in the log and otherwise ignored."""
        path = self.path(key)

        def write(f):
            np.savez(f, version=np.int64(FORMAT_VERSION), pos=pos,
                     face=np.zeros((0,), np.int64) if face is None else face,
                     evals=basis.evals.astype(np.float64),
                     evecs=basis.evecs.astype(np.float32), mass=basis.mass.astype(np.float32))

        try:
            atomic_write(path, write)
        except OSError as error:
            log.warning("could not write the eigenbasis cache entry %s (%s)", path, error)
