r"""Triton kernels of the two segment products (GPU; the CPU runs them through
``TRITON_INTERPRET=1`` for tests).

* ``tn`` (analysis): the nodes are cut into chunks of at most ``CHUNK`` nodes
  that never straddle two graphs; one program per (chunk, head, output tile)
  accumulates ``a[h, chunk]^T b[h, chunk]`` in float32 with ``tl.dot``, and a
  second kernel sums the chunk partials of every graph in a fixed order
  (deterministic, no atomics).  Splitting a large graph over chunks keeps the
  GPU busy when a batch holds a single big graph.
* ``nn`` (synthesis): one program per (block of nodes, head, output tile);
  a block that straddles graph boundaries loops over its few graphs with a
  row mask, so no node is ever multiplied by another graph's matrix.

Inputs may have any strides; accumulation is float32 and the result has the
input dtype.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch_geometric.utils.sparse import ptr2index  # torch_geometric.index from PyG 2.6 on

#: Nodes per partial sum of the analysis kernel.
CHUNK = 4096


def _block(n: int, lo: int = 16, hi: int = 64) -> int:
    return max(lo, min(hi, triton.next_power_of_2(n)))


def _precision(dtype: torch.dtype):
    # full float32 products (no TF32) so the kernels agree with the reference
    return "ieee" if dtype == torch.float32 else "tf32"


@triton.jit
def _tn_partial_kernel(a_ptr, b_ptr, part_ptr, cstart_ptr, cend_ptr, P, Q,
                       sah, san, sap, sbh, sbn, sbq,
                       spc, sph, spp, spq,
                       BN: tl.constexpr, BP: tl.constexpr, BQ: tl.constexpr,
                       TILES_Q: tl.constexpr, PRECISION: tl.constexpr):
    c = tl.program_id(0).to(tl.int64)  # 64-bit offsets: H * N * p passes 2**31 at a few M nodes
    h = tl.program_id(1).to(tl.int64)
    tile = tl.program_id(2)
    tp = tile // TILES_Q
    tq = tile % TILES_Q
    start = tl.load(cstart_ptr + c)
    end = tl.load(cend_ptr + c)
    offs_p = tp * BP + tl.arange(0, BP)
    offs_q = tq * BQ + tl.arange(0, BQ)
    acc = tl.zeros((BP, BQ), dtype=tl.float32)
    for n0 in range(start, end, BN):
        offs_n = n0 + tl.arange(0, BN)  # n0 is int64: start was loaded from an int64 tensor
        mask_n = offs_n < end
        a = tl.load(a_ptr + h * sah + offs_n[:, None] * san + offs_p[None, :] * sap,
                    mask=mask_n[:, None] & (offs_p[None, :] < P), other=0.0)
        b = tl.load(b_ptr + h * sbh + offs_n[:, None] * sbn + offs_q[None, :] * sbq,
                    mask=mask_n[:, None] & (offs_q[None, :] < Q), other=0.0)
        acc += tl.dot(tl.trans(a), b, input_precision=PRECISION)
    tl.store(part_ptr + c * spc + h * sph + offs_p[:, None] * spp + offs_q[None, :] * spq, acc,
             mask=(offs_p[:, None] < P) & (offs_q[None, :] < Q))


@triton.jit
def _sum_chunks_kernel(part_ptr, out_ptr, cptr_ptr, M, BM: tl.constexpr):
    g = tl.program_id(0)
    offs = tl.program_id(1).to(tl.int64) * BM + tl.arange(0, BM)
    mask = offs < M
    first = tl.load(cptr_ptr + g)
    last = tl.load(cptr_ptr + g + 1)
    acc = tl.zeros((BM,), dtype=tl.float32)
    for c in range(first, last):
        acc += tl.load(part_ptr + c * M + offs, mask=mask, other=0.0)  # c: int64, as cptr
    tl.store(out_ptr + g.to(tl.int64) * M + offs, acc.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _nn_kernel(a_ptr, c_ptr, out_ptr, batch_ptr, N, P, Q,
               sah, san, sap, scb, sch, scp, scq, soh, son, soq,
               BN: tl.constexpr, BP: tl.constexpr, BQ: tl.constexpr, PRECISION: tl.constexpr):
    pid_n = tl.program_id(0).to(tl.int64)  # 64-bit offsets, as above
    h = tl.program_id(1).to(tl.int64)
    tq = tl.program_id(2)
    offs_n = pid_n * BN + tl.arange(0, BN)
    mask_n = offs_n < N
    offs_q = tq * BQ + tl.arange(0, BQ)
    rows = tl.load(batch_ptr + offs_n, mask=mask_n, other=-1)
    g_first = tl.load(batch_ptr + pid_n * BN)
    g_last = tl.load(batch_ptr + tl.minimum(pid_n * BN + BN, N) - 1)
    acc = tl.zeros((BN, BQ), dtype=tl.float32)
    for g in range(g_first, g_last + 1):
        in_g = mask_n & (rows == g)
        for p0 in range(0, P, BP):
            offs_p = p0 + tl.arange(0, BP)
            a = tl.load(a_ptr + h * sah + offs_n[:, None] * san + offs_p[None, :] * sap,
                        mask=in_g[:, None] & (offs_p[None, :] < P), other=0.0)
            cm = tl.load(c_ptr + g * scb + h * sch + offs_p[:, None] * scp + offs_q[None, :] * scq,
                         mask=(offs_p[:, None] < P) & (offs_q[None, :] < Q), other=0.0)
            acc += tl.dot(a, cm, input_precision=PRECISION)
    tl.store(out_ptr + h * soh + offs_n[:, None] * son + offs_q[None, :] * soq,
             acc.to(out_ptr.dtype.element_ty), mask=mask_n[:, None] & (offs_q[None, :] < Q))


def _chunks(ptr: Tensor, chunk: int):
    """Chunks of at most ``chunk`` nodes inside single graphs: their starts and
    ends, and ``cptr`` [B + 1] (graph g owns chunks ``cptr[g]:cptr[g+1]``)."""
    counts = ptr[1:] - ptr[:-1]
    per_graph = torch.div(counts + chunk - 1, chunk, rounding_mode="floor")
    cptr = torch.zeros_like(ptr)
    torch.cumsum(per_graph, 0, out=cptr[1:])
    total = int(cptr[-1])
    graph = ptr2index(cptr, total)
    local = torch.arange(total, device=ptr.device) - cptr[graph]
    start = ptr[graph] + local * chunk
    end = torch.minimum(start + chunk, ptr[graph + 1])
    return start, end, cptr, total


def segment_matmul_tn(a: Tensor, b: Tensor, ptr: Tensor, chunk: int = CHUNK) -> Tensor:
    """``[H, N, p] x [H, N, q] -> [B, H, p, q]`` (see :mod:`tg_funcattn.ops.segment`);
    ``chunk`` nodes per partial sum."""
    H, _, P = a.shape
    Q = b.shape[2]
    B = ptr.numel() - 1
    start, end, cptr, total = _chunks(ptr, chunk)
    out = a.new_zeros(B, H, P, Q)
    if total == 0:
        return out
    part = torch.empty(total, H, P, Q, dtype=torch.float32, device=a.device)
    BP, BQ = _block(P), _block(Q)
    tiles_q = triton.cdiv(Q, BQ)
    grid = (total, H, triton.cdiv(P, BP) * tiles_q)
    _tn_partial_kernel[grid](a, b, part, start, end, P, Q, *a.stride(), *b.stride(), *part.stride(),
                             BN=32, BP=BP, BQ=BQ, TILES_Q=tiles_q, PRECISION=_precision(a.dtype))
    M = H * P * Q
    BM = 256
    _sum_chunks_kernel[(B, triton.cdiv(M, BM))](part, out, cptr, M, BM=BM)
    return out


def segment_matmul_nn(a: Tensor, c: Tensor, ptr: Tensor) -> Tensor:
    """``[H, N, p] x [B, H, p, q] -> [H, N, q]`` (see :mod:`tg_funcattn.ops.segment`)."""
    H, N, P = a.shape
    Q = c.shape[3]
    out = a.new_empty(H, N, Q)
    if N == 0:
        return out
    batch = ptr2index(ptr, N)
    BN, BP, BQ = 32, _block(P, hi=32), _block(Q)
    grid = (triton.cdiv(N, BN), H, triton.cdiv(Q, BQ))
    _nn_kernel[grid](a, c, out, batch, N, P, Q, *a.stride(), *c.stride(), *out.stride(),
                     BN=BN, BP=BP, BQ=BQ, PRECISION=_precision(a.dtype))
    return out
