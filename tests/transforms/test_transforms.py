import logging
import os

import numpy as np
import pytest
import torch
from helpers import icosphere, requires
from torch_geometric.data import Batch, Data
from tg_funcattn.geometry import eigen as eigen_module
from tg_funcattn.geometry import face_areas
from torch_geometric.transforms import (Compose, FaceToEdge, FixedPoints, NormalizeScale,
                                        RandomScale, SamplePoints)

from tg_funcattn.transforms import (CheckEigenbasis, LaplacianEigenbasis, NormalizeMesh,
                                    RandomEigenvectorSignFlip, RandomRotation, SampleMeshPoints,
                                    check_eigenbasis)

pytestmark = requires("trimesh", "potpourri3d")


def sphere_data(level=2, scale=1.0, shift=0.0):
    vertices, faces = icosphere(level)
    pos = torch.tensor(vertices * scale + shift, dtype=torch.float32)
    return Data(pos=pos, face=torch.tensor(faces, dtype=torch.long))


@pytest.fixture
def count_solves(monkeypatch):
    calls = []
    real = eigen_module.mesh_eigenbasis

    def counting(*args, **kwargs):
        calls.append(args[2] if len(args) > 2 else kwargs.get("num_eigenpairs"))
        return real(*args, **kwargs)

    monkeypatch.setattr(eigen_module, "mesh_eigenbasis", counting)
    return calls


def test_eigenbasis_attributes_batch_correctly():
    data = [LaplacianEigenbasis(8)(sphere_data(2)), LaplacianEigenbasis(8)(sphere_data(1))]
    assert data[0].evecs.shape == (162, 8) and data[0].evals.shape == (1, 8)
    assert data[0].mass.shape == (162,) and data[0].evecs.dtype == torch.float32
    batch = Batch.from_data_list(data)
    assert batch.evecs.shape == (204, 8) and batch.evals.shape == (2, 8) and batch.mass.shape == (204,)
    np.testing.assert_allclose(batch.mass[:162].sum().item(), 4 * np.pi, rtol=0.02)
    gram = data[0].evecs.double().T @ (data[0].mass.double()[:, None] * data[0].evecs.double())
    assert (gram - torch.eye(8, dtype=torch.float64)).abs().max() < 1e-5  # float32 storage


def test_float64_positions_keep_the_eigenbasis_in_float64():
    data = sphere_data(2)
    data.pos = data.pos.double()
    out = LaplacianEigenbasis(8)(data)
    assert out.evecs.dtype == out.evals.dtype == out.mass.dtype == torch.float64
    gram = out.evecs.T @ (out.mass[:, None] * out.evecs)
    assert (gram - torch.eye(8, dtype=torch.float64)).abs().max() < 1e-12


def test_eigenbasis_transform_takes_num_eigenpairs_and_the_former_k():
    transform = LaplacianEigenbasis(num_eigenpairs=6)
    assert transform.num_eigenpairs == 6
    assert repr(transform) == "LaplacianEigenbasis(num_eigenpairs=6, method='cotan', cache_dir=None)"
    with pytest.raises(ValueError, match="'num_eigenpairs' must be a positive int, got 0"):
        LaplacianEigenbasis(0)
    with pytest.raises(ValueError, match="'num_eigenpairs' must be a positive int, got None"):
        LaplacianEigenbasis(None)
    with pytest.raises(TypeError, match="unexpected keyword argument 'k'"):
        LaplacianEigenbasis(k=6)
    with pytest.raises(TypeError, match="unexpected keyword argument 'cache'"):
        LaplacianEigenbasis(6, cache="/tmp")


def test_point_cloud_without_faces():
    data = sphere_data(3)
    del data.face
    out = LaplacianEigenbasis(4)(data)
    assert out.evals[0, 0].abs() < 1e-6 and 1.9 < out.evals[0, 1] < 2.1


