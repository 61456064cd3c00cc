r"""Per-graph (segment) matrix products, the two reductions of functional attention.

For graphs stored back to back in a flat node dimension, with graph ``g``
occupying nodes ``ptr[g]:ptr[g+1]``:

* :func:`segment_matmul_tn` -- analysis: ``out[g, h] = a[h, S_g]^T b[h, S_g]``
  (a sum over the nodes of each graph, ``[H, N, p] x [H, N, q] -> [B, H, p, q]``).
* :func:`segment_matmul_nn` -- synthesis: ``out[h, S_g] = a[h, S_g] c[g, h]``
  (each node multiplied by the matrix of its own graph,
  ``[H, N, p] x [B, H, p, q] -> [H, N, q]``).

Neither forms an ``N x p x q`` tensor, in the forward or the backward pass,
and nothing is padded to the largest graph.  The result has the dtype of the
inputs, also inside autocast (the caller chooses the precision).  Both are registered as
``torch.library`` custom operators with fake (meta) implementations and
autograd formulas written in terms of each other, so they run under
``torch.compile`` without graph breaks and support double backward.  The
backward of one is the other:

.. math::
    \partial a = b\, \bar o^\top,\ \partial b = a\, \bar o \quad(\mathrm{tn}),
    \qquad \partial a = \bar o\, c^\top,\ \partial c = a^\top \bar o \quad(\mathrm{nn}).

**Backends.**  The operators are the one dispatch point; the implementation
behind them is chosen per call by :func:`resolve_backend`:

* ``"bmm"`` -- one batched GEMM over the heads per graph (BLAS / cuBLAS).  The
  fastest path on the CPU (``benchmarks/bench_kernels.py``: the products run
  at GEMM speed, and nothing else on the CPU beats BLAS), and on the GPU for
  a single graph.
* ``"triton"`` -- fused Triton kernels (:mod:`tg_funcattn.ops._triton`): one
  launch for the whole batch, graph boundaries handled inside the kernel.
  Chosen on CUDA for batches of several graphs (float16/bfloat16/float32)
  when ``triton`` is installed.  On the CPU it runs only through
  ``TRITON_INTERPRET=1`` (the tests check it against the reference that way).
* ``"reference"`` -- a plain scatter implementation that forms the
  ``N x p x q`` outer products: slow and memory hungry, kept as the
  independent reference of the tests.

:func:`set_segment_backend` / :func:`segment_backend` override the choice.
"""
from __future__ import annotations

import contextlib
import functools
import os
from typing import Iterator, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.utils.sparse import ptr2index  # torch_geometric.index from PyG 2.6 on

from .._optional import available, require
from .._validation import tracing

__all__ = ["segment_matmul_tn", "segment_matmul_nn", "segment_sum", "BACKENDS",
           "set_segment_backend", "segment_backend", "resolve_backend"]

BACKENDS = ("auto", "bmm", "triton", "reference")
_TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_backend = "auto"


def set_segment_backend(name: str) -> None:
    """Sets the implementation behind the segment products for this process:
    ``"auto"`` (default), ``"bmm"``, ``"triton"`` or ``"reference"``."""
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"segment backend must be one of {BACKENDS}, got {name!r}")
    _backend = name


@contextlib.contextmanager
def segment_backend(name: str) -> Iterator[None]:
    """Context manager form of :func:`set_segment_backend`."""
    previous = _backend
    set_segment_backend(name)
    try:
        yield
    finally:
        set_segment_backend(previous)


#: ``available(name)`` of the optional package, asked once per process
_installed = functools.lru_cache(maxsize=None)(available)


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def resolve_backend(device: torch.device, dtype: torch.dtype, num_graphs: int,
                    backend: Optional[str] = None) -> str:
    """The implementation a segment product on ``device``/``dtype`` with
    ``num_graphs`` graphs runs with (``backend``: the setting, default the
    current one)."""
    backend = _backend if backend is None else backend
    if backend == "auto":
        if (device.type == "cuda" and num_graphs > 1 and dtype in _TRITON_DTYPES
                and _installed("triton")):
            return "triton"
        return "bmm"
    if backend == "triton":
        if not _installed("triton"):
            require("triton", "the 'triton' segment backend")
        if device.type != "cuda" and not _interpreting():
            raise RuntimeError(f"the 'triton' segment backend runs on CUDA devices (got {device}); "
                               "on the CPU only with TRITON_INTERPRET=1 (for tests)")
        if dtype not in _TRITON_DTYPES:
            raise TypeError(f"the 'triton' segment backend supports {_TRITON_DTYPES}, got {dtype}")
    return backend


