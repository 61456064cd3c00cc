r"""The transformer block and network built on :class:`FunctionalAttention`."""
from __future__ import annotations

import copy
import inspect
from typing import Callable, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import LayerNorm, Linear, Module
from torch_geometric.nn import MLP
from torch_geometric.nn import PointTransformerConv as PygPointTransformerConv
from torch_geometric.nn.dense.linear import Linear as PygLinear
from torch_geometric.typing import PairTensor

from .._validation import check_number
from ..ops.edge import knn_edge_max, knn_softmax_sum
from ..ops.knn import knn_backend, knn_graph_validated
from ..ops.segment import segment_sum
from ._layout import ONE_PASS, GraphLayout, Streaming, streaming
from .bases import AdaptedOrthonormal
from .functional_attention import FunctionalAttention
from .inputs import NetworkNeeds, validate_network
from .options import HEADS, INITS, LIFTS, LOCAL_KINDS, READOUTS

#: Standard deviation of the ``init="trunc_normal"`` weights (truncated at two
#: standard deviations), as in the authors' models.
TRUNC_NORMAL_STD = 0.02


def mlp(in_channels: int, hidden_channels: int, out_channels: int, dropout: float = 0.0) -> MLP:
    """PyG's two-layer :class:`~torch_geometric.nn.models.MLP`: ``Linear -> GELU ->
    Dropout -> Linear`` (no normalisation; the last layer plain)."""
    return MLP([in_channels, hidden_channels, out_channels], act="gelu", norm=None,
               dropout=dropout)


class ResidualLift(Module):
    r"""The lift of the authors' RNA model: ``Linear -> GELU``, a residual
    ``Linear -> GELU``, ``Linear``, plus a learned offset vector (initialised
    uniformly in ``[0, 1 / out_channels)``).

    .. math::
        \mathbf{h}_0 = \sigma(\mathbf{W}_0\mathbf{x}), \quad
        \mathbf{h}_1 = \mathbf{h}_0 + \sigma(\mathbf{W}_1\mathbf{h}_0), \quad
        \mathbf{h} = \mathbf{W}_2\mathbf{h}_1 + \mathbf{o}
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.lin0 = Linear(in_channels, out_channels)
        self.lin1 = Linear(out_channels, out_channels)
        self.lin2 = Linear(out_channels, out_channels)
        self.offset = torch.nn.Parameter(torch.empty(out_channels))
        self.reset_parameters()

    def reset_parameters(self):
        for lin in (self.lin0, self.lin1, self.lin2):
            lin.reset_parameters()
        with torch.no_grad():
            self.offset.uniform_(0.0, 1.0 / self.offset.numel())

    def forward(self, x: Tensor) -> Tensor:
        h = F.gelu(self.lin0(x))
        h = h + F.gelu(self.lin1(h))
        return self.lin2(h) + self.offset


class EdgeConv(Module):
    r"""The edge convolution of `"Dynamic Graph CNN for Learning on Point Clouds"
    <https://arxiv.org/abs/1801.07829>`_, :class:`torch_geometric.nn.conv.EdgeConv`
    with an :class:`MLP` and max aggregation, with the MLP's first layer
    computed per node instead of per edge:

    .. math::
        \mathbf{x}'_i = \max_{j \in \mathcal{N}(i)} \mathbf{W}_2\,\sigma\big(
            \mathbf{W}[\mathbf{x}_i, \mathbf{x}_j - \mathbf{x}_i] + \mathbf{b}\big)
            + \mathbf{b}_2, \qquad
        \mathbf{W}[\mathbf{x}_i, \mathbf{x}_j - \mathbf{x}_i]
            = (\mathbf{W}_a - \mathbf{W}_b)\,\mathbf{x}_i + \mathbf{W}_b\,\mathbf{x}_j

    so the edges gather two per-node products instead of multiplying a
    ``[E, 2C]`` concatenation (the same values up to round-off, the same
    parameters as PyG's ``EdgeConv(MLP([2C, C, C], act="gelu", norm=None),
    aggr="max")``, whose state dict it loads).  On the network's kNN graph (``regular``) the rest runs
    in cache-sized chunks of nodes (:func:`~tg_funcattn.ops.edge.knn_edge_max`:
    no ``[E, C]`` tensor is kept for backward); on other edges it aggregates
    with a scatter.  A node without incoming edges gets zeros.

    Args:
        channels (int): Size of each input and output sample :math:`C`.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.nn = mlp(2 * channels, channels, channels)

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        self.nn.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor, regular: Optional[int] = None) -> Tensor:
        """``x [N, C]``, ``edge_index [2, E]`` (source, target); ``regular``:
        every node has exactly that many incoming edges and ``edge_index[1]``
        lists the targets in node order (the kNN graph of
        :func:`knn_edges`), so the max is a reduction over an ``[N, regular, C]``
        view instead of a scatter."""
        first, second = self.nn.lins
        w_i, w_j = first.weight[:, :self.channels], first.weight[:, self.channels:]
        node_i = F.linear(x, w_i - w_j, first.bias)  # [N, C]
        node_j = F.linear(x, w_j)
        src, dst = edge_index[0], edge_index[1]
        if regular is not None:  # node i's edges are rows i*regular ... (i+1)*regular - 1
            out = knn_edge_max(node_i, node_j, src, regular, second.weight)
            return out + second.bias  # the bias commutes with the max
        from torch_geometric.utils import scatter

        hidden = self.nn.act(node_i.index_select(0, dst) + node_j.index_select(0, src))
        messages = second(F.dropout(hidden, p=self.nn.dropout[0], training=self.training))
        return scatter(messages, dst, dim=0, dim_size=x.shape[0], reduce="max")

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.channels}, nn={self.nn})"


