r"""The basis kinds of :class:`~tg_funcattn.nn.FunctionalAttention`.

A basis kind decides how the features of a graph are expanded in :math:`k`
functions per head and how the expansion is inverted.  Each kind is a module
that provides four steps, which the layer runs in order on a contiguous range
of nodes (the whole batch, or one chunk of it):

0. :meth:`Basis.statistics`: per-graph sums over the nodes that the basis
   values depend on (the learned partition standardises its input per graph),
   additive over chunks of nodes; ``None`` for kinds that need none;
1. :meth:`Basis.values`: the basis values :math:`\Phi` on the nodes;
2. :meth:`Basis.analysis`: the per-graph sums over nodes in one segment
   product -- :math:`\Phi^\top \mathbf{M}\mathbf{V}` and the extra sums the
   kind needs (the partition mass, or the Gram matrix);
3. :meth:`Basis.coefficients`: the coefficients :math:`\mathbf{A}` from the
   sums (and the state the synthesis needs);
4. :meth:`Basis.synthesis_matrix` / :meth:`Basis.synthesis`: what the basis
   is multiplied with per graph, and :math:`\Phi\mathbf{B}` itself.

=========================  ======================  ===================================
``basis_type``             class                   :math:`\Phi`
=========================  ======================  ===================================
``"learned"``              :class:`LearnedPartition`   softmax of a projection: a soft partition of unity
``"laplacian"``            :class:`FixedOrthonormal`   the given basis (one for all heads)
``"laplacian_init"``       :class:`AdaptedOrthonormal` the given basis plus a learned correction, re-orthonormalised
=========================  ======================  ===================================

A new kind is a subclass of :class:`Basis`, an entry of :data:`BASIS_TYPES` and
its constructor call in :func:`make_basis`.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple, Type

import torch
from torch import Tensor
from torch.nn import Linear, Module, Parameter

from ..ops.partition import softmax_projection
from ..ops.segment import segment_matmul_nn, segment_matmul_tn, segment_sum
from ._layout import NodeRange

#: Added to the per-basis mass of the soft partition (the mass of each graph is
#: normalised to 1 first): bounds ``1/D`` for a basis function with no support.
PARTITION_EPS = 1e-6
#: Relative jitter of the Gram matrix re-orthonormalised by ``laplacian_init``:
#: ``G + eps * mean(diag G) * I`` with ``eps = max(GRAM_JITTER, 8 * machine
#: epsilon of the sums)``, so that a basis column that vanishes on a graph
#: (e.g. an eigenfunction of a mesh component that no sampled point hit) gives
#: a zero column instead of a failed factorisation.
GRAM_JITTER = 1e-5
#: Tolerance of the mass-orthonormality check of a given ``basis_type="laplacian"``
#: basis: per graph, every entry of :math:`\Psi^\top\mathbf{M}\Psi - \mathbf{I}`
#: (first ``num_bases`` columns, computed in float32) must be at most this in
#: absolute value.  Eigenbases of :class:`~tg_funcattn.transforms.LaplacianEigenbasis`
#: on their own vertices or points deviate by at most about ``1e-6`` in float32;
#: an eigenbasis interpolated to sampled points deviates by the quadrature
#: error (0.1 to 0.7 measured), which ``"laplacian_init"`` re-orthonormalises.
BASIS_ATOL = 1e-2
#: Relative floor of the per-graph variance that standardises the input of the
#: learned partition: ``var + STANDARDIZE_EPS * E[u^2]``, so that a graph whose
#: nodes all have the same features (variance 0) gets a uniform partition.
STANDARDIZE_EPS = 1e-6
#: Absolute floor of that variance: features varying by less than ``1e-10``
#: give a uniform partition (and finite float32 gradients for constant features).
VARIANCE_FLOOR = 1e-20


def wide_dtype(device: torch.device) -> torch.dtype:
    """The dtype of the small solves: float64, float32 where the device has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


