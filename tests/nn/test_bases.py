import pytest
import torch
from reference import orthonormal_basis

from tg_funcattn.nn import FunctionalAttention
from tg_funcattn.nn._layout import NodeRange
from tg_funcattn.nn.options import BASIS_TYPE_NAMES
from tg_funcattn.nn.bases import (BASIS_TYPES, AdaptedOrthonormal, FixedOrthonormal,
                                  LearnedPartition, make_basis, uses_eigenbasis)


def _round_trip(module, x, psi, weight, ptr, values):
    """Analysis, coefficients and synthesis with the identity map (``C = I``)."""
    batch = torch.repeat_interleave(torch.arange(ptr.numel() - 1), ptr.diff())
    nodes = NodeRange(ptr, batch)
    phi = module.values(x, psi, x.dtype, weight, nodes)
    sums = module.analysis(phi, values, weight, nodes)
    coef, state, _ = module.coefficients(sums)
    return module.synthesis(phi, module.synthesis_matrix(coef, state, x.dtype), nodes)


def test_learned_partition_reproduces_constants():
    """A partition of unity maps a constant function to the same constant
    coefficients and back (docs: "a constant function is reproduced exactly"),
    up to the offset ``PARTITION_EPS`` of the partition mass, whatever the masses."""
    module = LearnedPartition(16, 2, 6).double()
    module.reset_parameters()
    x = torch.randn(30, 16, dtype=torch.float64)
    ptr = torch.tensor([0, 12, 30])
    mass = torch.rand(30, dtype=torch.float64) + 0.1
    weight = torch.cat([mass[:12] / mass[:12].sum(), mass[12:] / mass[12:].sum()])
    constant = torch.randn(1, 16, dtype=torch.float64).expand(30, 16)
    out = _round_trip(module, x, None, weight, ptr, constant)
    torch.testing.assert_close(out, constant, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("cls", [FixedOrthonormal, AdaptedOrthonormal])
def test_orthonormal_kinds_project_onto_their_span(cls):
    """With ``C = I`` an orthonormal basis is the mass-orthogonal projection onto
    its span: functions in the span come back, the complement is removed."""
    module = cls(16, 2, 5).double()
    module.reset_parameters()
    x = torch.randn(40, 16, dtype=torch.float64)
    mass = torch.rand(40, dtype=torch.float64) + 0.1
    psi = orthonormal_basis(40, 5, mass)
    ptr = torch.tensor([0, 40])
    in_span = psi @ torch.randn(5, 16, dtype=torch.float64)
    torch.testing.assert_close(_round_trip(module, x, psi, mass, ptr, in_span), in_span,
                               atol=1e-4, rtol=1e-4)  # GRAM_JITTER for the adapted kind
    other = torch.randn(40, 16, dtype=torch.float64)
    residual = other - psi @ (psi.T @ (mass[:, None] * other))  # mass-orthogonal to the span
    assert _round_trip(module, x, psi, mass, ptr, residual).abs().max() < 1e-4 * residual.abs().max()


def test_registry_and_factory():
    assert tuple(BASIS_TYPES) == BASIS_TYPE_NAMES  # the light list the command line reads
    assert [uses_eigenbasis(kind) for kind in BASIS_TYPES] == [False, True, True]
    assert isinstance(make_basis("laplacian_init", 16, 2, 4), AdaptedOrthonormal)
    with pytest.raises(ValueError, match="'basis_type' must be one of"):
        uses_eigenbasis("spectral")
    layer = FunctionalAttention(16, 2, 4, basis_type="laplacian_init")
    assert isinstance(layer.basis_module, AdaptedOrthonormal) and layer.needs.min_nodes == 4
    assert FunctionalAttention(16, 2, 4).needs.min_nodes == 1
