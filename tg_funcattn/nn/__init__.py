"""Layers: functional attention, the transformer block and network around it."""
from .functional_attention import FunctionalAttention
from .models import FuncAttnBlock, FuncAttnNet

__all__ = ["FunctionalAttention", "FuncAttnBlock", "FuncAttnNet"]
