r"""The functional attention layer."""
from __future__ import annotations

import bisect
import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Linear, Parameter

from .._validation import check_finite, check_mass, check_tensor, segments, tracing
from ..ops.segment import segment_matmul_nn, segment_matmul_tn, segment_sum

BASIS_KINDS = ("learned", "laplacian", "laplacian_init")
SOLVES = ("auto", "primal", "dual")

#: Added to the per-basis mass of the soft partition (the mass of each graph is
#: normalised to 1 first): bounds ``1/D`` for a basis function with no support.
PARTITION_EPS = 1e-6
#: Relative jitter of the Gram matrix re-orthonormalised by ``laplacian_init``:
#: ``G + eps * mean(diag G) * I`` with ``eps = max(GRAM_JITTER, 8 * machine
#: epsilon of the sums)``, so that a basis column that vanishes on a graph
#: (e.g. an eigenfunction of a mesh component that no sampled point hit) gives
#: a zero column instead of a failed factorisation.
GRAM_JITTER = 1e-5
#: Relative floor of the ridge parameter: ``lambda + REL_RIDGE * ||K||_F^2``.
#: Keeps the Gram matrix well conditioned whatever the scale of the keys.
REL_RIDGE = 1e-10


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
    forms and :math:`\lambda > 0` learned per head (plus
    :math:`10^{-10}\|\mathbf{K}\|_F^2`, which bounds the condition number
    whatever the scale of the keys).  The basis
    :math:`\mathbf{\Phi} \in \mathbb{R}^{n \times k}` is

    * ``"learned"``: :math:`\Phi_i = \mathrm{softmax}(\mathbf{W}_b \mathbf{u}_i /
      \tau)` with :math:`\mathbf{u}_i` the head slice of
      :math:`\mathbf{W}_u \mathbf{x}_i`, a soft partition of unity;
      :math:`\mathbf{D} = \mathrm{diag}(\Phi^\top \mathbf{M}\mathbf{1})`, so the
      coefficients are mass-weighted means (the mass of each graph is
      normalised to one; only its relative values matter).
    * ``"laplacian"``: a fixed basis passed as ``basis`` (e.g. Laplace-Beltrami
      eigenfunctions), orthonormal in the mass inner product,
      :math:`\Phi^\top\mathbf{M}\Phi = \mathbf{I}`; :math:`\mathbf{D} = \mathbf{I}`.
    * ``"laplacian_init"``: :math:`\Phi = \mathrm{orth}_M(\Psi + \Delta(\mathbf{u}))`,
      the given basis plus a learned per-head correction whose last layer is
      zero-initialised, re-orthonormalised per graph in the mass inner product
      (a Cholesky factor of the Gram matrix, with a relative jitter of
      :math:`10^{-5}` so that a column vanishing on a graph -- an
      eigenfunction of a mesh component no sampled point hit -- stays zero
      instead of failing); equal to :math:`\Psi` at initialisation (up to
      the jitter).

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
        basis (str, optional): ``"learned"``, ``"laplacian"`` or
            ``"laplacian_init"``. (default: :obj:`"learned"`)
        dropout (float, optional): Dropout on the output. (default: :obj:`0.0`)
        solve (str, optional): ``"auto"`` (the smaller of :math:`k` and
            :math:`d`), ``"primal"`` (:math:`k \times k` system) or ``"dual"``
            (:math:`d \times d` system). (default: :obj:`"auto"`)
        temperature (float, optional): Initial softmax temperature :math:`\tau`
            of the learned basis, clamped to ``[0.1, 5]`` in use.
            (default: :obj:`0.5`)
        ridge (float, optional): Initial ridge parameter :math:`\lambda`.
            (default: :obj:`1.0`)
        shared_ridge (bool, optional): One ridge parameter for all heads (as
            in the authors' models) instead of one per head.
            (default: :obj:`False`)
        bias (bool, optional): Bias in the input and output projections.
            (default: :obj:`True`)

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
                 basis: str = "learned", dropout: float = 0.0, *, solve: str = "auto",
                 temperature: float = 0.5, ridge: float = 1.0, shared_ridge: bool = False,
                 bias: bool = True):
        super().__init__()
        for name, value in (("channels", channels), ("heads", heads), ("num_bases", num_bases)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"'{name}' must be a positive int, got {value!r}")
        if channels % heads != 0:
            raise ValueError(f"'channels' ({channels}) must be divisible by 'heads' ({heads})")
        if basis not in BASIS_KINDS:
            raise ValueError(f"'basis' must be one of {BASIS_KINDS}, got {basis!r}")
        if solve not in SOLVES:
            raise ValueError(f"'solve' must be one of {SOLVES}, got {solve!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"'dropout' must be in [0, 1), got {dropout}")
        if not 0.1 <= temperature <= 5.0:
            raise ValueError(f"'temperature' must be in [0.1, 5], got {temperature}")
        if not ridge > 0:
            raise ValueError(f"'ridge' must be positive, got {ridge}")

        self.channels = channels
        self.heads = heads
        self.head_channels = channels // heads
        self.num_bases = num_bases
        self.basis = basis
        self.dropout = dropout
        self.solve = solve
        self.init_temperature = temperature
        self.init_ridge = ridge
        d, k = self.head_channels, num_bases

        self.lin_value = Linear(channels, channels, bias=bias)
        if basis == "laplacian":
            self.lin_basis_in = self.basis_proj = None
            self.register_parameter("temperature", None)
        else:
            self.lin_basis_in = Linear(channels, channels, bias=bias)
            # learned: the logits W_b u; laplacian_init: the correction Delta(u)
            self.basis_proj = Linear(d, k)
            if basis == "learned":
                self.temperature = Parameter(torch.empty(heads))
            else:
                self.register_parameter("temperature", None)
        self.lin_q = Linear(d, d, bias=False)
        self.lin_k = Linear(d, d, bias=False)
        self.lin_v = Linear(d, d, bias=False)
        self.shared_ridge = shared_ridge
        self.ridge_raw = Parameter(torch.empty(1 if shared_ridge else heads))
        self.lin_out = Linear(channels, channels, bias=bias)
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        for lin in (self.lin_value, self.lin_q, self.lin_k, self.lin_v, self.lin_out):
            lin.reset_parameters()
        if self.lin_basis_in is not None:
            self.lin_basis_in.reset_parameters()
        if self.basis == "learned":
            torch.nn.init.orthogonal_(self.basis_proj.weight)
            torch.nn.init.zeros_(self.basis_proj.bias)
            torch.nn.init.constant_(self.temperature, self.init_temperature)
        elif self.basis == "laplacian_init":
            torch.nn.init.zeros_(self.basis_proj.weight)
            torch.nn.init.zeros_(self.basis_proj.bias)
        # softplus^-1(ridge)
        torch.nn.init.constant_(self.ridge_raw, self.init_ridge + math.log(-math.expm1(-self.init_ridge)))

    @property
    def ridge(self) -> Tensor:
        r"""The ridge parameter :math:`\lambda > 0` per head, ``[H]``."""
        return F.softplus(self.ridge_raw).expand(self.heads)

    def forward(self, x: Tensor, batch: Optional[Tensor] = None, *, mass: Optional[Tensor] = None,
                basis: Optional[Tensor] = None, batch_size: Optional[int] = None,
                return_maps: bool = False,
                chunk_size: Optional[int] = None) -> Union[Tensor, Tuple[Tensor, Tensor, Tensor]]:
        r"""Runs the layer.

        Args:
            x (torch.Tensor): Node features ``[N, channels]``.
            batch (torch.Tensor, optional): Sorted graph index of each node
                ``[N]``; ``None`` for a single graph. (default: ``None``)
            mass (torch.Tensor, optional): Positive node masses ``[N]``
                (lumped areas or volumes); ``None`` for uniform weights
                ``1 / n_b`` per graph. (default: ``None``)
            basis (torch.Tensor, optional): Basis values ``[N, k']``,
                ``k' >= num_bases``, orthonormal per graph in the ``mass``
                inner product; required for the Laplacian kinds and not
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
        check_tensor(x, "x", ndim=2, floating=True)
        num_nodes = x.shape[0]
        if x.shape[1] != self.channels:
            raise ValueError(f"'x' must have shape [N, {self.channels}], got {tuple(x.shape)}")
        weight_param = self.lin_value.weight
        if x.device != weight_param.device:
            raise ValueError(f"'x' is on {x.device} but the layer's parameters are on "
                             f"{weight_param.device}; move one with .to()")
        if x.dtype != weight_param.dtype and not torch.is_autocast_enabled(x.device.type):
            raise TypeError(f"'x' has dtype {x.dtype} but the layer's parameters are "
                            f"{weight_param.dtype}; convert one with .to() or use torch.autocast")
        check_finite(x, "x")
        min_nodes = 1 if self.basis == "learned" else self.num_bases
        seg = segments(batch, num_nodes, x.device, batch_size, min_nodes=min_nodes)
        if mass is not None:
            check_mass(mass, num_nodes, x.device)
        psi = self._check_basis(basis, num_nodes, x.device)

        H, k = self.heads, self.num_bases
        dtype = _compute_dtype(x)  # autocast's dtype (float32 for float16)
        weight = self._node_weights(mass, seg, num_nodes, dtype)
        if chunk_size is not None:
            if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
                raise ValueError(f"'chunk_size' must be a positive int, got {chunk_size!r}")
            if tracing():
                raise RuntimeError("'chunk_size' streams over the nodes in Python; "
                                   "it is not supported under torch.compile")
        if chunk_size is None or chunk_size >= num_nodes:
            # one pass: the basis of the analysis is reused by the synthesis
            phi, value = self._basis(x, psi, dtype)
            sums = self._analysis(phi, value, weight, seg.ptr)
            coef, r_inv = self._coefficients(sums)
            out_coef, fmap = self._map(coef, return_maps)
            mat = self._synthesis_matrix(out_coef, r_inv, dtype)
            out = self.lin_out(self._synthesis(phi, mat, seg.ptr))
            if return_maps:
                bases = self._final_basis(phi, r_inv, seg.ptr)
        else:
            out, fmap, bases = self._forward_chunked(x, psi, weight, seg, chunk_size, dtype,
                                                     return_maps)
        out = F.dropout(out, p=self.dropout, training=self.training)
        if not return_maps:
            return out
        return out, bases.transpose(0, 1).expand(num_nodes, H, k), fmap

    # The layer in steps, each on a contiguous range of nodes (the whole input,
    # or one chunk of it with ``ptr`` local to the chunk).

    def _basis(self, x: Tensor, psi: Optional[Tensor], dtype: torch.dtype) -> Tuple[Tensor, Tensor]:
        """Basis values ``phi [H or 1, n, k]`` (before re-orthonormalisation for
        ``laplacian_init``) and the projected values ``[n, channels]``."""
        value = self.lin_value(x)
        if self.basis == "laplacian":  # one basis shared by the heads
            return psi.to(dtype).unsqueeze(0), value
        n, H, d = x.shape[0], self.heads, self.head_channels
        u = self.lin_basis_in(x).view(n, H, d).transpose(0, 1)  # [H, n, d]
        if self.basis == "laplacian_init":
            return psi.to(dtype) + self._head_linear(u), value
        # W_b u / tau with 1/tau folded into the small weight, not the [H, n, k] logits
        scale = self.temperature.clamp(0.1, 5.0).reciprocal().view(H, 1, 1)
        logits = self._head_linear(u, scale).to(torch.promote_types(dtype, torch.float32))
        return torch.softmax(logits, dim=-1).to(dtype), value

    def _analysis(self, phi: Tensor, value: Tensor, weight: Tensor, ptr: Tensor) -> Tensor:
        """The per-graph sums over nodes in one segment product:
        ``laplacian``: ``Phi^T M V`` ``[B, 1, k, channels]``; ``learned``:
        ``[Phi^T M V | Phi^T M 1]`` ``[B, H, k, d + 1]``; ``laplacian_init``:
        ``[Phi^T M V | Phi^T M Phi]`` ``[B, H, k, d + k]``."""
        n, H, d = value.shape[0], self.heads, self.head_channels
        if self.basis == "laplacian":
            return segment_matmul_tn(phi, (value * weight.unsqueeze(1)).unsqueeze(0), ptr)
        w = weight.view(1, n, 1)
        weighted = value.view(n, H, d).transpose(0, 1) * w
        extra = w.expand(H, n, 1) if self.basis == "learned" else phi * w
        return segment_matmul_tn(phi, torch.cat([weighted, extra], dim=-1), ptr)

    def _coefficients(self, sums: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        """Coefficients ``A [B, H, k, d]`` from the sums of :meth:`_analysis`,
        and for ``laplacian_init`` the inverse Cholesky factor ``R^{-1}`` of the
        Gram matrix (``Phi R^{-1}`` is the orthonormalised basis)."""
        H, d, k = self.heads, self.head_channels, self.num_bases
        if self.basis == "laplacian":
            return sums.view(-1, k, H, d).transpose(1, 2), None
        if self.basis == "learned":
            return sums[..., :d] / (sums[..., d:] + PARTITION_EPS), None
        r_inv = self._inverse_cholesky(sums[..., d:])
        # (Phi R^{-1})^T M V = R^{-T} (Phi^T M V)
        return (r_inv.transpose(-1, -2) @ sums[..., :d].to(r_inv.dtype)).to(sums.dtype), r_inv

    def _map(self, coef: Tensor, return_map: bool) -> Tuple[Tensor, Optional[Tensor]]:
        out_coef, fmap = _functional_map(self.lin_q(coef), self.lin_k(coef), self.lin_v(coef),
                                         self.ridge, self._resolve_solve(), return_map)
        return out_coef, fmap

    def _synthesis_matrix(self, out_coef: Tensor, r_inv: Optional[Tensor],
                          dtype: torch.dtype) -> Tensor:
        """What the synthesis multiplies the basis with, per graph (in ``dtype``)."""
        k, H, d = self.num_bases, self.heads, self.head_channels
        if r_inv is not None:
            out_coef = r_inv @ out_coef.to(r_inv.dtype)
        out_coef = out_coef.to(dtype)
        if self.basis == "laplacian":
            return out_coef.transpose(1, 2).reshape(-1, 1, k, H * d)
        return out_coef

    def _final_basis(self, phi: Tensor, r_inv: Optional[Tensor], ptr: Tensor) -> Tensor:
        """The basis the layer uses (``Phi R^{-1}`` for ``laplacian_init``), for ``return_maps``."""
        return phi if r_inv is None else segment_matmul_nn(phi, r_inv.to(phi.dtype), ptr)

    def _synthesis(self, phi: Tensor, mat: Tensor, ptr: Tensor) -> Tensor:
        """``Phi B`` per graph, heads concatenated: ``[n, channels]``."""
        out = segment_matmul_nn(phi, mat, ptr)
        n = phi.shape[1]
        if self.basis == "laplacian":
            return out.view(n, self.channels)
        return out.transpose(0, 1).reshape(n, self.channels)

    def _forward_chunked(self, x: Tensor, psi: Optional[Tensor], weight: Tensor, seg,
                         chunk_size: int, dtype: torch.dtype, return_maps: bool):
        """Two streaming passes over chunks of nodes: the analysis sums are
        accumulated per graph, the basis is recomputed for the synthesis.
        Memory ``O(N channels + chunk_size heads k)``; with autograd every
        chunk is checkpointed (recomputed in the backward pass)."""
        from torch.utils.checkpoint import checkpoint

        grad = torch.is_grad_enabled()

        def run(fn, *args):
            return checkpoint(fn, *args, use_reentrant=False) if grad else fn(*args)

        bounds = seg.ptr.tolist()
        chunks = []
        for s in range(0, x.shape[0], chunk_size):
            e = min(s + chunk_size, x.shape[0])
            g0 = bisect.bisect_right(bounds, s) - 1
            g1 = bisect.bisect_left(bounds, e) - 1
            local = [max(bounds[g] - s, 0) for g in range(g0, g1 + 1)] + [e - s]
            chunks.append((s, e, g0, g1 + 1, torch.tensor(local, device=x.device)))

        def analysis(x_c, psi_c, w_c, ptr_c):
            phi, value = self._basis(x_c, psi_c, dtype)
            return self._analysis(phi, value, w_c, ptr_c)

        sums = None
        for s, e, g0, g1, ptr_c in chunks:
            part = run(analysis, x[s:e], None if psi is None else psi[s:e], weight[s:e], ptr_c)
            if sums is None:
                sums = part.new_zeros((seg.num_graphs,) + part.shape[1:])
            index = torch.arange(g0, g1, device=x.device)
            sums = sums.index_add(0, index, part) if grad else sums.index_add_(0, index, part)
        coef, r_inv = self._coefficients(sums)
        out_coef, fmap = self._map(coef, return_maps)
        mat = self._synthesis_matrix(out_coef, r_inv, dtype)

        def synthesis(x_c, psi_c, mat_c, ptr_c):
            phi, _ = self._basis(x_c, psi_c, dtype)
            return self.lin_out(self._synthesis(phi, mat_c, ptr_c))

        def bases(x_c, psi_c, r_inv_c, ptr_c):
            return self._final_basis(self._basis(x_c, psi_c, dtype)[0], r_inv_c, ptr_c)

        outs, phis = [], []
        for s, e, g0, g1, ptr_c in chunks:
            psi_c = None if psi is None else psi[s:e]
            outs.append(run(synthesis, x[s:e], psi_c, mat[g0:g1], ptr_c))
            if return_maps:
                phis.append(bases(x[s:e], psi_c, None if r_inv is None else r_inv[g0:g1], ptr_c))
        return torch.cat(outs), fmap, (torch.cat(phis, dim=1) if return_maps else None)

    def _head_linear(self, u: Tensor, scale: Optional[Tensor] = None) -> Tensor:
        """``basis_proj`` applied to ``u [H, N, d]`` -> ``[H, N, k]``, optionally
        scaled per head, as one batched GEMM with the bias folded in as a row of
        the weight (``[u | 1] [W^T; b]``): ``baddbmm`` would first copy the
        broadcast bias into the whole ``[H, N, k]`` output, a pass over the
        largest tensor of the layer."""
        weight = torch.cat([self.basis_proj.weight.t(), self.basis_proj.bias.unsqueeze(0)])
        weight = weight.unsqueeze(0)  # [1, d + 1, k]
        if scale is not None:
            weight = weight * scale
        weight = weight.expand(u.shape[0], -1, -1).to(u.dtype)
        return torch.bmm(torch.cat([u, u.new_ones(u.shape[:2] + (1,))], dim=-1), weight)

    def _resolve_solve(self) -> str:
        if self.solve != "auto":
            return self.solve
        return "primal" if self.num_bases < self.head_channels else "dual"

    def _check_basis(self, basis: Optional[Tensor], num_nodes: int,
                     device: torch.device) -> Optional[Tensor]:
        if self.basis == "learned":
            if basis is not None:
                raise ValueError("'basis' is only used with basis='laplacian' or "
                                 "'laplacian_init'; this layer learns its basis (basis='learned')")
            return None
        if basis is None:
            raise ValueError(f"basis='{self.basis}' needs the 'basis' argument: per-node values "
                             f"[N, >= {self.num_bases}] of the Laplacian eigenbasis (e.g. data.evecs)")
        check_tensor(basis, "basis", ndim=2, floating=True)
        if basis.shape[0] != num_nodes or basis.shape[1] < self.num_bases:
            raise ValueError(f"'basis' must have shape [N, >= num_bases] = [{num_nodes}, "
                             f">= {self.num_bases}], got {tuple(basis.shape)}")
        if basis.device != device:
            raise ValueError(f"'basis' is on {basis.device} but the node features are on {device}")
        check_finite(basis, "basis")
        return basis[:, :self.num_bases]

    def _node_weights(self, mass: Optional[Tensor], seg, num_nodes: int,
                      dtype: torch.dtype) -> Tensor:
        """Quadrature weight of every node ``[N]``: ``1 / n_b`` without mass; the
        mass normalised per graph for the soft partition (only relative mass
        matters there); the raw mass for an orthonormal basis."""
        if mass is None:
            per_graph = seg.counts.to(dtype).reciprocal()
            return per_graph.expand(num_nodes) if seg.batch is None else per_graph[seg.batch]
        if self.basis != "learned":
            return mass.to(dtype)
        if seg.batch is None:
            return (mass / mass.sum()).to(dtype)
        total = segment_sum(mass, seg.ptr, seg.batch)
        return (mass / total[seg.batch]).to(dtype)

    def _inverse_cholesky(self, gram: Tensor) -> Tensor:
        """``R^{-1}`` in the wide dtype with ``R^T R = gram + jitter`` (the mass
        Gram matrix of the basis ``[B, H, k, k]``, see :data:`GRAM_JITTER`), so
        ``Phi R^{-1}`` is orthonormal; directions in which the basis vanishes
        stay (near) zero instead of being blown up."""
        wide = torch.float64 if _has_float64(gram.device) else torch.float32
        eps = max(GRAM_JITTER, 8 * torch.finfo(gram.dtype).eps)
        with torch.autocast(gram.device.type, enabled=False):
            gram = gram.to(wide)
            eye = torch.eye(self.num_bases, dtype=wide, device=gram.device)
            scale = gram.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(torch.finfo(wide).tiny)
            chol, info = torch.linalg.cholesky_ex(gram + eps * scale[..., None, None] * eye,
                                                  upper=True)
            if not tracing() and bool((info > 0).any()):
                g = int((info > 0).any(-1).nonzero()[0])
                raise ValueError(f"the basis of graph {g} has a mass Gram matrix that is not "
                                 "positive semi-definite; cannot re-orthonormalise it")
            return torch.linalg.solve_triangular(chol, eye, upper=True)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.channels}, heads={self.heads}, "
                f"num_bases={self.num_bases}, basis='{self.basis}')")


def _has_float64(device: torch.device) -> bool:
    return device.type != "mps"


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

    ``q, k, v`` are ``[B, H, m, d]``; ``ridge`` is ``[H]``.  Returns ``B`` and,
    if asked, ``C`` (``[B, H, m, m]``), both in the wide dtype.
    """
    wide = torch.float64 if _has_float64(q.device) else torch.float32
    with torch.autocast(q.device.type, enabled=False):
        q, k, v = q.to(wide), k.to(wide), v.to(wide)
        kt = k.transpose(-1, -2)
        lam = ridge.to(wide).view(1, -1, 1, 1) + REL_RIDGE * k.square().sum((-1, -2), keepdim=True)
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