def test_cache_hit_performs_no_eigensolve(tmp_path, count_solves):
    transform = LaplacianEigenbasis(16, cache_dir=tmp_path)
    first = transform(sphere_data())
    second = transform(sphere_data())
    assert len(count_solves) == 1
    assert torch.equal(first.evecs, second.evecs) and torch.equal(first.mass, second.mass)
    assert torch.equal(first.evals, second.evals)
    # fewer eigenpairs are served by the stored entry; more are recomputed and stored
    assert torch.equal(LaplacianEigenbasis(8, cache_dir=tmp_path)(sphere_data()).evecs,
                       first.evecs[:, :8])
    assert len(count_solves) == 1
    LaplacianEigenbasis(24, cache_dir=tmp_path)(sphere_data())
    LaplacianEigenbasis(20, cache_dir=tmp_path)(sphere_data())
    assert count_solves == [16, 24]
    # other settings are another entry
    LaplacianEigenbasis(8, cache_dir=tmp_path, method="robust")(sphere_data())
    assert count_solves == [16, 24, 8]
    assert not list(tmp_path.rglob("*.tmp"))


def test_different_geometry_never_hits(tmp_path, count_solves):
    transform = LaplacianEigenbasis(8, cache_dir=tmp_path)
    a = sphere_data()
    b = sphere_data()
    b.pos[17, 2] = torch.nextafter(b.pos[17, 2], torch.tensor(10.0))  # one ulp
    c = sphere_data()
    c.face = c.face[:, torch.randperm(c.face.shape[1], generator=torch.Generator().manual_seed(0))]
    for data in (a, b, c):
        transform(data)
    assert len(count_solves) == 3


def test_same_key_with_another_geometry_is_not_used(tmp_path, count_solves, caplog):
    transform = LaplacianEigenbasis(8, cache_dir=tmp_path)
    a, b = sphere_data(), sphere_data(scale=2.0)
    transform(a)
    (entry,) = list(tmp_path.rglob("*.npz"))
    key_b = transform.cache.key(b.pos.numpy(), b.face.numpy().astype(np.int64), transform.config)
    target = transform.cache.path(key_b)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(entry, target)  # a's basis filed under b's key
    with caplog.at_level(logging.WARNING):
        out = transform(b)
    assert "another geometry" in caplog.text and len(count_solves) == 2
    np.testing.assert_allclose(out.mass.sum().item(), 16 * np.pi, rtol=0.02)  # b's own area


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "wrong_shape"])
def test_corrupt_entry_is_recomputed(tmp_path, count_solves, caplog, damage):
    transform = LaplacianEigenbasis(8, cache_dir=tmp_path)
    first = transform(sphere_data())
    (entry,) = list(tmp_path.rglob("*.npz"))
    raw = entry.read_bytes()
    if damage == "garbage":
        entry.write_bytes(b"not a numpy archive" * 10)
    elif damage == "truncated":
        entry.write_bytes(raw[: len(raw) // 2])
    elif damage == "empty":
        entry.write_bytes(b"")
    else:
        with np.load(entry) as z:
            fields = dict(z)
        fields["evecs"] = fields["evecs"][:10]
        np.savez(entry, **fields)
    with caplog.at_level(logging.WARNING):
        again = transform(sphere_data())
    assert len(count_solves) == 2 and "recomputing" in caplog.text
    assert torch.equal(again.evecs, first.evecs)
    count_solves.clear()
    transform(sphere_data())  # the entry was rewritten and is valid again
    assert count_solves == []


def test_interrupted_write_leaves_no_entry(tmp_path, monkeypatch, caplog):
    transform = LaplacianEigenbasis(8, cache_dir=tmp_path)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with caplog.at_level(logging.WARNING):
        out = transform(sphere_data())
    assert torch.equal(out.evecs, LaplacianEigenbasis(8)(sphere_data()).evecs)  # the result is still returned
    assert "could not write" in caplog.text
    assert not list(tmp_path.rglob("*.npz")) and not list(tmp_path.rglob("*.tmp"))


def test_sign_flip_transform():
    data = LaplacianEigenbasis(8)(sphere_data())
    flipped = RandomEigenvectorSignFlip(torch.Generator().manual_seed(3))(data.clone())
    ratio = flipped.evecs / data.evecs
    signs = ratio[0]
    assert torch.all(signs.abs() == 1) and (signs < 0).any() and (signs > 0).any()
    assert torch.allclose(ratio, signs.expand_as(ratio))
    with pytest.raises(ValueError, match="apply LaplacianEigenbasis first"):
        RandomEigenvectorSignFlip()(sphere_data())


def test_normalize_mesh():
    data = NormalizeMesh("area")(sphere_data(3, scale=3.0, shift=5.0))
    areas = face_areas(data.pos.double(), data.face.t())
    assert areas.sum().item() == pytest.approx(1.0, rel=1e-5)
    centroids = data.pos.double()[data.face].mean(0)
    assert ((areas[:, None] * centroids).sum(0).abs() < 1e-6).all()
    sphere = NormalizeMesh("sphere")(sphere_data(2, scale=3.0, shift=5.0))
    assert sphere.pos.norm(dim=1).max().item() == pytest.approx(1.0, rel=1e-6)
    cloud = Data(pos=torch.rand(50, 3))
    with pytest.raises(ValueError, match="needs 'data.face'"):
        NormalizeMesh("area")(cloud)
    assert NormalizeMesh("sphere")(cloud).pos.norm(dim=1).max().item() == pytest.approx(1.0, rel=1e-6)
    with pytest.raises(ValueError, match="apply LaplacianEigenbasis after"):
        NormalizeMesh()(LaplacianEigenbasis(4)(sphere_data()))


def _square_mesh():
    """Three planar triangles of areas 0.5, 0.5 and 0.375."""
    pos = torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [2, 0, 0], [1.75, 1, 0]],
                       dtype=torch.float32)
    face = torch.tensor([[0, 1, 2], [1, 4, 5], [1, 5, 2]]).t()
    return pos, face


