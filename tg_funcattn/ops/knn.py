"""k-nearest-neighbour graphs per graph of a flat batch, without compiled extras.

PyG's :func:`~torch_geometric.nn.pool.knn_graph` is used where it can run
(pyg-lib's search), else ``torch_cluster`` when it is installed; otherwise a
KD-tree from SciPy on the CPU and a chunked brute-force search on other devices.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
import torch_geometric.typing
from torch import Tensor

from .._optional import available
from .._validation import check_finite, check_tensor, segments

_HAS_TORCH_CLUSTER = available("torch_cluster")


def knn_graph(pos: Tensor, k: int, batch: Optional[Tensor] = None, *, loop: bool = False,
              backend: str = "auto") -> Tensor:
    """Connects every node to its ``k`` nearest neighbours within its own graph.

    The same contract as :func:`torch_geometric.nn.knn_graph` with
    ``flow="source_to_target"``: ``edge_index[1]`` holds the centre node and
    ``edge_index[0]`` one of its neighbours; edges are grouped by centre node.
    A graph with ``n <= k`` nodes connects each node to all ``n - 1`` others.

    Args:
        pos (torch.Tensor): Node positions ``[N, D]``.
        k (int): Number of neighbours.
        batch (torch.Tensor, optional): Sorted graph index ``[N]``. (default: ``None``)
        loop (bool, optional): Include each node as its own neighbour. (default: ``False``)
        backend (str, optional): ``"auto"``, ``"pyg"`` (PyG's ``knn_graph``,
            which needs pyg-lib), ``"torch_cluster"``, ``"scipy"`` (CPU KD-tree)
            or ``"torch"`` (chunked brute force). (default: ``"auto"``)

    Returns:
        ``edge_index`` of shape ``[2, E]`` (int64, on the device of ``pos``).
    """
    check_tensor(pos, "pos", ndim=2, floating=True)
    check_finite(pos, "pos")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"'k' must be a positive int, got {k!r}")
    seg = segments(batch, pos.shape[0], pos.device)
    return knn_graph_validated(pos, k, seg.batch, seg.ptr, loop=loop, backend=backend)


def knn_backend(device: torch.device) -> str:
    """The search ``backend="auto"`` runs: PyG's ``knn_graph`` where pyg-lib
    provides it, ``torch_cluster`` where installed, else SciPy's k-d tree on
    the CPU and a blocked ``cdist`` on other devices.  The last two list every
    node's ``min(k, n - 1)`` neighbours together, in node order."""
    if torch_geometric.typing.WITH_KNN:
        return "pyg"
    return "torch_cluster" if _HAS_TORCH_CLUSTER else ("scipy" if device.type == "cpu" else "torch")


def knn_graph_validated(pos: Tensor, k: int, batch: Optional[Tensor], ptr: Tensor, *,
                        loop: bool = False, backend: str = "auto",
                        bounds: Optional[Sequence[int]] = None) -> Tensor:
    """:func:`knn_graph` on inputs a caller has validated: ``batch`` sorted
    (or ``None``), ``ptr`` its ``[B + 1]`` graph offsets and ``bounds`` their
    values on the host if known (else read here)."""
    if backend == "auto":
        backend = knn_backend(pos.device)
    if backend == "pyg":
        from torch_geometric.nn.pool import knn_graph as pyg_knn_graph

        return pyg_knn_graph(pos, k, batch, loop=loop, flow="source_to_target",
                             batch_size=ptr.numel() - 1)
    if backend == "torch_cluster":
        import torch_cluster
        return torch_cluster.knn_graph(pos, k, batch, loop=loop, flow="source_to_target")
    bounds = ptr.tolist() if bounds is None else list(bounds)
    if backend == "scipy":
        return _knn_scipy(pos, k, bounds, loop)
    if backend == "torch":
        return _knn_torch(pos, k, bounds, loop)
    raise ValueError(f"'backend' must be 'auto', 'pyg', 'torch_cluster', 'scipy' or 'torch', got "
                     f"{backend!r}")


def _knn_scipy(pos: Tensor, k: int, bounds: list, loop: bool) -> Tensor:
    from scipy.spatial import cKDTree

    points = pos.detach().cpu().double().numpy()
    src, dst = [], []
    for s, e in zip(bounds[:-1], bounds[1:]):
        n = e - s
        if n == 0:  # an empty graph of the batch
            continue
        kk = min(k + (0 if loop else 1), n)
        _, idx = cKDTree(points[s:e]).query(points[s:e], k=kk, workers=-1)
        idx = idx.reshape(n, kk)
        centre = np.repeat(np.arange(n), kk).reshape(n, kk)
        if not loop:  # drop the node itself; keep k others (robust to duplicate points)
            keep = idx != centre
            overflow = keep.sum(1) > min(k, n - 1)
            keep[overflow, -1] = False
            idx, centre = idx[keep].reshape(n, -1), centre[keep].reshape(n, -1)
        src.append(idx.reshape(-1) + s)
        dst.append(centre.reshape(-1) + s)
    if not src:
        return torch.empty(2, 0, dtype=torch.long, device=pos.device)
    edge_index = np.stack([np.concatenate(src), np.concatenate(dst)])
    return torch.from_numpy(edge_index).long().to(pos.device)


def _knn_torch(pos: Tensor, k: int, bounds: list, loop: bool, chunk: int = 4096) -> Tensor:
    src, dst = [], []
    pos = pos.detach()
    for s, e in zip(bounds[:-1], bounds[1:]):
        n = e - s
        kk = min(k, n if loop else n - 1)
        if kk == 0:
            continue
        points = pos[s:e]
        for c in range(0, n, chunk):
            q = points[c:c + chunk]
            dist = torch.cdist(q, points)
            centre = torch.arange(c, c + q.shape[0], device=pos.device)
            if not loop:  # exclude the node itself
                dist[torch.arange(q.shape[0], device=pos.device), centre] = float("inf")
            idx = dist.topk(kk, dim=1, largest=False).indices
            src.append(idx.reshape(-1) + s)
            dst.append(centre.repeat_interleave(kk) + s)
    if not src:
        return torch.empty(2, 0, dtype=torch.long, device=pos.device)
    return torch.stack([torch.cat(src), torch.cat(dst)])
