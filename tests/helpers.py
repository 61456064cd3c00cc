"""Small helpers shared by the test modules (imported like ``probes`` and
``reference``: ``tests/conftest.py`` puts this folder on ``sys.path``)."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tg_funcattn._optional import available, require

#: the repository root (examples/, datasets/, benchmarks/, README.md)
ROOT = Path(__file__).resolve().parent.parent
#: the sample data in the repository: datasets/<name>/sample
SAMPLES = ROOT / "datasets"

#: the basis kinds of FunctionalAttention
KINDS = ("learned", "laplacian", "laplacian_init")


def batch_vector(sizes):
    """The ``batch`` vector of graphs of the given node counts (sorted)."""
    return torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes, dtype=torch.long))


def ptr_of(sizes):
    """The CSR pointer ``[B + 1]`` of graphs of the given node counts."""
    return torch.tensor([0] + torch.tensor(sizes, dtype=torch.long).cumsum(0).tolist())


def random_inputs(kind, sizes, channels=32, bases=6, dtype=torch.float64):
    """``x`` (requiring grad), ``batch``, a random positive ``mass`` and a
    ``basis``: for ``laplacian`` a random one orthonormal in ``mass`` per graph
    (the layer checks it), for ``laplacian_init`` a random one (not orthonormal:
    the layer orthonormalises it)."""
    from reference import orthonormal_basis

    n = sum(sizes)
    x = torch.randn(n, channels, dtype=dtype, requires_grad=True)
    mass = torch.rand(n, dtype=dtype) + 0.1
    batch = batch_vector(sizes)
    basis = {"learned": None, "laplacian_init": torch.randn(n, bases, dtype=dtype)}.get(kind)
    if kind == "laplacian":
        basis = torch.cat([orthonormal_basis(size, bases, mass[batch == g]) for g, size in enumerate(sizes)])
    return x, batch, mass, basis


def input_and_parameter_grads(out, x, module):
    """Gradients of ``out.square().sum()`` with respect to ``x`` and the
    parameters of ``module`` that it depends on."""
    grads = torch.autograd.grad(out.square().sum(), [x, *module.parameters()], allow_unused=True)
    return [g for g in grads if g is not None]


def copy_sample(name, tmp_path, sub="data") -> Path:
    """A writable copy of ``datasets/<name>/sample`` at ``tmp_path / sub``."""
    target = tmp_path / sub
    shutil.copytree(SAMPLES / name / "sample", target)
    return target


# ------------------------------------------------------------------ markers
def _install_hint(name):
    """The library's own message for a missing optional module ``name``
    (``tg_funcattn._optional.require``: the pip name and the extra)."""
    try:
        require(name, "this test")
    except ImportError as error:
        return str(error)
    except OSError as error:  # a broken install (available() counts it as missing)
        return f"this test needs a working '{name}' ({error})"
    return f"'{name}' did not import"  # it imports now; it did not a moment ago


def requires(*names):
    """Skips a test (or, as ``pytestmark``, a module) unless every optional
    module in ``names`` imports; the reason is the install hint of
    ``tg_funcattn._optional``.  A name that is not an optional dependency of
    the package is a ValueError (a typo does not silently skip)."""
    if not names:
        raise ValueError("requires() needs at least one module name")
    missing = [name for name in names if not available(name)]
    return pytest.mark.skipif(bool(missing), reason="; ".join(_install_hint(name) for name in missing)
                              or "all of " + ", ".join(names) + " import")


def skip_unless_rendering():
    """Skips the calling test where open3d cannot render off screen here (no
    open3d, or no GL/EGL libraries): probed at run time in a subprocess, which
    a missing library could abort, so not a collection-time marker."""
    from tg_funcattn.viz import rendering_available

    ok, reason = rendering_available()
    if not ok:
        pytest.skip(f"3D rendering unavailable: {reason}")


# ------------------------------------------------------------------- meshes
def icosphere(level):
    """trimesh's icosphere of the unit sphere: vertices ``[n, 3]`` float64 and
    faces ``[3, F]`` int64 (tests that use it carry ``requires("trimesh")``)."""
    import trimesh  # a module of the 'mesh' extra: imported only where a test builds a mesh

    mesh = trimesh.creation.icosphere(subdivisions=level)
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64).T


# ----------------------------------------------------------------- pictures
def pixels(path):
    """The RGB values ``[H, W, 3]`` in [0, 1] of a PNG (read with matplotlib)."""
    from matplotlib.image import imread  # the 'viz' extra: tests that call this require it

    return imread(str(path))[..., :3]


def assert_picture(path, min_bytes=1000):
    """``path`` is a PNG of at least ``min_bytes`` that is not blank: a
    figure with nothing drawn is a flat colour (and still ~1.7 kB)."""
    assert Path(path).stat().st_size > min_bytes, path
    rgb = pixels(path)
    assert rgb.std() > 0.05, (path, float(rgb.std()))
    return rgb
