"""Scale: kernel backends (bmm, reference, Triton through its CPU interpreter),
chunked streaming, mixed precision."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from probes import LargestTensor

from tg_funcattn.nn import FuncAttnNet, FunctionalAttention
from tg_funcattn.ops import (resolve_backend, segment_backend, segment_matmul_nn, segment_matmul_tn,
                             segment_sum, set_segment_backend)
from tg_funcattn.ops import segment as segment_module

KINDS = ["learned", "laplacian", "laplacian_init"]


def _batch(sizes):
    return torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))


def _inputs(kind, sizes, channels=32, bases=6, dtype=torch.float64):
    n = sum(sizes)
    x = torch.randn(n, channels, dtype=dtype, requires_grad=True)
    mass = torch.rand(n, dtype=dtype) + 0.1
    basis = None if kind == "learned" else torch.randn(n, bases, dtype=dtype)
    return x, _batch(sizes), mass, basis


def _grads(out, x, layer):
    params = [p for p in layer.parameters()]
    grads = torch.autograd.grad(out.square().sum(), [x] + params, allow_unused=True)
    return [g for g in grads if g is not None]


# --- backends --------------------------------------------------------------------------

def test_resolve_backend_rules():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_backend(cpu, torch.float32, 8) == "bmm"
    assert resolve_backend(cuda, torch.float32, 1) == "bmm"  # one graph: cuBLAS
    assert resolve_backend(cuda, torch.float64, 8) == "bmm"  # no float64 Triton path
    expected = "triton" if segment_module._installed("triton") else "bmm"
    assert resolve_backend(cuda, torch.bfloat16, 8) == expected
    assert resolve_backend(cpu, torch.float32, 8, "reference") == "reference"
    with pytest.raises(ValueError, match="segment backend must be one of"):
        set_segment_backend("cuda")
    if segment_module._installed("triton") and not segment_module._interpreting():
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
    x, batch, mass, basis = _inputs(kind, [6, 40, 13])
    out = layer(x, batch, mass=mass, basis=basis)
    grads = _grads(out, x, layer)
    with segment_backend("reference"):
        ref = layer(x, batch, mass=mass, basis=basis)
        ref_grads = _grads(ref, x, layer)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("sizes", [[30], [10, 20]])
def test_segment_products_keep_the_input_dtype_under_autocast(sizes):
    """Autocast must not lower the products (it once did for one graph only)."""
    ptr = torch.tensor([0] + torch.tensor(sizes).cumsum(0).tolist())
    a, b = torch.randn(2, sum(sizes), 4), torch.randn(2, sum(sizes), 3)
    c = torch.randn(len(sizes), 2, 4, 3)
    for amp in (torch.float16, torch.bfloat16):
        with torch.autocast("cpu", dtype=amp):
            assert segment_matmul_tn(a, b, ptr).dtype == torch.float32
            assert segment_matmul_nn(a, c, ptr).dtype == torch.float32
            assert segment_matmul_tn(a.to(amp), b.to(amp), ptr).dtype == amp


def test_segment_sum_matches_dense_loop():
    sizes = [3, 1, 20, 7]
    src = torch.randn(sum(sizes), 5, dtype=torch.float64, requires_grad=True)
    ptr = torch.tensor([0] + torch.tensor(sizes).cumsum(0).tolist())
    expected = torch.stack([part.sum(0) for part in src.split(sizes)])
    torch.testing.assert_close(segment_sum(src, ptr), expected)
    torch.testing.assert_close(segment_sum(src[:, 0], ptr), expected[:, 0])
    with segment_backend("reference"):  # the native path even where torch_scatter is installed
        torch.testing.assert_close(segment_sum(src, ptr), expected)
    assert torch.autograd.gradcheck(lambda s: segment_sum(s, ptr), (src,))
    assert torch.autograd.gradcheck(lambda s: segment_sum(s[:, 0], ptr), (src,))


@pytest.mark.skipif(not segment_module._installed("torch_scatter"),
                    reason="torch_scatter is not installed (pip install 'tg-funcattn[scatter]')")
def test_segment_sum_torch_scatter_path(monkeypatch):
    """The torch_scatter path (taken on CUDA) forced on the CPU."""
    monkeypatch.setattr(segment_module, "_use_torch_scatter", lambda src: True)
    sizes = [3, 1, 20, 7]
    src = torch.randn(sum(sizes), 5, dtype=torch.float64)
    ptr = torch.tensor([0] + torch.tensor(sizes).cumsum(0).tolist())
    expected = torch.stack([part.sum(0) for part in src.split(sizes)])
    torch.testing.assert_close(segment_sum(src, ptr), expected)


TRITON_SCRIPT = textwrap.dedent("""
    import json, torch
    from tg_funcattn.ops import _triton, segment_backend
    from tg_funcattn.ops.segment import _nn_reference, _tn_reference
    from tg_funcattn.nn import FunctionalAttention
    torch.manual_seed(0)
    result = {}
    sizes = [1, 70, 0, 150, 33]  # one graph spans several chunks of 64, one is empty
    ptr = torch.tensor([0] + torch.tensor(sizes).cumsum(0).tolist())
    n = sum(sizes)
    a, b = torch.randn(3, n, 20), torch.randn(3, n, 17)
    c = torch.randn(len(sizes), 3, 20, 17)
    tn = _triton.segment_matmul_tn(a, b, ptr, chunk=64)
    result["tn"] = (tn - _tn_reference(a, b, ptr)).abs().max().item() / tn.abs().max().item()
    nn = _triton.segment_matmul_nn(a, c, ptr)
    result["nn"] = (nn - _nn_reference(a, c, ptr)).abs().max().item() / nn.abs().max().item()
    # strided operands, as the backward passes them
    ct = c.transpose(-1, -2)
    nt = _triton.segment_matmul_nn(b, ct, ptr)
    result["nn_strided"] = (nt - _nn_reference(b, ct, ptr)).abs().max().item() / nt.abs().max().item()
    at = torch.randn(n, 3, 20).transpose(0, 1)
    tt = _triton.segment_matmul_tn(at, b, ptr, chunk=64)
    result["tn_strided"] = (tt - _tn_reference(at, b, ptr)).abs().max().item() / tt.abs().max().item()
    # half inputs, float32 accumulation (float16: Triton's interpreter mishandles
    # bfloat16 memory, which numpy lacks; bfloat16 runs in the GPU suite)
    ah, bh = a.half(), b.half()
    th = _triton.segment_matmul_tn(ah, bh, ptr, chunk=64)
    ref = _tn_reference(ah.float(), bh.float(), ptr)
    result["tn_half_dtype"] = str(th.dtype)
    result["tn_half"] = (th.float() - ref).abs().max().item() / ref.abs().max().item()
    # the whole layer, forward and backward, through the dispatch point
    layer = FunctionalAttention(16, 2, 8)
    sizes = [40, 90, 9]
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    x = torch.randn(sum(sizes), 16, requires_grad=True)
    out = layer(x, batch)
    gx, = torch.autograd.grad(out.square().sum(), x)
    with segment_backend("triton"):
        out_t = layer(x, batch)
        gx_t, = torch.autograd.grad(out_t.square().sum(), x)
    result["layer"] = (out - out_t).abs().max().item() / out.abs().max().item()
    result["layer_grad"] = (gx - gx_t).abs().max().item() / gx.abs().max().item()
    print(json.dumps(result))