def _check(a: Tensor, other: Tensor, ptr: Tensor, fn: str) -> None:
    if a.dim() != 3:
        raise ValueError(f"{fn}: 'a' must be [H, N, p], got shape {tuple(a.shape)}")
    if ptr.dim() != 1 or ptr.numel() < 2 or ptr.dtype != torch.long:
        raise ValueError(f"{fn}: 'ptr' must be a 1-D int64 tensor [B + 1], got "
                         f"shape {tuple(ptr.shape)} and dtype {ptr.dtype}")
    if a.dtype != other.dtype:
        raise TypeError(f"{fn}: dtypes differ ({a.dtype} and {other.dtype})")


def _host_bounds(ptr: Tensor, bounds: Optional[Sequence[int]]) -> Sequence[int]:
    """The graph bounds on the host: ``bounds`` if the caller knows them, else
    read from ``ptr`` (a host synchronisation)."""
    return ptr.tolist() if bounds is None else bounds


def _tn_bmm(a: Tensor, b: Tensor, ptr: Tensor, bounds: Optional[Sequence[int]] = None) -> Tensor:
    num_graphs = ptr.numel() - 1
    at = a.transpose(1, 2)
    if num_graphs == 1:  # no bounds needed
        return torch.bmm(at, b).unsqueeze(0)
    bounds = _host_bounds(ptr, bounds)
    out = a.new_empty(num_graphs, a.shape[0], a.shape[2], b.shape[2])
    for g in range(num_graphs):
        s, e = bounds[g], bounds[g + 1]
        torch.bmm(at[:, :, s:e], b[:, s:e], out=out[g])
    return out


def _tn_reference(a: Tensor, b: Tensor, ptr: Tensor, bounds=None) -> Tensor:
    outer = torch.einsum("hnp,hnq->nhpq", a, b)
    out = a.new_zeros(ptr.numel() - 1, a.shape[0], a.shape[2], b.shape[2])
    return out.index_add_(0, ptr2index(ptr, a.shape[1]), outer)


def _nn_bmm(a: Tensor, c: Tensor, ptr: Tensor, bounds: Optional[Sequence[int]] = None) -> Tensor:
    num_graphs = ptr.numel() - 1
    if num_graphs == 1:  # no bounds needed
        return torch.bmm(a, c[0])
    bounds = _host_bounds(ptr, bounds)
    out = a.new_empty(a.shape[0], a.shape[1], c.shape[3])
    for g in range(num_graphs):
        s, e = bounds[g], bounds[g + 1]
        torch.bmm(a[:, s:e], c[g], out=out[:, s:e])
    return out


def _nn_reference(a: Tensor, c: Tensor, ptr: Tensor, bounds=None) -> Tensor:
    return torch.einsum("hnp,nhpq->hnq", a, c[ptr2index(ptr, a.shape[1])])


def _impl(op: str, a: Tensor, ptr: Tensor):
    backend = resolve_backend(a.device, a.dtype, ptr.numel() - 1)
    if backend == "triton":  # reads the bounds on the device
        from . import _triton
        kernel = getattr(_triton, f"segment_matmul_{op}")
        return lambda x, y, ptr, bounds: kernel(x, y, ptr)
    return {"bmm": {"tn": _tn_bmm, "nn": _nn_bmm},
            "reference": {"tn": _tn_reference, "nn": _nn_reference}}[backend][op]


@torch.library.custom_op("tg_funcattn::segment_matmul_tn", mutates_args=())
def segment_matmul_tn(a: Tensor, b: Tensor, ptr: Tensor,
                      bounds: Optional[Sequence[int]] = None) -> Tensor:
    """``out[g, h] = a[h, ptr[g]:ptr[g+1]]^T @ b[h, ptr[g]:ptr[g+1]]``.

    Args:
        a: ``[H, N, p]``.
        b: ``[H, N, q]``.
        ptr: ``[B + 1]`` int64 graph boundaries (``ptr[0] = 0``, ``ptr[-1] = N``).
        bounds: ``ptr``'s values on the host, if the caller has them: the
            ``bmm`` path then reads nothing from the device (without them it
            reads ``ptr`` once per call and direction, unless ``B = 1``).

    Returns:
        ``[B, H, p, q]``.
    """
    _check(a, b, ptr, "segment_matmul_tn")
    if b.dim() != 3 or b.shape[:2] != a.shape[:2]:
        raise ValueError(f"segment_matmul_tn: 'b' must be [H, N, q] matching 'a' "
                         f"{tuple(a.shape)}, got {tuple(b.shape)}")
    with torch.autocast(a.device.type, enabled=False):  # the dtype of the inputs, always
        return _impl("tn", a, ptr)(a, b, ptr, bounds)


