"""Instrumentation shared by the tests and benchmarks: the largest tensor an
operation produces, the host synchronisations of a forward pass."""
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor (in elements) any op produces while active."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


#: Tensor methods and torch functions that make the host wait for the values
#: of a tensor (a device synchronisation on CUDA; on the CPU the same places
#: read tensor values into Python).
_SYNC_METHODS = {"__bool__", "__int__", "__float__", "__index__", "item", "tolist", "numpy",
                 "cpu", "nonzero", "masked_select", "unique", "unique_consecutive", "bincount"}


class HostSyncs(TorchFunctionMode):
    """Counts the operations that read tensor values on the host while active:
    the methods in ``_SYNC_METHODS``, ``repeat_interleave`` without
    ``output_size`` and indexing with a boolean mask (data-dependent shapes)."""

    def __init__(self):
        super().__init__()
        self.count = 0
        self.names = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        index = args[1] if name == "__getitem__" and len(args) > 1 else None
        indices = index if isinstance(index, tuple) else (index,)
        if (name in _SYNC_METHODS
                or (name == "repeat_interleave" and kwargs.get("output_size") is None
                    and isinstance(args[1] if len(args) > 1 else kwargs.get("repeats"),
                                   torch.Tensor))
                or any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices)):
            self.count += 1
            self.names.append(name)
        return func(*args, **kwargs)