class PointTransformerConv(PygPointTransformerConv):
    r"""The point transformer layer of `"Point Transformer"
    <https://arxiv.org/abs/2012.09164>`_, :class:`torch_geometric.nn.conv.PointTransformerConv`,
    computed per node on the network's kNN graph:

    .. math::
        \mathbf{x}'_i = \sum_{j \in \mathcal{N}(i) \cup \{ i \}} \alpha_{i,j}
            \left(\mathbf{W}_3 \mathbf{x}_j + \boldsymbol{\delta}_{ij} \right),
        \quad \alpha_{i,j} = \mathrm{softmax}_j\big(\mathbf{W}_1\mathbf{x}_i
            - \mathbf{W}_2\mathbf{x}_j + \boldsymbol{\delta}_{ij}\big), \quad
        \boldsymbol{\delta}_{ij} = \mathbf{P}(\mathbf{p}_i - \mathbf{p}_j) + \mathbf{b}

    With the default linear ``pos_nn`` and no ``attn_nn`` every term of an edge
    is a difference of per-node products (``P p_i - P p_j``), so on a kNN graph
    whose edges are listed node by node (``regular`` from :func:`knn_edges`)
    the edges only gather ``[N, C]`` products for a softmax over each node's
    ``k`` neighbours and itself (:func:`~tg_funcattn.ops.edge.knn_softmax_sum`,
    in cache-sized chunks), with no product per edge and no ``[E, C]`` tensor
    kept for backward.  Otherwise (other edges, other ``pos_nn``,
    ``attn_nn``, bipartite input) it is PyG's layer.  The same parameters,
    values (up to round-off) and gradients as PyG's layer.
    """

    # the arguments PyG's forward passes to ``propagate`` (PyG reads them from
    # here; from the source it would find this class's, which has no call)
    propagate_type = {"x": PairTensor, "pos": PairTensor, "alpha": PairTensor}

    def forward(self, x: Tensor, pos: Tensor, edge_index: Tensor,
                regular: Optional[int] = None) -> Tensor:
        """``regular``: every node has exactly that many incoming edges and
        ``edge_index[1]`` lists the targets in node order."""
        pos_nn = self.pos_nn
        if regular is None or self.attn_nn is not None or not isinstance(x, Tensor) \
                or not isinstance(pos, Tensor) or not isinstance(pos_nn, (Linear, PygLinear)) \
                or isinstance(pos_nn.weight, torch.nn.parameter.UninitializedParameter):
            return super().forward(x, pos, edge_index)
        n = x.shape[0]
        moved = F.linear(pos, pos_nn.weight)  # P p, [N, C]
        offset = moved if pos_nn.bias is None else moved + pos_nn.bias  # P p_i + b
        neighbors = edge_index[0].view(n, regular)
        if self.add_self_loops:  # the kNN graph has none; PyG appends one per node
            neighbors = torch.cat([neighbors, torch.arange(n, device=x.device).unsqueeze(1)], 1)
        # alpha_ij = softmax_j((W_1 x_i + P p_i + b) - (W_2 x_j + P p_j)), and with
        # the alpha of each node summing to one,
        # x'_i = sum_j alpha_ij (W_3 x_j - P p_j) + P p_i + b
        return knn_softmax_sum(self.lin_dst(x) + offset, self.lin_src(x) + moved,
                               self.lin(x) - moved, neighbors) + offset


