"""Input checks shared by the layers.

Shape and dtype checks are static and always run.  Checks that read tensor
values (NaN/inf, sortedness of ``batch``, positivity of ``mass``) need a
host synchronisation: they are gathered in a :class:`ValueChecks` and read
back together, one synchronisation for all the inputs of a forward pass
(two when the number of graphs must be read from ``batch``).  They run in
eager mode and are skipped while ``torch.compile`` traces, so that a
compiled model has no graph breaks.
"""
from __future__ import annotations

import math
import struct
from typing import Callable, List, NamedTuple, Optional, Tuple

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


def check_number(value, name: str, *, integer: bool = False, minimum: Optional[float] = None,
                 above: Optional[float] = None, below: Optional[float] = None,
                 maximum: Optional[float] = None) -> None:
    """A constructor's numeric argument ``name``: an int (``integer``) or a
    finite real number, not a bool, within the bounds given (``minimum <=
    value``, ``above < value``, ``value < below``, ``value <= maximum``)."""
    if integer:
        ok = isinstance(value, int) and not isinstance(value, bool)
        what = "an int"
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        what = "a finite number"
    bounds = [text for text, bound in ((f">= {minimum}", minimum), (f"> {above}", above),
                                       (f"< {below}", below), (f"<= {maximum}", maximum))
              if bound is not None]
    if ok:
        ok = ((minimum is None or value >= minimum) and (above is None or value > above)
              and (below is None or value < below) and (maximum is None or value <= maximum))
    if not ok:
        plain = {(True, ">= 1"): "a positive int", (True, ">= 0"): "a non-negative int",
                 (False, "> 0.0"): "a positive finite number"}.get((integer, " and ".join(bounds)))
        raise ValueError(f"'{name}' must be "
                         f"{plain or what + (' ' + ' and '.join(bounds) if bounds else '')}, "
                         f"got {value!r}")


class ValueChecks:
    """Value checks of the inputs, read back with one host synchronisation.

    Each check is a scalar integer tensor and a function of its value that
    returns an error message (or ``None``); :meth:`run` reads all values at
    once and raises the first error, in the order the checks were added.
    Nothing is recorded while tracing.
    """

    def __init__(self):
        self._checks: List[Tuple[Tensor, Callable[[List[int]], Optional[str]], int]] = []

    def add(self, values: Tensor, message: Callable[[List[int]], Optional[str]]) -> None:
        """Adds the integer values ``values`` (any shape, read as a flat list)
        and the function of them returning an error message or ``None``."""
        if not tracing():
            values = values.reshape(-1).long()
            self._checks.append((values, message, values.numel()))

    def add_float(self, values: Tensor, message: Callable[[List[float]], Optional[str]]) -> None:
        """Like :meth:`add` for floating point values, read back as float32
        (their bits travel with the integers: still one synchronisation)."""
        if not tracing():
            bits = values.detach().reshape(-1).float().view(torch.int32)
            self.add(bits, lambda v: message([_float32_of(b) for b in v]))

    def run(self) -> None:
        if not self._checks:
            return
        flat = torch.cat([values for values, _, _ in self._checks]).tolist()
        checks, self._checks = self._checks, []
        start = 0
        for _, message, size in checks:
            error = message(flat[start:start + size])
            start += size
            if error is not None:
                raise ValueError(error)


def _float32_of(bits: int) -> float:
    """The float32 whose bits are the int32 ``bits``."""
    return struct.unpack("<f", struct.pack("<i", bits))[0]


def _run_now(checks: Optional[ValueChecks]) -> Tuple[ValueChecks, bool]:
    return (ValueChecks(), True) if checks is None else (checks, False)


