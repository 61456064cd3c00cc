"""The neighbour searches of the benchmark peers (``benchmarks/peers.py``: PyG 2.8
takes them from pyg-lib, which is not on PyPI), against SciPy and a plain loop."""
import sys

import numpy as np
import torch
from helpers import ROOT
from scipy.spatial import cKDTree

sys.path.insert(0, str(ROOT / "benchmarks"))
import peers  # noqa: E402  (needs only torch and torch_geometric: an import error is a failure, not a skip)


def _clouds(batch_size=3, points=200, seed=0):
    return torch.rand(batch_size * points, 3, generator=torch.Generator().manual_seed(seed),
                      dtype=torch.float64)


def test_knn_dense_matches_kdtree():
    pos = _clouds()
    idx, d = peers.knn_dense(pos, pos, 5, 3, exclude_self=True)
    for b, cloud in enumerate(pos.view(3, 200, 3).numpy()):
        dist, expected = cKDTree(cloud).query(cloud, k=6)  # the first is the point itself
        assert np.array_equal(idx[b].numpy(), expected[:, 1:])
        assert np.allclose(d[b].numpy(), dist[:, 1:] ** 2)


def test_farthest_point_sampling_matches_a_loop():
    pos = _clouds(2, 50, seed=1)
    chosen = peers.farthest_point_sampling(pos, 0.2, 2)
    for b, cloud in enumerate(pos.view(2, 50, 3).numpy()):
        picked = [0]
        while len(picked) < 10:
            gap = np.min(((cloud[:, None] - cloud[picked][None]) ** 2).sum(-1), axis=1)
            picked.append(int(gap.argmax()))
        assert chosen.view(2, 10)[b].tolist() == [i + 50 * b for i in picked]


def test_radius_dense_and_flat_edges():
    pos = _clouds(2, 100, seed=2)
    centres = pos.view(2, 100, 3)[:, :7].reshape(-1, 3)
    nbr = peers.radius_dense(pos, centres, 0.3, 2, max_neighbours=16)
    edges = peers._flat_edges(nbr, 100)
    for b in range(2):
        cloud = pos.view(2, 100, 3)[b].numpy()
        for c in range(7):
            dist = np.linalg.norm(cloud - cloud[c], axis=1)
            inside = np.flatnonzero(dist <= 0.3)
            expected = inside[np.argsort(dist[inside])][:16]
            got = edges[0][edges[1] == b * 7 + c] - 100 * b
            assert sorted(got.tolist()) == sorted(expected.tolist())
