"""Small helpers shared by the test modules (imported like ``probes`` and
``reference``: ``tests/conftest.py`` puts this folder on ``sys.path``)."""
from pathlib import Path

import torch

#: the repository root (examples/, datasets/, benchmarks/, README.md)
ROOT = Path(__file__).resolve().parent.parent

#: the basis kinds of FunctionalAttention
KINDS = ("learned", "laplacian", "laplacian_init")


def batch_vector(sizes):
    """The ``batch`` vector of graphs of the given node counts (sorted)."""
    return torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes, dtype=torch.long))


def ptr_of(sizes):
    """The CSR pointer ``[B + 1]`` of graphs of the given node counts."""
    return torch.tensor([0] + torch.tensor(sizes, dtype=torch.long).cumsum(0).tolist())


def random_inputs(kind, sizes, channels=32, bases=6, dtype=torch.float64):
    """``x`` (requiring grad), ``batch``, a random positive ``mass`` and, for the
    eigenbasis kinds, a random (not orthonormal) ``basis``."""
    n = sum(sizes)
    x = torch.randn(n, channels, dtype=dtype, requires_grad=True)
    mass = torch.rand(n, dtype=dtype) + 0.1
    basis = None if kind == "learned" else torch.randn(n, bases, dtype=dtype)
    return x, batch_vector(sizes), mass, basis


def input_and_parameter_grads(out, x, module):
    """Gradients of ``out.square().sum()`` with respect to ``x`` and the
    parameters of ``module`` that it depends on."""
    grads = torch.autograd.grad(out.square().sum(), [x, *module.parameters()], allow_unused=True)
    return [g for g in grads if g is not None]
