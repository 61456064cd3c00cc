"""tg_funcattn: functional attention for point clouds and meshes in PyTorch Geometric."""
__version__ = "0.1.0"

from . import nn, ops  # noqa: E402

__all__ = ["nn", "ops", "__version__"]