def _make_local(local: Union[str, Module, Callable[[int], Module]], channels: int) -> Module:
    if local == "point_transformer":
        return PointTransformerConv(channels, channels)
    if local == "edgeconv":
        return EdgeConv(channels)
    if isinstance(local, Module):
        return local  # a network gives each block its own copy (FuncAttnNet)
    if callable(local):
        module = local(channels)
        if not isinstance(module, Module):
            raise TypeError(f"'local' factory must return a torch.nn.Module, got {type(module).__name__}")
        return module
    raise ValueError(f"'local' must be one of {LOCAL_KINDS}, a PyG conv module or a factory "
                     f"channels -> module, got {local!r}")


class FuncAttnBlock(Module):
    r"""Pre-LayerNorm transformer block around :class:`FunctionalAttention`,
    with an optional local message-passing branch over a kNN graph of ``pos``.

    .. math::
        \mathbf{h} &= \mathrm{LN}_1(\mathbf{x}), \qquad
        \mathbf{x} \leftarrow \mathbf{x} + \mathrm{FuncAttn}(\mathbf{h})
            + \mathrm{Local}(\mathbf{h}, \mathbf{p}, \mathcal{E}_{\mathrm{kNN}}) \\
        \mathbf{x} &\leftarrow \mathbf{x} + \mathrm{MLP}(\mathrm{LN}_2(\mathbf{x}))

    The global (functional attention) and local (message passing) branches run
    in parallel on the same normalised input.

    Args:
        channels (int): Size of each sample.
        heads (int, optional): Attention heads. (default: :obj:`8`)
        num_bases (int, optional): Basis functions per head. (default: :obj:`32`)
        basis_type (str, optional): ``"learned"``, ``"laplacian"`` or
            ``"laplacian_init"``. (default: :obj:`"learned"`)
        mlp_ratio (float, optional): Hidden size of the MLP relative to
            ``channels``. (default: :obj:`2.0`)
        dropout (float, optional): Dropout on the attention's output and in
            the MLP. (default: :obj:`0.0`)
        attn_dropout (float, optional): Dropout on the entries of the
            functional maps (``dropout`` of :class:`FunctionalAttention`, the
            analogue of attention-weight dropout). (default: :obj:`0.0`)
        local (str or torch.nn.Module or callable, optional): The local branch:
            ``"point_transformer"`` (:class:`PointTransformerConv`: PyG's
            layer, computed per node on the kNN graph),
            ``"edgeconv"`` (:class:`EdgeConv`: PyG's EdgeConv with an MLP, its
            first layer computed per node), any PyG conv module called as ``conv(x, edge_index, **kwargs)``
            or ``conv(x, pos, edge_index, **kwargs)`` (``kwargs``: the extra
            keyword arguments of :meth:`forward`, e.g. ``edge_attr`` for
            :class:`~torch_geometric.nn.conv.GINEConv`), or a factory
            ``channels -> module``;
            ``None`` for no local branch. (default: :obj:`None`)
        k (int, optional): Neighbours of the kNN graph when ``edge_index``
            is not passed to :meth:`forward`. (default: :obj:`16`)
        **kwargs (optional): Further arguments of :class:`FunctionalAttention`.

    Shapes:
        - **input:** node features :math:`(N, c)`, positions :math:`(N, D)`
          (for the local branch), batch :math:`(N)`, mass :math:`(N)`,
          basis :math:`(N, k')`, edge indices :math:`(2, E)`
        - **output:** node features :math:`(N, c)`
    """

    def __init__(self, channels: int, heads: int = 8, num_bases: int = 32,
                 basis_type: str = "learned", mlp_ratio: float = 2.0, dropout: float = 0.0,
                 local: Optional[Union[str, Module, Callable[[int], Module]]] = None,
                 k: int = 16, attn_dropout: float = 0.0, **kwargs):
        super().__init__()
        check_number(k, "k", integer=True, minimum=1)
        check_number(dropout, "dropout", minimum=0.0, below=1.0)
        check_number(mlp_ratio, "mlp_ratio", above=0.0)
        self.channels = channels
        self.k = k
        self.dropout = dropout
        self.norm1 = LayerNorm(channels)
        self.attn = FunctionalAttention(channels, heads, num_bases, basis_type, attn_dropout,
                                        **kwargs)
        self.local = None if local is None else _make_local(local, channels)
        #: the local conv takes ``pos`` besides ``x`` and the edges
        self.local_takes_pos = self.local is not None and \
            "pos" in inspect.signature(self.local.forward).parameters
        self.norm2 = LayerNorm(channels)
        self.mlp = mlp(channels, max(1, int(round(mlp_ratio * channels))), channels, dropout)
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        self.norm1.reset_parameters()
        self.attn.reset_parameters()
        if self.local is not None and hasattr(self.local, "reset_parameters"):
            self.local.reset_parameters()
        self.norm2.reset_parameters()
        self.mlp.reset_parameters()

    def forward(self, x: Tensor, pos: Optional[Tensor] = None, batch: Optional[Tensor] = None,
                mass: Optional[Tensor] = None, basis: Optional[Tensor] = None,
                edge_index: Optional[Tensor] = None, *, batch_size: Optional[int] = None,
                return_maps: bool = False, chunk_size: Optional[int] = None, **local_kwargs):
        """Checks the inputs (:mod:`~tg_funcattn.nn.inputs`) and runs the block
        (:meth:`forward_validated`); ``pos`` or ``edge_index`` is needed only
        with a local branch, and further keyword arguments (e.g.
        ``edge_attr``) go to the local conv.  ``x, pos, batch, mass, basis,
        edge_index`` may be passed by position (e.g. by
        :class:`torch_geometric.nn.Sequential`).  With ``return_maps=True``
        also returns the attention's bases and functional maps; ``chunk_size``
        streams over chunks of nodes (see :class:`FunctionalAttention`)."""
        x, layout = validate_network(self.needs, self.attn.lin_value.weight, x, pos, batch, mass,
                                     basis, None, edge_index, batch_size, local_kwargs)
        regular = None
        if self.local is not None and edge_index is None:
            edge_index, regular = knn_edges(pos, self.k, layout)
        out = self.forward_validated(x, layout, pos=pos, edge_index=edge_index, regular=regular,
                                     return_maps=return_maps,
                                     stream=streaming(chunk_size, x.shape[0]), **local_kwargs)
        layout.deferred.run()
        return out

    @property
    def needs(self) -> NetworkNeeds:
        """What the block's inputs must provide (see :mod:`~tg_funcattn.nn.inputs`)."""
        return NetworkNeeds(self.attn.needs, self.channels, 0, None, self.local is not None,
                            self.local_takes_pos, "layer")

    def forward_validated(self, x: Tensor, layout: GraphLayout, *, pos: Optional[Tensor] = None,
                          edge_index: Optional[Tensor] = None, regular: Optional[int] = None,
                          return_maps: bool = False, stream: Streaming = ONE_PASS, **local_kwargs):
        """The block on validated inputs (see
        :meth:`FunctionalAttention.forward_validated`); ``edge_index`` is
        required with a local branch, ``local_kwargs`` go to its conv;
        ``regular`` (from :func:`knn_edges`) tells :class:`EdgeConv` and
        :class:`PointTransformerConv` that every node has that many incoming
        edges, in node order."""
        h = stream.rowwise(self.norm1, x)
        attn = self.attn.forward_validated(h, layout, return_maps=return_maps, stream=stream)
        attn, maps = (attn[0], attn[1:]) if return_maps else (attn, None)
        out = x + F.dropout(attn, p=self.dropout, training=self.training)
        if self.local is not None:
            if isinstance(self.local, PointTransformerConv):
                out = out + self.local(h, pos, edge_index, regular)
            elif isinstance(self.local, EdgeConv):
                out = out + self.local(h, edge_index, regular)
            elif self.local_takes_pos:
                out = out + self.local(h, pos, edge_index, **local_kwargs)
            else:
                out = out + self.local(h, edge_index, **local_kwargs)
        out = out + stream.rowwise(lambda t: self.mlp(self.norm2(t)), out)
        return (out, *maps) if return_maps else out

    def __repr__(self) -> str:
        local = None if self.local is None else type(self.local).__name__
        return (f"{self.__class__.__name__}({self.channels}, heads={self.attn.heads}, "
                f"num_bases={self.attn.num_bases}, basis_type='{self.attn.basis_type}', local={local})")


