"""The layers functional attention is measured against, with the same width and heads.

* :class:`SoftmaxAttention` -- full multi-head softmax attention through
  ``torch.nn.functional.scaled_dot_product_attention`` (the fused kernel), one
  graph at a time: ``O(N^2)``.
* :class:`PhysicsAttention` -- Transolver-style physics attention (Wu et al.,
  ICML 2024) as the paper describes it: soft slice weights ``softmax(W u / tau)``,
  slice tokens as weighted means, softmax attention among the ``k`` tokens,
  de-slicing; dense ``[B, H, N, k]`` tensors, one graph (no PyG batching).
* :class:`PointTransformerPeer` -- PyG's ``PointTransformerConv`` on a
  precomputed kNN graph.
* :class:`PeerNet` -- the network of ``FuncAttnNet`` with one of the above as
  the token mixer (full-model comparisons).
* :class:`DGCNN` -- PyG's ``EdgeConv`` with a kNN graph rebuilt in feature
  space by every layer (Wang et al., 2019), as PyG's ``dgcnn_segmentation.py``.
* :class:`PointNet2` -- PyG's ``pointnet2_segmentation.py`` architecture
  (set abstraction with ``PointNetConv``, feature propagation).
* :class:`GPSExample` -- the model of PyG's ``graph_gps.py`` (ZINC, GINEConv),
  with the GPS layer class as an argument, and :func:`molecule`, the
  molecule-like graphs it runs on here.

PyG 2.8 takes farthest point sampling, radius and kNN search from ``pyg-lib``,
which has no wheels on PyPI; the two point-cloud peers therefore search
neighbours here, by brute force per cloud (every cloud of a batch has the same
number of points in the segmentation benchmarks).
"""
import math

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import shortest_path
from torch import nn
from torch_geometric.data import Data
from torch_geometric.nn import (MLP, EdgeConv, GINEConv, PointNetConv, PointTransformerConv,
                                global_add_pool)
from torch_geometric.transforms import AddRandomWalkPE


