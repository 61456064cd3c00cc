"""The validated inputs a forward pass hands down its layers: the graph layout
of the flat batch, the masses, the given basis and the node weights derived
from them; and the one decision of how to stream over the nodes."""
from __future__ import annotations

import bisect
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from .._validation import ValueChecks, check_finite, check_mass, check_tensor, segments, tracing
from ..ops.segment import segment_matmul_tn, segment_sum


class GraphLayout:
    """A validated flat batch of graphs.

    Built once per forward pass by :func:`validate_layout` (the only place
    that reads input values on the host) and passed to every layer, which
    trusts it.  The node weights are computed once per kind of weighting and
    dtype and shared by the layers.

    Attributes:
        batch: sorted graph index ``[N]`` (long), or ``None`` for one graph.
        ptr: ``[B + 1]`` offsets of the graphs.
        counts: ``[B]`` nodes per graph.
        num_graphs: ``B``.
        num_nodes: ``N``.
        mass: positive node masses ``[N]`` or ``None``.
        basis: the given basis ``[N, k']`` (e.g. Laplacian eigenvectors) or ``None``.
    """

    def __init__(self, seg, num_nodes: int, mass: Optional[Tensor], basis: Optional[Tensor]):
        self.batch, self.ptr, self.counts, self.num_graphs = seg
        self.num_nodes = num_nodes
        self.mass = mass
        self.basis = basis
        self._weights: Dict[Tuple[bool, torch.dtype], Tensor] = {}
        self._chunks: Dict[int, List[tuple]] = {}
        #: checks of intermediate values (e.g. a failed factorisation), run by
        #: the entry point after the forward pass: no synchronisation per layer
        self.deferred = ValueChecks()

    def node_weights(self, normalized: bool, dtype: torch.dtype) -> Tensor:
        """Quadrature weight of every node ``[N]``: ``1 / n_b`` without mass;
        with mass, the mass normalised to sum to one per graph
        (``normalized=True``, where only relative mass matters) or the raw mass."""
        key = (normalized and self.mass is not None, dtype)
        if key not in self._weights:
            self._weights[key] = self._compute_weights(normalized, dtype)
        return self._weights[key]

    def chunks(self, chunk_size: int) -> List[tuple]:
        """``(start, end, first graph, last graph + 1, ptr local to the chunk)``
        of every chunk of ``chunk_size`` nodes (one host synchronisation per
        layout and chunk size, shared by the layers)."""
        if chunk_size not in self._chunks:
            bounds = self.ptr.tolist()
            chunks = []
            for s in range(0, self.num_nodes, chunk_size):
                e = min(s + chunk_size, self.num_nodes)
                g0 = bisect.bisect_right(bounds, s) - 1
                g1 = bisect.bisect_left(bounds, e) - 1
                local = [max(bounds[g] - s, 0) for g in range(g0, g1 + 1)] + [e - s]
                chunks.append((s, e, g0, g1 + 1, torch.tensor(local, device=self.ptr.device)))
            self._chunks[chunk_size] = chunks
        return self._chunks[chunk_size]

    def _compute_weights(self, normalized: bool, dtype: torch.dtype) -> Tensor:
        if self.mass is None:
            per_graph = self.counts.to(dtype).reciprocal()
            return per_graph.expand(self.num_nodes) if self.batch is None else per_graph[self.batch]
        if not normalized:
            return self.mass.to(dtype)
        if self.batch is None:
            return (self.mass / self.mass.sum()).to(dtype)
        total = segment_sum(self.mass, self.ptr, self.batch)
        return (self.mass / total[self.batch]).to(dtype)


def validate_layout(num_nodes: int, device: torch.device, batch: Optional[Tensor],
                    batch_size: Optional[int], mass: Optional[Tensor], basis: Optional[Tensor],
                    *, min_nodes: int = 1, min_basis_width: int = 0,
                    needs_mass: Optional[str] = None, orthonormal_atol: Optional[float] = None,
                    checks: Optional[ValueChecks] = None) -> GraphLayout:
    """Validates the graph inputs of a forward pass and returns their layout.

    ``needs_mass``: the error raised when ``mass`` is ``None`` (the basis
    kind needs the masses its basis is orthonormal with), after the checks
    of the shape of ``basis``.  The value checks (sortedness, sizes, finiteness, positivity and, with
    ``orthonormal_atol``, the mass-orthonormality of the first
    ``min_basis_width`` columns of ``basis`` per graph, see
    :func:`check_orthonormal`) are added to ``checks`` when given, to be run
    by the caller with those of the other inputs (one host synchronisation),
    else run here.
    """
    own = checks is None
    checks = ValueChecks() if own else checks
    seg = segments(batch, num_nodes, device, batch_size, min_nodes=min_nodes, checks=checks)
    if mass is not None:
        check_mass(mass, num_nodes, device, checks)
    if basis is not None:
        check_tensor(basis, "basis", ndim=2, floating=True)
        if basis.shape[0] != num_nodes or basis.shape[1] < min_basis_width:
            hint = ("; one row per node: were the points resampled after the eigenbasis was "
                    "computed? (apply LaplacianEigenbasis after SamplePoints/FixedPoints)"
                    if basis.shape[0] != num_nodes else "")
            raise ValueError(f"'basis' must have shape [N, >= num_bases] = [{num_nodes}, "
                             f">= {min_basis_width}], got {tuple(basis.shape)}{hint}")
        if basis.device != device:
            raise ValueError(f"'basis' is on {basis.device} but the node features are on {device}")
        check_finite(basis, "basis", checks)
    if needs_mass is not None and mass is None:
        raise ValueError(needs_mass)
    if basis is not None and orthonormal_atol is not None:
        if mass is None:
            raise ValueError("'mass' is required to check that 'basis' is orthonormal in the "
                             "mass inner product")
        check_orthonormal(basis[:, :min_basis_width], mass, seg, orthonormal_atol, checks)
    if own:
        checks.run()
    return GraphLayout(seg, num_nodes, mass, basis)


