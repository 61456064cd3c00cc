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


def test_pygs_knn_graph_is_taken_where_pyg_lib_provides_it(monkeypatch):
    """With pyg-lib's search available (``WITH_KNN``) the search goes through
    PyG's ``knn_graph`` with the graph layout, and the network then makes no
    assumption about the order of its edges."""
    import torch_geometric.nn.pool
    import torch_geometric.typing

    from tg_funcattn.ops import knn as knn_module

    calls = []

    def fake(pos, k, batch=None, loop=False, flow="source_to_target", batch_size=None, **kw):
        calls.append((k, loop, flow, batch_size))
        return knn_graph(pos, k, batch, loop=loop, backend="scipy").flip(1)  # another order

    monkeypatch.setattr(torch_geometric.typing, "WITH_KNN", True)
    monkeypatch.setattr(torch_geometric.nn.pool, "knn_graph", fake)
    pos, batch = torch.rand(30, 3), torch.tensor([0] * 12 + [1] * 18)
    assert knn_module.knn_backend(pos.device) == "pyg"
    edges = knn_graph(pos, 4, batch)
    assert calls == [(4, False, "source_to_target", 2)]
    assert torch.equal(edges, knn_graph(pos, 4, batch, backend="scipy").flip(1))

    from tg_funcattn.nn import FuncAttnNet
    net = FuncAttnNet(0, 16, 2, num_layers=1, heads=2, num_bases=4, local="edgeconv", k=4).eval()
    out = net(None, pos, batch)
    monkeypatch.setattr(torch_geometric.typing, "WITH_KNN", False)
    torch.testing.assert_close(out, net(None, pos, batch))  # the scatter path, the same values
