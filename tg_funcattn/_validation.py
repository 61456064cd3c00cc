"""Input checks shared by the layers.

Shape and dtype checks are static and always run.  Checks that read tensor
values (NaN/inf, sortedness of ``batch``, positivity of ``mass``) need a
host synchronisation; they run in eager mode and are skipped while
``torch.compile`` traces, so that a compiled model has no graph breaks.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor


def tracing() -> bool:
    """True while ``torch.compile``/``torch.jit`` traces (value checks are skipped)."""
    return torch.compiler.is_compiling() or torch.jit.is_scripting()


def check_tensor(value, name: str, *, ndim: Optional[int] = None,
                 floating: bool = False) -> None:
    if not isinstance(value, Tensor):
        raise TypeError(f"'{name}' must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None and value.dim() != ndim:
        raise ValueError(f"'{name}' must be {ndim}-dimensional, got shape {tuple(value.shape)}")
    if floating and not value.is_floating_point():
        raise TypeError(f"'{name}' must be a floating point tensor, got dtype {value.dtype}")


def check_finite(value: Tensor, name: str) -> None:
    if not tracing() and not bool(torch.isfinite(value).all()):
        bad = (~torch.isfinite(value)).sum().item()
        raise ValueError(f"'{name}' contains {bad} NaN or infinite value(s)")


class Segments(NamedTuple):
    """Graph layout of a flat PyG batch."""

    batch: Optional[Tensor]  # [N] long, or None for a single graph
    ptr: Tensor  # [B + 1] long, on the device of the nodes
    counts: Tensor  # [B] long
    num_graphs: int


def segments(batch: Optional[Tensor], num_nodes: int, device: torch.device,
             batch_size: Optional[int] = None, *, min_nodes: int = 1) -> Segments:
    """Validates ``batch`` and returns the per-graph layout.

    ``batch`` must be sorted as in PyG; every graph ``0..B-1`` must have at
    least ``min_nodes`` nodes.  With ``batch_size`` given no value of
    ``batch`` needs to be read to know ``B`` (no host sync; compile friendly).
    """
    if batch_size is not None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"'batch_size' must be a positive int, got {batch_size!r}")
    if batch is None:
        if batch_size not in (None, 1):
            raise ValueError(f"'batch' is None (one graph) but 'batch_size' is {batch_size}")
        if not tracing() and num_nodes < min_nodes:
            raise ValueError(_too_small(0, num_nodes, min_nodes))
        ptr = torch.tensor([0, num_nodes], device=device)
        return Segments(None, ptr, ptr[1:] - ptr[:1], 1)

    check_tensor(batch, "batch", ndim=1)
    if batch.dtype.is_floating_point or batch.dtype == torch.bool or batch.is_complex():
        raise TypeError(f"'batch' must be an integer tensor, got dtype {batch.dtype}")
    if batch.numel() != num_nodes:
        raise ValueError(f"'batch' has {batch.numel()} entries but there are {num_nodes} nodes")
    if batch.device != device:
        raise ValueError(f"'batch' is on {batch.device} but the node features are on {device}")
    batch = batch.long()
    if not tracing():
        if num_nodes == 0:
            raise ValueError("the input has no nodes (an empty graph)")
        if bool((batch[1:] < batch[:-1]).any()):
            raise ValueError("'batch' must be sorted in non-decreasing order, as PyG's "
                             "Batch produces it; sort the nodes by graph first")
        first, last = int(batch[0]), int(batch[-1])
        if first < 0:
            raise ValueError(f"'batch' has a negative graph index {first}")
        if batch_size is None:
            batch_size = last + 1
        elif last >= batch_size:
            raise ValueError(f"'batch' has graph index {last} but 'batch_size' is {batch_size}")
    elif batch_size is None:
        batch_size = int(batch.max()) + 1  # data-dependent: a graph break under torch.compile
    counts = torch.zeros(batch_size, dtype=torch.long, device=device)
    counts.scatter_add_(0, batch, torch.ones_like(batch))
    if not tracing():
        small = counts < min_nodes
        if bool(small.any()):
            g = int(small.nonzero()[0])
            raise ValueError(_too_small(g, int(counts[g]), min_nodes))
    ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    return Segments(batch, ptr, counts, batch_size)


def _too_small(graph: int, n: int, min_nodes: int) -> str:
    if n == 0:
        return f"graph {graph} is empty (no nodes in 'batch' for it)"
    return f"graph {graph} has {n} nodes, fewer than the {min_nodes} required (num_bases)"


def check_mass(mass: Tensor, num_nodes: int, device: torch.device) -> None:
    check_tensor(mass, "mass", floating=True)
    if mass.dim() == 2 and mass.shape[1] == 1:
        raise ValueError(f"'mass' must have shape [N] = [{num_nodes}], got {tuple(mass.shape)}; "
                         "use mass.view(-1)")
    if mass.dim() != 1 or mass.numel() != num_nodes:
        raise ValueError(f"'mass' must have shape [N] = [{num_nodes}], got {tuple(mass.shape)}")
    if mass.device != device:
        raise ValueError(f"'mass' is on {mass.device} but the node features are on {device}")
    check_finite(mass, "mass")
    if not tracing() and bool((mass <= 0).any()):
        raise ValueError("'mass' must be strictly positive (lumped areas/volumes or "
                         f"quadrature weights); found {(mass <= 0).sum().item()} value(s) <= 0")