class Basis(Module):
    r"""A basis kind: :math:`k` basis functions per head of a layer with
    ``channels`` features split into ``heads`` heads of ``channels / heads``.

    The owning layer calls :meth:`reset_parameters`.  Class attributes say
    what the layer must provide: ``uses_eigenbasis``
    (the ``basis`` tensor of the forward pass), ``normalized_mass`` (node
    weights normalised to sum to one per graph, else the raw mass), and
    ``min_nodes_is_num_bases`` (a graph needs at least ``num_bases`` nodes) and
    ``needs_orthonormal_basis`` (the given basis must be orthonormal in the
    mass inner product as it is; checked with :data:`BASIS_ATOL`).
    """

    uses_eigenbasis: bool = False
    needs_orthonormal_basis: bool = False
    normalized_mass: bool = False
    min_nodes_is_num_bases: bool = False

    def __init__(self, channels: int, heads: int, num_bases: int):
        super().__init__()
        self.channels, self.heads, self.num_bases = channels, heads, num_bases
        self.head_channels = channels // heads

    def statistics(self, x: Tensor, weight: Tensor, nodes: NodeRange) -> Optional[Tensor]:
        """Per-graph sums over the nodes (``[b, ...]``, additive over ranges of
        nodes) that :meth:`values` needs besides the nodes themselves;
        ``None`` for kinds whose values are per node only."""
        return None

    def values(self, x: Tensor, psi: Optional[Tensor], dtype: torch.dtype, weight: Tensor,
               nodes: NodeRange, stats: Optional[Tensor] = None) -> Tensor:
        """Basis values ``[H, n, k]`` (or ``[1, n, k]`` when shared by the heads)
        for the layer input ``x [n, channels]`` and the given basis ``psi`` on
        the node range ``nodes`` with node weights ``weight``; ``stats`` are
        the :meth:`statistics` of the whole graphs when the range is a chunk
        (computed from ``x`` when ``None``)."""
        raise NotImplementedError

    def analysis(self, phi: Tensor, value: Tensor, weight: Tensor, nodes: NodeRange) -> Tensor:
        """The per-graph sums over the nodes of ``phi`` against the weighted
        values ``value [n, channels]`` and this kind's extra columns."""
        n, H, d = value.shape[0], self.heads, self.head_channels
        w = weight.view(1, n, 1)
        weighted = value.view(n, H, d).transpose(0, 1) * w
        return segment_matmul_tn(phi, torch.cat([weighted, self.extra(phi, w)], dim=-1),
                                 nodes.ptr, nodes.bounds)

    def extra(self, phi: Tensor, w: Tensor) -> Tensor:
        """The extra analysis columns ``[H, n, e]`` (per-head kinds)."""
        raise NotImplementedError

    def coefficients(self, sums: Tensor) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        """Coefficients ``A [B, H, k, d]``, the state the synthesis needs and a
        status: integer values that :meth:`status_error` turns into an error
        message (or ``None``), read by the caller after the forward pass;
        ``None`` for kinds that cannot fail."""
        raise NotImplementedError

    @staticmethod
    def status_error(values) -> Optional[str]:
        """The error message of a status read back (``None``: no error)."""
        return None

    def synthesis_matrix(self, out_coef: Tensor, state: Optional[Tensor],
                         dtype: torch.dtype) -> Tensor:
        """What the synthesis multiplies the basis values with, per graph."""
        return out_coef.to(dtype)

    def synthesis(self, phi: Tensor, mat: Tensor, nodes: NodeRange) -> Tensor:
        r""":math:`\Phi\mathbf{B}` per graph, heads concatenated: ``[n, channels]``."""
        out = segment_matmul_nn(phi, mat, nodes.ptr, nodes.bounds)
        return out.transpose(0, 1).reshape(phi.shape[1], self.channels)

    def final(self, phi: Tensor, state: Optional[Tensor], nodes: NodeRange) -> Tensor:
        """The basis the layer used, ``[H or 1, n, k]`` (for ``return_maps``)."""
        return phi

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(heads={self.heads}, num_bases={self.num_bases})"