def test_sample_mesh_points_masses_positions_and_attributes():
    pos, face = _square_mesh()
    vertex_label = torch.tensor([0, 1, 2, 3, 4, 5])
    face_label = torch.tensor([10, 11, 12])
    data = Data(pos=pos, face=face, y=vertex_label, x=pos.clone(), part=face_label)
    out = SampleMeshPoints(20000, face_keys=["part"], generator=torch.Generator().manual_seed(0))(data)
    areas = face_areas(pos.double(), face.t())
    assert out.pos.shape == (20000, 3) and "face" not in out
    assert out.mass.sum().item() == pytest.approx(areas.sum().item(), rel=1e-5)
    fractions = torch.bincount(out.sample_face, minlength=3).double() / 20000
    assert torch.allclose(fractions, areas / areas.sum(), atol=0.01)  # uniform by area
    assert torch.equal(out.part, face_label[out.sample_face])
    # a float vertex attribute is interpolated: here the coordinates themselves
    assert torch.allclose(out.x, out.pos, atol=1e-5)
    # an integer one takes the nearest corner's value
    corners = face[:, out.sample_face]
    nearest = corners.gather(0, out.sample_bary.argmax(1).unsqueeze(0)).squeeze(0)
    assert torch.equal(out.y, vertex_label[nearest])
    # the samples lie in their triangles
    rebuilt = (out.sample_bary.unsqueeze(-1) * pos[corners.t()]).sum(1)
    assert torch.allclose(rebuilt, out.pos, atol=1e-6)
    assert torch.all(out.sample_bary >= 0)


def test_sample_mesh_points_carries_an_eigenbasis():
    data = LaplacianEigenbasis(6)(sphere_data(3))
    torch.manual_seed(0)
    out = SampleMeshPoints(20000)(data.clone())
    assert out.evecs.shape == (20000, 6) and torch.equal(out.evals, data.evals)
    gram = out.evecs.double().T @ (out.mass.double()[:, None] * out.evecs.double())
    assert (gram - torch.eye(6, dtype=torch.float64)).abs().max() < 0.05  # Monte-Carlo quadrature


def test_sample_mesh_points_errors():
    with pytest.raises(ValueError, match="needs 'data.face'"):
        SampleMeshPoints(10)(Data(pos=torch.rand(5, 3)))
    pos, face = _square_mesh()
    with pytest.raises(ValueError, match="face attribute 'part' must be a tensor with one row per face"):
        SampleMeshPoints(10, face_keys=["part"])(Data(pos=pos, face=face, part=torch.zeros(2)))
    flat = Data(pos=torch.zeros(6, 3), face=face)
    with pytest.raises(ValueError, match="none of the 3 triangles has three distinct corners and a height above 1e-06"):
        SampleMeshPoints(10)(flat)
    with pytest.raises(ValueError, match="'num_points' must be a positive int"):
        SampleMeshPoints(0)


