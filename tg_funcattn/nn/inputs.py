"""The input checks of the layers, in one place.

Every module states what its inputs must provide: :class:`FunctionalAttention`
its :class:`GraphNeeds` (nodes per graph, a given basis and its width, masses,
orthonormality), :class:`FuncAttnBlock` and :class:`FuncAttnNet` their
:class:`NetworkNeeds` on top (feature and position widths, categories, a local
branch).  The functions here check a batch against them, once per forward pass
at the entry point, and return the :class:`~tg_funcattn.nn._layout.GraphLayout`
that the computation trusts.  Checks of tensor values (finiteness, order of
``batch``, positivity of ``mass``, ...) are gathered in one
:class:`~tg_funcattn._validation.ValueChecks` and read back with one host
synchronisation.
"""
from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from .._validation import (RESAMPLED_HINT, ValueChecks, check_finite, check_mass, check_tensor,
                           segments, tracing)
from ..ops.segment import segment_matmul_tn
from ._layout import GraphLayout


class GraphNeeds(NamedTuple):
    """What the graph inputs of a :class:`FunctionalAttention` must provide."""

    basis_type: str
    #: the fewest nodes a graph may have
    min_nodes: int
    #: the kind reads a given basis of at least ``num_bases`` columns (and its masses)
    uses_eigenbasis: bool
    num_bases: int
    #: entries of ``Phi^T M Phi - I`` allowed for the given basis; ``None``: not checked
    orthonormal_atol: Optional[float]


class NetworkNeeds(NamedTuple):
    """What the inputs of a :class:`FuncAttnBlock` or :class:`FuncAttnNet` must
    provide besides the graph inputs of its attention."""

    graph: GraphNeeds
    #: width of ``x`` (``0``: no ``x``)
    in_channels: int
    #: width of ``pos`` read by the network's lift (``0``: none)
    pos_channels: int
    #: ``category`` holds indices below this (``None``: no ``category``)
    num_categories: Optional[int]
    #: the blocks have a local branch; it reads ``pos`` itself (else only its edges)
    local: bool
    local_takes_pos: bool
    #: the module named in errors about the parameters' device and dtype
    owner: str


def validate_graph(needs: GraphNeeds, num_nodes: int, device: torch.device,
                   batch: Optional[Tensor], batch_size: Optional[int], mass: Optional[Tensor],
                   basis: Optional[Tensor], checks: ValueChecks) -> GraphLayout:
    """The layout of the graph inputs ``batch, mass, basis`` of ``num_nodes``
    nodes on ``device``; static errors are raised here, value checks added to
    ``checks`` (run by the caller, except that without ``batch_size`` the
    order of ``batch`` is read at once to know the number of graphs)."""
    if not needs.uses_eigenbasis and basis is not None:
        raise ValueError("'basis' is only used with basis_type='laplacian' or "
                         "'laplacian_init'; this layer learns its basis (basis_type='learned')")
    if needs.uses_eigenbasis and basis is None:
        raise ValueError(f"basis_type='{needs.basis_type}' needs the 'basis' argument: per-node "
                         f"values [N, >= {needs.num_bases}] of the Laplacian eigenbasis (e.g. "
                         "data.evecs)")
    seg = segments(batch, num_nodes, device, batch_size, min_nodes=needs.min_nodes, checks=checks)
    if mass is not None:
        check_mass(mass, num_nodes, device, checks)
    if basis is not None:
        check_tensor(basis, "basis", ndim=2, floating=True)
        if basis.shape[0] != num_nodes or basis.shape[1] < needs.num_bases:
            hint = f"; one row per node: {RESAMPLED_HINT}" if basis.shape[0] != num_nodes else ""
            raise ValueError(f"'basis' must have shape [N, >= num_bases] = [{num_nodes}, "
                             f">= {needs.num_bases}], got {tuple(basis.shape)}{hint}")
        if basis.device != device:
            raise ValueError(f"'basis' is on {basis.device} but the node features are on {device}")
        check_finite(basis, "basis", checks)
        if mass is None:
            raise ValueError(
                f"basis_type='{needs.basis_type}' needs the 'mass' argument: the node masses [N] "
                "in whose inner product 'basis' is orthonormal (data.mass of "
                "tg_funcattn.transforms.LaplacianEigenbasis or SampleMeshPoints, next to "
                "data.evecs); without it the nodes would be weighted 1/n, which is not that "
                "inner product")
        if needs.orthonormal_atol is not None:
            check_orthonormal(basis[:, :needs.num_bases], mass, seg, needs.orthonormal_atol, checks)
    layout = GraphLayout(seg, num_nodes, mass, basis)
    if layout.bounds is None:  # the graph bounds travel with the value checks: no read of their own
        checks.add(seg.ptr, lambda bounds: setattr(layout, "bounds", bounds))
    return layout


