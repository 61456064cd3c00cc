import logging

import numpy as np
import pytest
import scipy.sparse.linalg as sla
from helpers import icosphere, requires

from tg_funcattn.geometry import clean_mesh, eigenbasis, face_areas, laplacian, mesh_eigenbasis
from tg_funcattn.geometry import eigen as eigen_module

pytestmark = requires("potpourri3d", "robust_laplacian", "trimesh")

SPHERE = np.array([0.0] + [2.0] * 3 + [6.0] * 5 + [12.0] * 7)  # l(l+1), multiplicity 2l+1


def rectangle(a, b, nx, ny, jitter=0.0, seed=0):
    xs, ys = np.meshgrid(np.linspace(0, a, nx), np.linspace(0, b, ny), indexing="ij")
    pos = np.stack([xs.ravel(), ys.ravel(), np.zeros(nx * ny)], 1)
    if jitter:
        inner = (xs.ravel() > 0) & (xs.ravel() < a) & (ys.ravel() > 0) & (ys.ravel() < b)
        pos[inner, :2] += jitter * np.random.default_rng(seed).uniform(-1, 1, (inner.sum(), 2)) \
            * np.array([a / (nx - 1), b / (ny - 1)])
    i, j = np.meshgrid(np.arange(nx - 1), np.arange(ny - 1), indexing="ij")
    v00, v10, v01, v11 = i * ny + j, (i + 1) * ny + j, i * ny + j + 1, (i + 1) * ny + j + 1
    faces = np.concatenate([np.stack([v00, v10, v11], -1).reshape(-1, 3),
                            np.stack([v00, v11, v01], -1).reshape(-1, 3)])
    return pos, faces.T


def rel_error(evals, exact):
    return np.abs(evals[1:] - exact[1:]) / exact[1:]


def residual(L, mass, evals, evecs):
    r = L @ evecs - mass[:, None] * evecs * evals
    return np.linalg.norm(r, axis=0) / np.maximum(np.linalg.norm(L @ evecs, axis=0), 1e-12)


@pytest.mark.parametrize("method", ["cotan", "robust"])
def test_sphere_spectrum_converges(method):
    errors = []
    for level in (2, 3, 4, 5):
        pos, face = icosphere(level)
        result = mesh_eigenbasis(pos, face, 16, method=method)
        assert result.evals[0] < 1e-8
        errors.append(rel_error(result.evals, SPHERE).max())
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.02, errors  # the finest level (10242 vertices): within 2%


def test_sphere_spectrum_from_point_clouds():
    pos, _ = icosphere(5)
    errors = {}
    # the mesh vertices without connectivity, and jittered by 10% of the spacing
    rng = np.random.default_rng(0)
    spacing = np.sqrt(4 * np.pi / len(pos))
    jittered = pos + 0.1 * spacing * rng.standard_normal(pos.shape)
    jittered /= np.linalg.norm(jittered, axis=1, keepdims=True)
    for name, cloud in (("vertices", pos), ("jittered", jittered)):
        result = mesh_eigenbasis(cloud, None, 16)
        errors[name] = rel_error(result.evals, SPHERE).max()
        np.testing.assert_allclose(result.mass.sum(), 4 * np.pi, rtol=0.01)
    assert max(errors.values()) < 0.02, errors
    # i.i.d. uniform samples: the local-triangulation Laplacian is biased upwards by
    # about 5% (documented); it must not be worse than that
    iid = rng.standard_normal((10000, 3))
    iid /= np.linalg.norm(iid, axis=1, keepdims=True)
    result = mesh_eigenbasis(iid, None, 16)
    assert rel_error(result.evals, SPHERE).max() < 0.07
    np.testing.assert_allclose(result.mass.sum(), 4 * np.pi, rtol=0.01)


def test_large_point_cloud_keeps_its_area():
    """robust_laplacian.point_cloud_laplacian 1.1 loses ~45% of the area here."""
    rng = np.random.default_rng(1)
    cloud = rng.standard_normal((40000, 3))
    cloud /= np.linalg.norm(cloud, axis=1, keepdims=True)
    _, mass = laplacian(cloud)
    np.testing.assert_allclose(mass.sum(), 4 * np.pi, rtol=0.01)


@pytest.mark.parametrize("jitter", [0.0, 0.3])
def test_rectangle_neumann_spectrum(jitter):
    a, b = 2.0, 1.0
    pos, face = rectangle(a, b, 81, 41, jitter=jitter)
    result = mesh_eigenbasis(pos, face, 8)
    m, n = np.meshgrid(np.arange(6), np.arange(6))
    exact = np.sort((np.pi ** 2 * (m ** 2 / a ** 2 + n ** 2 / b ** 2)).ravel())[:8]
    assert result.evals[0] < 1e-8
    assert rel_error(result.evals, exact).max() < 0.01


