"""Laplace-Beltrami operators of triangle meshes and point clouds.

Everything here works in float64 NumPy/SciPy.  ``face`` is in PyG layout
``[3, F]`` (as ``data.face``); positions are ``[N, 3]``.  Both may be torch
tensors or NumPy arrays.
"""
from __future__ import annotations

import logging
from typing import NamedTuple, Tuple

import numpy as np
import scipy.sparse as sp

from .._native import native_output_to_log
from .._optional import require
from .._validation import check_number

log = logging.getLogger(__name__)

METHODS = ("cotan", "robust")
#: Geometric tolerance relative to the bounding-box diagonal: vertices closer
#: than this are one vertex, and a triangle thinner than this (its smallest
#: height) is a segment.  A feature of relative size ``d`` puts weights of
#: order ``1/d^2`` into the Laplacian, and round-off of ``1e-16/d^2`` into
#: its small eigenvalues: about 1e-4 of them at ``d = 1e-6``, all of them
#: near ``d = 1e-9`` (a corner 4e-10 of the diagonal from another vertex
#: turns the first eigenvalues of a sphere into zeros).
TOLERANCE = 1e-6


def as_numpy_pos(pos, name: str = "pos") -> np.ndarray:
    """``pos`` as a float64 ``[N, 3]`` array, with a clear error otherwise."""
    pos = _to_numpy(pos, name)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"'{name}' must have shape [N, 3], got {tuple(pos.shape)}")
    if not np.issubdtype(pos.dtype, np.floating):
        raise TypeError(f"'{name}' must be floating point, got dtype {pos.dtype}")
    pos = pos.astype(np.float64, copy=False)
    check_finite_positions(pos, name)
    return pos


def check_finite_positions(pos, name: str = "pos") -> None:
    """Raises a ``ValueError`` naming ``name`` if a row of ``pos [N, D]`` (a
    NumPy array or a torch tensor) has a NaN or infinite coordinate."""
    bad = ~(pos.isfinite() if hasattr(pos, "isfinite") else np.isfinite(pos)).all(1)
    if bad.any():
        raise ValueError(f"'{name}' has {int(bad.sum())} vertices with NaN or infinite "
                         f"coordinates (first: vertex {int((bad * 1).argmax())}); positions "
                         "must be finite")


def as_numpy_face(face, num_vertices: int) -> np.ndarray:
    """``face`` (PyG layout ``[3, F]``) as an int64 ``[F, 3]`` array, validated."""
    face = _to_numpy(face, "face")
    if face.ndim != 2 or face.shape[0] != 3:
        raise ValueError(f"'face' must have shape [3, num_faces] (PyG layout; transpose an "
                         f"[F, 3] array), got {tuple(face.shape)}")
    if not np.issubdtype(face.dtype, np.integer):
        raise TypeError(f"'face' must be an integer array, got dtype {face.dtype}")
    face = face.T.astype(np.int64)
    if face.size and (face.min() < 0 or face.max() >= num_vertices):
        bad = face[(face < 0) | (face >= num_vertices)][0]
        raise ValueError(f"'face' refers to vertex {int(bad)}, but there are only "
                         f"{num_vertices} vertices")
    return face


def _to_numpy(value, name: str) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensor
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    raise TypeError(f"'{name}' must be a torch.Tensor or numpy array, got {type(value).__name__}")


def face_areas(pos, face):
    """Areas ``[F]`` of the triangles ``face [F, 3]`` (one row per triangle;
    pass ``data.face.T`` for PyG's layout) of ``pos [N, 3]``, both NumPy arrays
    or both torch tensors (the result is of the same kind, dtype and device)."""
    a = pos[face[:, 0]]
    u, v = pos[face[:, 1]] - a, pos[face[:, 2]] - a
    x = u[:, 1] * v[:, 2] - u[:, 2] * v[:, 1]
    y = u[:, 2] * v[:, 0] - u[:, 0] * v[:, 2]
    z = u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]
    return 0.5 * (x * x + y * y + z * z) ** 0.5


def diagonal(pos: np.ndarray) -> float:
    """The length of the bounding-box diagonal of ``pos [N, 3]`` (0 if empty)."""
    return float(np.linalg.norm(pos.max(0) - pos.min(0))) if len(pos) else 0.0


def _good_faces(pos: np.ndarray, face: np.ndarray, tolerance: float) -> np.ndarray:
    """Mask of faces with three distinct corners whose smallest height
    (twice the area over the longest edge) exceeds ``tolerance`` times the
    bounding-box diagonal."""
    distinct = (face[:, 0] != face[:, 1]) & (face[:, 1] != face[:, 2]) & (face[:, 0] != face[:, 2])
    corners = pos[face]  # [F, 3, 3]
    longest = np.linalg.norm(corners - np.roll(corners, 1, axis=1), axis=2).max(1)
    height = 2.0 * face_areas(pos, face) / np.maximum(longest, np.finfo(float).tiny)
    return distinct & (height > tolerance * diagonal(pos))


