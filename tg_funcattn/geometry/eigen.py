"""Laplace-Beltrami eigenbases: the smallest eigenpairs of ``L psi = lambda M psi``."""
from __future__ import annotations

import logging
from typing import NamedTuple, Optional

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp
import scipy.sparse.linalg as sla

from .._optional import available
from .laplacian import TOLERANCE, clean_mesh, laplacian

log = logging.getLogger(__name__)

#: Problems up to this size are solved densely (``scipy.linalg.eigh``).
DENSE_MAX = 2000
#: Relative accuracy of the shift-invert Ritz values (machine precision costs
#: about 10% more time for no visible change: eigenvalues agree to 1e-12).
EIGSH_TOL = 1e-8
#: Mass given to vertices that no valid face uses, relative to the mean mass:
#: they take the basis values of their nearest valid vertex and weigh ~nothing.
UNREFERENCED_MASS = 1e-8
#: Largest residual ``||L phi - lambda M phi||`` (in the inverse mass norm of
#: mass-orthonormal ``phi``) accepted, relative to the largest eigenvalue
#: computed; it bounds the error of every eigenvalue.
SPECTRUM_RTOL = 1e-4
#: An eigenvalue within its residual plus this fraction of the largest one
#: of zero counts as zero.
ZERO_RTOL = 1e-8
#: Eigenvalue scale when every computed eigenvalue is zero (few eigenpairs
#: of a disconnected shape): this fraction of the median diagonal of
#: ``M^(-1/2) L M^(-1/2)``, the frequency of a function on one vertex.
SCALE_FLOOR = 1e-6


def eigenbasis(L, mass, num_eigenpairs: int, *, shift: float = 1e-8, max_tries: int = 6,
               dense_max: int = DENSE_MAX):
    r"""The ``num_eigenpairs`` smallest eigenpairs of
    :math:`\mathbf{L}\psi = \lambda\,\mathrm{diag}(m)\,\psi`.

    Computed in float64 on the symmetric form :math:`M^{-1/2} L M^{-1/2}`:
    densely (``scipy.linalg.eigh``) up to ``dense_max`` vertices, otherwise by
    shift-invert Lanczos (``scipy.sparse.linalg.eigsh``) around
    :math:`\sigma = -\mathrm{shift} \cdot \mathrm{tr}(L M^{-1})/n`; on a failed
    factorisation or no convergence the shift grows tenfold, up to
    ``max_tries`` times.  The factorisation uses a METIS nested-dissection
    ordering when ``pymetis`` is installed (about twice faster solves on
    meshes), else SuperLU's COLAMD.

    The result is deterministic for a given input: eigenvalues ascending;
    eigenvectors orthonormal in the mass inner product
    (:math:`\Psi^\top M \Psi = I` to round-off), each signed so that its
    largest-magnitude entry is positive.  Within an eigenspace of a repeated
    eigenvalue the basis is one arbitrary orthonormal choice.

    The spectrum is checked before it is returned, and a ``ValueError``
    raised when it fails: a residual :math:`\|L\phi - \lambda M\phi\|`
    above :data:`SPECTRUM_RTOL` of the largest eigenvalue (the operator is
    too ill-conditioned for its small eigenpairs to survive round-off, as
    with a sliver triangle, or the solver did not converge), an eigenvalue
    below zero by more than its residual (``L`` is not positive
    semi-definite), or more eigenvalues within their residual of zero than
    ``L`` has connected components.  Negative eigenvalues within their
    residual are round-off and set to 0.

    Args:
        L: Symmetric positive semi-definite ``[n, n]`` (sparse or dense).
        mass: Positive lumped masses ``[n]``.
        num_eigenpairs: Number of eigenpairs ``K``, ``1 <= K <= n`` (a larger
            ``K`` raises: no more than ``n`` independent functions exist on
            ``n`` vertices).

    Returns:
        ``(evals [K], evecs [n, K])`` as float64 arrays.
    """
    mass = np.asarray(mass, dtype=np.float64).reshape(-1)
    n = mass.shape[0]
    if not (hasattr(L, "shape") and L.shape == (n, n)):
        raise ValueError(f"'L' must be a square [n, n] = [{n}, {n}] matrix matching 'mass', "
                         f"got shape {getattr(L, 'shape', None)}")
    if not np.isfinite(mass).all() or (mass <= 0).any():
        bad = int((~np.isfinite(mass) | (mass <= 0)).sum())
        raise ValueError(f"'mass' must be finite and positive; {bad} vertices are not (vertices "
                         "that no triangle uses? clean the mesh with clean_mesh() or call "
                         "mesh_eigenbasis())")
    if not isinstance(num_eigenpairs, (int, np.integer)) or num_eigenpairs < 1:
        raise ValueError(f"'num_eigenpairs' must be a positive int, got {num_eigenpairs!r}")
    if num_eigenpairs > n:
        raise ValueError(f"'num_eigenpairs' = {num_eigenpairs} eigenpairs requested but the "
                         f"geometry has only {n} vertices; use num_eigenpairs <= n")
    L = sp.csr_matrix(L, dtype=np.float64)
    if not np.isfinite(L.data).all():
        raise ValueError("'L' contains NaN or infinite entries")
    _check_psd_form(L)
    scale = 1.0 / np.sqrt(mass)
    sym = sp.diags(scale) @ L @ sp.diags(scale)
    sym = ((sym + sym.T) * 0.5).tocsr()  # exact symmetry for the solvers
    if n <= dense_max:
        evals, vecs = la.eigh(sym.toarray(), subset_by_index=[0, num_eigenpairs - 1])
    else:
        evals, vecs = _shift_invert(sym, num_eigenpairs, shift, max_tries)
    order = np.argsort(evals)
    evals, vecs = evals[order], vecs[:, order]
    evals = _check_spectrum(sym, evals, vecs)
    evecs = _m_orthonormalise(vecs * scale[:, None], mass)
    peak = np.abs(evecs).argmax(0)
    evecs *= np.where(evecs[peak, np.arange(num_eigenpairs)] < 0, -1.0, 1.0)
    return evals, evecs


