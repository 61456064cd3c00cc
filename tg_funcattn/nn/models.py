r"""The transformer block and network built on :class:`FunctionalAttention`."""
from __future__ import annotations

import copy
import inspect
from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import LayerNorm, Linear, Module

from .._validation import ValueChecks, check_finite, check_tensor
from ..ops.knn import knn_graph_validated
from ..ops.segment import segment_sum
from ._layout import ONE_PASS, GraphLayout, Streaming, streaming
from .bases import AdaptedOrthonormal
from .functional_attention import FunctionalAttention

LOCAL_KINDS = ("point_transformer", "edgeconv")
READOUTS = ("node", "graph")
LIFTS = ("mlp", "residual")
HEADS = ("mlp", "linear")
INITS = ("default", "trunc_normal")
#: Standard deviation of the ``init="trunc_normal"`` weights (truncated at two
#: standard deviations), as in the authors' models.
TRUNC_NORMAL_STD = 0.02


class MLP(torch.nn.Sequential):
    """``Linear -> GELU -> Dropout -> Linear``."""

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int,
                 dropout: float = 0.0):
        super().__init__(Linear(in_channels, hidden_channels), torch.nn.GELU(),
                         torch.nn.Dropout(dropout), Linear(hidden_channels, out_channels))

    def reset_parameters(self):
        self[0].reset_parameters()
        self[3].reset_parameters()


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


