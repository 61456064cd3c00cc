r"""The functional attention layer."""
from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Linear, Parameter

from .._validation import ValueChecks, check_finite, check_tensor
from ._layout import ONE_PASS, GraphLayout, Streaming, streaming, validate_layout
from .bases import (BASIS_ATOL, BASIS_TYPES, GRAM_JITTER, PARTITION_EPS, NodeRange, make_basis,
                    wide_dtype)

__all__ = ["FunctionalAttention", "BASIS_TYPES", "SOLVES", "PARTITION_EPS", "GRAM_JITTER"]

SOLVES = ("auto", "primal", "dual")


class FunctionalAttention(torch.nn.Module):
    r"""Functional attention from `"Functional Attention: From Pairwise Affinities
    to Functional Correspondences" <https://arxiv.org/abs/2605.31559>`_
    (Xiao et al., ICML 2026), for flat PyG batches of graphs of any size.

    Features on each graph are expanded in :math:`k` basis functions per head
    and attention is a :math:`k \times k` linear operator between coefficient
    spaces -- a functional map -- found by regularised least squares.  For one
    graph with node masses :math:`\mathbf{M} = \mathrm{diag}(m)` and one head:

    .. math::
        \mathbf{A} &= \mathbf{D}^{-1} \mathbf{\Phi}^{\top} \mathbf{M}\,
            \mathbf{X}\mathbf{W}_f,
        \qquad \mathbf{Q}, \mathbf{K}, \mathbf{V} = \mathbf{A}\mathbf{W}_q,
            \mathbf{A}\mathbf{W}_k, \mathbf{A}\mathbf{W}_v \\
        \mathbf{C} &= \arg\min_{\mathbf{C}} \|\mathbf{C}\mathbf{K} -
            \mathbf{Q}\|^2 + \lambda \|\mathbf{C}\|^2
            = \mathbf{Q}\mathbf{K}^{\top}(\mathbf{K}\mathbf{K}^{\top} +
            \lambda\mathbf{I})^{-1} \\
        \mathbf{X}' &= \big[\mathbf{\Phi}\, \mathbf{C}\mathbf{V}\big]_{\text{heads}}
            \mathbf{W}_o

    with :math:`\mathbf{C}\mathbf{V} = \mathbf{Q}\,(\mathbf{K}^{\top}\mathbf{K} +
    \lambda\mathbf{I})^{-1}\mathbf{K}^{\top}\mathbf{V}` evaluated in the
    cheaper of the primal (:math:`k \times k`) and dual (:math:`d \times d`)
    forms.  The ridge is relative to the keys' own scale,
    :math:`\lambda = \rho\,\|\mathbf{K}\|_F^2 / \min(k, d)` (the mean
    squared singular value of :math:`\mathbf{K}` times :math:`\rho > 0`,
    learned per head), so that the map does not vanish when the
    coefficients are small and the layer is scale-free: scaling the
    coefficients scales the output alike, and the condition number of the
    solve is at most :math:`1 + \min(k, d) / \rho` whatever the scale of the
    keys.  :math:`\mathbf{W}_q` starts equal to :math:`\mathbf{W}_k`, so the
    initial map is :math:`\mathbf{C} = \mathbf{K}\mathbf{K}^\top(\mathbf{K}
    \mathbf{K}^\top + \lambda\mathbf{I})^{-1}`, the identity on the
    directions the keys determine (shrunk by the ridge elsewhere): at
    initialisation the layer projects its values onto the basis and the
    output varies across the nodes as the input does.  The basis
    :math:`\mathbf{\Phi} \in \mathbb{R}^{n \times k}` is

    * ``"learned"``: :math:`\Phi_i = \mathrm{softmax}(\mathbf{W}_b \hat{\mathbf{u}}_i /
      \tau)` with :math:`\hat{\mathbf{u}}_i` the head slice of
      :math:`\mathbf{W}_u \mathbf{x}_i` standardised over the graph (its
      mass-weighted mean subtracted, divided by its mass-weighted standard
      deviation; :class:`~tg_funcattn.nn.bases.LearnedPartition`), a soft
      partition of unity that is sharp from the start;
      :math:`\mathbf{D} = \mathrm{diag}(\Phi^\top \mathbf{M}\mathbf{1})`, so the
      coefficients are mass-weighted means (the mass of each graph is
      normalised to one; only its relative values matter).
    * ``"laplacian"``: a fixed basis passed as ``basis`` (e.g. Laplace-Beltrami
      eigenfunctions), orthonormal in the mass inner product,
      :math:`\Phi^\top\mathbf{M}\Phi = \mathbf{I}`; :math:`\mathbf{D} = \mathbf{I}`.
      The layer checks this per graph (every entry within
      :data:`~tg_funcattn.nn.bases.BASIS_ATOL` of the identity; ``check_basis``).
    * ``"laplacian_init"``: :math:`\Phi = \mathrm{orth}_M(\Psi + \Delta(\mathbf{u}))`,
      the given basis plus a learned per-head correction whose last layer is
      zero-initialised, re-orthonormalised per graph in the mass inner product
      (a Cholesky factor of the Gram matrix, with a relative jitter of
      :math:`10^{-5}` so that a column vanishing on a graph -- an
      eigenfunction of a mesh component no sampled point hit -- stays zero
      instead of failing); equal to :math:`\Psi` at initialisation (up to
      the jitter).  :math:`\Psi` need not be orthonormal (e.g. an eigenbasis
      interpolated to sampled points, orthonormal up to the quadrature error):
      the re-orthonormalisation makes a scaled basis give the same output.

    Both Laplacian kinds need the ``mass`` the basis is orthonormal with: the
    forward pass refuses ``mass=None`` for them (uniform weights ``1/n``
    would not be that inner product).

    **Invariance to the choice of eigenbasis.**  With ``"laplacian"`` the
    output is exactly invariant to any orthogonal change of basis
    :math:`\Phi \to \Phi\mathbf{S}` (:math:`\mathbf{S}^\top\mathbf{S} = \mathbf{I}`),
    in particular to the arbitrary sign of every eigenvector and to rotations
    within the eigenspace of a repeated eigenvalue: the coefficients become
    :math:`\mathbf{S}^\top\mathbf{A}`, the map
    :math:`\mathbf{S}^\top\mathbf{C}\mathbf{S}` (so the returned maps do
    change), and :math:`\Phi\mathbf{S}\,\mathbf{S}^\top\mathbf{B} = \Phi\mathbf{B}`.
    ``"laplacian_init"`` has the same invariance at initialisation, but not
    once the correction :math:`\Delta` is learned, since :math:`\Delta` is
    tied to the order and sign of the given eigenvectors; use
    :class:`~tg_funcattn.transforms.RandomEigenvectorSignFlip` during training
    if those can vary.  ``"learned"`` uses no eigenvectors.

    The layer validates its inputs once in :meth:`forward` (with one host
    synchronisation for all value checks when ``batch_size`` is given) and
    runs the pure computation in :meth:`forward_validated`, which models built of
    several layers call with the layout they validated once.

    Every sum over nodes is taken per graph (no cross-graph leakage, no
    padding) by the segment products of :mod:`tg_funcattn.ops` (BLAS on the
    CPU, Triton kernels for batches on CUDA).  Memory beyond the parameters
    is :math:`O(N(c + Hk))`: no :math:`N \times k \times d` or
    :math:`N \times N` tensor is formed, in the forward or the backward
    pass; ``chunk_size`` streams over the nodes for :math:`O(Nc)` (a graph
    of a million nodes infers in about 1 GiB).  The solve runs in float64
    (float32 on devices without it) outside autocast, and
    :math:`\mathbf{K}^\top\mathbf{K} + \lambda \mathbf{I}` is positive
    definite, so rank-deficient or badly scaled keys (e.g. a one-node graph)
    give finite output.  Under bfloat16 autocast the projections, the basis
    and the segment products run in bfloat16; under float16 the basis and
    the segment products stay in float32 (float16's range cannot hold the
    gradient of a nearly empty partition function).

    Args:
        channels (int): Size of each input and output sample :math:`c`.
        heads (int, optional): Number of heads :math:`H`; must divide
            ``channels``. (default: :obj:`8`)
        num_bases (int, optional): Number of basis functions :math:`k` per
            head. (default: :obj:`32`)
        basis_type (str, optional): The basis kind, ``"learned"``,
            ``"laplacian"`` or ``"laplacian_init"`` (the modules of
            :mod:`tg_funcattn.nn.bases`). (default: :obj:`"learned"`)
        dropout (float, optional): Dropout on the output. (default: :obj:`0.0`)
        solve (str, optional): ``"auto"`` (the smaller of :math:`k` and
            :math:`d`), ``"primal"`` (:math:`k \times k` system) or ``"dual"``
            (:math:`d \times d` system). (default: :obj:`"auto"`)
        temperature (float, optional): Initial softmax temperature :math:`\tau`
            of the learned basis, clamped to ``[0.1, 5]`` in use.
            (default: :obj:`0.5`)
        ridge (float, optional): Initial relative ridge :math:`\rho` (the
            ridge :math:`\lambda` over the mean squared singular value of the
            keys). (default: :obj:`0.1`)
        shared_ridge (bool, optional): One ridge parameter for all heads (as
            in the authors' models) instead of one per head.
            (default: :obj:`False`)
        bias (bool, optional): Bias in the input and output projections.
            (default: :obj:`True`)
        check_basis (bool, optional): With ``basis_type="laplacian"``,
            check in every eager forward pass that the given basis is
            orthonormal in the ``mass`` inner product on every graph (a
            float32 Gram matrix per graph, read back with the other input
            checks: no extra host synchronisation); :obj:`False` skips it
            for speed.  Skipped under ``torch.compile``; ``"laplacian_init"``
            re-orthonormalises and is not checked. (default: :obj:`True`)

    Shapes:
        - **input:**
          node features :math:`(N, c)`,
          batch vector :math:`(N)` (optional, sorted),
          node masses :math:`(N)` (optional, positive),
          basis :math:`(N, k')` with :math:`k' \geq k` (Laplacian kinds; the
          first :math:`k` columns are used)
        - **output:** node features :math:`(N, c)`; with ``return_maps=True``
          also the bases :math:`(N, H, k)` and the functional maps
          :math:`(B, H, k, k)`
    """

    def __init__(self, channels: int, heads: int = 8, num_bases: int = 32,
                 basis_type: str = "learned", dropout: float = 0.0, *, solve: str = "auto",
                 temperature: float = 0.5, ridge: float = 0.1, shared_ridge: bool = False,
                 bias: bool = True, check_basis: bool = True):
        super().__init__()
        for name, value in (("channels", channels), ("heads", heads), ("num_bases", num_bases)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"'{name}' must be a positive int, got {value!r}")
        if channels % heads != 0:
            raise ValueError(f"'channels' ({channels}) must be divisible by 'heads' ({heads})")
        if basis_type not in BASIS_TYPES:
            raise ValueError(f"'basis_type' must be one of {tuple(BASIS_TYPES)}, got {basis_type!r}")
        if solve not in SOLVES:
            raise ValueError(f"'solve' must be one of {SOLVES}, got {solve!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"'dropout' must be in [0, 1), got {dropout}")
        if not 0.1 <= temperature <= 5.0:
            raise ValueError(f"'temperature' must be in [0.1, 5], got {temperature}")
        if not ridge > 0:
            raise ValueError(f"'ridge' must be positive, got {ridge}")
        if not isinstance(check_basis, bool):
            raise TypeError(f"'check_basis' must be a bool, got {check_basis!r}")

        self.channels = channels
        self.heads = heads
        self.head_channels = channels // heads
        self.num_bases = num_bases
        self.basis_type = basis_type
        self.dropout = dropout
        self.solve = solve
        self.init_ridge = ridge
        self.check_basis = check_basis
        d = self.head_channels

        self.lin_value = Linear(channels, channels, bias=bias)
        self.basis_module = make_basis(basis_type, channels, heads, num_bases, bias=bias,
                                       temperature=temperature)
        self.lin_q = Linear(d, d, bias=False)
        self.lin_k = Linear(d, d, bias=False)
        self.lin_v = Linear(d, d, bias=False)
        self.shared_ridge = shared_ridge
        self.ridge_raw = Parameter(torch.empty(1 if shared_ridge else heads))
        self.lin_out = Linear(channels, channels, bias=bias)
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        for lin in (self.lin_value, self.lin_k, self.lin_v, self.lin_out):
            lin.reset_parameters()
        with torch.no_grad():  # W_q = W_k: the initial map is the identity up to the ridge
            self.lin_q.weight.copy_(self.lin_k.weight)
        self.basis_module.reset_parameters()
        # softplus^-1(ridge)
        torch.nn.init.constant_(self.ridge_raw, self.init_ridge + math.log(-math.expm1(-self.init_ridge)))

    @property
    def ridge(self) -> Tensor:
        r"""The relative ridge :math:`\rho > 0` per head, ``[H]``."""
        return F.softplus(self.ridge_raw).expand(self.heads)

    @property
    def min_nodes(self) -> int:
        """The fewest nodes a graph may have: ``num_bases`` for an orthonormal
        basis (no more orthonormal functions than nodes), else 1."""
        return self.num_bases if self.basis_module.min_nodes_is_num_bases else 1

    def forward(self, x: Tensor, batch: Optional[Tensor] = None, mass: Optional[Tensor] = None,
                basis: Optional[Tensor] = None, *, batch_size: Optional[int] = None,
                return_maps: bool = False,
                chunk_size: Optional[int] = None) -> Union[Tensor, Tuple[Tensor, Tensor, Tensor]]:
        r"""Validates the inputs and runs the layer (:meth:`forward_validated`).

        ``x, batch, mass, basis`` may be passed by position, e.g. by
        :class:`torch_geometric.nn.Sequential` (``"x, batch, mass -> x"``).

        Args:
            x (torch.Tensor): Node features ``[N, channels]``.
            batch (torch.Tensor, optional): Sorted graph index of each node
                ``[N]``; ``None`` for a single graph. (default: ``None``)
            mass (torch.Tensor, optional): Positive node masses ``[N]``
                (lumped areas or volumes); ``None`` for uniform weights
                ``1 / n_b`` per graph (``"learned"`` only: the Laplacian
                kinds need the masses of their basis, e.g. ``data.mass``).
                (default: ``None``)
            basis (torch.Tensor, optional): Basis values ``[N, k']``,
                ``k' >= num_bases``, orthonormal per graph in the ``mass``
                inner product (checked for ``"laplacian"``, see
                ``check_basis``); required for the Laplacian kinds and not
                accepted for ``"learned"``. (default: ``None``)
            batch_size (int, optional): Number of graphs ``B``; saves a host
                synchronisation and makes the layer compile without graph
                breaks. (default: ``None``)
            return_maps (bool, optional): Also return the bases
                ``[N, heads, num_bases]`` and the functional maps
                ``C`` ``[B, heads, num_bases, num_bases]``. (default: ``False``)
            chunk_size (int, optional): Stream over the nodes in chunks of
                this many: the analysis sums are accumulated chunk by chunk
                and the basis is recomputed for the synthesis, so the
                ``[N, heads, num_bases]`` basis is never held at once
                (memory ``O(N channels + chunk_size heads num_bases)``).
                With autograd every chunk is checkpointed.  Same result up
                to round-off; eager mode only. (default: ``None``, one pass)
        """
        checks = ValueChecks()
        self._check_x(x, checks)
        layout = self.validate(x.shape[0], x.device, batch, batch_size, mass, basis, checks)
        checks.run()
        out = self.forward_validated(x, layout, return_maps=return_maps,
                                     stream=streaming(chunk_size, x.shape[0]))
        layout.deferred.run()
        return out

    def validate(self, num_nodes: int, device: torch.device, batch: Optional[Tensor],
                 batch_size: Optional[int], mass: Optional[Tensor], basis: Optional[Tensor],
                 checks: Optional[ValueChecks] = None) -> GraphLayout:
        """The validated :class:`~tg_funcattn.nn._layout.GraphLayout` of the
        graph inputs of ``num_nodes`` nodes on ``device`` for this layer
        (value checks added to ``checks`` when given, to be run by the
        caller)."""
        uses = self.basis_module.uses_eigenbasis
        if not uses and basis is not None:
            raise ValueError("'basis' is only used with basis_type='laplacian' or "
                             "'laplacian_init'; this layer learns its basis (basis_type='learned')")
        if uses and basis is None:
            raise ValueError(f"basis_type='{self.basis_type}' needs the 'basis' argument: per-node "
                             f"values [N, >= {self.num_bases}] of the Laplacian eigenbasis "
                             "(e.g. data.evecs)")
        needs_mass = None if not uses else (
            f"basis_type='{self.basis_type}' needs the 'mass' argument: the node masses [N] in "
            "whose inner product 'basis' is orthonormal (data.mass of "
            "tg_funcattn.transforms.LaplacianEigenbasis or SampleMeshPoints, next to data.evecs); "
            "without it the nodes would be weighted 1/n, which is not that inner product")
        check = self.check_basis and self.basis_module.needs_orthonormal_basis
        return validate_layout(num_nodes, device, batch, batch_size, mass, basis,
                               min_nodes=self.min_nodes, min_basis_width=self.num_bases,
                               needs_mass=needs_mass,
                               orthonormal_atol=BASIS_ATOL if check else None, checks=checks)

    def forward_validated(self, x: Tensor, layout: GraphLayout, *, return_maps: bool = False,
                          stream: Streaming = ONE_PASS) -> Union[Tensor, Tuple[Tensor, Tensor, Tensor]]:
        """The layer on validated inputs: ``x`` ``[N, channels]`` (trusted to
        match the layer), the layout from :meth:`validate` and the streaming
        decision of :func:`~tg_funcattn.nn._layout.streaming`."""
        H, k = self.heads, self.num_bases
        dtype = _compute_dtype(x)  # autocast's dtype (float32 for float16)
        weight = layout.node_weights(self.basis_module.normalized_mass, dtype)
        psi = layout.basis[:, :k] if self.basis_module.uses_eigenbasis else None
        if stream.chunk_size is None:
            # one pass: the basis of the analysis is reused by the synthesis
            phi = self.basis_module.values(x, psi, dtype, weight, NodeRange(layout.ptr, layout.batch))
            value = self.lin_value(x)
            sums = self.basis_module.analysis(phi, value, weight, layout.ptr)
            out_coef, state, fmap = self._map(sums, layout, return_maps)
            mat = self.basis_module.synthesis_matrix(out_coef, state, dtype)
            out = self.lin_out(self.basis_module.synthesis(phi, mat, layout.ptr))
            if return_maps:
                bases = self.basis_module.final(phi, state, layout.ptr)
        else:
            out, fmap, bases = self._attend_chunked(x, psi, weight, layout, stream, dtype,
                                                    return_maps)
        out = F.dropout(out, p=self.dropout, training=self.training)
        if not return_maps:
            return out
        return out, bases.transpose(0, 1).expand(x.shape[0], H, k), fmap

    def _map(self, sums: Tensor, layout: GraphLayout, return_map: bool):
        """Coefficients from the analysis sums, then the functional map:
        ``C V`` ``[B, H, k, d]``, the basis kind's synthesis state and ``C``."""
        coef, state = self.basis_module.coefficients(sums, layout.deferred)
        out_coef, fmap = _functional_map(self.lin_q(coef), self.lin_k(coef), self.lin_v(coef),
                                         self.ridge, self._resolve_solve(), return_map)
        return out_coef, state, fmap

    def _attend_chunked(self, x: Tensor, psi: Optional[Tensor], weight: Tensor,
                        layout: GraphLayout, stream: Streaming, dtype: torch.dtype,
                        return_maps: bool):
        """Streaming passes over chunks of nodes: the basis kind's per-graph
        statistics (if it has any) and the analysis sums are accumulated per
        graph, the basis is recomputed for the synthesis.  Memory
        ``O(N channels + chunk_size heads k)``; with autograd every chunk is
        checkpointed (recomputed in the backward pass)."""
        basis_module = self.basis_module
        chunks = [(s, e, g0, g1, NodeRange(ptr_c, None if layout.batch is None else
                                           layout.batch[s:e] - g0))
                  for s, e, g0, g1, ptr_c in layout.chunks(stream.chunk_size)]

        def per_graph(fn, stats):
            """``fn(x_c, psi_c, w_c, nodes_c, stats_c)``, per-graph sums over the
            nodes of a chunk, added up over the chunks."""
            total = None
            for s, e, g0, g1, nodes in chunks:
                part = stream.run(fn, x[s:e], None if psi is None else psi[s:e], weight[s:e], nodes,
                                  None if stats is None else stats[g0:g1])
                if part is None:
                    return None
                if total is None:
                    total = part.new_zeros((layout.num_graphs,) + part.shape[1:])
                index = torch.arange(g0, g1, device=x.device)
                total = total.index_add(0, index, part) if stream.checkpoint else \
                    total.index_add_(0, index, part)
            return total

        def statistics(x_c, psi_c, w_c, nodes, stats_c):
            return basis_module.statistics(x_c, w_c, nodes)

        def analysis(x_c, psi_c, w_c, nodes, stats_c):
            phi = basis_module.values(x_c, psi_c, dtype, w_c, nodes, stats_c)
            return basis_module.analysis(phi, self.lin_value(x_c), w_c, nodes.ptr)

        stats = per_graph(statistics, None)
        sums = per_graph(analysis, stats)
        out_coef, state, fmap = self._map(sums, layout, return_maps)
        mat = basis_module.synthesis_matrix(out_coef, state, dtype)

        def synthesis(x_c, psi_c, w_c, nodes, stats_c, mat_c):
            phi = basis_module.values(x_c, psi_c, dtype, w_c, nodes, stats_c)
            return self.lin_out(basis_module.synthesis(phi, mat_c, nodes.ptr))

        outs, phis = [], []
        for s, e, g0, g1, nodes in chunks:
            args = (x[s:e], None if psi is None else psi[s:e], weight[s:e], nodes,
                    None if stats is None else stats[g0:g1])
            outs.append(stream.run(synthesis, *args, mat[g0:g1]))
            if return_maps:
                phis.append(basis_module.final(basis_module.values(*args[:2], dtype, *args[2:]),
                                               None if state is None else state[g0:g1], nodes.ptr))
        return torch.cat(outs), fmap, (torch.cat(phis, dim=1) if return_maps else None)

    def _resolve_solve(self) -> str:
        if self.solve != "auto":
            return self.solve
        return "primal" if self.num_bases < self.head_channels else "dual"

    def _check_x(self, x: Tensor, checks: ValueChecks) -> None:
        check_tensor(x, "x", ndim=2, floating=True)
        if x.shape[1] != self.channels:
            raise ValueError(f"'x' must have shape [N, {self.channels}], got {tuple(x.shape)}")
        weight_param = self.lin_value.weight
        if x.device != weight_param.device:
            raise ValueError(f"'x' is on {x.device} but the layer's parameters are on "
                             f"{weight_param.device}; move one with .to()")
        if x.dtype != weight_param.dtype and not torch.is_autocast_enabled(x.device.type):
            raise TypeError(f"'x' has dtype {x.dtype} but the layer's parameters are "
                            f"{weight_param.dtype}; convert one with .to() or use torch.autocast")
        check_finite(x, "x", checks)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.channels}, heads={self.heads}, "
                f"num_bases={self.num_bases}, basis_type='{self.basis_type}')")


