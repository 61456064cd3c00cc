import pytest
import torch
from helpers import batch_vector

from tg_funcattn.ops import knn_graph


def _brute_force(pos, k, sizes, loop):
    edges, s = set(), 0
    for n in sizes:
        p = pos[s:s + n].double()
        dist = torch.cdist(p, p)
        if not loop:
            dist.fill_diagonal_(float("inf"))
        kk = min(k, n if loop else n - 1)
        for i in range(n):
            for j in dist[i].argsort()[:kk].tolist():
                edges.add((s + j, s + i))
        s += n
    return edges


@pytest.mark.parametrize("backend", ["scipy", "torch"])
@pytest.mark.parametrize("loop", [False, True])
def test_matches_brute_force(backend, loop):
    sizes = [1, 3, 40, 257]
    pos = torch.rand(sum(sizes), 3)
    batch = batch_vector(sizes)
    edge_index = knn_graph(pos, 6, batch, loop=loop, backend=backend)
    assert edge_index.dtype == torch.long and edge_index.shape[0] == 2
    assert set(map(tuple, edge_index.t().tolist())) == _brute_force(pos, 6, sizes, loop)
    # no edge crosses graphs
    assert torch.equal(batch[edge_index[0]], batch[edge_index[1]])


def test_duplicate_points_keep_k_neighbours_and_no_self_loops():
    pos = torch.zeros(10, 3)  # all points equal: every other point is a nearest neighbour
    edge_index = knn_graph(pos, 4, backend="scipy")
    assert edge_index.shape[1] == 40
    assert not torch.any(edge_index[0] == edge_index[1])


def test_bad_input():
    with pytest.raises(ValueError, match="'pos' contains"):
        knn_graph(torch.tensor([[0.0, float("nan"), 0.0]]), 2)
    with pytest.raises(ValueError, match="'k' must be a positive int"):
        knn_graph(torch.rand(5, 3), 0)
    with pytest.raises(ValueError, match="'batch' must be sorted"):
        knn_graph(torch.rand(4, 3), 2, torch.tensor([1, 0, 1, 0]))
    with pytest.raises(ValueError, match="'backend' must be"):
        knn_graph(torch.rand(4, 3), 2, backend="faiss")
