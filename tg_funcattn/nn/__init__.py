"""Layers: functional attention, the transformer block and network around it."""
from .dense import DenseFunctionalAttention
from .functional_attention import FunctionalAttention
from .gps import FuncAttnGPSConv
from .models import FuncAttnBlock, FuncAttnNet

__all__ = ["FunctionalAttention", "FuncAttnBlock", "FuncAttnNet", "FuncAttnGPSConv",
           "DenseFunctionalAttention"]
