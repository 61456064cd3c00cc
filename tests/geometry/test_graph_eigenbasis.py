"""The normalised Laplacian's eigenbasis of graphs without positions, against
SciPy's dense generalised eigensolver and PyG's AddLaplacianEigenvectorPE."""
import numpy as np
import pytest
import scipy.linalg as la
import torch
from torch_geometric.data import Data
from torch_geometric.transforms import AddLaplacianEigenvectorPE

from tg_funcattn.geometry import graph_eigenbasis
from tg_funcattn.transforms import LaplacianEigenbasis


def random_graph(num_nodes=24, extra=10, seed=0):
    """A connected random graph (a random tree and ``extra`` chords), both
    directions listed."""
    gen = np.random.default_rng(seed)
    pairs = {(int(gen.integers(0, i)), i) for i in range(1, num_nodes)}
    while len(pairs) < num_nodes - 1 + extra:  # no edge twice (PyG would add up its weights)
        a, b = sorted(int(v) for v in gen.choice(num_nodes, 2, replace=False))
        pairs.add((a, b))
    src, dst = np.array(sorted(pairs)).T
    return np.stack([np.concatenate([src, dst]), np.concatenate([dst, src])])


def dense_laplacian(edge_index, num_nodes):
    adjacency = np.zeros((num_nodes, num_nodes))
    adjacency[edge_index[0], edge_index[1]] = 1.0
    np.fill_diagonal(adjacency, 0.0)
    return np.diag(adjacency.sum(1)) - adjacency, adjacency.sum(1)


def test_graph_eigenbasis_solves_the_random_walk_laplacian():
    edges = random_graph()
    result = graph_eigenbasis(edges, 24, 8)
    L, degree = dense_laplacian(edges, 24)
    expected = la.eigh(L, np.diag(degree), eigvals_only=True)[:8]
    np.testing.assert_allclose(result.evals, expected, atol=1e-10)
    np.testing.assert_allclose(result.mass, degree)
    np.testing.assert_allclose(result.evecs.T @ (degree[:, None] * result.evecs), np.eye(8),
                               atol=1e-10)
    np.testing.assert_allclose(L @ result.evecs, degree[:, None] * result.evecs * result.evals,
                               atol=1e-10)
    assert np.ptp(result.evecs[:, 0]) < 1e-10  # constant on a connected graph
    assert 0 <= result.evals.min() and result.evals.max() <= 2


def test_graph_eigenbasis_spans_pygs_laplacian_pe():
    """PyG's eigenvectors of the symmetric normalised Laplacian (without the
    trivial first one) are D^{1/2} times these, up to sign."""
    edges = random_graph(seed=1)
    result = graph_eigenbasis(edges, 24, 7)
    data = AddLaplacianEigenvectorPE(6, attr_name="pe", is_undirected=True)(
        Data(edge_index=torch.from_numpy(edges), num_nodes=24))
    ours = np.sqrt(result.mass)[:, None] * result.evecs[:, 1:]
    overlap = np.abs(ours.T @ data.pe.double().numpy())  # orthonormal columns both
    np.testing.assert_allclose(overlap, np.eye(6), atol=1e-4)


def test_graph_eigenbasis_isolated_nodes_and_bad_edges():
    edges = np.array([[0, 1, 1, 2], [1, 0, 2, 1]])  # node 3 is isolated
    result = graph_eigenbasis(edges, 4, 3)
    np.testing.assert_allclose(result.evals[:2], 0.0, atol=1e-12)  # one zero per component
    assert result.mass[3] == 1.0
    with pytest.raises(ValueError, match="holds node 7 but the graph has 4 nodes"):
        graph_eigenbasis(np.array([[0, 7], [7, 0]]), 4, 2)
    with pytest.raises(ValueError, match=r"'edge_index' must have shape \[2, E\]"):
        graph_eigenbasis(np.zeros((3, 2), dtype=np.int64), 4, 2)
    with pytest.raises(ValueError, match="only 4 vertices"):
        graph_eigenbasis(edges, 4, 5)


def test_transform_on_graphs_without_positions():
    data = Data(edge_index=torch.from_numpy(random_graph()), num_nodes=24)
    out = LaplacianEigenbasis(8, method="graph")(data)
    assert out.evecs.shape == (24, 8) and out.evals.shape == (1, 8) and out.mass.shape == (24,)
    assert out.evecs.dtype == torch.float32 and "pos" not in out
    with pytest.raises(ValueError, match="needs 'data.pos'.*method='graph'"):
        LaplacianEigenbasis(8)(Data(edge_index=data.edge_index, num_nodes=24))
    with pytest.raises(ValueError, match="needs 'data.edge_index'"):
        LaplacianEigenbasis(8, method="graph")(Data(num_nodes=24))
    with pytest.raises(ValueError, match="'cache_dir'"):
        LaplacianEigenbasis(8, cache_dir="somewhere", method="graph")