""")


@pytest.mark.skipif(not segment_module._installed("triton"),
                    reason="triton is not installed (pip install 'tg-funcattn[triton]')")
def test_triton_kernels_agree_in_interpreter():
    """The Triton kernels, run on the CPU by Triton's interpreter, agree with
    the reference (chunked partial sums, graph-straddling blocks, strides,
    float16) and carry the whole layer, forward and backward."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-c", TRITON_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("tn", "nn", "nn_strided", "tn_strided", "layer", "layer_grad"):
        assert result[key] < 1e-5, (key, result[key])
    assert result["tn_half_dtype"] == "torch.float16"
    assert result["tn_half"] < 1e-3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.skipif(not segment_module._installed("triton"), reason="triton is not installed")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_triton_layer_matches_bmm(dtype):
    """On a GPU the dispatch picks Triton for batches; it matches cuBLAS."""
    layer = FunctionalAttention(64, 4, 16).cuda()
    sizes = [3000, 17, 9000, 5000]
    batch = _batch(sizes).cuda()
    x = torch.randn(sum(sizes), 64, device="cuda", requires_grad=True)
    assert resolve_backend(x.device, dtype, len(sizes)) == "triton"
    with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
        out = layer(x, batch)
        gx, = torch.autograd.grad(out.float().square().mean(), x)
        with segment_backend("bmm"):
            ref = layer(x, batch)
            gr, = torch.autograd.grad(ref.float().square().mean(), x)
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    assert (out.float() - ref.float()).norm() / ref.float().norm() < tol
    assert (gx - gr).norm() / gr.norm() < tol


