"""SampleMeshPoints samples the mesh that the eigenbasis sees, cleaned by
clean_mesh, and mesh transforms name the bad argument."""
import pytest
import torch
from helpers import icosphere, requires
from torch_geometric.data import Data

from tg_funcattn.geometry import clean_mesh, face_areas
from tg_funcattn.transforms import (LaplacianEigenbasis, NormalizeMesh, SampleMeshPoints,
                                    transfer_to_vertices)

pytestmark = requires("trimesh", "potpourri3d")


def unit_cube():
    """The unit cube's 8 corners and 12 triangles ``[3, 12]`` (area 6)."""
    pos = torch.tensor([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)],
                       dtype=torch.float32)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    face = torch.tensor([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))]).t()
    return pos, face


def with_junk(face, num_duplicates, seed=0):
    """``face`` followed by copies of some of its faces, a face with a
    repeated corner and a reversed copy of the first face."""
    chosen = torch.randperm(face.shape[1], generator=torch.Generator().manual_seed(seed))
    junk = torch.tensor([[0], [0], [1]])
    return torch.cat([face, face[:, chosen[:num_duplicates]], junk, face[:, :1].flip(0)], 1)


def test_sample_masses_sum_to_the_area_of_the_cleaned_mesh():
    pos, face = unit_cube()
    out = SampleMeshPoints(1000, generator=torch.Generator().manual_seed(0))(
        Data(pos=pos, face=with_junk(face, 5)))
    assert out.mass.double().sum().item() == pytest.approx(6.0, rel=1e-6)
    assert (out.sample_face < 12).all()  # only the first copy of each face is sampled


def test_duplicate_faces_change_neither_the_samples_nor_the_orthonormality():
    """Phi^T M Phi of the sampled eigenbasis is as close to I with 200
    duplicated faces (and degenerate ones) as without."""
    vertices, faces = icosphere(3)
    pos, face = torch.tensor(vertices, dtype=torch.float32), torch.tensor(faces)
    messy = with_junk(face, 200)
    clean = clean_mesh(vertices, messy.numpy())
    area = face_areas(clean.pos, clean.face).sum()
    results = []
    for f in (face, messy):
        data = LaplacianEigenbasis(16)(Data(pos=pos, face=f))
        assert data.mass.double().sum().item() == pytest.approx(area, rel=1e-6)
        out = SampleMeshPoints(20000, generator=torch.Generator().manual_seed(0))(data)
        assert out.mass.double().sum().item() == pytest.approx(area, rel=1e-6)
        evecs = out.evecs.double()
        gram = evecs.T @ (out.mass.double()[:, None] * evecs)
        assert (gram - torch.eye(16, dtype=torch.float64)).abs().max() < 0.05
        results.append(out)
    assert torch.equal(results[0].pos, results[1].pos)
    assert torch.equal(results[0].evecs, results[1].evecs)


def test_a_face_index_beyond_the_vertices_names_face_and_the_vertex_count():
    pos, face = unit_cube()
    face = face.clone()
    face[2, 3] = 8
    with pytest.raises(ValueError, match="SampleMeshPoints: 'face' refers to vertex 8, but there "
                                         "are only 8 vertices"):
        SampleMeshPoints(10)(Data(pos=pos, face=face))


@pytest.mark.parametrize("mode, with_face", [("area", True), ("sphere", True), ("sphere", False)])
def test_normalize_mesh_with_nan_positions_says_they_are_not_finite(mode, with_face):
    pos, face = unit_cube()
    pos[3, 1] = float("nan")
    data = Data(pos=pos, face=face) if with_face else Data(pos=pos)
    with pytest.raises(ValueError, match=r"NormalizeMesh: 'data.pos' has 1 vertices with NaN or "
                                         r"infinite coordinates \(first: vertex 3\); positions "
                                         "must be finite"):
        NormalizeMesh(mode)(data)


# ------------------------------------------------------------ transfer_to_vertices
def _two_spheres():
    """A batch of two identical spheres (different sizes of samples), labelled
    0 and 1, with their vertices followed as ``mesh_pos``."""
    from torch_geometric.data import Batch

    pos, face = (torch.from_numpy(a) for a in icosphere(2))
    graphs = []
    for label, points in ((0, 300), (1, 200)):
        data = SampleMeshPoints(points, keep_mesh=True,
                                generator=torch.Generator().manual_seed(label))(
            Data(pos=pos, face=face))
        data.y = torch.full((points,), label)
        graphs.append(data)
    return Batch.from_data_list(graphs, follow_batch=["mesh_pos"])


@requires("trimesh")
def test_transfer_to_vertices_stays_within_each_graph():
    batch = _two_spheres()
    on_vertices = transfer_to_vertices(batch.y, batch.pos, batch.mesh_pos, batch.batch,
                                       batch.mesh_pos_batch)
    assert torch.equal(on_vertices, batch.mesh_pos_batch)  # every vertex keeps its sphere's label
    # the same as one call per graph
    expected = torch.cat([transfer_to_vertices(g.y, g.pos, g.mesh_pos)
                          for g in batch.to_data_list()])
    assert torch.equal(on_vertices, expected)
    # without the batches the spheres' points are mixed: about half the vertices go wrong
    mixed = transfer_to_vertices(batch.y, batch.pos, batch.mesh_pos)
    assert 0.2 < float((mixed != batch.mesh_pos_batch).float().mean()) < 0.8


def test_transfer_to_vertices_against_brute_force_on_graphs_of_different_sizes():
    generator = torch.Generator().manual_seed(3)
    points, vertices = [5, 1, 40], [7, 0, 33]
    point_pos = torch.randn(sum(points), 3, generator=generator, dtype=torch.float64)
    vertex_pos = torch.randn(sum(vertices), 3, generator=generator, dtype=torch.float64)
    point_batch = torch.repeat_interleave(torch.arange(3), torch.tensor(points))
    vertex_batch = torch.repeat_interleave(torch.arange(3), torch.tensor(vertices))
    values = torch.randn(sum(points), 2, generator=generator)
    got = transfer_to_vertices(values, point_pos, vertex_pos, point_batch, vertex_batch, chunk=4)
    for v in range(vertex_pos.shape[0]):
        same = (point_batch == vertex_batch[v]).nonzero().view(-1)
        nearest = same[(point_pos[same] - vertex_pos[v]).norm(dim=1).argmin()]
        assert torch.equal(got[v], values[nearest])


@pytest.mark.parametrize("point_batch, vertex_batch, match", [
    (torch.tensor([0, 0, 1]), None, "both 'point_batch' and 'vertex_batch'"),
    (torch.tensor([0, 0, 0]), torch.tensor([0, 1]), "graph 1 has vertices but no points"),
    (torch.tensor([1, 0, 0]), torch.tensor([0, 1]), "'point_batch' must be sorted"),
    (torch.tensor([0, 0]), torch.tensor([0, 0]), "'point_batch' has 2 entries but there are 3"),
    (torch.tensor([0., 0., 0.]), torch.tensor([0, 0]), "'point_batch' must be an integer"),
])
def test_transfer_to_vertices_bad_batches_name_the_argument(point_batch, vertex_batch, match):
    with pytest.raises((ValueError, TypeError), match=match):
        transfer_to_vertices(torch.arange(3), torch.randn(3, 3), torch.randn(2, 3), point_batch,
                             vertex_batch)
