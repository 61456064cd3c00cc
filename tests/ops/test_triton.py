"""The Triton kernels of the segment products: on the CPU through Triton's
interpreter (a subprocess with ``TRITON_INTERPRET=1``), on a GPU against cuBLAS."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import batch_vector, requires
from torch_geometric.testing import onlyCUDA

from tg_funcattn.nn import FunctionalAttention
from tg_funcattn.ops import resolve_backend, segment_backend


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


@requires("triton")
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


@onlyCUDA
@requires("triton")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_triton_layer_matches_bmm(dtype):
    """On a GPU the dispatch picks Triton for batches; it matches cuBLAS."""
    layer = FunctionalAttention(64, 4, 16).cuda()
    sizes = [3000, 17, 9000, 5000]
    batch = batch_vector(sizes).cuda()
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
