import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tg_funcattn.datasets import CATEGORY_PARTS, NUM_PARTS, generate_part_shapes, sample_shape
from tg_funcattn.datasets import shapes as S

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_primitives_lie_on_their_surfaces_with_correct_normals():
    rng = np.random.default_rng(0)
    a, b, c = 0.5, 0.3, 0.2
    p, n = S._ellipsoid(0, [0, 0, 0], [a, b, c]).sampler(500, rng)
    np.testing.assert_allclose((p ** 2 / np.array([a, b, c]) ** 2).sum(1), 1, atol=1e-12)
    grad = p / np.array([a, b, c]) ** 2
    np.testing.assert_allclose(n, grad / np.linalg.norm(grad, axis=1, keepdims=True), atol=1e-12)

    p, n = S._frustum(0, [0, 0, 0], [0, 0, 1], 2.0, 0.5, 0.25, caps=(False, False)).sampler(500, rng)
    np.testing.assert_allclose(np.hypot(p[:, 0], p[:, 1]), 0.5 - 0.125 * p[:, 2], atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1, atol=1e-12)
    # outward: the normal points away from the axis and up (the cone narrows upwards)
    assert np.all((n[:, :2] * p[:, :2]).sum(1) > 0) and np.all(n[:, 2] > 0)

    p, n = S._torus_arc(0, [0, 0, 0], 1.0, 0.1, (0, np.pi), [1.0, 0, 0], [0, 1.0, 0]).sampler(500, rng)
    ring = p - 0.1 * n
    np.testing.assert_allclose(np.hypot(ring[:, 0], ring[:, 1]), 1.0, atol=1e-12)
    assert np.all(ring[:, 1] >= -1e-12)  # the half arc


def test_box_faces_are_sampled_by_area():
    rng = np.random.default_rng(1)
    size = np.array([1.0, 2.0, 4.0])
    p, n = S._box(0, [0, 0, 0], size).sampler(60000, rng)
    face_axis = np.argmax(np.abs(n), 1)
    np.testing.assert_allclose(np.abs(p[np.arange(len(p)), face_axis]), size[face_axis] / 2)
    areas = np.array([size[1] * size[2], size[0] * size[2], size[0] * size[1]])
    fraction = np.bincount(face_axis, minlength=3) / len(p)
    np.testing.assert_allclose(fraction, areas / areas.sum(), atol=0.01)


def test_generated_shapes_are_deterministic_and_labelled_per_category():
    a = generate_part_shapes(8, 256, seed=3)
    b = generate_part_shapes(8, 256, seed=3)
    c = generate_part_shapes(8, 256, seed=4)
    assert all(torch.equal(x.pos, y.pos) and torch.equal(x.y, y.y) for x, y in zip(a, b))
    assert not torch.equal(a[0].pos, c[0].pos)
    offsets = S.part_offsets()
    for data in a:
        name = S.CATEGORIES[int(data.category)]
        lo, hi = offsets[name], offsets[name] + len(CATEGORY_PARTS[name])
        assert data.pos.shape == (256, 3) and data.x.shape == (256, 3)
        assert data.y.min() >= lo and data.y.max() < hi
        assert len(data.y.unique()) == hi - lo  # every part is present
        torch.testing.assert_close(data.pos.norm(dim=1).max(), torch.tensor(1.0))
        torch.testing.assert_close(data.x.norm(dim=1), torch.ones(256))
    assert NUM_PARTS == 11


def test_unknown_category():
    with pytest.raises(ValueError, match="unknown category 'chair'"):
        sample_shape("chair", 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown category 'chair'"):
        generate_part_shapes(2, categories=["mug", "chair"])


@pytest.mark.slow
def test_quickstart_runs_and_reports_accuracy():
    cmd = [sys.executable, os.path.join(ROOT, "examples", "quickstart.py"), "--epochs", "2",
           "--train-shapes", "32", "--test-shapes", "8", "--points", "128", "--device", "cpu"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    losses = [float(line.split()[3]) for line in lines if line.startswith("epoch")]
    assert len(losses) == 2 and losses[1] < losses[0]
    result = json.loads(lines[-1])
    assert 0.0 <= result["test_accuracy"] <= 1.0
    assert result["epochs"] == 2
