import pytest
import torch
import torch.nn.functional as F

from tg_funcattn.ops import edge
from tg_funcattn.ops.edge import knn_edge_max, knn_softmax_sum


def composed(center, neighbor, src, k, weight):
    """The same map as separate operations on the whole ``[N k, C]`` tensor."""
    pre = neighbor[src].view(center.shape[0], k, -1) + center.unsqueeze(1)
    return F.linear(F.gelu(pre), weight).amax(1)


def inputs(n=40, k=6, channels=5, out=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    center = torch.randn(n, channels, generator=g, dtype=torch.float64, requires_grad=True)
    neighbor = torch.randn(n, channels, generator=g, dtype=torch.float64, requires_grad=True)
    src = torch.randint(0, n, (n * k,), generator=g)
    weight = torch.randn(out, channels, generator=g, dtype=torch.float64, requires_grad=True)
    return center, neighbor, src, k, weight


@pytest.mark.parametrize("chunk_elements", [1, 100, 1 << 19])
def test_knn_edge_max_equals_the_composed_map_in_any_chunking(monkeypatch, chunk_elements):
    monkeypatch.setitem(edge.CHUNK_ELEMENTS, "cpu", chunk_elements)  # 1 node, some, all at once
    args = inputs()
    out = knn_edge_max(*args)
    expected = composed(*args)
    torch.testing.assert_close(out, expected)
    leaves = [args[0], args[1], args[4]]
    grad_out = torch.randn_like(out)
    for got, want in zip(torch.autograd.grad(out, leaves, grad_out),
                         torch.autograd.grad(expected, leaves, grad_out)):
        torch.testing.assert_close(got, want)


def test_knn_edge_max_gradcheck():
    center, neighbor, src, k, weight = inputs(n=9, k=3, channels=3, out=4)
    assert torch.autograd.gradcheck(lambda c, n, w: knn_edge_max(c, n, src, k, w),
                                    (center, neighbor, weight))


def test_knn_edge_max_splits_ties_evenly_like_amax():
    """Duplicate neighbours (duplicate points) give exactly equal edges: the
    gradient is split between them, as torch.amax and PyG's max aggregation do."""
    center, neighbor, src, k, weight = inputs(n=10, k=4)
    src = src.view(10, 4)
    src[:, 1] = src[:, 0]  # every node's first two edges coincide
    src = src.reshape(-1)
    out = knn_edge_max(center, neighbor, src, k, weight)
    expected = composed(center, neighbor, src, k, weight)
    leaves = [center, neighbor, weight]
    for got, want in zip(torch.autograd.grad(out.sum(), leaves),
                         torch.autograd.grad(expected.sum(), leaves)):
        torch.testing.assert_close(got, want)


def test_knn_edge_max_keeps_nothing_without_grad():
    center, neighbor, src, k, weight = inputs()
    with torch.no_grad():
        out = knn_edge_max(center, neighbor, src, k, weight)
    assert out.grad_fn is None
    torch.testing.assert_close(out, composed(center, neighbor, src, k, weight).detach())


def test_knn_edge_max_under_autocast_computes_in_the_first_layers_dtype():
    center, neighbor, src, k, weight = inputs()
    center, neighbor = center.detach().float(), neighbor.detach().float()
    weight = weight.detach().float().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        c, n = center.bfloat16(), neighbor.bfloat16()  # what the first layer gives under autocast
        out = knn_edge_max(c, n, src, k, weight)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert weight.grad.dtype == torch.float32
    torch.testing.assert_close(out.float(), composed(center, neighbor, src, k, weight),
                               atol=0.1, rtol=0.05)


def softmax_sum_composed(center, key, value, neighbors):
    weights = (center.unsqueeze(1) - key[neighbors]).softmax(1)
    return (weights * value[neighbors]).sum(1)


@pytest.mark.parametrize("chunk_elements", [1, 100, 1 << 19])
def test_knn_softmax_sum_equals_the_composed_map_in_any_chunking(monkeypatch, chunk_elements):
    monkeypatch.setitem(edge.CHUNK_ELEMENTS, "cpu", chunk_elements)
    g = torch.Generator().manual_seed(1)
    center, key, value = (torch.randn(30, 5, generator=g, dtype=torch.float64, requires_grad=True)
                          for _ in range(3))
    neighbors = torch.randint(0, 30, (30, 4), generator=g)  # repeated neighbours included
    out = knn_softmax_sum(center, key, value, neighbors)
    expected = softmax_sum_composed(center, key, value, neighbors)
    torch.testing.assert_close(out, expected)
    grad_out = torch.randn_like(out)
    leaves = [center, key, value]
    for got, want in zip(torch.autograd.grad(out, leaves, grad_out),
                         torch.autograd.grad(expected, leaves, grad_out)):
        torch.testing.assert_close(got, want)
    assert torch.autograd.gradcheck(lambda c, k, v: knn_softmax_sum(c, k, v, neighbors),
                                    (center, key, value))