def check_finite(value: Tensor, name: str, checks: Optional[ValueChecks] = None, *,
                 bounded: bool = False,
                 remedy: str = "standardise the features, NormalizeScale for positions") -> None:
    """``value`` has no NaN or infinite entry (added to ``checks``, or checked
    now); with ``bounded``, also no entry above the square root of the largest
    number of its dtype (at least float32: ``1.8e19``), beyond which its
    squares (in the layer norms, the Gram matrices) overflow inside a network,
    which then returns NaN or meaningless values.  One pass over ``value``
    (its smallest and largest entries, NaN if any entry is NaN); the number
    of bad entries is counted only for the error message; ``remedy`` ends the
    message about magnitude."""
    if not value.numel():
        return
    checks, now = _run_now(checks)
    low, high = torch.aminmax(value.detach())
    largest = torch.maximum(high, -low)

    def not_finite(v):
        if v[0]:
            return None
        count = int((~torch.isfinite(value)).sum())
        return f"'{name}' contains {count} NaN or infinite value(s)"

    checks.add(torch.isfinite(largest), not_finite)
    if bounded:
        wide = torch.promote_types(value.dtype, torch.float32)
        limit = torch.finfo(wide).max ** 0.5
        # relative to the limit (at most float32's largest), so that float64 values
        # travel as float32
        ratio = (largest.to(wide) / limit).clamp(max=torch.finfo(torch.float32).max)
        checks.add_float(ratio.view(1),
                         lambda v: (f"'{name}' is finite but its largest |value| is "
                                    f"{v[0] * limit:.3g}, above {limit:.3g}, the square root of "
                                    f"the largest {wide}: its squares overflow inside the network "
                                    f"(the output would be NaN or meaningless); scale it (e.g. "
                                    f"{remedy})")
                         if v[0] > 1 else None)
    if now:
        checks.run()


class Segments(NamedTuple):
    """Graph layout of a flat PyG batch."""

    batch: Optional[Tensor]  # [N] long, or None for a single graph
    ptr: Tensor  # [B + 1] long, on the device of the nodes
    counts: Tensor  # [B] long
    num_graphs: int


def segments(batch: Optional[Tensor], num_nodes: int, device: torch.device,
             batch_size: Optional[int] = None, *, min_nodes: int = 1,
             checks: Optional[ValueChecks] = None, name: str = "batch") -> Segments:
    """Validates ``batch`` (called ``name`` in errors) and returns the per-graph layout.

    ``batch`` must be sorted as in PyG; every graph ``0..B-1`` must have at
    least ``min_nodes`` nodes.  With ``batch_size`` given no value of
    ``batch`` needs to be read to know ``B`` (no host sync of its own; the
    value checks go to ``checks`` when given, to be run by the caller;
    compile friendly).  Without it, the last graph index is read at once,
    together with the checks that must hold before it can be used.
    """
    if batch_size is not None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"'batch_size' must be a positive int, got {batch_size!r}")
    checks, now = _run_now(checks)
    if batch is None:
        if batch_size not in (None, 1):
            raise ValueError(f"'batch' is None (one graph) but 'batch_size' is {batch_size}")
        if not tracing() and num_nodes < min_nodes:
            raise ValueError(_too_small(0, num_nodes, min_nodes))
        if now:
            checks.run()
        ptr = torch.tensor([0, num_nodes], device=device)
        return Segments(None, ptr, ptr[1:] - ptr[:1], 1)

    check_tensor(batch, name, ndim=1)
    if batch.dtype.is_floating_point or batch.dtype == torch.bool or batch.is_complex():
        raise TypeError(f"'{name}' must be an integer tensor, got dtype {batch.dtype}")
    if batch.numel() != num_nodes:
        raise ValueError(f"'{name}' has {batch.numel()} entries but there are {num_nodes} nodes")
    if batch.device != device:
        raise ValueError(f"'{name}' is on {batch.device} but the node features are on {device}")
    batch = batch.long()
    if not tracing():
        if num_nodes == 0:
            raise ValueError("the input has no nodes (an empty graph)")
        # without batch_size, the size of the layout depends on the last index: read now
        order = ValueChecks() if batch_size is None else checks
        given, last = batch_size, []
        order.add(torch.stack([(batch[1:] < batch[:-1]).any(), batch[0], batch[-1]]),
                  lambda v: last.append(v[2]) or _batch_order_error(v, given, name))
        if batch_size is None:
            order.run()
            batch_size = last[0] + 1
    elif batch_size is None:
        batch_size = int(batch.max()) + 1  # data-dependent: a graph break under torch.compile
    counts = torch.zeros(batch_size, dtype=torch.long, device=device)
    # clamped: with deferred checks an out-of-range index must not fail here first
    counts.scatter_add_(0, batch.clamp(0, batch_size - 1), torch.ones_like(batch))
    if batch_size == 1:  # every node is in graph 0 once the order checks pass
        if num_nodes < min_nodes:
            raise ValueError(_too_small(0, num_nodes, min_nodes))
    elif not tracing():
        small = (counts < min_nodes) & (counts > 0)  # an empty graph has no rows: allowed
        first = small.long().argmax().view(1)
        checks.add(torch.cat([small.any().view(1), first, counts.gather(0, first)]),
                   lambda v: _too_small(v[1], v[2], min_nodes) if v[0] else None)
    if now:
        checks.run()
    ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    return Segments(batch, ptr, counts, batch_size)