def merge_close_vertices(pos: np.ndarray, tolerance: float = TOLERANCE) -> np.ndarray:
    """``index [N]``: for every vertex, the first vertex (lowest index) of its
    group, where vertices at most ``tolerance`` times the bounding-box
    diagonal of ``pos [N, 3]`` apart are grouped (transitively); identical
    coordinates are always grouped."""
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    n = len(pos)
    pairs = cKDTree(pos).query_pairs(tolerance * diagonal(pos), output_type="ndarray")
    if len(pairs) == 0:
        return np.arange(n)
    graph = sp.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, group = connected_components(graph, directed=False)
    first = np.full(group.max() + 1, n, dtype=np.int64)
    np.minimum.at(first, group, np.arange(n))
    return first[group]


class CleanMesh(NamedTuple):
    """A mesh without duplicate or unreferenced vertices and without
    degenerate or repeated faces, and how it relates to the original.

    ``index[i]`` is the cleaned vertex of original vertex ``i``, or ``-1`` if
    ``i`` is referenced by no remaining face; ``face_index[j]`` is the
    original face (a column of the input ``face``) that cleaned face ``j``
    comes from.
    """

    pos: np.ndarray  # [n, 3] float64
    face: np.ndarray  # [F', 3] int64
    index: np.ndarray  # [N] int64
    removed: dict
    face_index: np.ndarray  # [F'] int64


def clean_mesh(pos, face, tolerance: float = TOLERANCE) -> CleanMesh:
    """Merges vertices closer than ``tolerance`` times the bounding-box
    diagonal (each group takes the position of its first vertex), drops
    slivers (faces with repeated corners, or thinner than the tolerance:
    their smallest height is below it) and duplicate faces (same three
    vertices), and removes vertices no remaining face uses.

    Args:
        pos: Vertex positions ``[N, 3]``.
        face: Triangles in PyG layout ``[3, F]``.
        tolerance: Relative to the bounding-box diagonal; ``0`` merges only
            identical coordinates and drops only zero-area faces.
            (default: :data:`TOLERANCE`, ``1e-6``)

    Raises:
        ValueError: if ``pos``/``face`` are malformed, or no triangle thicker
            than the tolerance remains.
    """
    check_number(tolerance, "tolerance", minimum=0, below=1)
    pos = as_numpy_pos(pos)
    face = as_numpy_face(face, len(pos))
    if len(face) == 0:
        raise ValueError("'face' is empty: the mesh has no triangles")
    first = merge_close_vertices(pos, tolerance)
    representatives = np.flatnonzero(first == np.arange(len(pos)))
    renumber = np.full(len(pos), -1, dtype=np.int64)
    renumber[representatives] = np.arange(len(representatives))
    inverse = renumber[first]
    unique_pos = pos[representatives]
    merged = inverse[face]
    good = _good_faces(unique_pos, merged, tolerance)
    kept = merged[good]
    if len(kept) == 0:
        raise ValueError(f"'face': none of the {len(face)} triangles has three distinct corners "
                         f"and a height above {tolerance:g} of the bounding-box diagonal; the "
                         "mesh cannot be processed")
    _, first = np.unique(np.sort(kept, axis=1), axis=0, return_index=True)
    first = np.sort(first)  # keep the original orientation and order
    face_u = kept[first]
    used = np.zeros(len(unique_pos), dtype=bool)
    used[face_u.reshape(-1)] = True
    compact = np.full(len(unique_pos), -1, dtype=np.int64)
    compact[used] = np.arange(int(used.sum()))
    index = compact[inverse]
    removed = {"merged_vertices": len(pos) - len(unique_pos),
               "sliver_faces": int((~good).sum()),
               "duplicate_faces": int(good.sum()) - len(face_u),
               "unreferenced_vertices": int((index < 0).sum())}
    if any(removed.values()):
        log.debug("clean_mesh: %s", removed)
    return CleanMesh(unique_pos[used], compact[face_u], index, removed,
                     np.flatnonzero(good)[first])


#: The local triangulations of the point-cloud Laplacian use 30 neighbours.
MIN_CLOUD_POINTS = 32