def check_features(x, name: str, channels: int, weight: Tensor, checks: ValueChecks,
                   owner: str = "layer") -> None:
    """``x`` is a finite ``[N, channels]`` float tensor on the device of the
    parameter ``weight`` of the ``owner`` reading it, and of its dtype unless
    autocast is on, of magnitude at most the square root of its dtype's
    largest number (see :func:`~tg_funcattn._validation.check_finite`: beyond
    it the layer's sums and Gram matrices overflow)."""
    check_tensor(x, name, ndim=2, floating=True)
    if x.shape[1] != channels:
        raise ValueError(f"'{name}' must have shape [N, {channels}], got {tuple(x.shape)}")
    if x.device != weight.device:
        raise ValueError(f"'{name}' is on {x.device} but the {owner}'s parameters are on "
                         f"{weight.device}; move one with .to()")
    if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(f"'{name}' has dtype {x.dtype} but the {owner}'s parameters are "
                        f"{weight.dtype}; convert one with .to() (e.g. {name}.to({weight.dtype})) "
                        "or use torch.autocast")
    check_finite(x, name, checks, bounded=True)


def validate_network(needs: NetworkNeeds, weight: Tensor, x: Optional[Tensor],
                     pos: Optional[Tensor], batch: Optional[Tensor], mass: Optional[Tensor],
                     basis: Optional[Tensor], category: Optional[Tensor],
                     edge_index: Optional[Tensor], batch_size: Optional[int],
                     local_kwargs: Dict) -> Tuple[Tensor, GraphLayout]:
    """The input of the first layer (``x``, ``pos`` or both concatenated, as
    ``needs`` says; ``weight`` is one of its parameters) and the layout of
    the batch, every input checked, with one host synchronisation."""
    if not needs.local and (local_kwargs or edge_index is not None):
        given = sorted(local_kwargs) + (["edge_index"] if edge_index is not None else [])
        raise ValueError(f"{given} go to the local branch, but the model has none "
                         "(build it with local=...)")
    checks = ValueChecks()
    if needs.in_channels > 0:
        if x is None:
            raise ValueError(f"'x' is None but the model was built with in_channels={needs.in_channels}")
        check_features(x, "x", needs.in_channels, weight, checks, needs.owner)
    elif x is not None and x.numel() > 0:
        raise ValueError("'x' was given but the model was built with in_channels=0; "
                         "set in_channels to its width")
    local_needs_pos = needs.local and (edge_index is None or needs.local_takes_pos)
    if pos is None and (needs.pos_channels > 0 or local_needs_pos):
        raise ValueError(f"'pos' is required: the lift reads it (pos_channels={needs.pos_channels})"
                         if needs.pos_channels else "'pos' is required: the local branch needs "
                         "'pos' (or a precomputed 'edge_index')")
    if needs.pos_channels > 0 and needs.in_channels == 0:  # the lift's only input
        check_features(pos, "pos", needs.pos_channels, weight, checks, needs.owner)
    elif needs.pos_channels > 0 or local_needs_pos:
        check_tensor(pos, "pos", ndim=2, floating=True)
        if needs.pos_channels > 0 and pos.shape[1] != needs.pos_channels:
            raise ValueError(f"'pos' must have shape [N, {needs.pos_channels}], got {tuple(pos.shape)}")
        check_finite(pos, "pos", checks, bounded=True)
    inputs = ([x] if needs.in_channels > 0 else []) + ([pos] if needs.pos_channels > 0 else [])
    if len(inputs) == 2:
        if pos.shape[0] != x.shape[0]:
            raise ValueError(f"'pos' has {pos.shape[0]} rows but 'x' has {x.shape[0]}")
        inputs[1] = pos.to(x.dtype)
    h = inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=-1)
    layout = validate_graph(needs.graph, h.shape[0], h.device, batch, batch_size, mass, basis, checks)
    _check_category(category, needs.num_categories, layout.num_graphs, h.device, checks)
    checks.run()
    return h, layout


def _check_category(category: Optional[Tensor], num_categories: Optional[int], num_graphs: int,
                    device: torch.device, checks: ValueChecks) -> None:
    if num_categories is None:
        if category is not None:
            raise ValueError("'category' was given but the model was built without num_categories")
        return
    if category is None:
        raise ValueError(f"'category' [B] is required: the model was built with "
                         f"num_categories={num_categories}")
    check_tensor(category, "category", ndim=1)
    if category.dtype.is_floating_point or category.dtype == torch.bool or category.is_complex():
        raise TypeError(f"'category' must be an integer tensor (category indices in "
                        f"[0, {num_categories})), got dtype {category.dtype}")
    if category.numel() != num_graphs:
        raise ValueError(f"'category' must have one entry per graph ({num_graphs}), "
                         f"got shape {tuple(category.shape)}")
    if category.device != device:
        raise ValueError(f"'category' is on {category.device} but the node features are "
                         f"on {device}")
    bad = (category < 0) | (category >= num_categories)
    first = bad.long().argmax().view(1)
    checks.add(torch.cat([bad.any().long().view(1), first, category.long().gather(0, first)]),
               lambda v: (f"'category' must hold indices in [0, {num_categories}) (num_categories="
                          f"{num_categories}), but graph {v[1]} has category {v[2]}")
               if v[0] else None)


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
    if seg.batch is not None:
        deviation = deviation * (seg.counts > 0)  # an empty graph has no basis to check
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