class FuncAttnNet(Module):
    r"""A functional attention transformer for point clouds and meshes:
    lift -> ``num_layers`` x :class:`FuncAttnBlock` -> head.

    The lift embeds the node features concatenated with the positions;
    node-level tasks (segmentation, per-node regression) read one output per
    node, graph-level tasks pool the nodes of each graph by their mass
    (uniform if no mass is given) before the head.  For part segmentation,
    ``num_categories`` adds a learned embedding of each graph's category to
    every node of that graph.

    On meshes, pass the surface's eigenbasis with
    ``basis_type="laplacian_init"`` (the README's "Results on real data"
    compares the kinds, heads and local branches).  :meth:`from_preset` builds
    the authors' RNA model.

    Args:
        in_channels (int): Size of the node features ``x`` (``0``: positions only).
        hidden_channels (int): Width of the blocks.
        out_channels (int): Size of each output (classes or regression targets).
        num_layers (int, optional): Number of blocks. (default: :obj:`4`)
        heads (int, optional): Attention heads. (default: :obj:`8`)
        num_bases (int, optional): Basis functions per head. (default: :obj:`32`)
        basis_type (str, optional): ``"learned"``, ``"laplacian"`` or
            ``"laplacian_init"``. (default: :obj:`"learned"`)
        readout (str, optional): ``"node"`` (one output per node) or
            ``"graph"`` (the mass-weighted mean of each graph's nodes before
            the head). (default: :obj:`"node"`)
        pos_channels (int, optional): Dimension of ``pos``, concatenated to
            ``x`` at the input; ``0`` to ignore positions in the lift.
            (default: :obj:`3`)
        num_categories (int, optional): Number of graph categories for
            conditioning; ``None`` for none. (default: :obj:`None`)
        local (str or torch.nn.Module or callable, optional): Local branch of
            every block (see :class:`FuncAttnBlock`); a module instance is
            copied, so that every block has its own weights (re-initialised
            by :meth:`reset_parameters`). (default: :obj:`None`)
        k (int, optional): Neighbours of the kNN graph of the local branch,
            built once per forward pass and shared by the blocks.
            (default: :obj:`16`)
        mlp_ratio (float, optional): MLP width relative to ``hidden_channels``.
            (default: :obj:`2.0`)
        dropout (float, optional): Dropout on every attention output, in the
            MLPs and in an MLP head. (default: :obj:`0.0`)
        lift (str, optional): ``"mlp"`` (``Linear -> GELU -> Linear`` through
            ``2 * hidden_channels``) or ``"residual"`` (:class:`ResidualLift`,
            the authors'). (default: :obj:`"mlp"`)
        head (str, optional): ``"linear"``, one ``Linear`` on the last
            block's output (the authors'), or ``"mlp"``, ``LayerNorm`` then
            ``Linear -> GELU -> Linear``. (default: :obj:`"linear"`)
        init (str, optional): ``"default"`` (PyTorch's and PyG's
            initialisation) or ``"trunc_normal"`` (every ``Linear`` of the
            lift and blocks from a normal of standard deviation 0.02, biases
            zero, as the authors). (default: :obj:`"default"`)
        **kwargs (optional): Further arguments of :class:`FuncAttnBlock`
            (``attn_dropout``) and :class:`FunctionalAttention`.

    Shapes:
        - **input:** node features :math:`(N, F_{in})` or ``None``, positions
          :math:`(N, D)`, batch :math:`(N)`, mass :math:`(N)`, basis
          :math:`(N, k')`, category :math:`(B)`
        - **output:** :math:`(N, F_{out})` for ``readout="node"``,
          :math:`(B, F_{out})` for ``readout="graph"``
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int,
                 num_layers: int = 4, heads: int = 8, num_bases: int = 32,
                 basis_type: str = "learned", readout: str = "node", pos_channels: int = 3,
                 num_categories: Optional[int] = None,
                 local: Optional[Union[str, Module, Callable[[int], Module]]] = None,
                 k: int = 16, mlp_ratio: float = 2.0, dropout: float = 0.0,
                 lift: str = "mlp", head: str = "linear", init: str = "default", **kwargs):
        super().__init__()
        for name, value, kinds in (("lift", lift, LIFTS), ("head", head, HEADS),
                                   ("init", init, INITS), ("readout", readout, READOUTS)):
            if value not in kinds:
                raise ValueError(f"'{name}' must be one of {kinds}, got {value!r}")
        for name, value in (("in_channels", in_channels), ("pos_channels", pos_channels)):
            check_number(value, name, integer=True, minimum=0)
        if in_channels + pos_channels == 0:
            raise ValueError("'in_channels' + 'pos_channels' must be positive (the lift needs an input)")
        check_number(num_layers, "num_layers", integer=True, minimum=1)
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        self.num_layers = num_layers
        self.readout = readout
        self.pos_channels = pos_channels
        self.num_categories = num_categories
        self.k = k
        self.init = init
        self.heads, self.num_bases, self.basis_type = heads, num_bases, basis_type
        self.local_name = None if local is None else local if isinstance(local, str) else \
            type(local).__name__ if isinstance(local, Module) else getattr(local, "__name__", "factory")
        #: the settings that differ from their defaults, for ``repr``
        defaults = inspect.signature(FuncAttnNet).parameters
        self._changed = {name: value for name, value in (
            ("pos_channels", pos_channels), ("num_categories", num_categories),
            ("local", self.local_name), ("k", k), ("mlp_ratio", mlp_ratio), ("dropout", dropout),
            ("lift", lift), ("head", head), ("init", init))
            if value != defaults[name].default and (name != "k" or local is not None)}
        self._changed.update(kwargs)
        self.lift = (mlp(in_channels + pos_channels, 2 * hidden_channels, hidden_channels)
                     if lift == "mlp" else ResidualLift(in_channels + pos_channels, hidden_channels))
        self.category_emb = None if num_categories is None else \
            torch.nn.Embedding(num_categories, hidden_channels)
        # a module instance is copied: every block gets its own weights (reset below)
        self.blocks = torch.nn.ModuleList([
            FuncAttnBlock(hidden_channels, heads, num_bases, basis_type, mlp_ratio, dropout,
                          copy.deepcopy(local) if isinstance(local, Module) else local,
                          k, **kwargs) for _ in range(num_layers)])
        if head == "mlp":
            self.norm = LayerNorm(hidden_channels)
            self.head = mlp(hidden_channels, hidden_channels, out_channels, dropout)
        else:
            self.norm = None
            self.head = Linear(hidden_channels, out_channels)
        self.reset_parameters()

    @classmethod
    def from_preset(cls, name: str, in_channels: int = 0, out_channels: int = 260,
                    **overrides) -> "FuncAttnNet":
        r"""A network of a named configuration (see
        :mod:`tg_funcattn.nn.presets`), e.g. ``"paper_rna"``, the authors'
        RNA segmentation model.  ``overrides`` replace single settings."""
        from .presets import preset

        settings = preset(name)
        settings.update(overrides)
        return cls(in_channels, out_channels=out_channels, **settings)

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        self.lift.reset_parameters()
        if self.category_emb is not None:
            self.category_emb.reset_parameters()
        for block in self.blocks:
            block.reset_parameters()
        if self.norm is not None:
            self.norm.reset_parameters()
        self.head.reset_parameters()
        if self.init == "trunc_normal":
            _trunc_normal_linears([self.lift, *self.blocks])

    @property
    def needs(self) -> NetworkNeeds:
        """What the network's inputs must provide (see :mod:`~tg_funcattn.nn.inputs`):
        the blocks' (all alike) with the network's own inputs."""
        block = next(iter(self.blocks))
        return block.needs._replace(in_channels=self.in_channels, pos_channels=self.pos_channels,
                                    num_categories=self.num_categories, owner="model")

    @property
    def uses_eigenbasis(self) -> bool:
        """Whether :meth:`forward` needs ``basis`` (the Laplacian basis kinds)."""
        return self.needs.graph.uses_eigenbasis

    def forward(self, x: Optional[Tensor], pos: Optional[Tensor], batch: Optional[Tensor] = None,
                mass: Optional[Tensor] = None, basis: Optional[Tensor] = None, *,
                category: Optional[Tensor] = None, edge_index: Optional[Tensor] = None,
                batch_size: Optional[int] = None, return_maps: bool = False,
                chunk_size: Optional[int] = None, **local_kwargs):
        r"""Checks the inputs (:func:`~tg_funcattn.nn.inputs.validate_network`)
        and runs the network.

        Args:
            x (torch.Tensor, optional): Node features ``[N, in_channels]``;
                ``None`` when ``in_channels`` is 0.  Finite, at most the
                square root of its dtype's largest number.
            pos (torch.Tensor, optional): Positions ``[N, pos_channels]``
                (concatenated to ``x`` at the input, and the kNN graph of a
                local branch); ``None`` when neither needs them.
            batch (torch.Tensor, optional): Sorted graph index of each node
                ``[N]``; ``None`` for one graph. (default: :obj:`None`)
            mass (torch.Tensor, optional): Positive node masses ``[N]`` (the
                quadrature weights; required by the Laplacian kinds, the
                masses ``basis`` is orthonormal in). (default: :obj:`None`,
                uniform per graph)
            basis (torch.Tensor, optional): Eigenbasis ``[N, k' >= num_bases]``
                of the Laplacian kinds. (default: :obj:`None`)
            category (torch.Tensor, optional): Category of each graph ``[B]``,
                in ``[0, num_categories)``, with ``num_categories``.
                (default: :obj:`None`)
            edge_index (torch.Tensor, optional): Replaces the kNN graph of
                ``pos`` for the local branch. (default: :obj:`None`)
            batch_size (int, optional): Number of graphs ``B``; saves a host
                synchronisation.  It may exceed the last graph of ``batch``
                and a graph may have no nodes (as for PyG's pooling): such a
                graph has no rows, or, with ``readout="graph"``, the head of a
                zero feature. (default: :obj:`None`)
            return_maps (bool, optional): Also return, per block, (bases
                ``[N, heads, num_bases]``, maps ``[B, heads, num_bases,
                num_bases]``). (default: :obj:`False`)
            chunk_size (int, optional): Stream every layer over chunks of this
                many nodes: inference in ``O(N hidden_channels)`` memory; under
                autograd every attention chunk is checkpointed and three
                ``[N, hidden_channels]`` tensors per block are kept.
                (default: :obj:`None`, one pass)
            **local_kwargs (optional): Further arguments of the local conv,
                e.g. ``edge_attr``.

        Returns:
            ``[N, out_channels]`` (``readout="node"``) or ``[B, out_channels]``
            (``readout="graph"``); with ``return_maps=True`` the pair
            ``(out, [(bases, maps) per block])``.
        """
        h, layout = validate_network(self.needs, next(self.lift.parameters()), x, pos, batch, mass,
                                     basis, category, edge_index, batch_size, local_kwargs)
        stream = streaming(chunk_size, h.shape[0])  # every block and per-node map follows it
        h = stream.rowwise(self.lift, h)
        if self.category_emb is not None:
            emb = self.category_emb(category)
            h = h + (emb.expand(h.shape[0], -1) if layout.batch is None else emb[layout.batch])
        regular = None
        if self.local_name is not None and edge_index is None:
            edge_index, regular = knn_edges(pos, self.k, layout)
        maps = []
        for block in self.blocks:
            h = block.forward_validated(h, layout, pos=pos, edge_index=edge_index, regular=regular,
                                        return_maps=return_maps, stream=stream, **local_kwargs)
            if return_maps:
                h, bases, fmap = h
                maps.append((bases, fmap))
        h = h if self.norm is None else stream.rowwise(self.norm, h)
        h = _weighted_mean(h, layout) if self.readout == "graph" else h
        out = stream.rowwise(self.head, h)
        layout.deferred.run()
        return (out, maps) if return_maps else out

    def __repr__(self) -> str:
        changed = "".join(f", {name}={value!r}" for name, value in self._changed.items())
        return (f"{self.__class__.__name__}({self.in_channels}, {self.hidden_channels}, "
                f"{self.out_channels}, num_layers={self.num_layers}, heads={self.heads}, "
                f"num_bases={self.num_bases}, basis_type='{self.basis_type}', "
                f"readout='{self.readout}'{changed})")


def _trunc_normal_linears(modules) -> None:
    """The authors' initialisation: every ``Linear`` weight drawn from a normal
    distribution of standard deviation :data:`TRUNC_NORMAL_STD` (truncated at
    +-2, PyTorch's default bounds), biases zero.  The zero-initialised
    correction of ``basis_type="laplacian_init"`` stays zero, so that the basis
    starts as the given one."""
    keep = {id(sub.proj) for module in modules for sub in module.modules()
            if isinstance(sub, AdaptedOrthonormal)}
    for module in modules:
        for sub in module.modules():
            if isinstance(sub, (Linear, PygLinear)) and id(sub) not in keep:
                torch.nn.init.trunc_normal_(sub.weight, std=TRUNC_NORMAL_STD)
                if sub.bias is not None:
                    torch.nn.init.zeros_(sub.bias)


def knn_edges(pos: Tensor, k: int, layout: GraphLayout) -> Tuple[Tensor, Optional[int]]:
    """The kNN graph of the local branch on validated positions (the one
    place it is built: once per forward pass, shared by the blocks), and ``k``
    where every node then has exactly ``k`` incoming edges listed in node
    order (the library's own searches on graphs of more than ``k`` nodes;
    ``None`` otherwise)."""
    backend = knn_backend(pos.device)
    edge_index = knn_graph_validated(pos, k, layout.batch, layout.ptr, bounds=layout.bounds,
                                     backend=backend)
    bounds = layout.bounds
    regular = backend in ("scipy", "torch") and bounds is not None and \
        min((e - s for s, e in zip(bounds[:-1], bounds[1:]) if e > s), default=0) > k  # empty: none
    return edge_index, k if regular else None


def _weighted_mean(h: Tensor, layout: GraphLayout) -> Tensor:
    """Mass-weighted mean of the node features of every graph, ``[B, C]``
    (uniform without mass)."""
    weighted = layout.node_weights(True, h.dtype).unsqueeze(1) * h
    if layout.batch is None:
        return weighted.sum(0, keepdim=True)
    return segment_sum(weighted, layout.ptr, layout.batch)