@segment_matmul_tn.register_fake
def _(a: Tensor, b: Tensor, ptr: Tensor, bounds: Optional[Sequence[int]] = None) -> Tensor:
    return a.new_empty(ptr.shape[0] - 1, a.shape[0], a.shape[2], b.shape[2])


@torch.library.custom_op("tg_funcattn::segment_matmul_nn", mutates_args=())
def segment_matmul_nn(a: Tensor, c: Tensor, ptr: Tensor,
                      bounds: Optional[Sequence[int]] = None) -> Tensor:
    """``out[h, ptr[g]:ptr[g+1]] = a[h, ptr[g]:ptr[g+1]] @ c[g, h]``.

    Args:
        a: ``[H, N, p]``.
        c: ``[B, H, p, q]``.
        ptr: ``[B + 1]`` int64 graph boundaries.
        bounds: ``ptr``'s values on the host, if known (see
            :func:`segment_matmul_tn`).

    Returns:
        ``[H, N, q]``.
    """
    _check(a, c, ptr, "segment_matmul_nn")
    if c.dim() != 4 or c.shape[1] != a.shape[0] or c.shape[2] != a.shape[2] \
            or c.shape[0] != ptr.numel() - 1:
        raise ValueError(f"segment_matmul_nn: 'c' must be [B, H, p, q] = "
                         f"[{ptr.numel() - 1}, {a.shape[0]}, {a.shape[2]}, q], "
                         f"got {tuple(c.shape)}")
    with torch.autocast(a.device.type, enabled=False):  # the dtype of the inputs, always
        return _impl("nn", a, ptr)(a, c, ptr, bounds)


@segment_matmul_nn.register_fake
def _(a: Tensor, c: Tensor, ptr: Tensor, bounds: Optional[Sequence[int]] = None) -> Tensor:
    return a.new_empty(a.shape[0], a.shape[1], c.shape[3])


def _setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs[:3])
    ctx.bounds = inputs[3]


def _tn_backward(ctx, grad: Tensor):
    a, b, ptr = ctx.saved_tensors
    grad_a = grad_b = None
    if ctx.needs_input_grad[0]:
        grad_a = segment_matmul_nn(b, grad.transpose(-1, -2), ptr, ctx.bounds)
    if ctx.needs_input_grad[1]:
        grad_b = segment_matmul_nn(a, grad, ptr, ctx.bounds)
    return grad_a, grad_b, None, None


def _nn_backward(ctx, grad: Tensor):
    a, c, ptr = ctx.saved_tensors
    grad_a = grad_c = None
    if ctx.needs_input_grad[0]:
        grad_a = segment_matmul_nn(grad, c.transpose(-1, -2), ptr, ctx.bounds)
    if ctx.needs_input_grad[1]:
        grad_c = segment_matmul_tn(a, grad, ptr, ctx.bounds)
    return grad_a, grad_c, None, None


segment_matmul_tn.register_autograd(_tn_backward, setup_context=_setup)
segment_matmul_nn.register_autograd(_nn_backward, setup_context=_setup)


def segment_sum(src: Tensor, ptr: Tensor, batch: Optional[Tensor] = None) -> Tensor:
    """Per-graph sum of the rows of ``src``: ``[N, *] -> [B, *]``, differentiable.

    The fastest implementation measured per device (``benchmarks/bench_kernels.py``):

    * CUDA, with ``torch_scatter`` installed (``pip install 'tg-funcattn[scatter]'``),
      eager mode: PyG's :func:`torch_geometric.utils.segment`, which takes
      ``torch_scatter.segment_csr`` there: it reads the sorted layout directly
      and needs no atomics (deterministic).
    * Otherwise native torch: ``torch.segment_reduce`` over ``ptr`` for a
      vector, ``index_add`` over ``batch`` (computed from ``ptr`` when not
      given) for rows.  On this project's 2-core CPU ``segment_csr`` measured
      3x slower than ``index_add`` for 128-wide rows, and PyG's ``segment``
      without torch-scatter (``torch.segment_reduce``) 17x slower
      (``benchmarks/bench_pyg_blocks.py``), so neither is used there.
    """
    num_graphs = ptr.numel() - 1
    if num_graphs == 1:
        return src.sum(0, keepdim=True)
    if _use_torch_scatter(src):
        from torch_geometric.utils import segment
        return segment(src, ptr, reduce="sum")
    if src.dim() == 1:
        return torch.segment_reduce(src, "sum", offsets=ptr)
    if batch is None:
        batch = ptr2index(ptr, src.shape[0])
    return src.new_zeros((num_graphs,) + tuple(src.shape[1:])).index_add(0, batch, src)


def _use_torch_scatter(src: Tensor) -> bool:
    return (_backend != "reference" and src.device.type == "cuda" and not tracing()
            and _installed("torch_scatter"))
