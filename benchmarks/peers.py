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
"""
import torch
from torch import nn
from torch_geometric.nn import PointTransformerConv


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

    def forward(self, x):  # one graph [N, C]
        x = x.unsqueeze(0)
        b, n, _ = x.shape
        fx = self.in_fx(x).view(b, n, self.heads, self.d).permute(0, 2, 1, 3).contiguous()
        xm = self.in_x(x).view(b, n, self.heads, self.d).permute(0, 2, 1, 3).contiguous()
        w = torch.softmax(self.in_slice(xm) / self.temperature, dim=-1)  # [B, H, N, k]
        norm = w.sum(2)
        tokens = torch.einsum("bhnc,bhng->bhgc", fx, w) / (norm + 1e-5).unsqueeze(-1)
        q, k, v = self.to_q(tokens), self.to_k(tokens), self.to_v(tokens)
        attn = torch.softmax(q @ k.transpose(-1, -2) * self.d ** -0.5, dim=-1)
        out = torch.einsum("bhgc,bhng->bhnc", attn @ v, w)
        return self.out(out.permute(0, 2, 1, 3).reshape(n, -1))


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
    or ``"ptconv"`` (one graph)."""

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

    def forward(self, x, pos, edge_index=None):
        h = self.lift(torch.cat([x, pos], dim=-1))
        for mix, n1, n2, mlp in zip(self.mixers, self.norms1, self.norms2, self.mlps):
            z = n1(h)
            h = h + (mix(z, pos, edge_index) if self.mixer == "ptconv" else mix(z))
            h = h + mlp(n2(h))
        return self.head(self.norm(h))