def check_orthonormal(basis: Tensor, mass: Tensor, seg, atol: float, checks: ValueChecks) -> None:
    r"""Adds to ``checks`` that ``basis`` ``[N, k]`` is orthonormal in the
    ``mass`` inner product on every graph of the layout ``seg``: every entry
    of :math:`\Phi_g^\top\mathbf{M}_g\Phi_g - \mathbf{I}` at most ``atol``
    in absolute value (computed in float32 by the segment product of the
    layer's analysis: no host synchronisation of its own).  Eager mode only."""
    if tracing():
        return
    k = basis.shape[1]
    phi = basis.detach().float()
    weighted = phi * mass.detach().float().unsqueeze(1)
    eye = torch.eye(k, device=phi.device)
    with torch.autocast(phi.device.type, enabled=False):
        if seg.batch is None:
            gram = (phi.t() @ weighted).unsqueeze(0)
        else:
            gram = segment_matmul_tn(phi.unsqueeze(0), weighted.unsqueeze(0), seg.ptr)[:, 0]
    deviation = (gram - eye).abs().flatten(1).amax(1)  # [B]
    worst = deviation.argmax()
    # the worst deviation and its graph (exact in float32 up to 2**24 graphs), read as one
    checks.add_float(torch.stack([deviation[worst], worst.float()]),
                     lambda v: None if v[0] <= atol else _not_orthonormal(int(v[1]), v[0], k, atol))


def _not_orthonormal(graph: int, deviation: float, k: int, atol: float) -> str:
    return (f"'basis' must be orthonormal in the 'mass' inner product on every graph "
            f"(basis_type='laplacian': Phi^T diag(mass) Phi = I over its first {k} columns, "
            f"every entry within {atol:g}), but on graph {graph} an entry of Phi^T diag(mass) Phi "
            f"- I is {deviation:.3g}. Pass the eigenvectors and the masses they were computed "
            "with (data.evecs and data.mass of tg_funcattn.transforms.LaplacianEigenbasis), "
            "unscaled; for an eigenbasis interpolated to sampled points (SampleMeshPoints) use "
            "basis_type='laplacian_init', which re-orthonormalises it; check_basis=False skips "
            "this check")


class Streaming(NamedTuple):
    """How a forward pass goes over the nodes: in one pass (``chunk_size`` is
    ``None``) or in chunks of ``chunk_size`` nodes, each recomputed in the
    backward pass when ``checkpoint`` (autograd on).  Decided once per
    forward pass by :func:`streaming`; every layer follows it, and nothing
    else checkpoints (no nested checkpoints)."""

    chunk_size: Optional[int]
    checkpoint: bool

    def run(self, fn: Callable, *args):
        """``fn(*args)`` for one chunk, checkpointed when streaming with autograd."""
        if self.checkpoint:
            from torch.utils.checkpoint import checkpoint
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    def rowwise(self, fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
        """A per-node map ``fn`` on chunks of rows, so that its hidden
        activations never exist for all nodes at once."""
        if self.chunk_size is None or x.shape[0] <= self.chunk_size:
            return fn(x)
        return torch.cat([self.run(fn, part) for part in x.split(self.chunk_size)])


ONE_PASS = Streaming(None, False)


def streaming(chunk_size: Optional[int], num_nodes: int) -> Streaming:
    """Validates ``chunk_size`` and decides how to stream (see :class:`Streaming`)."""
    if chunk_size is None:
        return ONE_PASS
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"'chunk_size' must be a positive int, got {chunk_size!r}")
    if tracing():
        raise RuntimeError("'chunk_size' streams over the nodes in Python; "
                           "it is not supported under torch.compile")
    if chunk_size >= num_nodes:
        return ONE_PASS
    return Streaming(chunk_size, torch.is_grad_enabled())
