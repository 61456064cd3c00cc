"""PyG transforms that attach Laplace-Beltrami eigenbases to graphs."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from .._deprecation import renamed
from ..geometry import eigen as _eigen
from ..geometry.cache import EigenbasisCache
from ..geometry.laplacian import METHODS


class LaplacianEigenbasis(BaseTransform):
    r"""Computes the first ``num_eigenpairs`` (``K``) Laplace-Beltrami eigenpairs of a mesh
    (``data.pos``, ``data.face``) or point cloud (``data.pos`` only) and
    stores

    * ``data.evecs`` ``[N, K]``: eigenfunctions, orthonormal in the mass
      inner product (``evecs^T diag(mass) evecs = I``);
    * ``data.evals`` ``[1, K]``: eigenvalues, ascending (``[B, K]`` once
      batched);
    * ``data.mass`` ``[N]``: lumped vertex areas,

    all float32, ready for ``FunctionalAttention(basis_type="laplacian")`` as
    ``layer(x, batch, mass=data.mass, basis=data.evecs)``.  Operators are
    computed in float64 by :func:`~tg_funcattn.geometry.mesh_eigenbasis`
    (messy meshes are cleaned first; see there).  The eigenvectors are
    deterministic (each signed so that its largest entry is positive), so the
    transform is safe as a ``pre_transform``; random sign flips for
    augmentation belong in :class:`RandomEigenvectorSignFlip` as a
    ``transform``.

    With ``cache_dir``, results are stored on disk under a hash of the exact
    ``pos``/``face`` and the settings (see
    :class:`~tg_funcattn.geometry.cache.EigenbasisCache`): a hit performs no
    eigensolve, an entry with more eigenpairs serves a request for fewer, and a
    corrupt entry is recomputed.

    Args:
        num_eigenpairs (int): Number of eigenpairs ``K`` (formerly ``k``,
            which still works with a ``FutureWarning``).
        cache_dir (str or Path, optional): Folder of the on-disk cache.
            (default: :obj:`None`, no cache)
        method (str, optional): ``"cotan"`` or ``"robust"`` for meshes (see
            :func:`~tg_funcattn.geometry.laplacian`). (default: :obj:`"cotan"`)
        mollify_factor (float, optional): Intrinsic mollification of the
            robust Laplacians. (default: :obj:`1e-5`)
    """

    def __init__(self, num_eigenpairs: Optional[int] = None, cache_dir=None, method: str = "cotan",
                 mollify_factor: float = 1e-5, **deprecated):
        num_eigenpairs = renamed(deprecated, "k", "num_eigenpairs", "LaplacianEigenbasis",
                                 num_eigenpairs, None)
        if deprecated:
            raise TypeError("LaplacianEigenbasis() got an unexpected keyword argument "
                            f"'{next(iter(deprecated))}'")
        if not isinstance(num_eigenpairs, int) or num_eigenpairs < 1:
            raise ValueError(f"'num_eigenpairs' must be a positive int, got {num_eigenpairs!r}")
        if method not in METHODS:
            raise ValueError(f"'method' must be one of {METHODS}, got {method!r}")
        self.num_eigenpairs = num_eigenpairs
        self.method = method
        self.mollify_factor = mollify_factor
        self.cache = None if cache_dir is None else EigenbasisCache(cache_dir)

    @property
    def config(self) -> str:
        return f"method={self.method};mollify={self.mollify_factor!r}"

    def forward(self, data: Data) -> Data:
        if getattr(data, "pos", None) is None:
            raise ValueError("LaplacianEigenbasis needs 'data.pos' (vertex positions [N, 3])")
        pos = data.pos.detach().cpu().numpy()
        face = data.face if "face" in data and data.face is not None else None
        face = None if face is None else face.detach().cpu().numpy().astype(np.int64)
        result = key = None
        if self.cache is not None:
            key = self.cache.key(pos, face, self.config)
            result = self.cache.load(key, pos, face, self.num_eigenpairs)
        if result is None:
            result = _eigen.mesh_eigenbasis(pos, face, self.num_eigenpairs, method=self.method,
                                            mollify_factor=self.mollify_factor)
            if self.cache is not None:
                self.cache.store(key, pos, face, result)
        K = self.num_eigenpairs
        data.evecs = torch.from_numpy(np.ascontiguousarray(result.evecs[:, :K], dtype=np.float32))
        data.evals = torch.from_numpy(np.asarray(result.evals[:K], dtype=np.float32)).unsqueeze(0)
        data.mass = torch.from_numpy(np.asarray(result.mass, dtype=np.float32))
        return data

    def __repr__(self) -> str:
        cache = None if self.cache is None else str(self.cache.root)
        return (f"{self.__class__.__name__}(num_eigenpairs={self.num_eigenpairs}, "
                f"method='{self.method}', cache_dir={cache!r})")


class RandomEigenvectorSignFlip(BaseTransform):
    r"""Multiplies every column of ``data.evecs`` by an independent random sign
    (an augmentation: eigenvectors are defined up to sign).  Use it as a
    ``transform``, never as a ``pre_transform``, so that the flips differ
    between epochs and are not stored.

    Args:
        generator (torch.Generator, optional): Source of randomness.
            (default: :obj:`None`, torch's global generator)
    """

    def __init__(self, generator: Optional[torch.Generator] = None):
        self.generator = generator

    def forward(self, data: Data) -> Data:
        if getattr(data, "evecs", None) is None:
            raise ValueError("RandomEigenvectorSignFlip needs 'data.evecs'; apply "
                             "LaplacianEigenbasis first")
        signs = torch.randint(0, 2, (data.evecs.shape[1],), generator=self.generator) * 2 - 1
        data.evecs = data.evecs * signs.to(data.evecs)
        return data