def _point_cloud_laplacian(pos: np.ndarray, mollify_factor: float, tolerance: float):
    """Sharp & Crane (2020, Sec. 5.7): the tufted Laplacian of the union of the
    local Delaunay triangulations of every point's neighbourhood, divided by 3
    (each triangle appears in about three neighbourhoods).  The local
    triangulations come from ``potpourri3d`` (geometry-central), the tufted
    Laplacian from ``robust_laplacian``; ``robust_laplacian.point_cloud_laplacian``
    itself is not used: in version 1.1 it loses up to half of the area of
    curved clouds above ~20k points (measured on uniformly sampled spheres)."""
    if len(pos) < MIN_CLOUD_POINTS:
        raise ValueError(f"'pos' has {len(pos)} points; the point-cloud Laplacian needs at least "
                         f"{MIN_CLOUD_POINTS} (its local triangulations use 30 neighbours)")
    spread = np.linalg.svd(pos - pos.mean(0), compute_uv=False)
    if spread[1] <= tolerance * spread[0]:
        shape = "all coincide" if spread[0] == 0 else "lie on one line"
        raise ValueError(f"'pos': the {len(pos)} points {shape} (their second principal extent is "
                         f"{spread[1] / max(spread[0], np.finfo(float).tiny):.3g} of the first, at "
                         f"most the tolerance {tolerance:g}); the point-cloud Laplacian needs "
                         "points spread over a 2-D surface")
    pp3d = require("potpourri3d", "The point-cloud Laplacian")
    rl = require("robust_laplacian", "The point-cloud Laplacian")
    pos = np.ascontiguousarray(pos)
    with native_output_to_log("potpourri3d"):
        triangulation = pp3d.PointCloudLocalTriangulation(pos)
        try:
            tri = triangulation.get_local_triangulation().reshape(-1, 3)
        except ValueError:  # potpourri3d fails to reshape an empty triangulation
            tri = np.zeros((0, 3), dtype=np.int64)
    tri = tri[(tri >= 0).all(1)]
    if len(tri) == 0:
        raise ValueError(f"'pos': the {len(pos)} points span no triangle in any neighbourhood; "
                         f"the point-cloud Laplacian needs at least {MIN_CLOUD_POINTS} points "
                         "spread over a 2-D surface")
    with native_output_to_log("robust_laplacian"):
        L, M = rl.mesh_laplacian(pos, np.ascontiguousarray(tri, dtype=np.int64), mollify_factor)
    return L / 3.0, M.diagonal() / 3.0


def laplacian(pos, face=None, *, method: str = "cotan", mollify_factor: float = 1e-5,
              tolerance: float = TOLERANCE) -> Tuple[sp.csr_matrix, np.ndarray]:
    r"""The Laplace-Beltrami operator in weak form and the lumped mass.

    Returns ``(L, mass)`` with ``L`` a symmetric positive semi-definite
    ``[N, N]`` sparse matrix and ``mass [N]`` the lumped vertex areas, so that
    :math:`\mathbf{L}\psi = \lambda\, \mathrm{diag}(m)\, \psi` is the
    generalised eigenproblem of the surface.

    * triangle mesh, ``method="cotan"``: the cotangent Laplacian and one third
      of the adjacent triangle areas per vertex (``potpourri3d``); faces with
      repeated corners or thinner than ``tolerance`` are ignored.
    * triangle mesh, ``method="robust"``: the Laplacian of the intrinsic
      Delaunay triangulation of the tufted cover, with intrinsic mollification
      (``robust_laplacian``; Sharp & Crane 2020): positive weights even on
      non-manifold meshes with bad triangles.
    * ``face=None``: the robust point-cloud Laplacian (the tufted Laplacian of
      the union of local Delaunay triangulations of 30 neighbours, Sharp &
      Crane 2020).  Its eigenvalues are accurate on well-spread samples (the
      vertices of a mesh: 0.1% on a sphere), but biased upwards by about 5% on
      i.i.d. uniform samples (about 3% on Poisson-disk samples), whatever
      their number.

    Vertices that no valid face uses get zero mass and an empty row; use
    :func:`clean_mesh` or :func:`~tg_funcattn.geometry.mesh_eigenbasis`
    before an eigensolve.

    Args:
        pos: Vertex positions ``[N, 3]``.
        face: Triangles in PyG layout ``[3, F]``, or ``None`` for a point cloud.
        method: ``"cotan"`` or ``"robust"`` (meshes; point clouds always use
            the robust point-cloud Laplacian). (default: ``"cotan"``)
        mollify_factor: Intrinsic mollification of the robust Laplacians.
    """
    if method not in METHODS:
        raise ValueError(f"'method' must be one of {METHODS}, got {method!r}")
    check_number(tolerance, "tolerance", minimum=0, below=1)
    pos = as_numpy_pos(pos)
    if len(pos) < 3:
        raise ValueError(f"'pos' has {len(pos)} points; a Laplacian needs at least 3")
    if face is None:
        L, mass = _point_cloud_laplacian(pos, mollify_factor, tolerance)
    else:
        face = as_numpy_face(face, len(pos))
        face = face[_good_faces(pos, face, tolerance)]
        if len(face) == 0:
            raise ValueError(f"'face': no triangle with three distinct corners and a height above "
                             f"{tolerance:g} of the bounding-box diagonal")
        if method == "cotan":
            pp3d = require("potpourri3d", "The cotangent Laplacian")
            with native_output_to_log("potpourri3d"):
                L = pp3d.cotan_laplacian(pos, face)
                mass = pp3d.vertex_areas(pos, face)
        else:
            rl = require("robust_laplacian", "The robust mesh Laplacian")
            with native_output_to_log("robust_laplacian"):
                L, M = rl.mesh_laplacian(pos, face, mollify_factor)
            mass = M.diagonal()
    L = sp.csr_matrix(L, dtype=np.float64)
    if not (np.isfinite(L.data).all() and np.isfinite(mass).all()):
        raise ValueError("the Laplacian of this geometry is not finite (degenerate input that "
                         "cleaning did not catch); try method='robust'")
    return L, np.asarray(mass, dtype=np.float64)
