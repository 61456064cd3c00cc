"""tg_funcattn: functional attention for point clouds and meshes in PyTorch Geometric.

Subpackages load on first use (``tg_funcattn.nn``, ``tg_funcattn.ops``, ...), so
that the command line starts without importing torch.
"""
import importlib

__version__ = "0.1.0"

__all__ = ["nn", "ops", "__version__"]


def __getattr__(name: str):
    if name in ("nn", "ops"):
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
