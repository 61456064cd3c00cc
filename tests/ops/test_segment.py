"""The segment products ``segment_matmul_tn`` / ``segment_matmul_nn`` against a
per-graph loop; autograd and torch.library checks; argument errors."""
import pytest
import torch
from helpers import ptr_of

from tg_funcattn.ops import segment_backend, segment_matmul_nn, segment_matmul_tn


def _reference_tn(a, b, sizes):
    out, s = [], 0
    for n in sizes:
        out.append(torch.stack([a[h, s:s + n].T @ b[h, s:s + n] for h in range(a.shape[0])]))
        s += n
    return torch.stack(out)


def _reference_nn(a, c, sizes):
    out, s = [], 0
    for g, n in enumerate(sizes):
        out.append(torch.stack([a[h, s:s + n] @ c[g, h] for h in range(a.shape[0])]))
        s += n
    return torch.cat(out, dim=1)


@pytest.mark.parametrize("backend", ["bmm", "reference"])
@pytest.mark.parametrize("sizes", [[17], [1, 7, 30, 2], [0, 5, 0, 3]])
def test_forward_matches_per_graph_loop(sizes, backend):
    n = sum(sizes)
    a = torch.randn(3, n, 4, dtype=torch.float64)
    b = torch.randn(3, n, 5, dtype=torch.float64)
    c = torch.randn(len(sizes), 3, 4, 6, dtype=torch.float64)
    ptr = ptr_of(sizes)
    with segment_backend(backend):
        torch.testing.assert_close(segment_matmul_tn(a, b, ptr), _reference_tn(a, b, sizes))
        torch.testing.assert_close(segment_matmul_nn(a, c, ptr), _reference_nn(a, c, sizes))


def test_strided_and_broadcast_inputs():
    sizes = [4, 9]
    ptr = ptr_of(sizes)
    base = torch.randn(13, 3, 4, dtype=torch.float64)
    a = base.transpose(0, 1)  # a non-contiguous [H, N, p] view
    shared = torch.randn(1, 13, 4, dtype=torch.float64).expand(3, 13, 4)  # stride 0 over heads
    b = torch.randn(3, 13, 2, dtype=torch.float64)
    torch.testing.assert_close(segment_matmul_tn(a, b, ptr), _reference_tn(a.contiguous(), b, sizes))
    torch.testing.assert_close(segment_matmul_tn(shared, b, ptr),
                               _reference_tn(shared.contiguous(), b, sizes))
    c = torch.randn(2, 3, 2, 4, dtype=torch.float64).transpose(-1, -2)
    torch.testing.assert_close(segment_matmul_nn(a, c, ptr), _reference_nn(a.contiguous(), c, sizes))


def test_gradcheck_and_gradgradcheck():
    sizes = [2, 5, 1]
    ptr = ptr_of(sizes)
    a = torch.randn(2, 8, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 8, 4, dtype=torch.float64, requires_grad=True)
    c = torch.randn(3, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: segment_matmul_tn(a, b, ptr), (a, b))
    assert torch.autograd.gradcheck(lambda a, c: segment_matmul_nn(a, c, ptr), (a, c))
    assert torch.autograd.gradgradcheck(lambda a, b: segment_matmul_tn(a, b, ptr), (a, b))
    assert torch.autograd.gradgradcheck(lambda a, c: segment_matmul_nn(a, c, ptr), (a, c))


def test_opcheck():
    """torch.library's own consistency checks (fake tensor, autograd registration)."""
    ptr = ptr_of([3, 4])
    a = torch.randn(2, 7, 3, requires_grad=True)
    b = torch.randn(2, 7, 5, requires_grad=True)
    c = torch.randn(2, 2, 3, 5, requires_grad=True)
    torch.library.opcheck(segment_matmul_tn, (a, b, ptr))
    torch.library.opcheck(segment_matmul_nn, (a, c, ptr))


def test_bad_arguments():
    a = torch.randn(2, 7, 3)
    with pytest.raises(ValueError, match="'ptr' must be a 1-D int64"):
        segment_matmul_tn(a, a, torch.tensor([0.0, 7.0]))
    with pytest.raises(ValueError, match="'b' must be \\[H, N, q\\]"):
        segment_matmul_tn(a, torch.randn(2, 6, 3), torch.tensor([0, 7]))
    with pytest.raises(ValueError, match="'c' must be \\[B, H, p, q\\]"):
        segment_matmul_nn(a, torch.randn(2, 2, 3, 4), torch.tensor([0, 7]))
    with pytest.raises(TypeError, match="dtypes differ"):
        segment_matmul_tn(a, a.double(), torch.tensor([0, 7]))