def test_eigenbasis_is_mass_orthonormal_and_solves_the_problem():
    pos, face = icosphere(4)
    L, mass = laplacian(pos, face)
    for dense_max in (0, 10 ** 6):  # the sparse shift-invert path and the dense path
        evals, evecs = eigenbasis(L, mass, 24, dense_max=dense_max)
        assert np.abs(evecs.T @ (mass[:, None] * evecs) - np.eye(24)).max() < 1e-6
        assert np.all(np.diff(evals) >= 0) and 0.0 <= evals[0] < 1e-10
        assert residual(L, mass, evals[1:], evecs[:, 1:]).max() < 1e-6
    sparse, _ = eigenbasis(L, mass, 24, dense_max=0)
    dense, _ = eigenbasis(L, mass, 24, dense_max=10 ** 6)
    np.testing.assert_allclose(sparse, dense, atol=1e-8)


def test_eigenbasis_is_deterministic_with_a_sign_convention():
    pos, face = icosphere(4)
    L, mass = laplacian(pos, face)
    a = eigenbasis(L, mass, 10, dense_max=0)
    b = eigenbasis(L, mass, 10, dense_max=0)
    np.testing.assert_array_equal(a[1], b[1])
    peak = np.abs(a[1]).argmax(0)
    assert np.all(a[1][peak, np.arange(10)] > 0)


def test_eigsh_failure_is_retried_with_a_larger_shift(monkeypatch, caplog):
    pos, face = icosphere(4)
    L, mass = laplacian(pos, face)
    real, shifts = sla.eigsh, []

    def flaky(*args, **kwargs):
        shifts.append(kwargs["sigma"])
        if len(shifts) < 3:
            raise sla.ArpackNoConvergence("no convergence", np.zeros(0), np.zeros((0, 0)))
        return real(*args, **kwargs)

    monkeypatch.setattr(eigen_module.sla, "eigsh", flaky)
    with caplog.at_level(logging.WARNING):
        evals, _ = eigenbasis(L, mass, 8, dense_max=0)
    assert len(shifts) == 3 and shifts[0] < 0 and shifts[2] == pytest.approx(100 * shifts[0])
    assert "retrying with a larger shift" in caplog.text
    assert evals[0] < 1e-8

    monkeypatch.setattr(eigen_module.sla, "eigsh", lambda *a, **k: (_ for _ in ()).throw(
        sla.ArpackNoConvergence("never", np.zeros(0), np.zeros((0, 0)))))
    with pytest.raises(RuntimeError, match="the eigensolver failed 3 times"):
        eigenbasis(L, mass, 8, dense_max=0, max_tries=3)


def test_disjoint_spheres_have_one_zero_eigenvalue_each():
    pos, face = icosphere(3)
    parts_pos = np.concatenate([pos + [3.0 * i, 0, 0] for i in range(3)])
    parts_face = np.concatenate([face + len(pos) * i for i in range(3)], axis=1)
    for cloud_face in (parts_face, None):
        result = mesh_eigenbasis(parts_pos, cloud_face, 6)
        assert np.all(result.evals[:3] < 1e-8), result.evals
        assert result.evals[3] > 1.5, result.evals  # then l=1 of the spheres (~2)


def messy_sphere():
    """An icosphere with every kind of mess, and the clean sphere it equals."""
    pos, face = icosphere(3)
    n = len(pos)
    extra = np.concatenate([pos[:20],  # duplicates of vertices 0..19
                            [[5.0, 5.0, 5.0]],  # unreferenced vertex
                            ])
    face = face.copy()
    # let some faces use the duplicate copies instead of the originals
    for dup in range(20):
        uses = np.nonzero((face == dup).any(0))[0][:2]
        face[:, uses] = np.where(face[:, uses] == dup, n + dup, face[:, uses])
    junk = np.array([[0, 0, 1],  # repeated corner
                     [0, n, 1],  # zero area once duplicates are merged
                     face[:, 5],  # a duplicate face
                     ]).T
    return np.concatenate([pos, extra]), np.concatenate([face, junk], axis=1), icosphere(3)