class _ProjectedBasis(Basis):
    r"""A per-head basis computed from the layer input: ``lin_in`` projects
    the input, ``proj`` maps each head slice :math:`\mathbf{u}` to :math:`k`
    values (logits, or a correction)."""

    def __init__(self, channels: int, heads: int, num_bases: int, bias: bool = True):
        super().__init__(channels, heads, num_bases)
        self.lin_in = Linear(channels, channels, bias=bias)
        self.proj = Linear(self.head_channels, num_bases)

    def reset_parameters(self):
        self.lin_in.reset_parameters()

    def _head_input(self, x: Tensor) -> Tensor:
        """The head slices of ``lin_in(x)``: ``[H, n, d]``."""
        return self.lin_in(x).view(x.shape[0], self.heads, self.head_channels).transpose(0, 1)

    def _project(self, u: Tensor) -> Tensor:
        """``proj`` applied to ``u [H, n, d]`` -> ``[H, n, k]``, as one batched
        GEMM with the bias folded in as a row of the weight (``[u | 1] [W^T; b]``):
        ``baddbmm`` would first copy the broadcast bias into the whole
        ``[H, n, k]`` output, a pass over the largest tensor of the layer."""
        weight = torch.cat([self.proj.weight.t(), self.proj.bias.unsqueeze(0)]).unsqueeze(0)
        weight = weight.expand(u.shape[0], -1, -1).to(u.dtype)
        return torch.bmm(torch.cat([u, u.new_ones(u.shape[:2] + (1,))], dim=-1), weight)