# --- chunked streaming -----------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("chunk_size", [1, 17, 64])
def test_chunked_equals_one_pass(kind, chunk_size):
    """Streaming over chunks (chunks cutting through graphs) gives the one-pass
    output, bases, maps and gradients (float64)."""
    layer = FunctionalAttention(32, 4, 6, kind).double()
    x, batch, mass, basis = _inputs(kind, [40, 7, 300, 90])
    out, bases, fmap = layer(x, batch, mass=mass, basis=basis, return_maps=True)
    grads = _grads(out, x, layer)
    out_c, bases_c, fmap_c = layer(x, batch, mass=mass, basis=basis, return_maps=True,
                                   chunk_size=chunk_size)
    grads_c = _grads(out_c, x, layer)
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
    batch = _batch(sizes)
    params = list(model.parameters())
    grads = torch.autograd.grad(model(pos, pos, batch).square().mean(), params)
    grads_c = torch.autograd.grad(model(pos, pos, batch, chunk_size=40).square().mean(), params)
    for g, r in zip(grads_c, grads):
        torch.testing.assert_close(g, r, rtol=1e-8, atol=1e-10)


def test_chunked_model_and_bad_chunk_size():
    model = FuncAttnNet(3, 32, 5, num_layers=2, heads=4, num_bases=8).double().eval()
    sizes = [100, 57]
    pos = torch.randn(sum(sizes), 3, dtype=torch.float64)
    batch = _batch(sizes)
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


# --- mixed precision -------------------------------------------------------------------

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
    batch = _batch([g.shape[0] for g in graphs])
    basis = None
    if kind != "learned":  # an orthonormal basis per graph (uniform mass 1/n)
        basis = torch.cat([torch.linalg.qr(torch.randn(g.shape[0], bases))[0] * g.shape[0] ** 0.5
                           for g in graphs])
    with torch.no_grad():
        ref = layer(x, batch, basis=basis)
    with torch.autocast("cpu", dtype=amp_dtype):
        out, _, fmap = layer(x, batch, basis=basis, return_maps=True)
    assert out.dtype == amp_dtype
    assert fmap.dtype in (torch.float64, torch.float32)  # the solve ran wide
    assert torch.isfinite(out).all()
    err = (out.float() - ref).norm() / ref.norm()
    assert err < 0.05, err
    with torch.no_grad(), torch.autocast("cpu", dtype=amp_dtype):  # streamed: the same numbers
        streamed = layer(x, batch, basis=basis, chunk_size=50)
    assert (streamed.float() - out.float()).norm() / ref.norm() < 0.02
    out.float().square().mean().backward()  # a loss of the usual scale (fp16 has no GradScaler here)
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters() if p.grad is not None)
