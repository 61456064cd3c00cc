"""The max of an edge MLP over every node's ``k`` nearest neighbours, in
cache-sized chunks of nodes.

On a kNN graph whose edges are listed node by node (``k`` per node, see
:func:`tg_funcattn.nn.models.knn_edges`), the local EdgeConv computes

.. math::
    \\mathbf{x}'_i = \\max_{e = ik}^{ik + k - 1} \\mathbf{W}\\,
        \\mathrm{GELU}(\\mathbf{c}_i + \\mathbf{n}_{\\mathrm{src}(e)})

with ``c`` and ``n`` the two per-node halves of its first layer.  Written as
separate operations, every step materialises an ``[N k, C]`` tensor and
autograd keeps four of them; here a chunk of nodes at a time goes through
gather, GELU, product and max while it is in cache, and backward recomputes
the chunk's GELU instead of keeping it.  What is kept for backward is the
inputs and one ``[N k, O]`` boolean tensor: where each output took its max
(the gradient is split evenly between ties, as :func:`torch.amax` and PyG's
max aggregation do).
"""
from __future__ import annotations

import torch
from torch import Tensor

#: Elements of a chunk's ``[rows k, C]`` intermediates on the CPU (4 MiB in
#: float32: with the threads splitting the rows, each core's share fits its
#: L2 cache); other devices take larger chunks.
CHUNK_ELEMENTS = {"cpu": 1 << 20}
OTHER_DEVICE_CHUNK_ELEMENTS = 1 << 25


def knn_edge_max(center: Tensor, neighbor: Tensor, src: Tensor, k: int, weight: Tensor) -> Tensor:
    """``out[i] = max over e in [i k, i k + k)`` of ``weight @ gelu(center[i] + neighbor[src[e]])``.

    Args:
        center (torch.Tensor): The centre node's term ``[N, C]``.
        neighbor (torch.Tensor): The neighbour's term ``[N, C]``, gathered by ``src``.
        src (torch.Tensor): The neighbour of every edge ``[N k]`` (int64), node
            ``i``'s edges at ``i k ... i k + k - 1``.
        k (int): Edges per node.
        weight (torch.Tensor): The second layer ``[O, C]`` (its bias commutes
            with the max and is added by the caller); used in the dtype of
            ``center`` (under autocast, the dtype its first layer gave).

    Returns:
        ``[N, O]``.  Differentiable once in ``center``, ``neighbor`` and
        ``weight``.
    """
    keep = torch.is_grad_enabled() and any(t.requires_grad for t in (center, neighbor, weight))
    return _KnnEdgeMax.apply(center, neighbor, src, k, weight, keep)