def _make_local(local: Union[str, Module, Callable[[int], Module]], channels: int) -> Module:
    from torch_geometric.nn import EdgeConv, PointTransformerConv

    if local == "point_transformer":
        return PointTransformerConv(channels, channels)
    if local == "edgeconv":
        return EdgeConv(MLP(2 * channels, channels, channels), aggr="max")
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
        dropout (float, optional): Dropout in attention and MLP. (default: :obj:`0.0`)
        local (str or torch.nn.Module or callable, optional): The local branch:
            ``"point_transformer"`` (:class:`~torch_geometric.nn.conv.PointTransformerConv`),
            ``"edgeconv"`` (:class:`~torch_geometric.nn.conv.EdgeConv` with an
            MLP), any PyG conv module called as ``conv(x, edge_index, **kwargs)``
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
                 k: int = 16, **kwargs):
        super().__init__()
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"'k' must be a positive int, got {k!r}")
        self.channels = channels
        self.k = k
        self.norm1 = LayerNorm(channels)
        self.attn = FunctionalAttention(channels, heads, num_bases, basis_type, dropout, **kwargs)
        self.local = None if local is None else _make_local(local, channels)
        self._local_takes_pos = self.local is not None and \
            "pos" in inspect.signature(self.local.forward).parameters
        self.norm2 = LayerNorm(channels)
        self.mlp = MLP(channels, max(1, int(round(mlp_ratio * channels))), channels, dropout)
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
        """Validates the inputs and runs the block (:meth:`forward_validated`);
        ``pos`` or ``edge_index`` is needed only with a local branch, and
        further keyword arguments (e.g. ``edge_attr``) go to the local conv.
        ``x, pos, batch, mass, basis, edge_index`` may be passed by position
        (e.g. by :class:`torch_geometric.nn.Sequential`).  With
        ``return_maps=True`` also returns the attention's bases and
        functional maps; ``chunk_size`` streams over chunks of nodes (see
        :class:`FunctionalAttention`)."""
        _check_local_kwargs(self.local, local_kwargs, edge_index)
        checks = ValueChecks()
        self.attn._check_x(x, checks)
        if self.local is not None and (edge_index is None or self._local_takes_pos):
            if pos is None:
                raise ValueError("the local branch needs 'pos' (or a precomputed 'edge_index')"
                                 if edge_index is None else f"{type(self.local).__name__} needs 'pos'")
            check_tensor(pos, "pos", ndim=2, floating=True)
            check_finite(pos, "pos", checks)
        layout = self.attn.validate(x.shape[0], x.device, batch, batch_size, mass, basis, checks)
        checks.run()
        if self.local is not None and edge_index is None:
            edge_index = knn_edges(pos, self.k, layout)
        out = self.forward_validated(x, layout, pos=pos, edge_index=edge_index,
                                     return_maps=return_maps,
                                     stream=streaming(chunk_size, x.shape[0]), **local_kwargs)
        layout.deferred.run()
        return out

    def forward_validated(self, x: Tensor, layout: GraphLayout, *, pos: Optional[Tensor] = None,
                          edge_index: Optional[Tensor] = None, return_maps: bool = False,
                          stream: Streaming = ONE_PASS, **local_kwargs):
        """The block on validated inputs (see
        :meth:`FunctionalAttention.forward_validated`); ``edge_index`` is
        required with a local branch, ``local_kwargs`` go to its conv."""
        h = stream.rowwise(self.norm1, x)
        attn = self.attn.forward_validated(h, layout, return_maps=return_maps, stream=stream)
        attn, maps = (attn[0], attn[1:]) if return_maps else (attn, None)
        out = x + attn
        if self.local is not None:
            if self._local_takes_pos:
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
        dropout (float, optional): Dropout. (default: :obj:`0.0`)
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
        **kwargs (optional): Further arguments of :class:`FunctionalAttention`.

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
        if in_channels < 0 or pos_channels < 0 or in_channels + pos_channels == 0:
            raise ValueError("'in_channels' + 'pos_channels' must be positive (the lift needs an input)")
        if num_layers < 1:
            raise ValueError(f"'num_layers' must be >= 1, got {num_layers}")
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        self.num_layers = num_layers
        self.readout = readout
        self.pos_channels = pos_channels
        self.num_categories = num_categories
        self.k = k
        self.init = init
        self.lift = (MLP(in_channels + pos_channels, 2 * hidden_channels, hidden_channels)
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
            self.head = MLP(hidden_channels, hidden_channels, out_channels, dropout)
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

    def forward(self, x: Optional[Tensor], pos: Optional[Tensor], batch: Optional[Tensor] = None,
                mass: Optional[Tensor] = None, basis: Optional[Tensor] = None, *,
                category: Optional[Tensor] = None, edge_index: Optional[Tensor] = None,
                batch_size: Optional[int] = None, return_maps: bool = False,
                chunk_size: Optional[int] = None, **local_kwargs):
        """Runs the network (see the class docstring for shapes).  With
        ``return_maps=True`` also returns, per block, the pair (bases
        ``[N, heads, k]``, functional maps ``[B, heads, k, k]``).
        ``chunk_size`` streams every attention layer over chunks of nodes
        (for very large graphs; see :class:`FunctionalAttention`); without
        autograd also the per-node maps (lift, norms, MLPs, head), so that
        inference holds ``O(N hidden_channels)`` memory; with autograd
        every chunk of every layer is checkpointed (recomputed once in the
        backward pass; nothing else is), so that training keeps three
        ``[N, hidden_channels]`` tensors per block (its input, the
        normalised input and the attention residual).  With a local branch,
        ``edge_index`` replaces the kNN graph of ``pos`` (e.g. the mesh
        edges) and further keyword arguments (e.g. ``edge_attr``) go to every
        block's local conv.  ``x`` (or ``pos`` when ``in_channels=0``) must
        have the dtype of the parameters unless autocast is on; ``x`` and
        ``pos`` must be finite and at most the square root of the largest
        number of their dtype (``1.8e19`` in float32), beyond which their
        squares overflow inside the network; ``category`` holds integer
        indices in ``[0, num_categories)``.  The Laplacian basis kinds need
        ``mass`` (see :class:`FunctionalAttention`)."""
        local = self.blocks[0].local
        _check_local_kwargs(local, local_kwargs, edge_index)
        checks = ValueChecks()
        inputs = []
        if self.in_channels > 0:
            if x is None:
                raise ValueError(f"'x' is None but the model was built with in_channels={self.in_channels}")
            check_tensor(x, "x", ndim=2, floating=True)
            if x.shape[1] != self.in_channels:
                raise ValueError(f"'x' must have shape [N, {self.in_channels}], got {tuple(x.shape)}")
            check_finite(x, "x", checks)
            _check_magnitude(x, "x", checks)
            inputs.append(x)
        elif x is not None and x.numel() > 0:
            raise ValueError("'x' was given but the model was built with in_channels=0; "
                             "set in_channels to its width")
        takes_pos = self.blocks[0]._local_takes_pos
        if self.pos_channels > 0 or (local is not None and (edge_index is None or takes_pos)):
            if pos is None:
                raise ValueError("'pos' is required (for the lift or the local branch)")
            check_tensor(pos, "pos", ndim=2, floating=True)
            check_finite(pos, "pos", checks)
            _check_magnitude(pos, "pos", checks)
        if self.pos_channels > 0:
            if pos.shape[1] != self.pos_channels:
                raise ValueError(f"'pos' must have shape [N, {self.pos_channels}], got {tuple(pos.shape)}")
            if inputs and pos.shape[0] != inputs[0].shape[0]:
                raise ValueError(f"'pos' has {pos.shape[0]} rows but 'x' has {inputs[0].shape[0]}")
            inputs.append(pos.to(inputs[0].dtype) if inputs else pos)
        self._check_dtype(inputs[0], "x" if self.in_channels > 0 else "pos")
        h = inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=-1)
        layout = self.blocks[0].attn.validate(h.shape[0], h.device, batch, batch_size, mass, basis,
                                              checks)
        if self.category_emb is not None:
            if category is None:
                raise ValueError(f"'category' [B] is required: the model was built with "
                                 f"num_categories={self.num_categories}")
            check_tensor(category, "category", ndim=1)
            if category.dtype.is_floating_point or category.dtype == torch.bool or \
                    category.is_complex():
                raise TypeError(f"'category' must be an integer tensor (category indices in "
                                f"[0, {self.num_categories})), got dtype {category.dtype}")
            if category.numel() != layout.num_graphs:
                raise ValueError(f"'category' must have one entry per graph ({layout.num_graphs}), "
                                 f"got shape {tuple(category.shape)}")
            if category.device != h.device:
                raise ValueError(f"'category' is on {category.device} but the node features are "
                                 f"on {h.device}")
            _check_categories(category, self.num_categories, checks)
        elif category is not None:
            raise ValueError("'category' was given but the model was built without num_categories")
        checks.run()

        # the one decision of how to stream: every block and per-node map follows it
        stream = streaming(chunk_size, h.shape[0])
        h = stream.rowwise(self.lift, h)
        if self.category_emb is not None:
            emb = self.category_emb(category)
            h = h + (emb.expand(h.shape[0], -1) if layout.batch is None else emb[layout.batch])
        if local is not None and edge_index is None:
            edge_index = knn_edges(pos, self.k, layout)
        maps = []
        for block in self.blocks:
            h = block.forward_validated(h, layout, pos=pos, edge_index=edge_index,
                                        return_maps=return_maps, stream=stream, **local_kwargs)
            if return_maps:
                h, bases, fmap = h
                maps.append((bases, fmap))
        if self.norm is not None:
            h = stream.rowwise(self.norm, h)
        if self.readout == "graph":
            h = _weighted_mean(h, layout)
        out = stream.rowwise(self.head, h)
        layout.deferred.run()
        return (out, maps) if return_maps else out

    def _check_dtype(self, value: Tensor, name: str) -> None:
        """The input of the lift has the dtype of the model's parameters
        (or autocast is on)."""
        weight = next(self.lift.parameters())
        if value.dtype != weight.dtype and not torch.is_autocast_enabled(value.device.type):
            raise TypeError(f"'{name}' has dtype {value.dtype} but the model's parameters are "
                            f"{weight.dtype}; convert one with .to() (e.g. {name}.to({weight.dtype})"
                            " or model.to(dtype)) or use torch.autocast")

    def __repr__(self) -> str:
        attn = self.blocks[0].attn
        return (f"{self.__class__.__name__}({self.in_channels}, {self.hidden_channels}, "
                f"{self.out_channels}, num_layers={self.num_layers}, heads={attn.heads}, "
                f"num_bases={attn.num_bases}, basis_type='{attn.basis_type}', readout='{self.readout}')")