def test_random_rotation_is_uniform_and_rigid():
    from tg_funcattn.transforms import RandomRotation, random_rotation

    g = torch.Generator().manual_seed(0)
    rotations = torch.stack([random_rotation(g) for _ in range(20000)])
    eye = torch.eye(3, dtype=torch.float64).expand(20000, 3, 3)
    torch.testing.assert_close(rotations @ rotations.transpose(1, 2), eye)
    torch.testing.assert_close(torch.linalg.det(rotations), torch.ones(20000, dtype=torch.float64))
    # a uniform rotation carries a fixed vector to a uniform point of the sphere:
    # mean 0, second moments I/3, E[z^4] = 1/5 (closed forms)
    v = rotations[:, :, 2]
    assert v.mean(0).abs().max() < 0.02
    torch.testing.assert_close(v.T @ v / len(v), torch.eye(3, dtype=torch.float64) / 3, atol=0.01, rtol=0)
    assert abs(v[:, 2].pow(4).mean() - 0.2) < 0.01
    # positions and the kept mesh vertices move together; other attributes stay
    pos, mesh_pos, y = torch.randn(10, 3), torch.randn(7, 3), torch.arange(10)
    data = RandomRotation(generator=torch.Generator().manual_seed(1))(
        Data(pos=pos.clone(), mesh_pos=mesh_pos.clone(), y=y))
    rotation = random_rotation(torch.Generator().manual_seed(1)).float()
    torch.testing.assert_close(data.pos, pos @ rotation.T)
    torch.testing.assert_close(data.mesh_pos, mesh_pos @ rotation.T)
    assert torch.equal(data.y, y)
    with pytest.raises(ValueError, match="'data.pos' must be a \\[N, 3\\] tensor"):
        RandomRotation()(Data(pos=torch.randn(4, 2)))


# ------------------------------------------------------------ transform order
def test_resampling_after_the_eigenbasis_raises_and_names_the_order():
    torch.manual_seed(0)
    wrong = Compose([LaplacianEigenbasis(8), SamplePoints(500), CheckEigenbasis()])
    with pytest.raises(ValueError, match=r"'data.evecs' has 642 rows but 'data.pos' has 500 points: "
                                         r"the points were resampled after LaplacianEigenbasis.*"
                                         r"Compose\(\[SamplePoints\(1024\), LaplacianEigenbasis"):
        wrong(sphere_data(3))
    # FixedPoints subsamples evecs and mass with the points: only the record shows it
    subsampled = Compose([LaplacianEigenbasis(8), FixedPoints(100, replace=False)])(sphere_data(3))
    assert subsampled.evecs.shape == (100, 8) and subsampled.mass.shape == (100,)
    with pytest.raises(ValueError, match="computed for 642 points but there are 100: the points "
                                         "were resampled after it .*FixedPoints"):
        check_eigenbasis(subsampled)


@requires("robust_laplacian")
def test_resampling_before_the_eigenbasis_passes():
    torch.manual_seed(0)
    data = Compose([SamplePoints(500), LaplacianEigenbasis(8), CheckEigenbasis()])(sphere_data(3))
    assert data.evecs.shape == (500, 8) and data.eigen_num_nodes.tolist() == [500]


def test_sample_mesh_points_renews_the_record():
    out = Compose([LaplacianEigenbasis(6), SampleMeshPoints(300, generator=torch.Generator().manual_seed(0)),
                   CheckEigenbasis()])(sphere_data(2))
    assert out.eigen_num_nodes.tolist() == [300] and out.eigen_extent.shape == (1, 3)
    assert "eigen_num_nodes" not in SampleMeshPoints(30)(sphere_data(1))  # no eigenbasis, no record


def test_rescaling_after_the_eigenbasis_raises_and_rigid_motions_pass():
    data = LaplacianEigenbasis(8)(sphere_data(2, scale=3.0, shift=1.0))
    np.testing.assert_allclose(data.eigen_extent.numpy(), np.full((1, 3), 3 / np.sqrt(3)), rtol=0.02)
    for wrong in (NormalizeScale(), RandomScale((0.9, 0.9))):
        with pytest.raises(ValueError, match=r"rescaled or deformed after LaplacianEigenbasis .*"
                                             r"Compose\(\[NormalizeScale\(\), LaplacianEigenbasis"):
            check_eigenbasis(wrong(data.clone()))
    moved = RandomRotation(generator=torch.Generator().manual_seed(1))(data.clone())
    moved.pos = moved.pos + torch.tensor([5.0, -2.0, 7.0])
    check_eigenbasis(moved)
    right = Compose([NormalizeScale(), LaplacianEigenbasis(8), RandomRotation(), CheckEigenbasis()])
    assert right(sphere_data(2, scale=3.0, shift=1.0)).pos.norm(dim=1).max() == pytest.approx(1, rel=1e-5)