def test_messy_mesh_equals_its_clean_version():
    pos, face, (clean_pos, clean_face) = messy_sphere()
    cleaned = clean_mesh(pos, face)
    assert cleaned.removed == {"merged_vertices": 20, "sliver_faces": 2,
                               "duplicate_faces": 1, "unreferenced_vertices": 1}
    messy = mesh_eigenbasis(pos, face, 12)
    clean = mesh_eigenbasis(clean_pos, clean_face, 12)
    np.testing.assert_allclose(messy.evals, clean.evals, atol=1e-9)
    n = len(clean_pos)
    # duplicates carry the same values as their originals, and split the mass
    np.testing.assert_allclose(messy.evecs[n:n + 20], messy.evecs[:20])
    np.testing.assert_allclose(messy.mass[:20] + messy.mass[n:n + 20], clean.mass[:20])
    assert np.all(np.isfinite(messy.evecs)) and np.all(messy.mass > 0)
    assert messy.mass[-1] < 1e-6 * messy.mass.mean()  # the unreferenced vertex weighs nothing
    gram = messy.evecs.T @ (messy.mass[:, None] * messy.evecs)
    assert np.abs(gram - np.eye(12)).max() < 1e-6


@pytest.mark.parametrize("method", ["cotan", "robust"])
def test_nonmanifold_and_degenerate_meshes_give_a_valid_eigenbasis(method):
    """Two fins on one edge (non-manifold) and a needle of 1e-9 width: the
    eigenpairs are finite and mass-orthonormal, the surface stays one
    component (one zero eigenvalue), the mass is its area with the fins, and
    the needle changes no eigenvalue (the same mesh without it)."""
    pos, face = icosphere(2)
    n = len(pos)
    fin = np.array([[face[0, 0], face[1, 0], n], [face[0, 0], face[1, 0], n + 1]]).T
    sliver = np.array([[0], [n + 2], [n + 3]])  # a needle of 1e-9 width
    pos = np.concatenate([pos, [[2.0, 0, 0], [0, 2.0, 0]],
                          pos[:1] + [[1e-9, 0, 0], [0.5, 0, 1e-9]]])
    with_fins = np.concatenate([face, fin], axis=1)
    result = mesh_eigenbasis(pos, np.concatenate([with_fins, sliver], axis=1), 10, method=method)
    assert np.all(np.isfinite(result.evals)) and np.all(np.isfinite(result.evecs))
    assert np.all(result.mass > 0)
    gram = result.evecs.T @ (result.mass[:, None] * result.evecs)
    assert np.abs(gram - np.eye(10)).max() < 1e-6
    assert result.evals[0] < 1e-8 and result.evals[1] > 0.1, result.evals
    np.testing.assert_allclose(result.mass.sum(), face_areas(pos, with_fins.T).sum(), rtol=1e-8)
    without_needle = mesh_eigenbasis(pos[:n + 2], with_fins, 10, method=method)
    np.testing.assert_allclose(result.evals, without_needle.evals, atol=1e-8)


def test_face_areas_of_arrays_and_tensors():
    import torch

    pos = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [2, 0, 0], [1.75, 1, 0], [0, 0, 2]], float)
    face = np.array([[0, 1, 2], [1, 3, 4], [1, 4, 2], [0, 1, 5], [0, 3, 1]])
    expected = [0.5, 0.5, 0.375, 1.0, 0.0]
    assert np.allclose(face_areas(pos, face), expected, rtol=0, atol=1e-15)
    areas = face_areas(torch.tensor(pos, dtype=torch.float32), torch.tensor(face))
    assert areas.dtype == torch.float32 and torch.allclose(areas, torch.tensor(expected))


def test_bad_geometry_raises_clear_errors():
    pos, face = icosphere(1)
    with pytest.raises(ValueError, match="'pos' has 1 vertices with NaN"):
        bad = pos.copy()
        bad[3, 1] = np.nan
        mesh_eigenbasis(bad, face, 4)
    with pytest.raises(ValueError, match="'face' refers to vertex 42, but there are only 42"):
        bad_face = face.copy()
        bad_face[0, 0] = 42
        laplacian(pos, bad_face)
    with pytest.raises(ValueError, match=r"'face' must have shape \[3, num_faces\]"):
        laplacian(pos, face.T)
    with pytest.raises(TypeError, match="'face' must be an integer array"):
        laplacian(pos, face.astype(float))
    with pytest.raises(ValueError, match="'num_eigenpairs' = 50 .* only 42 valid vertices"):
        mesh_eigenbasis(pos, face, 50)
    with pytest.raises(ValueError, match="none of the 2 triangles has three distinct corners"):
        mesh_eigenbasis(pos, np.array([[0, 0], [1, 0], [1, 2]]), 2)
    with pytest.raises(ValueError, match="needs at least 32"):
        laplacian(pos[:20])
    L, mass = laplacian(pos, face)
    with pytest.raises(ValueError, match="'num_eigenpairs' = 43 eigenpairs requested but the "
                                         "geometry has only 42"):
        eigenbasis(L, mass, 43)
    mass[5] = 0.0
    with pytest.raises(ValueError, match="'mass' must be finite and positive; 1 vertices"):
        eigenbasis(L, mass, 4)
    with pytest.raises(ValueError, match="'method' must be one of"):
        laplacian(pos, face, method="fem")