class LearnedPartition(_ProjectedBasis):
    r"""``basis_type="learned"``: :math:`\Phi_i = \mathrm{softmax}(\mathbf{W}_b
    \hat{\mathbf{u}}_i / \tau)`, a soft partition of unity per head, with the
    temperature :math:`\tau` learned per head (clamped to ``[0.1, 5]``) and
    :math:`\hat{\mathbf{u}}_i = (\mathbf{u}_i - \bar{\mathbf{u}}) / s` the head
    slice of :math:`\mathbf{W}_u\mathbf{x}_i` standardised per graph: centred
    by its mass-weighted mean :math:`\bar{\mathbf{u}}` over the graph and
    divided by its mass-weighted standard deviation :math:`s` (over the nodes
    and the head's channels; see :data:`STANDARDIZE_EPS` and
    :data:`VARIANCE_FLOOR`).  The partition thus depends on how the nodes of a
    graph differ, not on the scale or offset of the features, and it is sharp from the start (logits of standard deviation
    about :math:`\min(1, \sqrt{d/k}) / \tau` per node, :math:`\mathbf{W}_b`
    orthogonal), so that the coefficients of different basis functions
    differ.  The moments are quadratures, like the coefficients: the same
    shape sampled more finely gives the same partition.  The coefficients
    are mass-weighted means,
    :math:`\mathbf{A} = \mathbf{D}^{-1}\Phi^\top\mathbf{M}\mathbf{V}` with
    :math:`\mathbf{D} = \mathrm{diag}(\Phi^\top\mathbf{M}\mathbf{1}) +`
    :data:`PARTITION_EPS`, and the mass of every graph normalised to one."""

    normalized_mass = True

    def __init__(self, channels: int, heads: int, num_bases: int, temperature: float = 0.5):
        # no bias in lin_in: the standardisation removes any offset of u
        super().__init__(channels, heads, num_bases, bias=False)
        self.init_temperature = temperature
        self.temperature = Parameter(torch.full((heads,), float(temperature)))

    def reset_parameters(self):
        super().reset_parameters()
        torch.nn.init.orthogonal_(self.proj.weight)
        torch.nn.init.zeros_(self.proj.bias)
        torch.nn.init.constant_(self.temperature, self.init_temperature)

    def statistics(self, x: Tensor, weight: Tensor, nodes: NodeRange) -> Tensor:
        return self._moments(self._head_input(x), weight, nodes)

    def _moments(self, u: Tensor, weight: Tensor, nodes: NodeRange) -> Tensor:
        """Per-graph weighted sums of ``u`` and of its mean square over the
        head's channels: ``[b, H, d + 1]`` in the wide dtype (the variance is
        their difference, which float32 would cancel)."""
        H, n, d = u.shape
        wide = wide_dtype(u.device)
        with torch.autocast(u.device.type, enabled=False):
            u = u.to(wide)
            rows = torch.cat([u, u.square().mean(-1, keepdim=True)], dim=-1) * \
                weight.to(wide).view(1, n, 1)
            sums = segment_sum(rows.transpose(0, 1).reshape(n, H * (d + 1)), nodes.ptr, nodes.batch)
        return sums.view(-1, H, d + 1)

    def _centred(self, u: Tensor, weight: Tensor, nodes: NodeRange) -> Tuple[Tensor, Tensor]:
        """``u`` minus its per-graph weighted mean, and the per-node inverse
        standard deviation ``[H, n, 1]`` (two passes, so no cancellation; in
        float32 at least, whose range holds the squares of half-precision ``u``)."""
        H, n, d = u.shape
        u = u.to(torch.promote_types(u.dtype, torch.float32))
        w = weight.to(u.dtype).view(n, 1)
        mean = segment_sum(u.transpose(0, 1).reshape(n, H * d) * w, nodes.ptr, nodes.batch)
        centred = u - _per_node(mean.view(-1, H, d), nodes, n)
        variance = segment_sum(centred.square().mean(-1).transpose(0, 1) * w, nodes.ptr,
                               nodes.batch).unsqueeze(-1)  # [b, H, 1]
        second = variance + mean.view(-1, H, d).square().mean(-1, keepdim=True)
        return centred, _per_node(_inverse_std(variance, second), nodes, n)

    def values(self, x: Tensor, psi: Optional[Tensor], dtype: torch.dtype, weight: Tensor,
               nodes: NodeRange, stats: Optional[Tensor] = None) -> Tensor:
        u = self._head_input(x)
        if stats is None:  # the whole graphs: two passes, the mean, then the centred square
            with torch.autocast(u.device.type, enabled=False):
                u, inv_std = self._centred(u, weight, nodes)
        else:  # a chunk: the moments of the whole graphs
            d = self.head_channels
            mean, second = stats[..., :d], stats[..., d:]
            variance = (second - mean.square().mean(-1, keepdim=True)).clamp_min(0)
            u = u - _per_node(mean.to(u.dtype), nodes, u.shape[1])
            inv_std = _per_node(_inverse_std(variance, second).to(u.dtype), nodes, u.shape[1])
        # 1/tau folded into the small weight and bias, not into the [H, n, k] logits
        scale = self.temperature.clamp(0.1, 5.0).reciprocal().view(self.heads, 1, 1)
        with torch.autocast(x.device.type, enabled=False):  # in the compute dtype
            return softmax_projection((u * inv_std).to(dtype), self.proj.weight.t() * scale,
                                      self.proj.bias * scale, dtype)

    def extra(self, phi: Tensor, w: Tensor) -> Tensor:
        return w.expand(phi.shape[0], -1, 1)  # Phi^T M 1

    def coefficients(self, sums: Tensor) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        d = self.head_channels
        return sums[..., :d] / (sums[..., d:] + PARTITION_EPS), None, None


