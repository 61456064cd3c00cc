"""Streaming the layer and the network over chunks of nodes (``chunk_size``)
and running them under autocast."""
import pytest
import torch
from helpers import KINDS, batch_vector, input_and_parameter_grads, random_inputs
from probes import LargestTensor

from tg_funcattn.nn import FuncAttnNet, FunctionalAttention


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("chunk_size", [1, 17, 64])
def test_chunked_equals_one_pass(kind, chunk_size):
    """Streaming over chunks (chunks cutting through graphs) gives the one-pass
    output, bases, maps and gradients (float64)."""
    layer = FunctionalAttention(32, 4, 6, kind).double()
    sizes = [40, 7, 300, 90]
    x, batch, mass, basis = random_inputs(kind, sizes)
    out, bases, fmap = layer(x, batch, mass=mass, basis=basis, return_maps=True)
    grads = input_and_parameter_grads(out, x, layer)
    out_c, bases_c, fmap_c = layer(x, batch, mass=mass, basis=basis, return_maps=True,
                                   chunk_size=chunk_size)
    grads_c = input_and_parameter_grads(out_c, x, layer)
    torch.testing.assert_close(out_c, out, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(bases_c, bases, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(fmap_c, fmap, rtol=1e-9, atol=1e-10)
    for g, r in zip(grads_c, grads):
        torch.testing.assert_close(g, r, rtol=1e-7, atol=1e-8)


def test_chunked_model_training_matches_one_pass():
    """With autograd, streaming checkpoints every block: same loss gradients."""
    model = FuncAttnNet(3, 32, 5, num_layers=2, heads=4, num_bases=8).double()
    sizes = [100, 57]
    pos = torch.randn(sum(sizes), 3, dtype=torch.float64)
    batch = batch_vector(sizes)
    params = list(model.parameters())
    grads = torch.autograd.grad(model(pos, pos, batch).square().mean(), params)
    grads_c = torch.autograd.grad(model(pos, pos, batch, chunk_size=40).square().mean(), params)
    for g, r in zip(grads_c, grads):
        torch.testing.assert_close(g, r, rtol=1e-8, atol=1e-10)


def test_chunked_model_and_bad_chunk_size():
    model = FuncAttnNet(3, 32, 5, num_layers=2, heads=4, num_bases=8).double().eval()
    sizes = [100, 57]
    pos = torch.randn(sum(sizes), 3, dtype=torch.float64)
    batch = batch_vector(sizes)
    with torch.no_grad():
        torch.testing.assert_close(model(pos, pos, batch, chunk_size=50), model(pos, pos, batch))
    layer = FunctionalAttention(32, 4, 6)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="'chunk_size' must be a positive int"):
            layer(torch.randn(10, 32), chunk_size=bad)


def test_chunked_inference_never_holds_the_full_basis():
    """With ``chunk_size`` no intermediate is larger than O(N channels) or
    O(chunk heads k); without it the [heads, N, k] basis exists (so the check
    can fail)."""
    n, channels, heads, bases, chunk = 4096, 32, 8, 64, 256
    layer = FunctionalAttention(channels, heads, bases)
    x = torch.randn(n, channels)
    with torch.no_grad():
        with LargestTensor() as full:
            layer(x)
        with LargestTensor() as streamed:
            layer(x, chunk_size=chunk)
    assert full.largest >= heads * n * bases
    assert streamed.largest <= max(n * channels, chunk * heads * (bases + channels))


def _autocast_dtypes():
    dtypes = [torch.bfloat16]
    try:
        with torch.autocast("cpu", dtype=torch.float16):
            torch.nn.functional.linear(torch.randn(2, 2), torch.randn(2, 2))
        dtypes.append(torch.float16)
    except RuntimeError:
        pass
    return dtypes


@pytest.mark.parametrize("amp_dtype", _autocast_dtypes())
@pytest.mark.parametrize("kind", KINDS)
def test_autocast_ill_conditioned_and_rank_deficient(kind, amp_dtype):
    """Under bf16/fp16 autocast the maps are solved in a wide dtype; keys that
    are rank deficient (a one-node graph, a graph of identical nodes, a
    rank-one graph) or badly scaled give finite outputs and gradients close
    to the float32 result."""
    torch.manual_seed(0)
    channels, bases = 32, 6
    layer = FunctionalAttention(channels, 4, bases, kind)
    rank_one = torch.randn(60, 1) * torch.randn(1, channels)
    graphs = [torch.randn(1, channels) if kind == "learned" else torch.randn(bases, channels),
              torch.randn(1, channels).expand(40, channels) * 30.0,  # identical nodes, large
              rank_one, torch.randn(80, channels) * 1e-3]  # tiny keys
    x = torch.cat(graphs).requires_grad_()
    batch = batch_vector([g.shape[0] for g in graphs])
    basis = mass = None
    if kind != "learned":  # an orthonormal basis per graph (uniform mass 1/n)
        basis = torch.cat([torch.linalg.qr(torch.randn(g.shape[0], bases))[0] * g.shape[0] ** 0.5
                           for g in graphs])
        mass = torch.cat([torch.full((g.shape[0],), 1.0 / g.shape[0]) for g in graphs])
    with torch.no_grad():
        ref = layer(x, batch, mass, basis)
    with torch.autocast("cpu", dtype=amp_dtype):
        out, _, fmap = layer(x, batch, mass, basis, return_maps=True)
    assert out.dtype == amp_dtype
    assert fmap.dtype in (torch.float64, torch.float32)  # the solve ran wide
    assert torch.isfinite(out).all()
    err = (out.float() - ref).norm() / ref.norm()
    # bfloat16 rounding of the basis and its Gram matrix: up to 6.3% for laplacian_init on
    # the graph of identical nodes (seeds 0-2), about 0.5% for the other kinds
    assert err < 0.08, err
    with torch.no_grad(), torch.autocast("cpu", dtype=amp_dtype):  # streamed: the same numbers
        streamed = layer(x, batch, mass, basis, chunk_size=50)
    assert (streamed.float() - out.float()).norm() / ref.norm() < 0.02
    out.float().square().mean().backward()  # a loss of the usual scale (fp16 has no GradScaler here)
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters() if p.grad is not None)