def test_num_eigenpairs_by_position_or_keyword_and_unknown_keywords_are_errors():
    pos, face = icosphere(1)
    L, mass = laplacian(pos, face)
    expected = eigenbasis(L, mass, 5)
    assert np.array_equal(eigenbasis(L, mass, num_eigenpairs=5)[0], expected[0])
    assert mesh_eigenbasis(pos, face, 6).evals.shape == (6,)
    with pytest.raises(TypeError, match="unexpected keyword argument 'k'"):
        mesh_eigenbasis(pos, face, k=6)
    with pytest.raises(TypeError, match="unexpected keyword argument 'num_eigenpair'"):
        eigenbasis(L, mass, num_eigenpair=5)
    with pytest.raises(TypeError, match="unexpected keyword argument 'methd'"):
        mesh_eigenbasis(pos, face, 6, methd="robust")


def sphere_with_flap(distance, scale=1.0):
    """An icosphere (level 2) of radius ``scale`` plus one triangle on vertex 0, a
    neighbour, and a new corner ``distance`` (relative to the bounding-box
    diagonal) from vertex 0, off the surface."""
    pos, face = icosphere(2)
    pos = pos * scale
    neighbour = int(face[:, (face == 0).any(0)][face[:, (face == 0).any(0)] != 0][0])
    direction = np.array([0.36, -0.48, 0.8])
    diag = np.linalg.norm(pos.max(0) - pos.min(0))
    corner = pos[0] + distance * diag * direction
    return (np.concatenate([pos, corner[None]]),
            np.concatenate([face, [[0], [neighbour], [len(pos)]]], axis=1), (pos, face))


@pytest.mark.parametrize("scale, method", [(1.0, "cotan"), (1e4, "cotan"), (1.0, "robust")])
def test_near_duplicate_corner_is_merged_relative_to_the_mesh_size(scale, method):
    """A corner 4e-10 of the diagonal from a vertex once turned the sphere's
    eigenvalues [0, 2, 2, 2, 5.9, ...] into zeros with an orthonormal-looking
    basis (all zeros with method='robust'); merged, the flap collapses and
    the sphere's spectrum is back."""
    pos, face, (sphere_pos, sphere_face) = sphere_with_flap(4e-10, scale)
    cleaned = clean_mesh(pos, face)
    assert cleaned.index[-1] == 0 and cleaned.removed["merged_vertices"] == 1
    assert cleaned.removed["sliver_faces"] == 1
    result = mesh_eigenbasis(pos, face, 8, method=method)
    reference = mesh_eigenbasis(sphere_pos, sphere_face, 8, method=method)
    np.testing.assert_allclose(result.evals, reference.evals, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result.evecs[-1], result.evecs[0])  # one vertex now
    assert clean_mesh(pos, face, tolerance=0).removed["merged_vertices"] == 0


def test_vertices_beyond_the_tolerance_stay_apart():
    pos, face, _ = sphere_with_flap(1e-5)
    assert clean_mesh(pos, face).removed == {"merged_vertices": 0, "sliver_faces": 0,
                                             "duplicate_faces": 0, "unreferenced_vertices": 0}
    assert clean_mesh(pos, face, tolerance=2e-5).removed["merged_vertices"] == 1


@pytest.mark.parametrize("distance", [4e-10, 4e-8])
def test_ill_conditioned_spectrum_raises_instead_of_returning_zeros(distance):
    """Without merging (tolerance 0) the flap's weights of order 1/distance^2
    drown the small eigenvalues in round-off: the residual check refuses
    what was returned silently (zeros at 4e-10, 1.2% off at 4e-8)."""
    pos, face, _ = sphere_with_flap(distance)
    with pytest.raises(ValueError, match="the eigenpairs are not accurate: the residual .* larger "
                                         "'tolerance'"):
        mesh_eigenbasis(pos, face, 8, tolerance=0)