def _check_psd_form(L: sp.csr_matrix) -> None:
    """Refuses an ``L`` that cannot be a Laplacian: not symmetric, or with a
    negative diagonal entry (never so for a positive semi-definite matrix)."""
    size = float(np.abs(L.data).max()) if L.nnz else 0.0
    asymmetry = abs(L - L.T)
    if asymmetry.nnz and float(asymmetry.max()) > 1e-10 * size:
        raise ValueError(f"'L' must be symmetric; an entry differs from its transpose's by "
                         f"{float(asymmetry.max()):.3g} (largest entry {size:.3g})")
    negative = np.flatnonzero(L.diagonal() < 0)
    if len(negative):
        raise ValueError(f"'L' must be positive semi-definite, but {len(negative)} diagonal entries "
                         f"are negative (first: row {int(negative[0])}); pass the Laplacian L, "
                         "not -L")


def _check_spectrum(sym: sp.csr_matrix, evals: np.ndarray, vecs: np.ndarray) -> np.ndarray:
    """The eigenvalues, with round-off negatives set to 0, after the checks
    :func:`eigenbasis` describes; ``vecs`` are orthonormal eigenvectors of
    ``sym = M^(-1/2) L M^(-1/2)`` (so ``||sym v - lambda v||`` is the
    residual of the generalised problem in the inverse mass norm)."""
    from scipy.sparse.csgraph import connected_components

    diagonal = np.abs(sym.diagonal())
    scale = max(float(np.abs(evals).max()), SCALE_FLOOR * float(np.median(diagonal)),
                np.finfo(float).tiny)
    residual = np.linalg.norm(sym @ vecs - vecs * evals, axis=0)
    worst = int(residual.argmax())
    if residual[worst] > SPECTRUM_RTOL * scale:
        raise ValueError(
            f"the eigenpairs are not accurate: the residual ||L phi - lambda M phi|| of eigenpair "
            f"{worst} is {residual[worst]:.3g}, {residual[worst] / scale:.2g} of the largest "
            f"eigenvalue {scale:.3g} (at most {SPECTRUM_RTOL:g}). The operator is too "
            f"ill-conditioned (its largest diagonal entry is {diagonal.max():.3g}, "
            f"{diagonal.max() / scale:.2g} times that eigenvalue): typically a sliver triangle "
            "or vertices closer than the cleaning tolerance; clean the mesh with a larger "
            "'tolerance' (clean_mesh, mesh_eigenbasis)")
    bound = residual + ZERO_RTOL * scale  # the eigenvalue error, at most
    if evals[0] < -bound[0]:
        raise ValueError(f"'L' is not positive semi-definite: its eigenvalue {evals[0]:.3g} is "
                         f"below zero by more than its error bound {bound[0]:.3g}")
    num_zero = int((evals <= bound).sum())
    if num_zero > 1:
        coupled = sym.copy()
        coupled.eliminate_zeros()  # an edge of weight 0 couples nothing
        num_components = connected_components(coupled, directed=False)[0]
        if num_zero > num_components:
            raise ValueError(
                f"{num_zero} eigenvalues are zero (within their error bounds) but the shape has "
                f"{num_components} connected component(s), one zero each: the operator is "
                "degenerate (zero-weight edges or slivers); try method='robust' or clean the mesh "
                "with a larger 'tolerance'")
    return np.maximum(evals, 0.0)