def test_faces_converted_to_edges_before_the_eigenbasis_raise():
    with pytest.raises(ValueError, match=r"'edge_index' but no 'face' \(e.g. FaceToEdge\(remove_faces"
                                         r"=True\) ran before it\).*Put LaplacianEigenbasis before "
                                         r"FaceToEdge.*ignore_edges=True"):
        Compose([FaceToEdge(), LaplacianEigenbasis(4)])(sphere_data(2))
    mesh = Compose([LaplacianEigenbasis(4), FaceToEdge()])(sphere_data(2))
    kept = Compose([FaceToEdge(remove_faces=False), LaplacianEigenbasis(4)])(sphere_data(2))
    assert "edge_index" in mesh and torch.equal(mesh.evecs, kept.evecs)


@requires("robust_laplacian")
def test_ignore_edges_computes_the_point_cloud_laplacian_on_purpose():
    cloud = sphere_data(2)
    del cloud.face
    edges = FaceToEdge()(sphere_data(2))
    assert torch.equal(LaplacianEigenbasis(4, ignore_edges=True)(edges).evecs,
                       LaplacianEigenbasis(4)(cloud).evecs)


def test_eigenbasis_record_batches_per_graph():
    data = [LaplacianEigenbasis(4)(sphere_data(2)), LaplacianEigenbasis(4)(sphere_data(1, scale=2.0))]
    batch = Batch.from_data_list(data)
    assert batch.eigen_num_nodes.tolist() == [162, 42] and batch.eigen_extent.shape == (2, 3)
    check_eigenbasis(batch)
    assert check_eigenbasis(batch[1]) is None
    check_eigenbasis(Data(**batch.to_dict()))  # a Data with a batch vector counts as a batch
    batch.pos[162:] *= 1.5
    with pytest.raises(ValueError, match="the points of graph 1 were rescaled"):
        check_eigenbasis(batch)
    shuffled = Batch.from_data_list(data)
    shuffled.batch = torch.repeat_interleave(torch.arange(2), torch.tensor([42, 162]))
    with pytest.raises(ValueError, match="computed for 162 points but there are 42 in graph 0"):
        check_eigenbasis(shuffled)


def test_check_eigenbasis_without_a_record_or_an_eigenbasis():
    data = LaplacianEigenbasis(4)(sphere_data(1))
    del data.eigen_num_nodes, data.eigen_extent
    check_eigenbasis(data)  # an eigenbasis from elsewhere: the row counts fit
    data.mass = data.mass[:40]
    with pytest.raises(ValueError, match="'data.mass' has 40 rows but 'data.pos' has 42 points"):
        check_eigenbasis(data, who="MyLayer")
    with pytest.raises(ValueError, match="^MyLayer: the data has no eigenbasis"):
        check_eigenbasis(sphere_data(1), who="MyLayer")
    with pytest.raises(ValueError, match="'rtol' must be a non-negative number"):
        CheckEigenbasis(rtol=-1)


def test_heat_kernel_signature_is_the_heat_kernel_diagonal():
    """With every eigenpair, h_t(x) is the diagonal of the heat operator
    expm(-t M^-1 L) over the mass, normalised by the heat trace: scipy's expm,
    no eigenvectors."""
    from scipy.linalg import eigh, expm

    from tg_funcattn.geometry import laplacian
    from tg_funcattn.transforms import HeatKernelSignature

    vertices, faces = icosphere(1)
    L, mass = laplacian(vertices, faces)
    L = L.toarray()
    evals, evecs = eigh(L, np.diag(mass))  # mass-orthonormal, the full spectrum
    data = Data(evecs=torch.from_numpy(evecs), evals=torch.from_numpy(evals).unsqueeze(0),
                mass=torch.from_numpy(mass))
    times = [0.01, 0.1, 1.0]
    hks = HeatKernelSignature(times=times)(data).hks
    for column, t in enumerate(times):
        heat = expm(-t * L / mass[:, None])
        expected = np.diag(heat) / mass * mass.sum() / np.trace(heat)
        np.testing.assert_allclose(hks[:, column].numpy(), expected, rtol=1e-8)