def _rows(n: int, k: int, width: int, device: torch.device) -> int:
    budget = CHUNK_ELEMENTS.get(device.type, OTHER_DEVICE_CHUNK_ELEMENTS)
    return max(1, min(n, budget // (k * width)))


def _chunk_input(center: Tensor, neighbor: Tensor, src: Tensor, k: int, s: int, e: int,
                 out: Tensor) -> Tensor:
    """The pre-activation ``center[i] + neighbor[src]`` of nodes ``s ... e - 1``
    written to ``out`` and returned as ``[(e - s) k, C]``."""
    pre = torch.index_select(neighbor, 0, src[s * k:e * k], out=out[:(e - s) * k])
    pre.view(e - s, k, -1).add_(center[s:e].unsqueeze(1))
    return pre


class _KnnEdgeMax(torch.autograd.Function):
    # every chunk's intermediates are written into buffers of the first chunk's
    # size: no allocation per chunk
    @staticmethod
    def forward(ctx, center, neighbor, src, k, weight, keep):
        (n, channels), width, weight_dtype = center.shape, weight.shape[0], weight.dtype
        weight = weight.to(center.dtype)
        out = center.new_empty(n, width)
        where = torch.empty(n, k, width, dtype=torch.bool, device=center.device) if keep else None
        rows = _rows(n, k, max(channels, width), center.device)
        pre_buf, act_buf = center.new_empty(2, rows * k, channels)
        products_buf = center.new_empty(rows * k, width)
        for s in range(0, n, rows):
            e = min(n, s + rows)
            pre = _chunk_input(center, neighbor, src, k, s, e, pre_buf)
            act = torch.ops.aten.gelu.out(pre, out=act_buf[:pre.shape[0]])
            products = torch.mm(act, weight.t(), out=products_buf[:pre.shape[0]]).view(e - s, k, width)
            best = torch.amax(products, 1, out=out[s:e])
            if keep:  # where the max was taken (an equality in the products' dtype, then copied
                # to bool: faster than comparing into bool)
                where[s:e].copy_(torch.eq(products, best.unsqueeze(1), out=products))
        if keep:
            ctx.save_for_backward(center, neighbor, src, weight, where)
            ctx.k, ctx.rows, ctx.weight_dtype = k, rows, weight_dtype
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        center, neighbor, src, weight, where = ctx.saved_tensors
        k, rows, weight_dtype = ctx.k, ctx.rows, ctx.weight_dtype
        (n, channels), width = center.shape, weight.shape[0]
        grad_center = torch.empty_like(center)
        grad_neighbor = torch.zeros_like(neighbor)
        grad_weight = torch.zeros_like(weight)
        pre_buf, act_buf, grad_act_buf = center.new_empty(3, rows * k, channels)
        taken_buf = center.new_empty(rows * k, width)
        for s in range(0, n, rows):
            e = min(n, s + rows)
            pre = _chunk_input(center, neighbor, src, k, s, e, pre_buf)
            m = pre.shape[0]
            taken = taken_buf[:m].view(e - s, k, width).copy_(where[s:e])
            # the gradient of each output goes to where it was taken, split evenly between ties
            grad_products = taken.mul_((grad_out[s:e] / taken.sum(1)).unsqueeze(1)).view(m, width)
            grad_weight.addmm_(grad_products.t(), torch.ops.aten.gelu.out(pre, out=act_buf[:m]))
            grad_act = torch.mm(grad_products, weight, out=grad_act_buf[:m])
            grad_pre = torch.ops.aten.gelu_backward.grad_input(grad_act, pre, grad_input=grad_act)
            torch.sum(grad_pre.view(e - s, k, channels), 1, out=grad_center[s:e])
            grad_neighbor.index_add_(0, src[s * k:e * k], grad_pre)
        return grad_center, grad_neighbor, None, None, grad_weight.to(weight_dtype), None


def knn_softmax_sum(center: Tensor, key: Tensor, value: Tensor, neighbors: Tensor) -> Tensor:
    """``out[i] = sum_j softmax_j(center[i] - key[j]) * value[j]`` over the
    ``m`` neighbours ``j = neighbors[i, :]`` of every node, per channel.

    Args:
        center (torch.Tensor): The centre node's logit term ``[N, C]``.
        key (torch.Tensor): The neighbour's logit term ``[N, C]``, subtracted.
        value (torch.Tensor): The neighbour's value ``[N, C]``.
        neighbors (torch.Tensor): ``[N, m]`` node indices (int64).

    Returns:
        ``[N, C]``.  Differentiable once in ``center``, ``key`` and ``value``;
        backward recomputes each chunk's softmax instead of keeping the
        ``[N, m, C]`` weights.
    """
    keep = torch.is_grad_enabled() and any(t.requires_grad for t in (center, key, value))
    return _KnnSoftmaxSum.apply(center, key, value, neighbors, keep)


def _softmax_chunk(center: Tensor, key: Tensor, neighbors: Tensor, s: int, e: int,
                   buffer: Tensor) -> Tensor:
    """The weights ``softmax_j(center[i] - key[j])`` of nodes ``s ... e - 1``,
    ``[e - s, m, C]`` (the logits in ``buffer``)."""
    m = neighbors.shape[1]
    logits = torch.index_select(key, 0, neighbors[s:e].reshape(-1), out=buffer[:(e - s) * m])
    logits = logits.view(e - s, m, -1)
    return torch.sub(center[s:e].unsqueeze(1), logits, out=logits).softmax(1)


class _KnnSoftmaxSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, center, key, value, neighbors, keep):
        (n, channels), m = center.shape, neighbors.shape[1]
        out = center.new_empty(n, channels)
        rows = _rows(n, m, channels, center.device)
        weights_buf, values_buf = center.new_empty(2, rows * m, channels)
        for s in range(0, n, rows):
            e = min(n, s + rows)
            weights = _softmax_chunk(center, key, neighbors, s, e, weights_buf)
            values = torch.index_select(value, 0, neighbors[s:e].reshape(-1),
                                        out=values_buf[:(e - s) * m]).view(e - s, m, channels)
            torch.sum(weights.mul_(values), 1, out=out[s:e])
        if keep:
            ctx.save_for_backward(center, key, value, neighbors, out)
            ctx.rows = rows
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        center, key, value, neighbors, out = ctx.saved_tensors
        (n, channels), m, rows = center.shape, neighbors.shape[1], ctx.rows
        grad_center = torch.empty_like(center)
        grad_key = torch.zeros_like(key)
        grad_value = torch.zeros_like(value)
        weights_buf, values_buf = center.new_empty(2, rows * m, channels)
        for s in range(0, n, rows):
            e = min(n, s + rows)
            index = neighbors[s:e].reshape(-1)
            weights = _softmax_chunk(center, key, neighbors, s, e, weights_buf)
            values = torch.index_select(value, 0, index, out=values_buf[:(e - s) * m])
            grad = grad_out[s:e].unsqueeze(1)
            # d out_i / d logit_ij = weight_ij (value_j - out_i), here negated: the
            # key enters the logits with a minus sign
            minus_grad_logits = values.view(e - s, m, channels).sub_(out[s:e].unsqueeze(1)) \
                .mul_(weights).mul_(grad.neg())
            torch.sum(minus_grad_logits, 1, out=grad_center[s:e])
            grad_key.index_add_(0, index, minus_grad_logits.view(-1, channels))
            # d out_i / d value_j = weight_ij
            grad_value.index_add_(0, index, weights.mul_(grad).view(-1, channels))
        return grad_center.neg_(), grad_key, grad_value, None, None