def _shift_invert(sym: sp.csr_matrix, num_eigenpairs: int, shift: float, max_tries: int):
    n = sym.shape[0]
    typical = max(float(sym.diagonal().mean()), np.finfo(float).tiny)
    v0 = np.random.default_rng(0).standard_normal(n)  # deterministic start
    ncv = min(n - 1, max(num_eigenpairs + 64, int(1.5 * num_eigenpairs), 20))
    perm = _nested_dissection(sym)
    last_error = None
    for attempt in range(max_tries):
        sigma = -shift * typical * 10.0 ** attempt
        try:
            solve = _factorise(sym - sigma * sp.identity(n, format="csr"), perm)
            op = sla.LinearOperator((n, n), matvec=solve, dtype=np.float64)
            return sla.eigsh(sym, k=num_eigenpairs, sigma=sigma, which="LM", OPinv=op, v0=v0, ncv=ncv,
                             tol=EIGSH_TOL)
        except (RuntimeError, sla.ArpackError, sla.ArpackNoConvergence) as error:
            last_error = error
            log.warning("eigsh with shift %.3g failed (%s); retrying with a larger shift",
                        sigma, error)
    raise RuntimeError(f"the eigensolver failed {max_tries} times (last shift "
                       f"{-shift * typical * 10.0 ** (max_tries - 1):.3g}): {last_error}")


def _nested_dissection(sym: sp.csr_matrix) -> Optional[np.ndarray]:
    if not available("pymetis"):
        return None
    import pymetis

    graph = sym.copy()
    graph.setdiag(0)
    graph.eliminate_zeros()
    graph.sort_indices()
    perm, _ = pymetis.nested_dissection(
        adjacency=pymetis.CSRAdjacency(graph.indptr, graph.indices))
    return np.asarray(perm, dtype=np.int64)


def _factorise(matrix: sp.csr_matrix, perm: Optional[np.ndarray]):
    """A solver for the SPD ``matrix``: SuperLU in symmetric mode on the
    nested-dissection ordering, or with COLAMD."""
    if perm is None:
        lu = sla.splu(matrix.tocsc())
        return lu.solve
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(len(perm))
    lu = sla.splu(matrix[perm][:, perm].tocsc(), permc_spec="NATURAL", diag_pivot_thresh=0.0,
                  options={"SymmetricMode": True})
    return lambda b: lu.solve(b[perm])[inverse]


def _m_orthonormalise(evecs: np.ndarray, mass: np.ndarray) -> np.ndarray:
    gram = evecs.T @ (mass[:, None] * evecs)
    if np.abs(gram - np.eye(gram.shape[0])).max() <= 1e-10:
        return evecs
    upper = la.cholesky(gram)  # gram = R^T R
    return la.solve_triangular(upper, evecs.T, trans="T").T


class Eigenbasis(NamedTuple):
    """Eigenpairs and lumped masses on every original vertex."""

    evals: np.ndarray  # [num_eigenpairs]
    evecs: np.ndarray  # [N, num_eigenpairs]
    mass: np.ndarray  # [N]


def mesh_eigenbasis(pos, face=None, num_eigenpairs: int = 64, *, method: str = "cotan",
                    mollify_factor: float = 1e-5, tolerance: float = TOLERANCE) -> Eigenbasis:
    """Laplacian, mass and ``num_eigenpairs`` eigenpairs of a mesh or point cloud, robust to
    messy meshes, on every original vertex.

    Meshes are cleaned first (:func:`~tg_funcattn.geometry.clean_mesh`):
    vertices closer than ``tolerance`` times the bounding-box diagonal are
    merged (they share basis values and split their mass), faces with
    repeated corners, thinner than the tolerance, or duplicates are dropped,
    and vertices that no face uses take the basis values of their nearest
    used vertex with a negligible mass (``1e-8`` of the mean).  Disconnected
    components are kept: each adds a zero eigenvalue (its indicator
    function).  A spectrum that fails the checks of :func:`eigenbasis`
    raises a ``ValueError``.

    Args:
        pos: ``[N, 3]`` positions.
        face: ``[3, F]`` triangles (PyG layout) or ``None`` for a point cloud.
        num_eigenpairs: Number of eigenpairs (at most the number of valid
            vertices).
        method: ``"cotan"`` or ``"robust"``; see :func:`laplacian`.
        mollify_factor: Intrinsic mollification of the robust Laplacians.
        tolerance: Geometric tolerance relative to the bounding-box diagonal
            (see :func:`~tg_funcattn.geometry.clean_mesh`; for point clouds,
            :func:`laplacian`). (default: ``1e-6``)
    """
    if face is None:
        L, mass = laplacian(pos, None, mollify_factor=mollify_factor, tolerance=tolerance)
        evals, evecs = eigenbasis(L, mass, num_eigenpairs)
        return Eigenbasis(evals, evecs, mass)
    clean = clean_mesh(pos, face, tolerance)
    n = len(clean.pos)
    if num_eigenpairs > n:
        raise ValueError(f"'num_eigenpairs' = {num_eigenpairs} eigenpairs requested but the mesh "
                         f"has only {n} valid vertices after cleaning ({clean.removed})")
    L, mass_c = laplacian(clean.pos, clean.face.T, method=method, mollify_factor=mollify_factor,
                          tolerance=tolerance)
    evals, evecs_c = eigenbasis(L, mass_c, num_eigenpairs)
    index, mass = _on_original_vertices(pos, clean, mass_c)
    return Eigenbasis(evals, evecs_c[index], mass)