def test_thin_cap_triangle_is_dropped_as_a_sliver():
    """A triangle on an edge of the sphere whose third corner is 1e-8 of the
    diagonal off the edge's midpoint (all corners far apart): too thin, dropped."""
    pos, face = icosphere(2)
    a, b = face[0, 0], face[1, 0]
    mid = (pos[a] + pos[b]) / 2
    corner = mid + 1e-8 * 2 * np.sqrt(3) * mid / np.linalg.norm(mid)
    capped = np.concatenate([face, [[a], [b], [len(pos)]]], axis=1)
    cap_pos = np.concatenate([pos, corner[None]])
    cleaned = clean_mesh(cap_pos, capped)
    assert cleaned.removed["sliver_faces"] == 1 and cleaned.removed["merged_vertices"] == 0
    np.testing.assert_allclose(mesh_eigenbasis(cap_pos, capped, 8).evals,
                               mesh_eigenbasis(pos, face, 8).evals, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="not accurate"):
        mesh_eigenbasis(cap_pos, capped, 8, tolerance=0)


def test_eigenbasis_refuses_operators_that_are_not_laplacians():
    pos, face = icosphere(1)
    L, mass = laplacian(pos, face)
    with pytest.raises(ValueError, match="must be positive semi-definite.*pass the Laplacian L, not -L"):
        eigenbasis(-L, mass, 4)
    indefinite = np.array([[1.0, 2.0], [2.0, 1.0]])  # eigenvalues -1 and 3, positive diagonal
    with pytest.raises(ValueError, match="not positive semi-definite: its eigenvalue -1"):
        eigenbasis(indefinite, np.ones(2), 2)
    with pytest.raises(ValueError, match="'L' must be symmetric"):
        eigenbasis(np.array([[1.0, -1.0], [0.0, 0.0]]), np.ones(2), 1)
    # connected (every entry non-zero) yet two zero eigenvalues: I - [1, v][1, v]^T / n
    n = 6
    basis = np.linalg.qr(np.stack([np.ones(n), np.arange(n) - 2.5], 1))[0]
    degenerate = np.eye(n) - basis @ basis.T
    assert np.all(np.abs(degenerate) > 1e-3)
    with pytest.raises(ValueError, match="2 eigenvalues are zero .* 1 connected component"):
        eigenbasis(degenerate, np.ones(n), 3)
    # round-off negatives of a valid Laplacian are set to 0, not refused
    evals, _ = eigenbasis(L, mass, 4)
    assert evals[0] == 0.0 or 0 < evals[0] < 1e-10


@pytest.mark.parametrize("noise", [0.0, 1e-9])
def test_collinear_point_cloud_is_refused(noise):
    t = np.linspace(0.0, 1.0, 100)
    pos = np.stack([t, 2 * t, -t], 1) + noise * np.random.default_rng(0).standard_normal((100, 3))
    with pytest.raises(ValueError, match="'pos': the 100 points lie on one line"):
        mesh_eigenbasis(pos, None, 4)


def test_flat_point_cloud_is_a_surface_with_the_square_spectrum():
    """Coplanar points are a flat surface, not a degenerate cloud: the unit
    square's Neumann eigenvalues pi^2 (m^2 + n^2)."""
    pos, _ = rectangle(1.0, 1.0, 40, 40, jitter=0.2)  # jittered: a grid is co-circular
    result = mesh_eigenbasis(pos, None, 6)
    exact = np.pi ** 2 * np.array([0, 1, 1, 2, 4, 4])
    assert result.evals[0] < 1e-8
    assert rel_error(result.evals, exact).max() < 0.03, result.evals


def test_tolerance_must_be_a_fraction():
    pos, face = icosphere(1)
    for bad in (-1e-6, 1.0, float("nan"), True, "1e-6"):
        for call in (lambda: clean_mesh(pos, face, tolerance=bad),
                     lambda: laplacian(pos, face, tolerance=bad),
                     lambda: mesh_eigenbasis(pos, None, 4, tolerance=bad)):
            with pytest.raises(ValueError, match="'tolerance' must be a finite number >= 0 and < 1"):
                call()


def test_mesh_mass_is_the_eigenbasis_mass_without_an_eigensolve(monkeypatch):
    from tg_funcattn.geometry import mesh_mass

    pos, face, _ = messy_sphere()  # merged duplicates split their mass, unused vertex ~0
    expected = mesh_eigenbasis(pos, face, 4).mass
    monkeypatch.setattr(eigen_module, "eigenbasis", lambda *a, **k: pytest.fail("eigensolve"))
    np.testing.assert_array_equal(mesh_mass(pos, face), expected)
    sphere_pos, sphere_face = icosphere(3)  # the area, up to the unused vertex's 1e-8 share
    np.testing.assert_allclose(mesh_mass(pos, face).sum(),
                               face_areas(sphere_pos, sphere_face.T).sum(), rtol=1e-9)
