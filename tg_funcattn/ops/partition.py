"""The soft partition of the learned basis, ``softmax(u W + b)`` per head, in
cache-sized chunks of nodes.

The partition values ``[H, N, k]`` are the largest tensor of the layer (for
``N = 262,144`` nodes, 8 heads and 64 bases, 512 MiB in float32).  Written as
separate operations, the logits and the softmax's gradient are two more
tensors of that size, each a pass over memory (and on a fresh allocation,
page faults); here each chunk of nodes goes through product and softmax (and
backward through the softmax's gradient and the two products) while it is in
cache, and only the values themselves are stored.  Below :data:`CHUNKED_FROM`
values, and under ``torch.compile``, it is the plain composition.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .._validation import tracing

#: Elements of a chunk's ``[rows, k]`` logits (one head) on the CPU (1 MiB in
#: float32); other devices take larger chunks.
CHUNK_ELEMENTS = {"cpu": 1 << 18}
OTHER_DEVICE_CHUNK_ELEMENTS = 1 << 24
#: Values ``H N k`` from which the chunks are used: below, the plain
#: composition is as fast or faster (its tensors stay in cache; measured on
#: the CPU at 8 heads, 32 bases, 16,384 nodes: 8.7 ms against 10.9 for
#: forward+backward, and at 65,536 nodes 43 ms against 52 with a tuned
#: malloc, 96 against 70 with glibc's default).
CHUNKED_FROM = 1 << 24


def softmax_projection(u: Tensor, weight: Tensor, bias: Tensor, dtype: torch.dtype) -> Tensor:
    """``softmax(u[h] @ weight[h] + bias[h])`` over the last dimension, per head.

    Args:
        u (torch.Tensor): ``[H, N, d]`` (any strides, e.g. a head view of ``[N, H d]``).
        weight (torch.Tensor): ``[H, d, k]``, used in the dtype of ``u``.
        bias (torch.Tensor): ``[H, 1, k]``, likewise.
        dtype (torch.dtype): The dtype of the result; the softmax runs in it
            or float32, whichever is wider.

    Returns:
        ``[H, N, k]``.  Differentiable once in ``u``, ``weight`` and ``bias``.
    """
    weight, bias = weight.to(u.dtype), bias.to(u.dtype)
    if tracing() or u.shape[0] * u.shape[1] * weight.shape[-1] < CHUNKED_FROM:
        # the compiler fuses the plain form itself; small tensors stay in cache.  The
        # bias as a row of the weight ([u | 1] [W; b]): baddbmm would first copy it
        # into the whole [H, N, k] output
        logits = torch.bmm(torch.cat([u, u.new_ones(u.shape[:2] + (1,))], -1),
                           torch.cat([weight, bias], 1))
        return torch.softmax(logits.to(torch.promote_types(dtype, torch.float32)), -1).to(dtype)
    return _SoftmaxProjection.apply(u, weight, bias, dtype)


def _softmax_values(u: Tensor, weight: Tensor, bias: Tensor, dtype: torch.dtype):
    """The values of :func:`softmax_projection` and the rows of its chunks,
    one head and a range of nodes at a time: every slice of the ``[H, N, k]``
    values is then contiguous, as the softmax kernels want."""
    (heads, n, _), k = u.shape, weight.shape[-1]
    budget = CHUNK_ELEMENTS.get(u.device.type, OTHER_DEVICE_CHUNK_ELEMENTS)
    rows = max(1, min(n, budget // k))
    wide = torch.promote_types(dtype, torch.float32)
    phi = u.new_empty(heads, n, k, dtype=dtype)
    logits = u.new_empty(rows, k)
    for h in range(heads):
        for s in range(0, n, rows):
            e = min(n, s + rows)
            chunk = torch.addmm(bias[h], u[h, s:e], weight[h], out=logits[:e - s])
            if wide == dtype:
                torch.ops.aten._softmax.out(chunk, -1, False, out=phi[h, s:e])
            else:  # half precision values, a float32 softmax
                phi[h, s:e] = torch.softmax(chunk.to(wide), -1)
    return phi, rows


class _SoftmaxProjection(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, weight, bias, dtype):
        phi, ctx.rows = _softmax_values(u, weight, bias, dtype)
        ctx.save_for_backward(u, weight, phi)
        return phi

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_phi):
        u, weight, phi = ctx.saved_tensors
        rows, (heads, n, _) = ctx.rows, u.shape
        grad_phi = grad_phi.contiguous()
        grad_u = torch.empty_like(u)  # u's strides: slices [h, s:e] as BLAS takes them
        grad_weight = torch.zeros_like(weight)
        grad_bias = torch.zeros(heads, 1, weight.shape[2], dtype=weight.dtype, device=weight.device)
        grad = phi.new_empty(rows, phi.shape[2])
        for h in range(heads):
            for s in range(0, n, rows):
                e = min(n, s + rows)
                values = phi[h, s:e]
                # d logits = (d phi - <d phi, phi>) phi, per node
                g = torch.ops.aten._softmax_backward_data.out(
                    grad_phi[h, s:e].to(values.dtype), values, -1, values.dtype,
                    grad_input=grad[:e - s]).to(u.dtype)
                torch.mm(g, weight[h].t(), out=grad_u[h, s:e])
                grad_weight[h].addmm_(u[h, s:e].t(), g)
                grad_bias[h].add_(g.sum(0, keepdim=True))
        return grad_u, grad_weight, grad_bias, None

