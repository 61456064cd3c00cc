"""What a forward pass hands down its layers once its inputs are checked: the
graph layout of the flat batch, the masses, the given basis and the node
weights derived from them; and the one decision of how to stream over the
nodes."""
from __future__ import annotations

import bisect
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .._validation import ValueChecks, tracing
from ..ops.segment import segment_sum


class NodeRange(NamedTuple):
    """The graphs of a contiguous range of nodes of a validated batch (the
    whole batch, or one chunk of it): ``ptr`` ``[b + 1]`` offsets local to
    the range, ``batch`` ``[n]`` the local graph of every node (``None``
    for a single graph) and ``bounds``, ``ptr``'s values on the host where
    they were read with the input checks (``None``: not read, e.g. under
    ``torch.compile``), passed to the segment products."""

    ptr: Tensor
    batch: Optional[Tensor]
    bounds: Optional[Sequence[int]] = None


class GraphLayout:
    """A validated flat batch of graphs.

    Built once per forward pass by
    :func:`~tg_funcattn.nn.inputs.validate_graph` at the entry point, which
    checks the inputs, and passed to every layer, which trusts it.  The node
    weights are computed once per kind of weighting and dtype and shared by the
    layers.  The graph offsets on the host (:attr:`bounds`) are read with the
    input checks; only a layout built without them (under tracing) reads them
    in :meth:`chunks`.

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
        #: ``ptr``'s values on the host, read with the input checks (one graph:
        #: known without reading); ``None`` where they were not read (tracing)
        self.bounds: Optional[List[int]] = [0, num_nodes] if self.num_graphs == 1 else None
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

    def chunks(self, chunk_size: Optional[int]) -> List[Tuple[int, int, int, int, NodeRange]]:
        """``(start, end, first graph, last graph + 1, the chunk's NodeRange)``
        of every chunk of ``chunk_size`` nodes; ``None``: one chunk, the whole
        batch.  The chunks of a size are cut once per layout, from the graph
        bounds read with the input checks (or read here once)."""
        if chunk_size is None:
            return [(0, self.num_nodes, 0, self.num_graphs,
                     NodeRange(self.ptr, self.batch, self.bounds))]
        if chunk_size not in self._chunks:
            bounds = self.ptr.tolist() if self.bounds is None else self.bounds
            chunks = []
            for s in range(0, self.num_nodes, chunk_size):
                e = min(s + chunk_size, self.num_nodes)
                g0 = bisect.bisect_right(bounds, s) - 1
                g1 = bisect.bisect_left(bounds, e) - 1
                local = [max(bounds[g] - s, 0) for g in range(g0, g1 + 1)] + [e - s]
                batch = None if self.batch is None else self.batch[s:e] - g0
                chunks.append((s, e, g0, g1 + 1, NodeRange(torch.tensor(local, device=self.ptr.device),
                                                           batch, local)))
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
