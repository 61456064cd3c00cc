"""Lazy imports of optional dependencies with a one-line install hint."""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Optional, Tuple

#: top-level import name -> (pip name, extra of tg-funcattn that installs it, or None)
_PACKAGES = {
    "trimesh": ("trimesh", "mesh"),
    "potpourri3d": ("potpourri3d", "mesh"),
    "robust_laplacian": ("robust-laplacian", "mesh"),
    "pymetis": ("pymetis", "mesh"),
    "open3d": ("open3d", "viz"),
    "matplotlib": ("matplotlib", "viz"),
    "lightning": ("lightning", "train"),
    "tensorboard": ("tensorboard", "train"),
    "torch_scatter": ("torch-scatter", "scatter"),
    "torch_cluster": ("torch-cluster", None),
    "triton": ("triton", "triton"),
}


def _package(name: str) -> Tuple[str, Optional[str]]:
    """The pip name and extra of the package that provides the module ``name``
    (a submodule such as ``matplotlib.pyplot`` belongs to its top-level package)."""
    top = name.split(".")[0]
    if top not in _PACKAGES:
        raise ValueError(f"'{name}' is not an optional dependency of tg-funcattn; known: "
                         f"{sorted(_PACKAGES)}")
    return _PACKAGES[top]


def require(name: str, purpose: str) -> ModuleType:
    """Imports the module ``name`` or raises an ImportError that says how to
    install the package that provides it."""
    pip_name, extra = _package(name)
    try:
        return importlib.import_module(name)
    except ImportError as error:
        hint = (f"pip install 'tg-funcattn[{extra}]'  (or: pip install {pip_name})"
                if extra else f"pip install {pip_name}")
        raise ImportError(f"{purpose} needs the optional package '{pip_name}': {hint}") from error


def available(name: str) -> bool:
    """Whether the module ``name`` imports (a broken install, e.g. a compiled
    extension built for another torch, counts as missing)."""
    _package(name)
    try:
        importlib.import_module(name)
        return True
    except (ImportError, OSError):
        return False
