"""PyG transforms that attach Laplace-Beltrami eigenbases to graphs."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.transforms import BaseTransform

from .._validation import check_number
from ..geometry import eigen as _eigen
from ..geometry.cache import EigenbasisCache
from ..geometry.laplacian import METHODS


#: the transform's Laplacians: the geometry's, and the graph's own
TRANSFORM_METHODS = METHODS + ("graph",)


class LaplacianEigenbasis(BaseTransform):
    r"""Computes the first ``num_eigenpairs`` (``K``) Laplace-Beltrami eigenpairs of a mesh
    (``data.pos``, ``data.face``) or point cloud (``data.pos`` only), or with
    ``method="graph"`` the eigenpairs of the normalised Laplacian of a graph
    without positions (``data.edge_index``: molecules, citation graphs), and
    stores

    * ``data.evecs`` ``[N, K]``: eigenfunctions, orthonormal in the mass
      inner product (``evecs^T diag(mass) evecs = I``);
    * ``data.evals`` ``[1, K]``: eigenvalues, ascending (``[B, K]`` once
      batched);
    * ``data.mass`` ``[N]``: lumped vertex areas (node degrees for
      ``method="graph"``, see :func:`~tg_funcattn.geometry.graph_eigenbasis`),

    in float64 for float64 positions and float32 otherwise (computed in float64
    either way), ready for ``FunctionalAttention(basis_type="laplacian")`` as
    ``layer(x, batch, mass=data.mass, basis=data.evecs)``, and a record of the
    geometry they describe, which :func:`check_eigenbasis` compares with the
    data's later state:

    * ``data.eigen_num_nodes`` ``[1]`` (int64): the number of points;
    * ``data.eigen_extent`` ``[1, D]`` (float32): the principal radii of
      ``pos`` (square roots of the eigenvalues of its covariance, descending),
      unchanged by rotations and translations, changed by any rescaling.

    Both batch to one row per graph.  Transforms that move points without
    rescaling them (rotations, translations) may follow this one; transforms
    that resample (``SamplePoints``, ``FixedPoints``) or rescale
    (``NormalizeScale``, ``RandomScale``, :class:`NormalizeMesh`) must come
    before it (:class:`SampleMeshPoints` after it carries the eigenbasis to
    its samples and renews the record).  Append :class:`CheckEigenbasis` to
    the ``Compose`` to have a wrong order raise.  Operators are
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
        num_eigenpairs (int): Number of eigenpairs ``K``.
        cache_dir (str or Path, optional): Folder of the on-disk cache.
            (default: :obj:`None`, no cache)
        method (str, optional): ``"cotan"`` or ``"robust"`` for meshes (see
            :func:`~tg_funcattn.geometry.laplacian`), or ``"graph"``: the
            random-walk normalised Laplacian of ``data.edge_index``
            (:func:`~tg_funcattn.geometry.graph_eigenbasis`; ``pos`` is not
            needed nor recorded, and no cache is used: graphs of a few dozen
            nodes are solved densely in microseconds). (default: :obj:`"cotan"`)
        mollify_factor (float, optional): Intrinsic mollification of the
            robust Laplacians. (default: :obj:`1e-5`)
        ignore_edges (bool, optional): Data with ``edge_index`` but no
            ``face`` (e.g. after ``FaceToEdge(remove_faces=True)``) is an error,
            since only the point-cloud Laplacian of ``pos`` could be computed;
            with :obj:`True` that Laplacian is computed, ignoring the edges.
            (default: :obj:`False`)
    """

    def __init__(self, num_eigenpairs: int, cache_dir=None, method: str = "cotan",
                 mollify_factor: float = 1e-5, ignore_edges: bool = False):
        check_number(num_eigenpairs, "num_eigenpairs", integer=True, minimum=1)
        check_number(mollify_factor, "mollify_factor", minimum=0.0)
        if method not in TRANSFORM_METHODS:
            raise ValueError(f"'method' must be one of {TRANSFORM_METHODS}, got {method!r}")
        if method == "graph" and cache_dir is not None:
            raise ValueError("'cache_dir' caches mesh and point-cloud eigenbases; method='graph' "
                             "solves each graph directly, pass cache_dir=None")
        self.num_eigenpairs = num_eigenpairs
        self.method = method
        self.mollify_factor = mollify_factor
        self.ignore_edges = ignore_edges
        self.cache = None if cache_dir is None else EigenbasisCache(cache_dir)

    @property
    def config(self) -> str:
        return f"method={self.method};mollify={self.mollify_factor!r}"

    def forward(self, data: Data) -> Data:
        if self.method == "graph":
            if data.get("edge_index") is None:
                raise ValueError("LaplacianEigenbasis(method='graph') needs 'data.edge_index'")
            result = _eigen.graph_eigenbasis(data.edge_index, data.num_nodes, self.num_eigenpairs)
            self._store(data, result)
            return data
        if getattr(data, "pos", None) is None:
            raise ValueError("LaplacianEigenbasis needs 'data.pos' (vertex positions [N, 3]); "
                             "for a graph without positions use method='graph'")
        pos = data.pos.detach().cpu().numpy()
        face = data.face if "face" in data and data.face is not None else None
        if face is None and data.get("edge_index") is not None and not self.ignore_edges:
            raise ValueError(
                "LaplacianEigenbasis: data has 'edge_index' but no 'face' (e.g. "
                "FaceToEdge(remove_faces=True) ran before it), so only the point-cloud Laplacian "
                "of 'pos' could be computed, ignoring the edges. Put LaplacianEigenbasis before "
                "FaceToEdge, e.g. Compose([LaplacianEigenbasis(16), FaceToEdge()]), or keep the "
                "faces with FaceToEdge(remove_faces=False); pass ignore_edges=True to compute the "
                "point-cloud Laplacian on purpose")
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
        self._store(data, result)
        record_eigenbasis(data)
        return data

    def _store(self, data: Data, result: _eigen.Eigenbasis) -> None:
        K = self.num_eigenpairs
        stored = _as_tensors({"evecs": np.ascontiguousarray(result.evecs[:, :K]),
                              "evals": np.asarray(result.evals[:K]),
                              "mass": np.asarray(result.mass)}, data.get("pos"), "LaplacianEigenbasis")
        data.evecs, data.mass = stored["evecs"], stored["mass"]
        data.evals = stored["evals"].unsqueeze(0)

    def __repr__(self) -> str:
        cache = None if self.cache is None else str(self.cache.root)
        return (f"{self.__class__.__name__}(num_eigenpairs={self.num_eigenpairs}, "
                f"method='{self.method}', cache_dir={cache!r})")


class LumpedMass(BaseTransform):
    r"""Stores ``data.mass`` ``[N]``, the lumped vertex areas of a mesh
    (``data.pos``, ``data.face``), exactly as :class:`LaplacianEigenbasis`
    stores them (:func:`~tg_funcattn.geometry.mesh_mass`: the same cleaning,
    no eigensolve): the quadrature weights of a model that runs on the mesh's
    own vertices without an eigenbasis (a learned basis on positions).  In
    float64 for float64 positions, float32 otherwise.

    Args:
        method (str, optional): ``"cotan"`` or ``"robust"`` (see
            :func:`~tg_funcattn.geometry.laplacian`). (default: :obj:`"cotan"`)
    """

    def __init__(self, method: str = "cotan"):
        if method not in METHODS:
            raise ValueError(f"'method' must be one of {METHODS}, got {method!r}")
        self.method = method

    def forward(self, data: Data) -> Data:
        if data.get("pos") is None or data.get("face") is None:
            raise ValueError("LumpedMass needs a mesh: 'data.pos' [N, 3] and 'data.face' [3, F]")
        mass = _eigen.mesh_mass(data.pos.detach().cpu().numpy(),
                                data.face.detach().cpu().numpy().astype(np.int64), method=self.method)
        data.mass = _as_tensors({"mass": mass}, data.pos, "LumpedMass")["mass"]
        return data

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(method='{self.method}')"


def _as_tensors(values: dict, pos: Optional[Tensor], who: str) -> dict:
    """The float64 arrays ``values`` as tensors of the data's dtype: float64
    for float64 positions, else float32, refusing what float32 cannot hold
    (masses scale with the square of the positions' size and eigenvalues
    with its inverse square, so positions near 1e20 or 1e-20 overflow or
    underflow)."""
    dtype = pos.dtype if pos is not None and pos.dtype == torch.float64 else torch.float32
    if dtype == torch.float32:
        _check_float32(values, who)
    return {key: torch.from_numpy(value).to(dtype) for key, value in values.items()}


def _check_float32(values: dict, who: str) -> None:
    info = np.finfo(np.float32)
    for key, value in values.items():
        magnitude = np.abs(value)
        large = magnitude.max(initial=0.0) >= info.max
        small = key == "mass" and magnitude.min(initial=np.inf) < info.tiny
        if large or small:
            extreme = magnitude.max() if large else magnitude.min()
            too_small = small or key != "mass"  # masses grow with the scale, the rest shrink
            raise ValueError(
                f"{who}: '{key}' reaches {extreme:.3g}, which float32 cannot hold "
                f"({'overflow' if large else 'underflow to zero'}): the positions are at too "
                f"{'small' if too_small else 'large'} a scale. Rescale them before "
                f"{who} (e.g. NormalizeScale() or NormalizeMesh()), or pass float64 positions")


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


class CheckEigenbasis(BaseTransform):
    r"""Raises a ``ValueError`` naming the fix when the eigenbasis of the data
    no longer fits its points (see :func:`check_eigenbasis`); returns the data
    unchanged otherwise.  Append it to a ``Compose`` that contains
    :class:`LaplacianEigenbasis`::

        Compose([NormalizeScale(), SamplePoints(1024), LaplacianEigenbasis(16), CheckEigenbasis()])

    Args:
        rtol (float, optional): Tolerated relative change of the principal
            radii of ``pos``. (default: :obj:`1e-3`)
    """

    def __init__(self, rtol: float = 1e-3):
        if not rtol >= 0:
            raise ValueError(f"'rtol' must be a non-negative number, got {rtol!r}")
        self.rtol = rtol

    def forward(self, data: Data) -> Data:
        check_eigenbasis(data, rtol=self.rtol, who="CheckEigenbasis")
        return data

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(rtol={self.rtol!r})"


def principal_radii(pos: Tensor, batch: Optional[Tensor] = None, num_graphs: int = 1) -> Tensor:
    """``[num_graphs, D]`` float32: per graph, the square roots of the
    eigenvalues of the covariance of its points ``pos [N, D]`` (descending);
    unchanged by rotations and translations, scaled by a rescaling."""
    p = pos.detach().double()
    batch = torch.zeros(len(p), dtype=torch.long, device=p.device) if batch is None else batch
    counts = torch.bincount(batch, minlength=num_graphs).clamp_min(1).to(p)
    mean = p.new_zeros(num_graphs, p.shape[1]).index_add_(0, batch, p) / counts[:, None]
    c = p - mean[batch]
    cov = p.new_zeros(num_graphs, p.shape[1], p.shape[1]).index_add_(
        0, batch, c[:, :, None] * c[:, None, :]) / counts[:, None, None]
    return torch.linalg.eigvalsh(cov).clamp_min(0).sqrt().flip(-1).float()


def record_eigenbasis(data: Data) -> None:
    """Stores ``data.eigen_num_nodes`` ``[1]`` and ``data.eigen_extent``
    ``[1, D]``: the points that ``data.evecs`` and ``data.mass`` now describe
    (called by :class:`LaplacianEigenbasis` and :class:`SampleMeshPoints`)."""
    data.eigen_num_nodes = torch.tensor([data.pos.shape[0]])
    data.eigen_extent = principal_radii(data.pos).cpu()


def check_eigenbasis(data: Data, rtol: float = 1e-3, who: str = "check_eigenbasis") -> None:
    r"""Raises a ``ValueError`` that names the transform order to use when the
    eigenbasis of ``data`` (a ``Data`` or a ``Batch``) no longer describes
    its points:

    * ``data.evecs`` or ``data.mass`` has another number of rows than
      ``data.pos``, or a graph has another number of points than
      :class:`LaplacianEigenbasis` recorded (``data.eigen_num_nodes``): the
      points were resampled after it (``SamplePoints``, ``FixedPoints``);
    * the principal radii of a graph's points differ from the recorded ones
      (``data.eigen_extent``) by more than ``rtol`` times the largest: the
      points were rescaled or deformed after it (``NormalizeScale``,
      ``RandomScale``), so ``mass`` and ``evals`` describe the old geometry.
      Rotations and translations pass.

    Data without the record (an eigenbasis from elsewhere, or a dataset
    processed before the record existed) gets only the row-count checks.
    ``who`` starts the message (e.g. the name of a layer that calls this).
    """
    if data.get("pos") is None:
        raise ValueError(f"{who}: the data has no 'pos' to check the eigenbasis against")
    if data.get("evecs") is None:
        raise ValueError(f"{who}: the data has no eigenbasis ('evecs'); apply "
                         "LaplacianEigenbasis first")
    order = ("Put LaplacianEigenbasis after the resampling transform, e.g. "
             "Compose([SamplePoints(1024), LaplacianEigenbasis(16)]), or sample a mesh with "
             "tg_funcattn.transforms.SampleMeshPoints after it, which carries the eigenbasis and "
             "the masses to the samples")
    num_nodes = data.pos.shape[0]
    for key in ("evecs", "mass"):
        value = data.get(key)
        if value is not None and value.shape[0] != num_nodes:
            raise ValueError(f"{who}: 'data.{key}' has {value.shape[0]} rows but 'data.pos' has "
                             f"{num_nodes} points: the points were resampled after "
                             f"LaplacianEigenbasis (e.g. by SamplePoints or FixedPoints). {order}")
    recorded_nodes, recorded_extent = data.get("eigen_num_nodes"), data.get("eigen_extent")
    if recorded_nodes is None or recorded_extent is None:
        return
    batch = data.get("batch")
    num_graphs = (1 if batch is None else data.num_graphs if isinstance(data, Batch)
                  else int(batch.max()) + 1)
    if recorded_nodes.numel() != num_graphs or recorded_extent.shape[0] != num_graphs:
        raise ValueError(f"{who}: 'data.eigen_num_nodes' and 'data.eigen_extent' must have one "
                         f"row per graph ({num_graphs}), got {tuple(recorded_nodes.shape)} and "
                         f"{tuple(recorded_extent.shape)}")
    counts = (torch.tensor([num_nodes]) if batch is None
              else torch.bincount(batch, minlength=num_graphs)).cpu()
    recorded_nodes = recorded_nodes.view(-1).cpu()
    changed = (counts != recorded_nodes).nonzero().view(-1)
    if len(changed):
        g = int(changed[0])
        graph = "" if batch is None else f" in graph {g}"
        raise ValueError(f"{who}: LaplacianEigenbasis was computed for {int(recorded_nodes[g])} "
                         f"points but there are {int(counts[g])}{graph}: the points were resampled "
                         f"after it (e.g. by SamplePoints or FixedPoints). {order}")
    extent = principal_radii(data.pos, batch, num_graphs).cpu()
    recorded_extent = recorded_extent.float().cpu()
    if extent.shape != recorded_extent.shape:
        raise ValueError(f"{who}: 'data.eigen_extent' has shape {tuple(recorded_extent.shape)} but "
                         f"'data.pos' gives {tuple(extent.shape)}")
    scale = recorded_extent.amax(1)
    moved = ((extent - recorded_extent).abs().amax(1) > rtol * scale).nonzero().view(-1)
    if len(moved):
        g = int(moved[0])
        graph = "" if batch is None else f" of graph {g}"
        raise ValueError(
            f"{who}: the points{graph} were rescaled or deformed after LaplacianEigenbasis "
            f"computed 'mass' and 'evals' (principal radii {recorded_extent[g].tolist()} -> "
            f"{extent[g].tolist()}, e.g. by NormalizeScale or RandomScale after it), so these "
            "describe the old geometry. Put such transforms before LaplacianEigenbasis, e.g. "
            "Compose([NormalizeScale(), LaplacianEigenbasis(16)]); rotations and translations "
            "after it are fine")


class HeatKernelSignature(BaseTransform):
    r"""The heat kernel signature of `"A Concise and Provably Informative
    Multi-Scale Signature Based on Heat Diffusion"
    <https://doi.org/10.1111/j.1467-8659.2009.01515.x>`_ (Sun et al., 2009) from
    the eigenpairs of :class:`LaplacianEigenbasis`: at every node and time
    :math:`t`,

    .. math::
        h_t(x) = \frac{A}{\sum_i e^{-\lambda_i t}} \sum_i e^{-\lambda_i t}\,
            \phi_i(x)^2,

    the diagonal of the heat kernel (the heat that stays at :math:`x` after
    time :math:`t`), divided by its mean over the surface
    (:math:`\int h = \sum_i e^{-\lambda_i t}` for mass-orthonormal
    :math:`\phi_i`, :math:`A` the total mass), so that the features average
    one whatever the size of the shape.  Invariant to rigid motions and to
    the signs (and any rotation within an eigenspace) of the eigenvectors:
    input features for every basis kind that need no rotation augmentation.

    The ``num_times`` times are spaced logarithmically from
    :math:`4 \ln 10 / \lambda_K` (the largest eigenvalue kept: below it the
    truncated sum is inaccurate) to :math:`4 \ln 10 / \lambda_2` (the
    smallest eigenvalue above zero: beyond it the signature is nearly
    constant), the choice of Sun et al.; ``times`` gives them explicitly (in
    the units of the shape's eigenvalues).

    Apply it after :class:`LaplacianEigenbasis` on the mesh; a following
    :class:`SampleMeshPoints` interpolates it to the samples like any vertex
    attribute.

    Args:
        num_times (int, optional): Number of time scales. (default: :obj:`16`)
        times (sequence of float, optional): The time scales, instead of the
            automatic ones. (default: :obj:`None`)
        attr_name (str, optional): The attribute ``[N, num_times]`` to write;
            :obj:`None` concatenates the signature to ``data.x`` (or makes it
            ``data.x``). (default: :obj:`"hks"`)
    """

    def __init__(self, num_times: int = 16, times=None, attr_name: Optional[str] = "hks"):
        if times is not None:
            times = [float(t) for t in times]
            if not times or not all(np.isfinite(t) and t > 0 for t in times):
                raise ValueError(f"'times' must be positive finite numbers, got {times!r}")
            num_times = len(times)
        if not isinstance(num_times, int) or isinstance(num_times, bool) or num_times < 1:
            raise ValueError(f"'num_times' must be a positive int, got {num_times!r}")
        self.num_times = num_times
        self.times = times
        self.attr_name = attr_name

    def forward(self, data: Data) -> Data:
        evecs, evals, mass = data.get("evecs"), data.get("evals"), data.get("mass")
        if evecs is None or evals is None or mass is None:
            missing = [k for k, v in (("evecs", evecs), ("evals", evals), ("mass", mass)) if v is None]
            raise ValueError(f"HeatKernelSignature needs 'data.evecs', 'data.evals' and 'data.mass' "
                             f"(missing: {missing}); apply LaplacianEigenbasis first")
        evals = evals.reshape(-1).double()
        if evals.numel() != evecs.shape[1]:
            raise ValueError(f"HeatKernelSignature: 'data.evals' has {evals.numel()} eigenvalues "
                             f"but 'data.evecs' {evecs.shape[1]} columns")
        times = torch.tensor(self.times, dtype=torch.float64) if self.times is not None else \
            self._auto_times(evals)
        decay = torch.exp(-evals.clamp_min(0).unsqueeze(0) * times.unsqueeze(1))  # [T, K]
        hks = evecs.double().square() @ decay.t()  # [N, T]
        hks = hks * (mass.double().sum() / decay.sum(1))
        hks = hks.to(evecs.dtype)
        if self.attr_name is not None:
            data[self.attr_name] = hks
        else:
            x = data.get("x")
            data.x = hks if x is None else torch.cat([x, hks.to(x.dtype)], dim=-1)
        return data

    def _auto_times(self, evals: Tensor) -> Tensor:
        largest = float(evals.max())
        positive = evals[evals > 1e-6 * largest]
        if largest <= 0 or positive.numel() == 0:
            raise ValueError("HeatKernelSignature: the eigenvalues have no positive one to scale "
                             "the times by; pass 'times'")
        low, high = 4 * np.log(10) / largest, 4 * np.log(10) / float(positive.min())
        return torch.logspace(np.log10(low), np.log10(high), self.num_times, dtype=torch.float64)

    def __repr__(self) -> str:
        times = "auto" if self.times is None else self.times
        return (f"{self.__class__.__name__}(num_times={self.num_times}, times={times}, "
                f"attr_name={self.attr_name!r})")
