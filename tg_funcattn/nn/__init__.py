"""Layers: functional attention, the transformer block and network around it.

The classes are imported on first use, so that light submodules
(:mod:`~tg_funcattn.nn.options`, :mod:`~tg_funcattn.nn.presets`) load without
torch (the command line's ``--help``).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

#: public name -> the submodule that defines it
_WHERE = {"FunctionalAttention": "functional_attention", "FuncAttnBlock": "models",
          "FuncAttnNet": "models", "FuncAttnGPSConv": "gps", "DenseFunctionalAttention": "dense"}

__all__ = ["FunctionalAttention", "FuncAttnBlock", "FuncAttnNet", "FuncAttnGPSConv",
           "DenseFunctionalAttention"]

if TYPE_CHECKING:
    from .dense import DenseFunctionalAttention
    from .functional_attention import FunctionalAttention
    from .gps import FuncAttnGPSConv
    from .models import FuncAttnBlock, FuncAttnNet


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value  # once
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
