r"""The functional attention layer."""
from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Linear, Parameter

from .._validation import ValueChecks, check_number
from ._layout import ONE_PASS, GraphLayout, Streaming, streaming
from .bases import BASIS_ATOL, BASIS_TYPES, GRAM_JITTER, PARTITION_EPS, make_basis, wide_dtype
from .inputs import GraphNeeds, check_features, validate_graph

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
        dropout (float, optional): Dropout on the entries of the functional
            map :math:`\mathbf{C}` in training, the analogue of dropout on
            the attention weights of :class:`torch.nn.MultiheadAttention` (and
            so of ``attn_kwargs["dropout"]`` in PyG's
            :class:`~torch_geometric.nn.conv.GPSConv`): each basis-to-basis
            transfer is dropped with probability ``dropout``.  The output
            itself is not dropped; models drop it where they add it (as
            :class:`FuncAttnBlock` and :class:`FuncAttnGPSConv` do).
            (default: :obj:`0.0`)
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
            check_number(value, name, integer=True, minimum=1)
        if channels % heads != 0:
            raise ValueError(f"'channels' ({channels}) must be divisible by 'heads' ({heads})")
        if basis_type not in BASIS_TYPES:
            raise ValueError(f"'basis_type' must be one of {tuple(BASIS_TYPES)}, got {basis_type!r}")
        if solve not in SOLVES:
            raise ValueError(f"'solve' must be one of {SOLVES}, got {solve!r}")
        check_number(dropout, "dropout", minimum=0.0, below=1.0)
        check_number(temperature, "temperature", minimum=0.1, maximum=5.0)
        check_number(ridge, "ridge", above=0.0)
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
    def needs(self) -> GraphNeeds:
        """What the graph inputs must provide: at least ``num_bases`` nodes per
        graph for an orthonormal basis (no more orthonormal functions than
        nodes), else 1; the given basis and masses of the Laplacian kinds, and
        the orthonormality of ``"laplacian"``'s (unless ``check_basis=False``)."""
        kind = self.basis_module
        return GraphNeeds(self.basis_type, self.num_bases if kind.min_nodes_is_num_bases else 1,
                          kind.uses_eigenbasis, self.num_bases,
                          BASIS_ATOL if self.check_basis and kind.needs_orthonormal_basis else None)

    def forward(self, x: Tensor, batch: Optional[Tensor] = None, mass: Optional[Tensor] = None,
                basis: Optional[Tensor] = None, *, batch_size: Optional[int] = None,
                return_maps: bool = False,
                chunk_size: Optional[int] = None) -> Union[Tensor, Tuple[Tensor, Tensor, Tensor]]:
        r"""Checks the inputs (:mod:`~tg_funcattn.nn.inputs`) and runs the layer
        (:meth:`forward_validated`); ``x, batch, mass, basis`` may be passed by
        position (e.g. by :class:`torch_geometric.nn.Sequential`).

        Args:
            x (torch.Tensor): Node features ``[N, channels]``.
            batch (torch.Tensor, optional): Sorted graph index of each node
                ``[N]``; ``None`` for one graph. (default: ``None``)
            mass (torch.Tensor, optional): Positive node masses ``[N]``;
                ``None`` for ``1 / n_b`` per graph (``"learned"`` only).
                (default: ``None``)
            basis (torch.Tensor, optional): Basis values ``[N, k' >= num_bases]``,
                mass-orthonormal per graph (checked for ``"laplacian"``, see
                ``check_basis``); the Laplacian kinds only. (default: ``None``)
            batch_size (int, optional): Number of graphs; saves a host
                synchronisation, compiles without graph breaks.  It may exceed
                the last graph of ``batch`` and a graph may have no nodes (as
                for PyG's pooling): such graphs have no rows and zero maps.
                (default: ``None``)
            return_maps (bool, optional): Also return the bases
                ``[N, heads, num_bases]`` and the functional maps
                ``[B, heads, num_bases, num_bases]``. (default: ``False``)
            chunk_size (int, optional): Stream over chunks of this many nodes
                (memory ``O(N channels + chunk_size heads num_bases)``; each
                chunk checkpointed under autograd; eager mode only).
                (default: ``None``, one pass)
        """
        checks = ValueChecks()
        check_features(x, "x", self.channels, self.lin_value.weight, checks)
        layout = validate_graph(self.needs, x.shape[0], x.device, batch, batch_size, mass, basis,
                                checks)
        checks.run()
        out = self.forward_validated(x, layout, return_maps=return_maps,
                                     stream=streaming(chunk_size, x.shape[0]))
        layout.deferred.run()
        return out

    def forward_validated(self, x: Tensor, layout: GraphLayout, *, return_maps: bool = False,
                          stream: Streaming = ONE_PASS) -> Union[Tensor, Tuple[Tensor, Tensor, Tensor]]:
        """The layer on checked inputs: ``x`` ``[N, channels]``, the layout of
        :func:`~tg_funcattn.nn.inputs.validate_graph` and the streaming decision
        of :func:`~tg_funcattn.nn._layout.streaming`.  One pass is the case of a
        single chunk, whose basis values serve both the analysis and the
        synthesis; streamed, the basis kind's per-graph statistics and the
        analysis sums are added up over the chunks and the basis is recomputed
        for the synthesis (with autograd every chunk is checkpointed)."""
        H, k, basis_module = self.heads, self.num_bases, self.basis_module
        dtype = _compute_dtype(x)  # autocast's dtype (float32 for float16)
        weight = layout.node_weights(basis_module.normalized_mass, dtype)
        psi = layout.basis[:, :k] if basis_module.uses_eigenbasis else None
        one_pass = stream.chunk_size is None
        chunks = layout.chunks(stream.chunk_size)
        kept = []  # the one pass's basis values

        def values(x_c, psi_c, w_c, nodes, stats_c):
            if kept:
                return kept[0]
            phi = basis_module.values(x_c, psi_c, dtype, w_c, nodes, stats_c)
            if one_pass:
                kept.append(phi)
            return phi

        def inputs(chunk, stats):
            """``(x_c, psi_c, w_c, nodes_c, stats_c)`` of a chunk."""
            s, e, g0, g1, nodes = chunk
            return (x[s:e], None if psi is None else psi[s:e], weight[s:e], nodes,
                    None if stats is None else stats[g0:g1])

        def per_graph(fn, stats):
            """``fn(x_c, psi_c, w_c, nodes_c, stats_c)``, per-graph sums over the
            nodes of a chunk, added up over the chunks."""
            total = None
            for chunk in chunks:
                part = stream.run(fn, *inputs(chunk, stats))
                g0, g1 = chunk[2:4]
                if part is None or one_pass:
                    return part
                if total is None:
                    total = part.new_zeros((layout.num_graphs,) + part.shape[1:])
                index = torch.arange(g0, g1, device=x.device)
                total = total.index_add(0, index, part) if stream.checkpoint else \
                    total.index_add_(0, index, part)
            return total

        def statistics(x_c, psi_c, w_c, nodes, stats_c):
            return basis_module.statistics(x_c, w_c, nodes)

        def analysis(x_c, psi_c, w_c, nodes, stats_c):
            phi = values(x_c, psi_c, w_c, nodes, stats_c)
            return basis_module.analysis(phi, self.lin_value(x_c), w_c, nodes)

        def synthesis(x_c, psi_c, w_c, nodes, stats_c, mat_c):
            phi = values(x_c, psi_c, w_c, nodes, stats_c)
            return self.lin_out(basis_module.synthesis(phi, mat_c, nodes))

        stats = None if one_pass else per_graph(statistics, None)
        coef, state, status = basis_module.coefficients(per_graph(analysis, stats))
        if status is not None:
            layout.deferred.add(status, basis_module.status_error)
        out_coef, fmap = _functional_map(self.lin_q(coef), self.lin_k(coef), self.lin_v(coef),
                                         self.ridge, self._resolve_solve(), return_maps,
                                         self.dropout if self.training else 0.0)
        mat = basis_module.synthesis_matrix(out_coef, state, dtype)
        outs, bases = [], []
        for chunk in chunks:
            args, (g0, g1, nodes) = inputs(chunk, stats), chunk[2:]
            outs.append(stream.run(synthesis, *args, mat[g0:g1]))
            if return_maps:
                bases.append(basis_module.final(values(*args), None if state is None else
                                                state[g0:g1], nodes))
        out = outs[0] if one_pass else torch.cat(outs)
        if not return_maps:
            return out
        bases = bases[0] if one_pass else torch.cat(bases, dim=1)
        return out, bases.transpose(0, 1).expand(x.shape[0], H, k), fmap

    def _resolve_solve(self) -> str:
        if self.solve != "auto":
            return self.solve
        return "primal" if self.num_bases < self.head_channels else "dual"

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
                    return_map: bool, dropout: float = 0.0) -> Tuple[Tensor, Optional[Tensor]]:
    r"""``B = C V`` with ``C = Q K^T (K K^T + lambda I)^{-1}`` per graph and head.

    ``q, k, v`` are ``[B, H, m, d]``; ``ridge`` is the relative ridge ``[H]``
    (``lambda = ridge ||K||_F^2 / min(m, d)`` per graph and head).  With
    ``dropout`` the entries of ``C`` are dropped (and the others scaled by
    ``1 / (1 - dropout)``) before ``C V``.  Returns ``B`` and, if asked, ``C``
    (``[B, H, m, m]``, before the dropout), both in the wide dtype.
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
            if dropout or return_map:
                fmap = q @ torch.cholesky_solve(kt, chol)
            out = q @ torch.cholesky_solve(kt @ v, chol) if not dropout else None
        else:  # Q K^T (K K^T + lam I_k)^{-1} V, k x k
            gram = k @ kt
            chol, _ = torch.linalg.cholesky_ex(gram + lam * torch.eye(gram.shape[-1], dtype=wide, device=q.device))
            qk = q @ kt
            if dropout or return_map:
                fmap = torch.cholesky_solve(qk.transpose(-1, -2), chol).transpose(-1, -2)
            out = qk @ torch.cholesky_solve(v, chol) if not dropout else None
        if dropout:  # the map is formed: drop its entries, then apply it
            out = F.dropout(fmap, p=dropout) @ v
    return out, fmap if return_map else None