def mesh_mass(pos, face, *, method: str = "cotan", mollify_factor: float = 1e-5,
              tolerance: float = TOLERANCE) -> np.ndarray:
    """The lumped vertex areas ``[N]`` of a mesh on every original vertex,
    exactly the ``mass`` of :func:`mesh_eigenbasis` (same cleaning and
    arguments), without an eigensolve: the quadrature weights for running a
    model on the mesh's own vertices."""
    clean = clean_mesh(pos, face, tolerance)
    _, mass_c = laplacian(clean.pos, clean.face.T, method=method, mollify_factor=mollify_factor,
                          tolerance=tolerance)
    return _on_original_vertices(pos, clean, mass_c)[1]


def _on_original_vertices(pos, clean, mass_c: np.ndarray):
    """``(index, mass)``: the cleaned vertex whose values every original vertex
    takes (its own, or the nearest used one's if no face uses it) and its
    mass (merged vertices split theirs; unused ones weigh ~nothing)."""
    index = clean.index.copy()
    unused = index < 0
    if unused.any():
        from scipy.spatial import cKDTree

        pos_np = np.asarray(pos.detach().cpu() if hasattr(pos, "detach") else pos, dtype=np.float64)
        _, index[unused] = cKDTree(clean.pos).query(pos_np[unused])
    multiplicity = np.bincount(clean.index[~unused], minlength=len(clean.pos)).astype(np.float64)
    mass = np.where(unused, UNREFERENCED_MASS * mass_c.mean(),
                    mass_c[index] / np.maximum(multiplicity[index], 1.0))
    return index, mass


def graph_eigenbasis(edge_index, num_nodes: int, num_eigenpairs: int) -> Eigenbasis:
    r"""Eigenpairs of the normalised Laplacian of a graph without positions
    (molecules, citation graphs), in the same form as :func:`mesh_eigenbasis`.

    The edges (both directions or one, unweighted) give the adjacency
    :math:`\mathbf{A}` and degrees :math:`\mathbf{D}`; the eigenpairs are
    those of :math:`(\mathbf{D} - \mathbf{A})\psi = \lambda\mathbf{D}\psi`,
    the random-walk normalised Laplacian: eigenvalues in :math:`[0, 2]`, the
    first eigenvector constant on a connected graph, orthonormal in the
    degree inner product (the mass is the degree, the volume of a node in
    spectral graph theory; an isolated node has mass 1 and its own zero
    eigenvalue).  These are :math:`\mathbf{D}^{-1/2}` times the eigenvectors of
    the symmetric normalised Laplacian that PyG's
    :class:`~torch_geometric.transforms.AddLaplacianEigenvectorPE` computes,
    with deterministic signs instead of random ones.

    Args:
        edge_index: ``[2, E]`` node indices.
        num_nodes: Number of nodes ``N``.
        num_eigenpairs: Number of eigenpairs (at most ``N``).
    """
    edges = np.asarray(edge_index.detach().cpu() if hasattr(edge_index, "detach") else edge_index)
    if edges.ndim != 2 or edges.shape[0] != 2:
        raise ValueError(f"'edge_index' must have shape [2, E], got {tuple(edges.shape)}")
    if not np.issubdtype(edges.dtype, np.integer):
        raise TypeError(f"'edge_index' must hold integers, got dtype {edges.dtype}")
    if edges.size and (edges.min() < 0 or edges.max() >= num_nodes):
        raise ValueError(f"'edge_index' holds node {int(edges.max() if edges.max() >= num_nodes else edges.min())} "
                         f"but the graph has {num_nodes} nodes")
    src, dst = edges[0], edges[1]
    keep = src != dst  # self-loops do not change the Laplacian
    adjacency = sp.csr_matrix((np.ones(int(keep.sum())), (src[keep], dst[keep])),
                              shape=(num_nodes, num_nodes))
    adjacency = ((adjacency + adjacency.T) > 0).astype(np.float64)  # symmetric, unweighted
    degree = np.asarray(adjacency.sum(1)).reshape(-1)
    mass = np.where(degree > 0, degree, 1.0)
    evals, evecs = eigenbasis(sp.diags(degree) - adjacency, mass, num_eigenpairs)
    return Eigenbasis(evals, evecs, mass)
