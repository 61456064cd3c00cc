"""The synthetic shapes of ``tg_funcattn.datasets.shapes``."""
import numpy as np
import pytest

from tg_funcattn.datasets import shapes as S
from tg_funcattn.datasets.shapes import CATEGORIES, CATEGORY_PARTS, sample_shape


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


def test_sampled_shapes_are_deterministic_and_labelled_per_category():
    for name in CATEGORIES:
        a = sample_shape(name, 300, np.random.default_rng(3))
        b = sample_shape(name, 300, np.random.default_rng(3))
        c = sample_shape(name, 300, np.random.default_rng(4))
        assert all(np.array_equal(a[k], b[k]) for k in a)
        assert not np.array_equal(a["pos"], c["pos"])
        assert a["pos"].shape == a["normal"].shape == (300, 3)
        assert set(np.unique(a["part"])) <= set(CATEGORY_PARTS[name].values())
        assert len(np.unique(a["part"])) >= 2
        np.testing.assert_allclose(np.linalg.norm(a["pos"], axis=1).max(), 1.0, rtol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(a["normal"], axis=1), 1.0, rtol=1e-5)


def test_unknown_category():
    with pytest.raises(ValueError, match="unknown category 'Chair'"):
        sample_shape("Chair", 10, np.random.default_rng(0))
