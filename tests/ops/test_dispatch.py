"""The dispatch of the segment products: which backend runs where, the
``segment_backend`` context, and the dtype they keep under autocast."""
import pytest
import torch
from helpers import KINDS, input_and_parameter_grads, ptr_of, random_inputs

from tg_funcattn._optional import available
from tg_funcattn.nn import FunctionalAttention
from tg_funcattn.ops import (resolve_backend, segment_backend, segment_matmul_nn, segment_matmul_tn,
                             set_segment_backend)
from tg_funcattn.ops import segment as segment_module


def test_resolve_backend_rules():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_backend(cpu, torch.float32, 8) == "bmm"
    assert resolve_backend(cuda, torch.float32, 1) == "bmm"  # one graph: cuBLAS
    assert resolve_backend(cuda, torch.float64, 8) == "bmm"  # no float64 Triton path
    expected = "triton" if available("triton") else "bmm"
    assert resolve_backend(cuda, torch.bfloat16, 8) == expected
    assert resolve_backend(cpu, torch.float32, 8, "reference") == "reference"
    with pytest.raises(ValueError, match="segment backend must be one of"):
        set_segment_backend("cuda")
    if available("triton") and not segment_module._interpreting():
        with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
            resolve_backend(cpu, torch.float32, 2, "triton")


def test_backend_context_manager_restores():
    with segment_backend("reference"):
        assert segment_module._backend == "reference"
        with pytest.raises(ValueError):
            with segment_backend("nope"):
                pass
        assert segment_module._backend == "reference"
    assert segment_module._backend == "auto"


@pytest.mark.parametrize("kind", KINDS)
def test_layer_same_with_reference_backend(kind):
    """The layer through the plain scatter reference equals the BLAS path,
    forward and backward."""
    layer = FunctionalAttention(32, 4, 6, kind).double()
    x, batch, mass, basis = random_inputs(kind, [6, 40, 13])
    out = layer(x, batch, mass=mass, basis=basis)
    grads = input_and_parameter_grads(out, x, layer)
    with segment_backend("reference"):
        ref = layer(x, batch, mass=mass, basis=basis)
        ref_grads = input_and_parameter_grads(ref, x, layer)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("sizes", [[30], [10, 20]])
def test_segment_products_keep_the_input_dtype_under_autocast(sizes):
    """Autocast must not lower the products (it once did for one graph only)."""
    ptr = ptr_of(sizes)
    a, b = torch.randn(2, sum(sizes), 4), torch.randn(2, sum(sizes), 3)
    c = torch.randn(len(sizes), 2, 4, 3)
    for amp in (torch.float16, torch.bfloat16):
        with torch.autocast("cpu", dtype=amp):
            assert segment_matmul_tn(a, b, ptr).dtype == torch.float32
            assert segment_matmul_nn(a, c, ptr).dtype == torch.float32
            assert segment_matmul_tn(a.to(amp), b.to(amp), ptr).dtype == amp
