r"""Per-graph (segment) matrix products, the two reductions of functional attention.

For graphs stored back to back in a flat node dimension, with graph ``g``
occupying nodes ``ptr[g]:ptr[g+1]``:

* :func:`segment_matmul_tn` -- analysis: ``out[g, h] = a[h, S_g]^T b[h, S_g]``
  (a sum over the nodes of each graph, ``[H, N, p] x [H, N, q] -> [B, H, p, q]``).
* :func:`segment_matmul_nn` -- synthesis: ``out[h, S_g] = a[h, S_g] c[g, h]``
  (each node multiplied by the matrix of its own graph,
  ``[H, N, p] x [B, H, p, q] -> [H, N, q]``).

Neither forms an ``N x p x q`` tensor, in the forward or the backward pass,
and nothing is padded to the largest graph: each graph is one batched GEMM
over the heads.  Both are registered as ``torch.library`` custom operators
with fake (meta) implementations and autograd formulas written in terms of
each other, so they run under ``torch.compile`` without graph breaks and
support double backward.  The backward of one is the other:

.. math::
    \partial a = b\, \bar o^\top,\ \partial b = a\, \bar o \quad(\mathrm{tn}),
    \qquad \partial a = \bar o\, c^\top,\ \partial c = a^\top \bar o \quad(\mathrm{nn}).
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["segment_matmul_tn", "segment_matmul_nn"]


def _check(a: Tensor, other: Tensor, ptr: Tensor, fn: str) -> None:
    if a.dim() != 3:
        raise ValueError(f"{fn}: 'a' must be [H, N, p], got shape {tuple(a.shape)}")
    if ptr.dim() != 1 or ptr.numel() < 2 or ptr.dtype != torch.long:
        raise ValueError(f"{fn}: 'ptr' must be a 1-D int64 tensor [B + 1], got "
                         f"shape {tuple(ptr.shape)} and dtype {ptr.dtype}")
    if a.dtype != other.dtype:
        raise TypeError(f"{fn}: dtypes differ ({a.dtype} and {other.dtype})")


@torch.library.custom_op("tg_funcattn::segment_matmul_tn", mutates_args=())
def segment_matmul_tn(a: Tensor, b: Tensor, ptr: Tensor) -> Tensor:
    """``out[g, h] = a[h, ptr[g]:ptr[g+1]]^T @ b[h, ptr[g]:ptr[g+1]]``.

    Args:
        a: ``[H, N, p]``.
        b: ``[H, N, q]``.
        ptr: ``[B + 1]`` int64 graph boundaries (``ptr[0] = 0``, ``ptr[-1] = N``).

    Returns:
        ``[B, H, p, q]``.
    """
    _check(a, b, ptr, "segment_matmul_tn")
    if b.dim() != 3 or b.shape[:2] != a.shape[:2]:
        raise ValueError(f"segment_matmul_tn: 'b' must be [H, N, q] matching 'a' "
                         f"{tuple(a.shape)}, got {tuple(b.shape)}")
    bounds = ptr.tolist()
    num_graphs = len(bounds) - 1
    at = a.transpose(1, 2)
    if num_graphs == 1:
        return torch.bmm(at, b).unsqueeze(0)
    out = a.new_empty(num_graphs, a.shape[0], a.shape[2], b.shape[2])
    for g in range(num_graphs):
        s, e = bounds[g], bounds[g + 1]
        torch.bmm(at[:, :, s:e], b[:, s:e], out=out[g])
    return out


@segment_matmul_tn.register_fake
def _(a: Tensor, b: Tensor, ptr: Tensor) -> Tensor:
    return a.new_empty(ptr.shape[0] - 1, a.shape[0], a.shape[2], b.shape[2])


@torch.library.custom_op("tg_funcattn::segment_matmul_nn", mutates_args=())
def segment_matmul_nn(a: Tensor, c: Tensor, ptr: Tensor) -> Tensor:
    """``out[h, ptr[g]:ptr[g+1]] = a[h, ptr[g]:ptr[g+1]] @ c[g, h]``.

    Args:
        a: ``[H, N, p]``.
        c: ``[B, H, p, q]``.
        ptr: ``[B + 1]`` int64 graph boundaries.

    Returns:
        ``[H, N, q]``.
    """
    _check(a, c, ptr, "segment_matmul_nn")
    if c.dim() != 4 or c.shape[1] != a.shape[0] or c.shape[2] != a.shape[2] \
            or c.shape[0] != ptr.numel() - 1:
        raise ValueError(f"segment_matmul_nn: 'c' must be [B, H, p, q] = "
                         f"[{ptr.numel() - 1}, {a.shape[0]}, {a.shape[2]}, q], "
                         f"got {tuple(c.shape)}")
    bounds = ptr.tolist()
    num_graphs = len(bounds) - 1
    if num_graphs == 1:
        return torch.bmm(a, c[0])
    out = a.new_empty(a.shape[0], a.shape[1], c.shape[3])
    for g in range(num_graphs):
        s, e = bounds[g], bounds[g + 1]
        torch.bmm(a[:, s:e], c[g], out=out[:, s:e])
    return out


@segment_matmul_nn.register_fake
def _(a: Tensor, c: Tensor, ptr: Tensor) -> Tensor:
    return a.new_empty(a.shape[0], a.shape[1], c.shape[3])


def _setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _tn_backward(ctx, grad: Tensor):
    a, b, ptr = ctx.saved_tensors
    grad_a = grad_b = None
    if ctx.needs_input_grad[0]:
        grad_a = segment_matmul_nn(b, grad.transpose(-1, -2), ptr)
    if ctx.needs_input_grad[1]:
        grad_b = segment_matmul_nn(a, grad, ptr)
    return grad_a, grad_b, None


def _nn_backward(ctx, grad: Tensor):
    a, c, ptr = ctx.saved_tensors
    grad_a = grad_c = None
    if ctx.needs_input_grad[0]:
        grad_a = segment_matmul_nn(grad, c.transpose(-1, -2), ptr)
    if ctx.needs_input_grad[1]:
        grad_c = segment_matmul_tn(a, grad, ptr)
    return grad_a, grad_c, None


segment_matmul_tn.register_autograd(_tn_backward, setup_context=_setup)
segment_matmul_nn.register_autograd(_nn_backward, setup_context=_setup)