def _compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype of the basis and the segment products: the autocast dtype
    inside autocast, except float16, whose range cannot hold the gradient of
    the partition normalisation of a nearly empty basis function (float32
    then; bfloat16 has the range of float32)."""
    if torch.is_autocast_enabled(x.device.type):
        dtype = torch.get_autocast_dtype(x.device.type)
        return torch.float32 if dtype == torch.float16 else dtype
    return x.dtype


def _functional_map(q: Tensor, k: Tensor, v: Tensor, ridge: Tensor, solve: str,
                    return_map: bool) -> Tuple[Tensor, Optional[Tensor]]:
    r"""``B = C V`` with ``C = Q K^T (K K^T + lambda I)^{-1}`` per graph and head.

    ``q, k, v`` are ``[B, H, m, d]``; ``ridge`` is the relative ridge ``[H]``
    (``lambda = ridge ||K||_F^2 / min(m, d)`` per graph and head).  Returns ``B`` and,
    if asked, ``C`` (``[B, H, m, m]``), both in the wide dtype.
    """
    wide = wide_dtype(q.device)
    with torch.autocast(q.device.type, enabled=False):
        q, k, v = q.to(wide), k.to(wide), v.to(wide)
        kt = k.transpose(-1, -2)
        # relative ridge: rho times the mean squared singular value of K (floored at
        # float32's smallest normal number, so that all-zero keys stay positive definite)
        lam = ridge.to(wide).view(1, -1, 1, 1) * k.square().sum((-1, -2), keepdim=True) / \
            min(k.shape[-2:]) + torch.finfo(torch.float32).tiny
        if solve == "dual":  # (K^T K + lam I_d)^{-1} K^T V, d x d
            gram = kt @ k
            chol, _ = torch.linalg.cholesky_ex(gram + lam * torch.eye(gram.shape[-1], dtype=wide, device=q.device))
            out = q @ torch.cholesky_solve(kt @ v, chol)
            fmap = q @ torch.cholesky_solve(kt, chol) if return_map else None
        else:  # Q K^T (K K^T + lam I_k)^{-1} V, k x k
            gram = k @ kt
            chol, _ = torch.linalg.cholesky_ex(gram + lam * torch.eye(gram.shape[-1], dtype=wide, device=q.device))
            qk = q @ kt
            out = qk @ torch.cholesky_solve(v, chol)
            fmap = torch.cholesky_solve(qk.transpose(-1, -2), chol).transpose(-1, -2) if return_map else None
    return out, fmap