class FixedOrthonormal(Basis):
    r"""``basis_type="laplacian"``: the given basis :math:`\Psi` (e.g.
    Laplace-Beltrami eigenfunctions), orthonormal in the mass inner product,
    shared by all heads: :math:`\mathbf{A} = \Psi^\top\mathbf{M}\mathbf{V}`.
    No parameters.  The orthonormality is a precondition, not corrected
    (a basis scaled by 100 makes the output about 7600 times too large); the
    layer checks it (see :data:`BASIS_ATOL`)."""

    uses_eigenbasis = True
    needs_orthonormal_basis = True
    min_nodes_is_num_bases = True

    def values(self, x: Tensor, psi: Optional[Tensor], dtype: torch.dtype, weight: Tensor,
               nodes: NodeRange, stats: Optional[Tensor] = None) -> Tensor:
        return psi.to(dtype).unsqueeze(0)

    def analysis(self, phi: Tensor, value: Tensor, weight: Tensor, nodes: NodeRange) -> Tensor:
        # one product for all heads: [B, 1, k, channels]
        return segment_matmul_tn(phi, (value * weight.unsqueeze(1)).unsqueeze(0), nodes.ptr,
                                 nodes.bounds)

    def coefficients(self, sums: Tensor) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        return (sums.view(-1, self.num_bases, self.heads, self.head_channels).transpose(1, 2),
                None, None)

    def synthesis_matrix(self, out_coef: Tensor, state: Optional[Tensor],
                         dtype: torch.dtype) -> Tensor:
        return out_coef.to(dtype).transpose(1, 2).reshape(-1, 1, self.num_bases, self.channels)

    def synthesis(self, phi: Tensor, mat: Tensor, nodes: NodeRange) -> Tensor:
        return segment_matmul_nn(phi, mat, nodes.ptr, nodes.bounds).view(phi.shape[1], self.channels)


class AdaptedOrthonormal(_ProjectedBasis):
    r"""``basis_type="laplacian_init"``: :math:`\Phi = \mathrm{orth}_M(\Psi +
    \Delta(\mathbf{u}))`, the given basis plus a learned per-head correction
    whose last layer (``proj``) is zero-initialised, re-orthonormalised per
    graph in the mass inner product with the inverse Cholesky factor
    :math:`\mathbf{R}^{-1}` of the Gram matrix (see :data:`GRAM_JITTER`).
    Equal to :math:`\Psi` at initialisation (up to the jitter) when
    :math:`\Psi` is mass-orthonormal.  Any basis of full rank is accepted
    as given: the re-orthonormalisation makes the output at initialisation
    the same (up to the jitter) for :math:`\Psi` and :math:`\Psi\mathbf{S}` with
    :math:`\mathbf{S}` upper triangular with a positive diagonal (e.g. a
    scaled basis), so an eigenbasis interpolated to sampled points
    (orthonormal only up to the quadrature error) needs no correction."""

    uses_eigenbasis = True
    min_nodes_is_num_bases = True

    def __init__(self, channels: int, heads: int, num_bases: int, bias: bool = True):
        super().__init__(channels, heads, num_bases, bias)
        self.reset_correction()

    def reset_parameters(self):
        super().reset_parameters()
        self.reset_correction()

    def reset_correction(self):
        """Zeroes the last layer of the correction, so that the basis is the given one."""
        torch.nn.init.zeros_(self.proj.weight)
        torch.nn.init.zeros_(self.proj.bias)

    def values(self, x: Tensor, psi: Optional[Tensor], dtype: torch.dtype, weight: Tensor,
               nodes: NodeRange, stats: Optional[Tensor] = None) -> Tensor:
        return psi.to(dtype) + self._project(self._head_input(x))

    def extra(self, phi: Tensor, w: Tensor) -> Tensor:
        return phi * w  # Phi^T M Phi

    def coefficients(self, sums: Tensor) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        d = self.head_channels
        r_inv, status = self._inverse_cholesky(sums[..., d:])
        # (Phi R^{-1})^T M V = R^{-T} (Phi^T M V)
        coef = (r_inv.transpose(-1, -2) @ sums[..., :d].to(r_inv.dtype)).to(sums.dtype)
        return coef, r_inv, status

    @staticmethod
    def status_error(values) -> Optional[str]:
        failed, graph, overflow = values
        if not failed:
            return None
        if overflow:
            return (f"the mass Gram matrix of the basis of graph {graph} has NaN or infinite "
                    "entries: the values overflowed inside the layer (its inputs were finite; "
                    "are they too large? scale the features)")
        return (f"the basis of graph {graph} has a mass Gram matrix that is not positive "
                "semi-definite; cannot re-orthonormalise it")

    def synthesis_matrix(self, out_coef: Tensor, state: Optional[Tensor],
                         dtype: torch.dtype) -> Tensor:
        return (state @ out_coef.to(state.dtype)).to(dtype)

    def final(self, phi: Tensor, state: Optional[Tensor], nodes: NodeRange) -> Tensor:
        return segment_matmul_nn(phi, state.to(phi.dtype), nodes.ptr, nodes.bounds)

    def _inverse_cholesky(self, gram: Tensor) -> Tuple[Tensor, Tensor]:
        """``R^{-1}`` in the wide dtype with ``R^T R = gram + jitter`` (the mass
        Gram matrix of the basis ``[B, H, k, k]``), so ``Phi R^{-1}`` is
        orthonormal; directions in which the basis vanishes stay (near) zero
        instead of being blown up.  With the status of :meth:`status_error`."""
        wide = wide_dtype(gram.device)
        eps = max(GRAM_JITTER, 8 * torch.finfo(gram.dtype).eps)
        with torch.autocast(gram.device.type, enabled=False):
            gram = gram.to(wide)
            eye = torch.eye(self.num_bases, dtype=wide, device=gram.device)
            scale = gram.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(torch.finfo(wide).tiny)
            chol, info = torch.linalg.cholesky_ex(gram + eps * scale[..., None, None] * eye,
                                                  upper=True)
            failed = (info > 0).any(-1)
            status = torch.stack([failed.any(), failed.long().argmax(), (~torch.isfinite(gram)).any()])
            return torch.linalg.solve_triangular(chol, eye, upper=True), status


