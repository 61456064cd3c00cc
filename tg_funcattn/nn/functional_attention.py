r"""The functional attention layer."""
from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Linear, Parameter

from .._validation import check_finite, check_mass, check_tensor, segments, tracing
from ..ops.segment import segment_matmul_nn, segment_matmul_tn

BASIS_KINDS = ("learned", "laplacian", "laplacian_init")
SOLVES = ("auto", "primal", "dual")

#: Added to the per-basis mass of the soft partition (the mass of each graph is
#: normalised to 1 first): bounds ``1/D`` for a basis function with no support.
PARTITION_EPS = 1e-6
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
      (a Cholesky factor of the Gram matrix); equal to :math:`\Psi` at
      initialisation.

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
    padding).  Memory beyond the parameters is :math:`O(N(c + Hk))`: no
    :math:`N \times k \times d` or :math:`N \times N` tensor is formed.  The
    solve runs in float64 (float32 on devices without it) outside autocast,
    and :math:`\mathbf{K}^\top\mathbf{K} + \lambda \mathbf{I}` is positive
    definite, so rank-deficient keys (e.g. a one-node graph) give finite output.

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
                 temperature: float = 0.5, ridge: float = 1.0, bias: bool = True):
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
        self.ridge_raw = Parameter(torch.empty(heads))
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
        return F.softplus(self.ridge_raw)

    def forward(self, x: Tensor, batch: Optional[Tensor] = None, *, mass: Optional[Tensor] = None,
                basis: Optional[Tensor] = None, batch_size: Optional[int] = None,
                return_maps: bool = False) -> Union[Tensor, Tuple[Tensor, Tensor, Tensor]]:
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

        H, d, k = self.heads, self.head_channels, self.num_bases
        value = self.lin_value(x)
        dtype = value.dtype  # the compute dtype (lower under autocast)
        weight = self._node_weights(mass, seg, num_nodes, dtype)

        if self.basis == "laplacian":
            # Basis shared by the heads: fold the heads into the columns of one product.
            phi = psi.to(dtype).unsqueeze(0)  # [1, N, k]
            coef = segment_matmul_tn(phi, (value * weight.unsqueeze(1)).unsqueeze(0), seg.ptr)
            coef = coef.view(-1, k, H, d).transpose(1, 2)  # [B, H, k, d]
        else:
            u = self.lin_basis_in(x).view(num_nodes, H, d).transpose(0, 1)  # [H, N, d]
            value = value.view(num_nodes, H, d).transpose(0, 1)
            if self.basis == "learned":
                # W_b u / tau with 1/tau folded into the small weight, not the [H, N, k] logits
                scale = self.temperature.clamp(0.1, 5.0).reciprocal().view(H, 1, 1)
                logits = self._head_linear(u, scale).to(torch.promote_types(dtype, torch.float32))
                phi = torch.softmax(logits, dim=-1).to(dtype)
                w = weight.view(1, num_nodes, 1).expand(H, num_nodes, 1)
                both = segment_matmul_tn(phi, torch.cat([value * w, w], dim=-1), seg.ptr)
                coef = both[..., :d] / (both[..., d:] + PARTITION_EPS)
            else:  # laplacian_init
                phi = self._orthonormalise(psi.to(dtype) + self._head_linear(u), weight, seg)
                coef = segment_matmul_tn(phi, value * weight.view(1, -1, 1), seg.ptr)

        out_coef, fmap = _functional_map(
            self.lin_q(coef), self.lin_k(coef), self.lin_v(coef), self.ridge,
            self._resolve_solve(), return_maps)
        out_coef = out_coef.to(dtype)

        if self.basis == "laplacian":
            out = segment_matmul_nn(phi, out_coef.transpose(1, 2).reshape(-1, 1, k, H * d), seg.ptr)
            out = out.view(num_nodes, self.channels)
        else:
            out = segment_matmul_nn(phi, out_coef, seg.ptr).transpose(0, 1).reshape(num_nodes, self.channels)
        out = F.dropout(self.lin_out(out), p=self.dropout, training=self.training)
        if not return_maps:
            return out
        bases = phi.transpose(0, 1).expand(num_nodes, H, k)
        return out, bases, fmap

    def _head_linear(self, u: Tensor, scale: Optional[Tensor] = None) -> Tensor:
        """``basis_proj`` applied to ``u [H, N, d]`` -> ``[H, N, k]``, optionally
        scaled per head, as one batched GEMM."""
        weight = self.basis_proj.weight.t().unsqueeze(0)  # [1, d, k]
        bias = self.basis_proj.bias.view(1, 1, -1)
        if scale is not None:
            weight, bias = weight * scale, bias * scale
        weight = weight.expand(u.shape[0], -1, -1).to(u.dtype)
        return torch.baddbmm(bias.to(u.dtype), u, weight)

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
        total = mass.new_zeros(seg.num_graphs).index_add(0, seg.batch, mass)
        return (mass / total[seg.batch]).to(dtype)

    def _orthonormalise(self, phi: Tensor, weight: Tensor, seg) -> Tensor:
        """``phi [H, N, k] -> phi R^{-1}`` per graph and head with ``R^T R = phi^T M phi``."""
        gram = segment_matmul_tn(phi, phi * weight.view(1, -1, 1), seg.ptr)  # [B, H, k, k]
        wide = torch.float64 if _has_float64(phi.device) else torch.float32
        with torch.autocast(phi.device.type, enabled=False):
            chol, info = torch.linalg.cholesky_ex(gram.to(wide), upper=True)
            if not tracing() and bool((info > 0).any()):
                g = int((info > 0).any(-1).nonzero()[0])
                raise ValueError(f"the basis of graph {g} is rank deficient in the mass inner "
                                 "product (duplicate or zero columns, or fewer independent "
                                 "nodes than num_bases); cannot re-orthonormalise it")
            eye = torch.eye(self.num_bases, dtype=wide, device=phi.device)
            r_inv = torch.linalg.solve_triangular(chol, eye, upper=True)
        return segment_matmul_nn(phi, r_inv.to(phi.dtype), seg.ptr)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.channels}, heads={self.heads}, "
                f"num_bases={self.num_bases}, basis='{self.basis}')")


def _has_float64(device: torch.device) -> bool:
    return device.type != "mps"


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
