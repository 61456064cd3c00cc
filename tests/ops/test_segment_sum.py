"""``segment_sum``: the native path, the torch_scatter path, autograd."""
import pytest
import torch
from helpers import ptr_of, requires

from tg_funcattn.ops import segment_backend, segment_sum
from tg_funcattn.ops import segment as segment_module


def test_segment_sum_matches_dense_loop():
    sizes = [3, 1, 20, 7]
    src = torch.randn(sum(sizes), 5, dtype=torch.float64, requires_grad=True)
    ptr = ptr_of(sizes)
    expected = torch.stack([part.sum(0) for part in src.split(sizes)])
    torch.testing.assert_close(segment_sum(src, ptr), expected)
    torch.testing.assert_close(segment_sum(src[:, 0], ptr), expected[:, 0])
    with segment_backend("reference"):  # the native path even where torch_scatter is installed
        torch.testing.assert_close(segment_sum(src, ptr), expected)
    assert torch.autograd.gradcheck(lambda s: segment_sum(s, ptr), (src,))
    assert torch.autograd.gradcheck(lambda s: segment_sum(s[:, 0], ptr), (src,))


@requires("torch_scatter")
def test_segment_sum_torch_scatter_path(monkeypatch):
    """The torch_scatter path (taken on CUDA) forced on the CPU."""
    monkeypatch.setattr(segment_module, "_use_torch_scatter", lambda src: True)
    sizes = [3, 1, 20, 7]
    src = torch.randn(sum(sizes), 5, dtype=torch.float64)
    ptr = ptr_of(sizes)
    expected = torch.stack([part.sum(0) for part in src.split(sizes)])
    torch.testing.assert_close(segment_sum(src, ptr), expected)


@pytest.mark.slow
def test_segment_sum_compiles_without_graph_breaks():
    compiled = torch.compile(segment_sum, fullgraph=True, dynamic=True)
    for sizes in ([3, 0, 5], [6, 2, 9, 1]):
        ptr = ptr_of(sizes)
        src = torch.randn(sum(sizes), 4)
        expected = torch.stack([src[s:e].sum(0) for s, e in zip(ptr[:-1], ptr[1:])])
        torch.testing.assert_close(compiled(src, ptr), expected)