def _per_node(per_graph: Tensor, nodes: NodeRange, n: int) -> Tensor:
    """Per-graph values ``[b, H, e]`` at the ``n`` nodes of the range: ``[H, n, e]``."""
    rows = per_graph.expand(n, -1, -1) if nodes.batch is None else per_graph[nodes.batch]
    return rows.transpose(0, 1)


def _inverse_std(variance: Tensor, second: Tensor) -> Tensor:
    """``1 / s`` of the standardisation from the variance and the mean square."""
    return torch.rsqrt(variance + STANDARDIZE_EPS * second + VARIANCE_FLOOR)


#: ``basis_type`` -> the class implementing it.
BASIS_TYPES: Dict[str, Type[Basis]] = {
    "learned": LearnedPartition,
    "laplacian": FixedOrthonormal,
    "laplacian_init": AdaptedOrthonormal,
}


def uses_eigenbasis(basis_type: str) -> bool:
    """Whether the kind ``basis_type`` needs a given basis (e.g. the Laplacian
    eigenbasis, ``data.evecs``) in the forward pass."""
    if basis_type not in BASIS_TYPES:
        raise ValueError(f"'basis_type' must be one of {tuple(BASIS_TYPES)}, got {basis_type!r}")
    return BASIS_TYPES[basis_type].uses_eigenbasis


def make_basis(basis_type: str, channels: int, heads: int, num_bases: int, *, bias: bool = True,
               temperature: float = 0.5) -> Basis:
    """The :class:`Basis` module of the kind ``basis_type``."""
    uses_eigenbasis(basis_type)  # validates the name
    if basis_type == "learned":
        return LearnedPartition(channels, heads, num_bases, temperature)
    if basis_type == "laplacian":
        return FixedOrthonormal(channels, heads, num_bases)
    return AdaptedOrthonormal(channels, heads, num_bases, bias)


__all__ = ["Basis", "LearnedPartition", "FixedOrthonormal", "AdaptedOrthonormal", "BASIS_TYPES",
           "uses_eigenbasis", "make_basis", "PARTITION_EPS", "GRAM_JITTER",
           "BASIS_ATOL", "STANDARDIZE_EPS", "VARIANCE_FLOOR", "wide_dtype"]
