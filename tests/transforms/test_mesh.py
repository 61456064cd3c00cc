"""SampleMeshPoints samples the mesh that the eigenbasis sees, cleaned by
clean_mesh, and mesh transforms name the bad argument."""
import pytest
import torch
from helpers import icosphere, requires
from torch_geometric.data import Data

from tg_funcattn.geometry import clean_mesh, face_areas
from tg_funcattn.transforms import LaplacianEigenbasis, NormalizeMesh, SampleMeshPoints

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
