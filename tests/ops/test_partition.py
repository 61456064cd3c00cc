import pytest
import torch

from tg_funcattn.ops import partition
from tg_funcattn.ops.partition import softmax_projection


def inputs(heads=3, n=50, d=4, k=6, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    # u as the head view of a [n, heads * d] projection, as the layer passes it
    u = torch.randn(n, heads, d, generator=g, dtype=dtype).transpose(0, 1).requires_grad_()
    weight = torch.randn(heads, d, k, generator=g, dtype=dtype, requires_grad=True)
    bias = torch.randn(heads, 1, k, generator=g, dtype=dtype, requires_grad=True)
    return u, weight, bias


def composed(u, weight, bias):
    return torch.softmax(torch.einsum("hnd,hdk->hnk", u, weight) + bias, -1)


@pytest.mark.parametrize("chunk_elements", [1, 40, 1 << 18])  # a row, a few, all
def test_softmax_projection_equals_the_composed_map_in_any_chunking(monkeypatch, chunk_elements):
    monkeypatch.setattr(partition, "CHUNKED_FROM", 0)  # the chunks, also for these small inputs
    monkeypatch.setitem(partition.CHUNK_ELEMENTS, "cpu", chunk_elements)
    u, weight, bias = inputs()
    out = softmax_projection(u, weight, bias, torch.float64)
    expected = composed(u, weight, bias)
    torch.testing.assert_close(out, expected)
    grad = torch.randn_like(out)
    for got, want in zip(torch.autograd.grad(out, [u, weight, bias], grad),
                         torch.autograd.grad(expected, [u, weight, bias], grad)):
        torch.testing.assert_close(got, want)


def test_softmax_projection_gradcheck_over_several_chunks(monkeypatch):
    monkeypatch.setattr(partition, "CHUNKED_FROM", 0)
    monkeypatch.setitem(partition.CHUNK_ELEMENTS, "cpu", 40)  # 2 rows of 6 bases per chunk
    u, weight, bias = inputs(n=7, d=2, k=6)
    assert torch.autograd.gradcheck(
        lambda u, w, b: softmax_projection(u, w, b, torch.float64), (u, weight, bias))


@pytest.mark.parametrize("chunked_from", [0, 1 << 24])
def test_softmax_projection_stores_the_requested_dtype_and_softmaxes_in_float32(
        monkeypatch, chunked_from):
    monkeypatch.setattr(partition, "CHUNKED_FROM", chunked_from)
    u, weight, bias = (t.detach().bfloat16().requires_grad_() for t in inputs())
    out = softmax_projection(u, weight, bias, torch.bfloat16)
    assert out.dtype == torch.bfloat16
    logits = (torch.einsum("hnd,hdk->hnk", u, weight) + bias).float()  # bf16 product
    torch.testing.assert_close(out.float(), torch.softmax(logits, -1), atol=1e-2, rtol=0)
    out.float().sum().backward()
    assert u.grad.dtype == weight.grad.dtype == torch.bfloat16