class SoftmaxAttention(nn.Module):
    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = nn.Linear(channels, channels)

    def forward(self, x):  # one graph [N, C]
        n, c = x.shape
        # [3, 1, H, N, d]: 4-D inputs select the fused (flash) CPU kernel, O(N) memory
        q, k, v = self.qkv(x).view(1, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        o = nn.functional.scaled_dot_product_attention(q, k, v)  # [1, H, N, d]
        return self.out(o[0].transpose(0, 1).reshape(n, c))


class PhysicsAttention(nn.Module):
    def __init__(self, channels: int, heads: int, slices: int):
        super().__init__()
        self.heads, self.d = heads, channels // heads
        self.in_x = nn.Linear(channels, channels)
        self.in_fx = nn.Linear(channels, channels)
        self.in_slice = nn.Linear(self.d, slices)
        nn.init.orthogonal_(self.in_slice.weight)
        self.temperature = nn.Parameter(torch.full((1, heads, 1, 1), 0.5))
        self.to_q = nn.Linear(self.d, self.d, bias=False)
        self.to_k = nn.Linear(self.d, self.d, bias=False)
        self.to_v = nn.Linear(self.d, self.d, bias=False)
        self.out = nn.Linear(channels, channels)

    def forward(self, x, batch_size: int = 1):
        """``x`` ``[N, C]``: ``batch_size`` graphs of ``N / batch_size`` nodes each."""
        x = x.view(batch_size, -1, x.shape[-1])
        b, n, _ = x.shape
        fx = self.in_fx(x).view(b, n, self.heads, self.d).permute(0, 2, 1, 3).contiguous()
        xm = self.in_x(x).view(b, n, self.heads, self.d).permute(0, 2, 1, 3).contiguous()
        w = torch.softmax(self.in_slice(xm) / self.temperature, dim=-1)  # [B, H, N, k]
        norm = w.sum(2)
        tokens = torch.einsum("bhnc,bhng->bhgc", fx, w) / (norm + 1e-5).unsqueeze(-1)
        q, k, v = self.to_q(tokens), self.to_k(tokens), self.to_v(tokens)
        attn = torch.softmax(q @ k.transpose(-1, -2) * self.d ** -0.5, dim=-1)
        out = torch.einsum("bhgc,bhng->bhnc", attn @ v, w)
        return self.out(out.permute(0, 2, 1, 3).reshape(b * n, -1))


class PointTransformerPeer(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = PointTransformerConv(channels, channels)

    def forward(self, x, pos, edge_index):
        return self.conv(x, pos, edge_index)


class PeerNet(nn.Module):
    """The network of :class:`~tg_funcattn.nn.FuncAttnNet` (lift -> pre-LN
    blocks with a residual token mixer and a residual MLP -> head) with the
    functional attention replaced by a peer mixer: ``"sdpa"``, ``"physics"``
    or ``"ptconv"``; ``"physics"`` also takes batches of equal-size graphs
    (``batch_size``)."""

    def __init__(self, mixer: str, in_channels: int, channels: int, out_channels: int,
                 num_layers: int, heads: int, slices: int, mlp_ratio: float = 2.0):
        super().__init__()
        self.mixer = mixer
        self.lift = nn.Sequential(nn.Linear(in_channels, 2 * channels), nn.GELU(),
                                  nn.Linear(2 * channels, channels))
        make = {"sdpa": lambda: SoftmaxAttention(channels, heads),
                "physics": lambda: PhysicsAttention(channels, heads, slices),
                "ptconv": lambda: PointTransformerPeer(channels)}[mixer]
        hidden = int(mlp_ratio * channels)
        self.mixers = nn.ModuleList([make() for _ in range(num_layers)])
        self.norms1 = nn.ModuleList([nn.LayerNorm(channels) for _ in range(num_layers)])
        self.norms2 = nn.ModuleList([nn.LayerNorm(channels) for _ in range(num_layers)])
        self.mlps = nn.ModuleList([nn.Sequential(nn.Linear(channels, hidden), nn.GELU(),
                                                 nn.Linear(hidden, channels))
                                   for _ in range(num_layers)])
        self.norm = nn.LayerNorm(channels)
        self.head = nn.Sequential(nn.Linear(channels, channels), nn.GELU(),
                                  nn.Linear(channels, out_channels))

    def forward(self, x, pos, edge_index=None, batch_size: int = 1):
        h = self.lift(pos if x is None else torch.cat([x, pos], dim=-1))
        for mix, n1, n2, mlp in zip(self.mixers, self.norms1, self.norms2, self.mlps):
            z = n1(h)
            if self.mixer == "ptconv":
                z = mix(z, pos, edge_index)
            else:
                z = mix(z, batch_size) if self.mixer == "physics" else mix(z)
            h = h + z
            h = h + mlp(n2(h))
        return self.head(self.norm(h))


# --------------------------------------------------- point-cloud segmentation peers
def _dense(t, batch_size):
    """``[N, ...]`` -> ``[B, N / B, ...]`` (equal-size clouds)."""
    return t.view(batch_size, -1, *t.shape[1:])


def knn_dense(query, points, k, batch_size, exclude_self=False):
    """Indices ``[B, M, k]`` of the ``k`` nearest ``points`` ``[B * P, D]`` of every
    ``query`` ``[B * M, D]`` within its cloud, and their squared distances."""
    q, p = _dense(query, batch_size), _dense(points, batch_size)
    dist = torch.cdist(q, p).square()
    if exclude_self:
        dist = dist + torch.diag_embed(torch.full(dist.shape[:2], float("inf"), device=dist.device))
    d, idx = dist.topk(k, dim=-1, largest=False)
    return idx, d


def _flat_edges(idx, num_points):
    """Edges ``(neighbour, centre)`` of dense neighbour lists ``[B, M, k]`` (with
    ``-1`` for none), in the flat numbering of ``num_points`` points per cloud
    (sources) and ``M`` centres per cloud (targets)."""
    b, m, k = idx.shape
    offset = (torch.arange(b, device=idx.device) * num_points).view(b, 1, 1)
    centre = torch.arange(b * m, device=idx.device).view(b, m, 1).expand(b, m, k)
    keep = idx >= 0
    return torch.stack([(idx + offset)[keep], centre[keep]])


def farthest_point_sampling(pos, ratio, batch_size):
    """Indices (flat) of ``ceil(ratio * P)`` points per cloud chosen by farthest
    point sampling from the first point of each cloud."""
    p = _dense(pos, batch_size)
    b, n, _ = p.shape
    m = max(1, math.ceil(ratio * n))
    chosen = torch.zeros(b, m, dtype=torch.long, device=pos.device)
    dist = torch.full((b, n), float("inf"), device=pos.device)
    rows = torch.arange(b, device=pos.device)
    for i in range(1, m):
        last = p[rows, chosen[:, i - 1]]
        dist = torch.minimum(dist, (p - last.unsqueeze(1)).square().sum(-1))
        chosen[:, i] = dist.argmax(1)
    return (chosen + rows.view(b, 1) * n).view(-1)


def radius_dense(points, centres, r, batch_size, max_neighbours=64):
    """Up to ``max_neighbours`` points within distance ``r`` of every centre (the
    nearest ones first), ``-1`` where there are fewer."""
    idx, d = knn_dense(centres, points, min(max_neighbours, points.shape[0] // batch_size),
                       batch_size)
    return torch.where(d <= r * r, idx, torch.full_like(idx, -1))


class DGCNN(nn.Module):
    """Three ``EdgeConv`` layers (max aggregation) on kNN graphs of their input
    features, their outputs concatenated, a per-point MLP head: PyG's
    ``dgcnn_segmentation.py`` with ``channels`` instead of 64."""

    def __init__(self, in_channels, channels, out_channels, k=20, dropout=0.5):
        super().__init__()
        self.k = k
        self.convs = nn.ModuleList([
            EdgeConv(MLP([2 * (in_channels + 3), channels, channels]), aggr="max"),
            EdgeConv(MLP([2 * channels, channels, channels]), aggr="max"),
            EdgeConv(MLP([2 * channels, channels, channels]), aggr="max")])
        self.head = MLP([3 * channels, 1024, 256, 128, out_channels], dropout=dropout, norm=None)

    def forward(self, x, pos, batch_size):
        h = pos if x is None else torch.cat([x, pos], dim=-1)
        points = h.shape[0] // batch_size
        outs = []
        for conv in self.convs:
            idx, _ = knn_dense(h.detach(), h.detach(), self.k, batch_size, exclude_self=True)
            h = conv(h, _flat_edges(idx, points))
            outs.append(h)
        return self.head(torch.cat(outs, dim=-1))


class PointNet2(nn.Module):
    """PyG's ``pointnet2_segmentation.py``: two set abstraction levels (farthest
    point sampling, ball query of at most 64 neighbours, ``PointNetConv``), a
    global one, three feature propagation levels (inverse-distance kNN
    interpolation with skip connections) and an MLP head."""

    def __init__(self, in_channels, out_channels, dropout=0.5):
        super().__init__()
        self.levels = ((0.2, 0.2), (0.25, 0.4))
        self.sa1 = PointNetConv(MLP([in_channels + 3, 64, 64, 128]), add_self_loops=False)
        self.sa2 = PointNetConv(MLP([128 + 3, 128, 128, 256]), add_self_loops=False)
        self.sa3 = MLP([256 + 3, 256, 512, 1024])
        self.fp3 = MLP([1024 + 256, 256, 256])
        self.fp2 = MLP([256 + 128, 256, 128])
        self.fp1 = MLP([128 + in_channels, 128, 128, 128])
        self.head = MLP([128, 128, 128, out_channels], dropout=dropout, norm=None)

    @staticmethod
    def _abstract(conv, x, pos, batch_size, ratio, r):
        idx = farthest_point_sampling(pos, ratio, batch_size)
        nbr = radius_dense(pos, pos[idx], r, batch_size)
        edges = _flat_edges(nbr, pos.shape[0] // batch_size)
        x_dst = None if x is None else x[idx]
        return conv((x, x_dst), (pos, pos[idx]), edges), pos[idx]

    @staticmethod
    def _interpolate(x, pos, pos_skip, batch_size, k=3):
        idx, d = knn_dense(pos_skip, pos, min(k, pos.shape[0] // batch_size), batch_size)
        w = 1.0 / d.clamp_min(1e-16)
        xs = _dense(x, batch_size)
        gathered = torch.stack([xs[b][idx[b]] for b in range(batch_size)])  # [B, M, k, C]
        out = (w.unsqueeze(-1) * gathered).sum(2) / w.sum(-1, keepdim=True)
        return out.reshape(-1, x.shape[-1])

    def forward(self, x, pos, batch_size):
        x1, pos1 = self._abstract(self.sa1, x, pos, batch_size, *self.levels[0])
        x2, pos2 = self._abstract(self.sa2, x1, pos1, batch_size, *self.levels[1])
        x3 = self.sa3(torch.cat([x2, pos2], dim=-1))
        x3 = _dense(x3, batch_size).max(1).values  # [B, 1024]
        n2 = x2.shape[0] // batch_size
        h = self.fp3(torch.cat([x3.repeat_interleave(n2, 0), x2], dim=-1))
        h = self.fp2(torch.cat([self._interpolate(h, pos2, pos1, batch_size), x1], dim=-1))
        h = self._interpolate(h, pos1, pos, batch_size)
        h = self.fp1(h if x is None else torch.cat([h, x], dim=-1))
        return self.head(h)


#: atom and bond types of ZINC
NODE_TYPES, EDGE_TYPES = 28, 4


class GPSExample(nn.Module):
    """The model of PyG's GPS example (``examples/graph_gps.py``): atom embedding
    concatenated with a linear map of the normalised random-walk positional
    encoding, bond embedding, ``num_layers`` GPS layers with ``GINEConv``, add
    pooling and an MLP head.  ``gps_cls`` (with ``attn_type`` and
    ``attn_kwargs``) is the one class a user swaps."""

    def __init__(self, gps_cls, attn_type, attn_kwargs, channels=64, pe_dim=8, num_layers=10,
                 walk_length=20, heads=4):
        super().__init__()
        self.node_emb = nn.Embedding(NODE_TYPES, channels - pe_dim)
        self.pe_lin = nn.Linear(walk_length, pe_dim)
        self.pe_norm = nn.BatchNorm1d(walk_length)
        self.edge_emb = nn.Embedding(EDGE_TYPES, channels)
        self.convs = nn.ModuleList()
        for _ in range(num_layers):
            mlp = nn.Sequential(nn.Linear(channels, channels), nn.ReLU(), nn.Linear(channels, channels))
            self.convs.append(gps_cls(channels, GINEConv(mlp), heads=heads, attn_type=attn_type,
                                      attn_kwargs=attn_kwargs))
        self.mlp = nn.Sequential(nn.Linear(channels, channels // 2), nn.ReLU(),
                                 nn.Linear(channels // 2, channels // 4), nn.ReLU(),
                                 nn.Linear(channels // 4, 1))

    def forward(self, x, pe, edge_index, edge_attr, batch, **basis):
        """``basis``: ``mass=`` and ``basis=`` for functional attention with a
        Laplacian basis."""
        x = torch.cat((self.node_emb(x.squeeze(-1)), self.pe_lin(self.pe_norm(pe))), 1)
        edge_attr = self.edge_emb(edge_attr)
        for conv in self.convs:
            x = conv(x, edge_index, batch, edge_attr=edge_attr, **basis)
        return self.mlp(global_add_pool(x, batch))


def molecule(gen, num_nodes, walk_length=20):
    """A molecule-like graph: a random tree with two ring closures, integer atom
    and bond types, both edge directions, a random target ``y`` and the
    random-walk positional encoding ``pe`` of ``walk_length`` steps; its
    ``diameter`` (the longest shortest path, in bonds) is a target that needs
    the whole graph."""
    parents = [int(torch.randint(0, i, (1,), generator=gen)) for i in range(1, num_nodes)]
    pairs = [(p, i) for i, p in enumerate(parents, start=1)]
    pairs += [(0, num_nodes - 1), (1, num_nodes // 2)]
    src, dst = torch.tensor(pairs).t()
    bond = torch.randint(0, EDGE_TYPES, (len(pairs),), generator=gen)
    data = Data(x=torch.randint(0, NODE_TYPES, (num_nodes, 1), generator=gen),
                edge_index=torch.stack([torch.cat([src, dst]), torch.cat([dst, src])]),
                edge_attr=torch.cat([bond, bond]), y=torch.randn(1, generator=gen),
                num_nodes=num_nodes)
    hops = shortest_path(sp.coo_matrix((np.ones(len(pairs)), (src.numpy(), dst.numpy())),
                                       shape=(num_nodes, num_nodes)), unweighted=True,
                         directed=False)
    data.diameter = torch.tensor([float(hops.max())])
    return AddRandomWalkPE(walk_length=walk_length, attr_name="pe")(data)
