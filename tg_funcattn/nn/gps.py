r"""The GPS graph transformer layer with functional attention as its global attention."""
from __future__ import annotations

import inspect
from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Dropout, Linear, Sequential
from torch_geometric.nn.inits import reset
from torch_geometric.nn.resolver import activation_resolver, normalization_resolver
from torch_geometric.typing import Adj

from .._validation import check_number
from .functional_attention import FunctionalAttention

__all__ = ["FuncAttnGPSConv"]

#: Arguments of :class:`FunctionalAttention` that the layer sets itself.
_OWN_ATTN_ARGS = ("channels", "heads")


class FuncAttnGPSConv(torch.nn.Module):
    r"""The general, powerful, scalable (GPS) graph transformer layer from the
    `"Recipe for a General, Powerful, Scalable Graph Transformer"
    <https://arxiv.org/abs/2205.12454>`_ paper, with functional attention from
    `"Functional Attention: From Pairwise Affinities to Functional
    Correspondences" <https://arxiv.org/abs/2605.31559>`_ as its global
    attention.

    A drop-in replacement of :class:`torch_geometric.nn.conv.GPSConv`: the
    same constructor, forward contract, parameters of the local conv, norms
    and MLP, and the same post-norm update

    .. math::
        \mathbf{h}_{\mathrm{local}} &= \mathrm{Norm}_1\big(\mathbf{x} +
            \mathrm{MPNN}(\mathbf{x}, \mathcal{E})\big), \qquad
        \mathbf{h}_{\mathrm{global}} = \mathrm{Norm}_2\big(\mathbf{x} +
            \mathrm{FuncAttn}(\mathbf{x})\big) \\
        \mathbf{h} &= \mathbf{h}_{\mathrm{local}} + \mathbf{h}_{\mathrm{global}},
        \qquad
        \mathbf{x}' = \mathrm{Norm}_3\big(\mathbf{h} + \mathrm{MLP}(\mathbf{h})\big)

    (dropout after each branch and in the MLP), except that the global
    attention is :class:`~tg_funcattn.nn.FunctionalAttention` run on the flat
    batch: per graph, with no :func:`~torch_geometric.utils.to_dense_batch`
    padding and no :math:`L \times L` attention matrix, so its cost is linear
    in the number of nodes.

    :class:`GPSConv` itself cannot host it: its constructor builds only
    ``"multihead"`` or ``"performer"`` attention, and its forward pass picks
    the call by the type of ``attn`` on a padded dense batch, so a
    :class:`FunctionalAttention` assigned to ``GPSConv.attn`` is skipped (the
    global branch then adds the input to itself) and ``reset_parameters()``
    fails.

    Args:
        channels (int): Size of each input sample.
        conv (MessagePassing, optional): The local message passing layer;
            ``None`` for global attention only.
        heads (int, optional): Number of attention heads; must divide
            ``channels``. (default: :obj:`1`)
        dropout (float, optional): Dropout probability of intermediate
            embeddings. (default: :obj:`0.`)
        act (str or Callable, optional): The non-linear activation function
            of the MLP. (default: :obj:`"relu"`)
        act_kwargs (Dict[str, Any], optional): Arguments passed to the
            activation function defined by :obj:`act`. (default: :obj:`None`)
        norm (str or Callable, optional): The normalization function to use.
            (default: :obj:`"batch_norm"`)
        norm_kwargs (Dict[str, Any], optional): Arguments passed to the
            normalization function defined by :obj:`norm`.
            (default: :obj:`None`)
        attn_type (str, optional): Global attention type; only
            :obj:`"functional"` (the argument exists so that calls written for
            :class:`GPSConv` keep their shape). (default: :obj:`"functional"`)
        attn_kwargs (Dict[str, Any], optional): Arguments passed to
            :class:`~tg_funcattn.nn.FunctionalAttention`, e.g.
            :obj:`num_bases`, :obj:`basis_type`, :obj:`solve`, :obj:`ridge`,
            :obj:`dropout`; as in :class:`GPSConv`, :obj:`dropout` drops
            attention weights: here the entries of the functional maps, not
            the branch's output (which :obj:`dropout` above drops).
            (default: :obj:`None`)

    Shapes:
        - **input:**
          node features :math:`(N, F)`,
          edge indices :math:`(2, |\mathcal{E}|)` or sparse matrix,
          batch vector :math:`(N)` (optional, sorted),
          node masses :math:`(N)` and basis :math:`(N, k')` (optional,
          see :class:`~tg_funcattn.nn.FunctionalAttention`),
          further arguments of the local conv (e.g. edge features
          :math:`(|\mathcal{E}|, D)`)
        - **output:** node features :math:`(N, F)`
    """

    def __init__(
        self,
        channels: int,
        conv: Optional[torch.nn.Module],
        heads: int = 1,
        dropout: float = 0.0,
        act: str = "relu",
        act_kwargs: Optional[Dict[str, Any]] = None,
        norm: Optional[str] = "batch_norm",
        norm_kwargs: Optional[Dict[str, Any]] = None,
        attn_type: str = "functional",
        attn_kwargs: Optional[Dict[str, Any]] = None,
    ):
        super().__init__()
        if attn_type != "functional":
            raise ValueError(f"'attn_type' of FuncAttnGPSConv must be 'functional', got "
                             f"{attn_type!r} (for 'multihead' or 'performer' use "
                             "torch_geometric.nn.GPSConv)")
        attn_kwargs = dict(attn_kwargs or {})
        clash = [name for name in _OWN_ATTN_ARGS if name in attn_kwargs]
        if clash:
            raise ValueError(f"'attn_kwargs' must not contain {clash}: FuncAttnGPSConv passes "
                             "'channels' and 'heads' itself")
        check_number(dropout, "dropout", minimum=0.0, below=1.0)

        self.channels = channels
        self.conv = conv
        self.heads = heads
        self.dropout = dropout
        self.attn_type = attn_type
        self.attn = FunctionalAttention(channels, heads, **attn_kwargs)

        self.mlp = Sequential(
            Linear(channels, channels * 2),
            activation_resolver(act, **(act_kwargs or {})),
            Dropout(dropout),
            Linear(channels * 2, channels),
            Dropout(dropout),
        )

        norm_kwargs = norm_kwargs or {}
        self.norm1 = normalization_resolver(norm, channels, **norm_kwargs)
        self.norm2 = normalization_resolver(norm, channels, **norm_kwargs)
        self.norm3 = normalization_resolver(norm, channels, **norm_kwargs)
        self.norm_with_batch = self.norm1 is not None and \
            "batch" in inspect.signature(self.norm1.forward).parameters

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        if self.conv is not None:
            self.conv.reset_parameters()
        self.attn.reset_parameters()
        reset(self.mlp)
        for norm in (self.norm1, self.norm2, self.norm3):
            if norm is not None:
                norm.reset_parameters()

    def forward(self, x: Tensor, edge_index: Adj, batch: Optional[Tensor] = None, *,
                mass: Optional[Tensor] = None, basis: Optional[Tensor] = None,
                batch_size: Optional[int] = None, **kwargs) -> Tensor:
        r"""Runs the forward pass of the module.

        Args:
            x (torch.Tensor): Node features ``[N, channels]``.
            edge_index (torch.Tensor or SparseTensor): The graph connectivity
                of the local conv.
            batch (torch.Tensor, optional): Sorted graph index of each node
                ``[N]``; ``None`` for a single graph. (default: ``None``)
            mass (torch.Tensor, optional): Node masses ``[N]`` of the
                functional attention; required by the Laplacian basis
                kinds (the masses their basis is orthonormal with).
                (default: ``None``, uniform)
            basis (torch.Tensor, optional): Eigenbasis ``[N, k']`` for the
                Laplacian basis kinds, orthonormal in the ``mass`` inner
                product (checked for ``"laplacian"`` unless
                ``attn_kwargs`` has ``check_basis=False``). (default: ``None``)
            batch_size (int, optional): Number of graphs (a loader's
                batch size is fine for its last, smaller batch); saves the
                attention a host synchronisation. (default: ``None``)
            **kwargs (optional): Further arguments of the local conv, e.g.
                ``edge_attr``.
        """
        if self.conv is None and kwargs:
            raise TypeError(f"keyword arguments {sorted(kwargs)} go to the local conv, but this "
                            "layer has none (conv=None)")
        hs = []
        if self.conv is not None:  # local message passing
            h = self.conv(x, edge_index, **kwargs)
            h = F.dropout(h, p=self.dropout, training=self.training)
            hs.append(self._norm(self.norm1, h + x, batch))

        # global functional attention on the flat batch (validates its inputs)
        h = self.attn(x, batch, mass=mass, basis=basis, batch_size=batch_size)
        h = F.dropout(h, p=self.dropout, training=self.training)
        hs.append(self._norm(self.norm2, h + x, batch))

        out = sum(hs)
        return self._norm(self.norm3, out + self.mlp(out), batch)

    def _norm(self, norm: Optional[torch.nn.Module], h: Tensor, batch: Optional[Tensor]) -> Tensor:
        if norm is None:
            return h
        return norm(h, batch=batch) if self.norm_with_batch else norm(h)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.channels}, conv={self.conv}, "
                f"heads={self.heads}, attn={self.attn})")