def _check_categories(category: Tensor, num_categories: int, checks: ValueChecks) -> None:
    """Adds to ``checks`` that every category index is in ``[0, num_categories)``."""
    bad = (category < 0) | (category >= num_categories)
    first = bad.long().argmax().view(1)
    checks.add(torch.cat([bad.any().long().view(1), first, category.long().gather(0, first)]),
               lambda v: (f"'category' must hold indices in [0, {num_categories}) (num_categories="
                          f"{num_categories}), but graph {v[1]} has category {v[2]}")
               if v[0] else None)


def _check_magnitude(value: Tensor, name: str, checks: ValueChecks) -> None:
    """Adds to ``checks`` that the finite input ``value`` is at most the square
    root of the largest number of its dtype (at least float32: ``1.8e19``),
    beyond which its squares (in the layer norms, the Gram matrices)
    overflow inside the network, which then returns NaN or meaningless
    values."""
    wide = torch.promote_types(value.dtype, torch.float32)
    limit = torch.finfo(wide).max ** 0.5
    if value.numel():
        # relative to the limit, so that float64 values travel as float32
        checks.add_float((value.detach().abs().amax().to(wide) / limit).view(1),
                         lambda v: (f"'{name}' is finite but its largest |value| is "
                                    f"{v[0] * limit:.3g}, above {limit:.3g}, the square root of "
                                    f"the largest {wide}: its squares overflow inside the network "
                                    "(the output would be NaN or meaningless); scale it (e.g. "
                                    "standardise the features, NormalizeScale for positions)")
                         if v[0] > 1 else None)


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
            if isinstance(sub, Linear) and id(sub) not in keep:
                torch.nn.init.trunc_normal_(sub.weight, std=TRUNC_NORMAL_STD)
                if sub.bias is not None:
                    torch.nn.init.zeros_(sub.bias)


def _check_local_kwargs(local: Optional[Module], local_kwargs: dict,
                        edge_index: Optional[Tensor]) -> None:
    if local is None and (local_kwargs or edge_index is not None):
        given = sorted(local_kwargs) + (["edge_index"] if edge_index is not None else [])
        raise ValueError(f"{given} go to the local branch, but the model has none "
                         "(build it with local=...)")


def knn_edges(pos: Tensor, k: int, layout: GraphLayout) -> Tensor:
    """The kNN graph of the local branch on validated positions (the one
    place it is built: once per forward pass, shared by the blocks)."""
    return knn_graph_validated(pos, k, layout.batch, layout.ptr)


def _weighted_mean(h: Tensor, layout: GraphLayout) -> Tensor:
    """Mass-weighted mean of the node features of every graph, ``[B, C]``
    (uniform without mass)."""
    weighted = layout.node_weights(True, h.dtype).unsqueeze(1) * h
    if layout.batch is None:
        return weighted.sum(0, keepdim=True)
    return segment_sum(weighted, layout.ptr, layout.batch)
