"""On-disk cache of eigenbases, keyed by a hash of the geometry."""
from __future__ import annotations

import hashlib
import logging
import zipfile
import zlib
from pathlib import Path
from typing import Optional

import numpy as np

from .._files import atomic_write, read_npz_member, remove_stale
from .eigen import Eigenbasis

log = logging.getLogger(__name__)

#: Bumped whenever the stored content or its computation changes meaning.
FORMAT_VERSION = 2
#: Largest entry of ``evecs^T diag(mass) evecs - I`` an entry read back may
#: have (float32 storage keeps it near 1e-7; a damaged or foreign basis is far off).
ORTHONORMAL_ATOL = 1e-3
#: What reading a damaged or foreign entry can raise (zlib.error,
#: NotImplementedError and RuntimeError: a corrupt compressed member, a
#: compression method zipfile lacks, an encrypted member).
_UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error,
               NotImplementedError, RuntimeError)


class EigenbasisCache:
    """Eigenbases stored as ``<root>/<key[:2]>/<key>.npz``.

    * The key is a SHA-256 of the exact bytes of ``pos`` and ``face`` and of
      the computation's settings (``config``), not of the number of
      eigenpairs: an entry with more eigenpairs serves every request for fewer.
    * A hit is accepted only if the stored ``pos`` and ``face`` equal the
      query exactly (a hash collision, or a file copied under another name,
      never returns another shape's basis).
    * Entries are written to a temporary file in the same folder and renamed
      into place, so an interrupted write leaves no partial entry (the
      temporary file of a killed writer, beside the entries, is removed when
      a cache is opened); a corrupt, truncated or foreign file, or one whose
      eigenvectors are not orthonormal in its masses (within
      :data:`ORTHONORMAL_ATOL`), is reported in the log and treated as a miss.
    * Eigenvectors and masses are stored as float32, eigenvalues as float64.
    """

    def __init__(self, root):
        self.root = Path(root)
        remove_stale(self.root, "*/*.tmp")  # temporary files of writers that were killed

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
        fewer eigenpairs stored, another geometry, or an unreadable entry).

        Every array's dtype and shape are checked against what :meth:`store`
        writes, from its ``.npy`` header before anything is allocated; an
        entry that differs in anything (a foreign or damaged file, complex or
        text values, a header claiming more bytes than the file holds) is
        reported in the log and treated as a miss, so it is recomputed and
        overwritten.
        """
        path = self.path(key)
        if not path.exists():
            return None
        n = pos.shape[0]
        stored_face = np.zeros((0,), np.int64) if face is None else face
        try:
            with zipfile.ZipFile(path) as archive:
                def read(name, dtype, shape=None):
                    return read_npz_member(archive, name, np.dtype(dtype), shape)

                version = read("version", np.int64, ())
                if int(version) != FORMAT_VERSION:
                    raise ValueError(f"format version {int(version)}, expected {FORMAT_VERSION}")
                if not (np.array_equal(read("pos", pos.dtype, pos.shape), pos) and np.array_equal(
                        read("face", stored_face.dtype, stored_face.shape), stored_face)):
                    log.warning("cache entry %s holds another geometry under the same key; "
                                "recomputing", path)
                    return None
                evals = read("evals", np.float64)
                if evals.ndim != 1 or not 1 <= evals.shape[0] <= n:
                    raise ValueError(f"'evals' has shape {evals.shape}, expected [K] with "
                                     f"1 <= K <= {n}")
                evecs = read("evecs", np.float32, (n, evals.shape[0]))
                mass = read("mass", np.float32, (n,))
            if not (np.isfinite(evals).all() and np.isfinite(evecs).all() and np.isfinite(mass).all()):
                raise ValueError("non-finite values")
            wide = evecs.astype(np.float64)
            gram = wide.T @ (mass.astype(np.float64)[:, None] * wide)
            deviation = np.abs(gram - np.eye(gram.shape[0])).max()
            if deviation > ORTHONORMAL_ATOL:
                raise ValueError(f"eigenvectors not orthonormal in the stored masses (an entry of "
                                 f"evecs^T M evecs - I is {deviation:.3g})")
        except _UNREADABLE as error:
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
