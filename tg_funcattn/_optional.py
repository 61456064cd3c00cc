"""Lazy imports of optional dependencies with a one-line install hint."""
from __future__ import annotations

import importlib
from types import ModuleType

#: import name -> (pip name, extra of tg-funcattn that installs it)
_PACKAGES = {
    "trimesh": ("trimesh", "mesh"),
    "potpourri3d": ("potpourri3d", "mesh"),
    "robust_laplacian": ("robust-laplacian", "mesh"),
    "pymetis": ("pymetis", "mesh"),
    "open3d": ("open3d", "viz"),
    "matplotlib": ("matplotlib", "viz"),
    "lightning": ("lightning", "train"),
    "torch_scatter": ("torch-scatter", "scatter"),
    "triton": ("triton", "triton"),
}


def require(name: str, purpose: str) -> ModuleType:
    """Imports ``name`` or raises an ImportError that says how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        pip_name, extra = _PACKAGES.get(name, (name, None))
        hint = (f"pip install 'tg-funcattn[{extra}]'  (or: pip install {pip_name})"
                if extra else f"pip install {pip_name}")
        raise ImportError(f"{purpose} needs the optional package '{pip_name}': {hint}") from error


def available(name: str) -> bool:
    try:
        importlib.import_module(name)
        return True
    except ImportError:
        return False