def test_heat_kernel_signature_averages_one_and_ignores_signs_and_rotations():
    from tg_funcattn.transforms import HeatKernelSignature

    torch.manual_seed(0)
    transform = Compose([LaplacianEigenbasis(16), HeatKernelSignature(8)])
    data = transform(sphere_data(level=2))
    assert data.hks.shape == (data.pos.shape[0], 8)
    # the mass-weighted mean of every time scale is one (mass-orthonormal eigenvectors)
    torch.testing.assert_close(data.mass @ data.hks / data.mass.sum(), torch.ones(8),
                               atol=1e-4, rtol=0)
    flipped = HeatKernelSignature(8)(RandomEigenvectorSignFlip()(data.clone()))
    torch.testing.assert_close(flipped.hks, data.hks)
    # 16 eigenpairs are whole eigenspaces of the sphere (1 + 3 + 5 + 7): a rotation
    # moves the eigenvectors within them and leaves the signature
    rotated = sphere_data(level=2)
    rotated.pos = RandomRotation()(rotated.clone()).pos
    torch.testing.assert_close(transform(rotated).hks, data.hks, atol=1e-4, rtol=1e-3)
    # carried to samples like the eigenbasis; or appended to x
    sampled = SampleMeshPoints(50, generator=torch.Generator().manual_seed(0))(
        transform(sphere_data(level=2)))
    assert sampled.hks.shape == (50, 8)
    with_x = HeatKernelSignature(4, attr_name=None)(Data(**{**data.to_dict(), "x": torch.ones(
        data.pos.shape[0], 2)}))
    assert with_x.x.shape == (data.pos.shape[0], 6) and torch.equal(with_x.x[:, :2], torch.ones(
        data.pos.shape[0], 2))


def test_heat_kernel_signature_errors():
    from tg_funcattn.transforms import HeatKernelSignature

    with pytest.raises(ValueError, match="apply LaplacianEigenbasis first"):
        HeatKernelSignature()(sphere_data(level=1))
    with pytest.raises(ValueError, match="'num_times' must be a positive int"):
        HeatKernelSignature(0)
    with pytest.raises(ValueError, match="'times' must be positive finite numbers"):
        HeatKernelSignature(times=[0.1, -1.0])


@pytest.mark.parametrize("args, kwargs, match", [
    ((True,), {}, "'num_eigenpairs' must be a positive int, got True"),
    ((8,), dict(mollify_factor=-1), "'mollify_factor' must be a finite number >= 0.0, got -1"),
    ((8,), dict(mollify_factor=float("nan")), "'mollify_factor' must be a finite number >= 0.0"),
])
def test_eigenbasis_transform_refuses_nonsense_numbers(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        LaplacianEigenbasis(*args, **kwargs)


@pytest.mark.parametrize("scale, key", [(1e20, "mass"), (1e-25, "evals")])
def test_eigenbasis_that_float32_cannot_hold_is_refused(scale, key):
    """Masses grow with the square of the scale and eigenvalues shrink with
    it: at 1e20 the masses, at 1e-25 the eigenvalues overflow float32 (once
    stored as inf without a word); float64 positions hold them."""
    data = sphere_data(scale=scale)
    with pytest.raises(ValueError, match=f"LaplacianEigenbasis: '{key}' reaches .* float32 cannot "
                                         "hold .*NormalizeScale"):
        LaplacianEigenbasis(8)(data)
    wide = LaplacianEigenbasis(8)(Data(pos=data.pos.double(), face=data.face))
    assert wide.evals.dtype == torch.float64 and torch.isfinite(wide.evals).all()
    assert torch.isfinite(wide.mass).all() and (wide.mass > 0).all()


def test_lumped_mass_stores_the_mass_of_the_eigenbasis():
    from tg_funcattn.transforms import LumpedMass

    data = sphere_data()
    mass = LumpedMass()(data.clone()).mass
    assert mass.dtype == torch.float32 and mass.shape == (data.num_nodes,)
    assert torch.equal(mass, LaplacianEigenbasis(4)(data.clone()).mass)
    wide = LumpedMass()(Data(pos=data.pos.double(), face=data.face)).mass
    assert wide.dtype == torch.float64
    with pytest.raises(ValueError, match="LumpedMass needs a mesh"):
        LumpedMass()(Data(pos=data.pos))
    with pytest.raises(ValueError, match="LumpedMass: 'mass' reaches .* float32 cannot hold"):
        LumpedMass()(sphere_data(scale=1e20))