def _batch_order_error(values: List[int], batch_size: Optional[int],
                       name: str = "batch") -> Optional[str]:
    unsorted, first, last = values
    if unsorted:
        return (f"'{name}' must be sorted in non-decreasing order, as PyG's "
                "Batch produces it; sort the nodes by graph first")
    if first < 0:
        return f"'{name}' has a negative graph index {first}"
    if batch_size is not None and last >= batch_size:
        return f"'{name}' has graph index {last} but 'batch_size' is {batch_size}"
    return None


def _too_small(graph: int, n: int, min_nodes: int) -> str:
    if n == 0:
        return f"graph {graph} is empty (no nodes in 'batch' for it)"
    return f"graph {graph} has {n} nodes, fewer than the {min_nodes} required (num_bases)"


#: why per-node masses or basis values have another number of rows than the points
RESAMPLED_HINT = ("were the points resampled after LaplacianEigenbasis computed data.mass and "
                  "data.evecs (e.g. by SamplePoints or FixedPoints)? Apply it after the resampling; "
                  "tg_funcattn.transforms.CheckEigenbasis() at the end of the transforms names "
                  "such an order")


def check_mass(mass: Tensor, num_nodes: int, device: torch.device,
               checks: Optional[ValueChecks] = None) -> None:
    """``mass`` is a finite, positive ``[N]`` tensor on ``device`` (the value
    checks added to ``checks``, or run now)."""
    check_tensor(mass, "mass", floating=True)
    if mass.dim() == 2 and mass.shape[1] == 1:
        raise ValueError(f"'mass' must have shape [N] = [{num_nodes}], got {tuple(mass.shape)}; "
                         "use mass.view(-1)")
    if mass.dim() != 1 or mass.numel() != num_nodes:
        raise ValueError(f"'mass' must have shape [N] = [{num_nodes}], got {tuple(mass.shape)}"
                         + (f"; one per node: {RESAMPLED_HINT}" if mass.dim() == 1 else ""))
    if mass.device != device:
        raise ValueError(f"'mass' is on {mass.device} but the node features are on {device}")
    checks, now = _run_now(checks)
    check_finite(mass, "mass", checks, bounded=True,  # its per-graph sums must not overflow
                 remedy="divide the masses by their mean: only their ratios matter")
    checks.add((mass <= 0).sum(),
               lambda v: ("'mass' must be strictly positive (lumped areas/volumes or quadrature "
                          f"weights); found {v[0]} value(s) <= 0") if v[0] else None)
    if now:
        checks.run()
