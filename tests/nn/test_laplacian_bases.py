"""The layer with real Laplace-Beltrami eigenbases: invariances and training."""
import pytest
import torch
from helpers import icosphere, requires
from torch_geometric.data import Batch, Data

from tg_funcattn.nn import FuncAttnNet, FunctionalAttention
from tg_funcattn.transforms import LaplacianEigenbasis

pytestmark = requires("trimesh", "potpourri3d")

K = 9  # l = 0, 1, 2 on the sphere: eigenspaces of dimension 1, 3, 5, complete


@pytest.fixture(scope="module")
def sphere():
    vertices, faces = icosphere(3)
    data = Data(pos=torch.tensor(vertices), face=torch.tensor(faces, dtype=torch.long))
    data = LaplacianEigenbasis(K)(data)
    evecs, mass = data.evecs.double(), data.mass.double()
    # re-orthonormalise the float32-stored basis in float64 for exact comparisons
    gram = evecs.T @ (mass[:, None] * evecs)
    evecs = evecs @ torch.linalg.inv(torch.linalg.cholesky(gram, upper=True))
    return data.pos.double(), evecs, mass, data.evals[0].double()


def _orthogonal(n, seed):
    q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)))
    return q


def eigenspace_rotation(evals, seed=0):
    """A random orthogonal matrix acting within each eigenspace, with random signs."""
    blocks, start = [], 0
    while start < len(evals):
        end = start + int(((evals - evals[start]).abs() < 1e-3 * (1 + evals[start])).sum())
        blocks.append(_orthogonal(end - start, seed + start))
        start = end
    return torch.block_diag(*blocks)


def _layer(kind, channels=16):
    torch.manual_seed(0)
    return FunctionalAttention(channels, heads=2, num_bases=K, basis_type=kind).double()


def test_laplacian_output_invariant_to_signs_and_eigenspace_rotations(sphere):
    pos, evecs, mass, evals = sphere
    layer = _layer("laplacian")
    x = torch.randn(len(pos), 16, dtype=torch.float64)
    out, _, fmap = layer(x, mass=mass, basis=evecs, return_maps=True)
    signs = torch.tensor([1, -1, 1, -1, -1, 1, 1, -1, 1], dtype=torch.float64)
    rot = eigenspace_rotation(evals)
    assert not torch.allclose(rot, torch.eye(K, dtype=torch.float64))
    for S in (torch.diag(signs), rot, _orthogonal(K, 7)):
        out_s, _, fmap_s = layer(x, mass=mass, basis=evecs @ S, return_maps=True)
        torch.testing.assert_close(out_s, out, atol=1e-10, rtol=1e-8)
        torch.testing.assert_close(fmap_s, S.T @ fmap @ S, atol=1e-10, rtol=1e-8)  # the map changes


def test_laplacian_init_invariance_holds_at_init_only(sphere):
    pos, evecs, mass, evals = sphere
    layer = _layer("laplacian_init")
    x = torch.randn(len(pos), 16, dtype=torch.float64)
    S = eigenspace_rotation(evals, seed=3) @ torch.diag(torch.tensor([-1.0] * K, dtype=torch.float64))
    torch.testing.assert_close(layer(x, mass=mass, basis=evecs @ S), layer(x, mass=mass, basis=evecs),
                               atol=1e-10, rtol=1e-8)
    with torch.no_grad():
        layer.basis_module.proj.weight.normal_(0, 0.3)  # a learned correction, tied to the eigenvector order
    difference = (layer(x, mass=mass, basis=evecs @ S) - layer(x, mass=mass, basis=evecs)).abs().max()
    assert difference > 1e-3


def test_laplacian_init_starts_at_laplacian_and_moves_after_one_step(sphere):
    pos, evecs, mass, _ = sphere
    fixed, adaptive = _layer("laplacian"), _layer("laplacian_init")
    shared = {k: v for k, v in fixed.state_dict().items()}
    adaptive.load_state_dict({**adaptive.state_dict(), **shared})
    x = torch.randn(len(pos), 16, dtype=torch.float64)
    target = torch.randn(len(pos), 16, dtype=torch.float64)
    out_fixed, bases_fixed, _ = fixed(x, mass=mass, basis=evecs, return_maps=True)
    out_adaptive, bases_adaptive, _ = adaptive(x, mass=mass, basis=evecs, return_maps=True)
    # equal up to the relative jitter (1e-5) of the re-orthonormalisation
    torch.testing.assert_close(out_adaptive, out_fixed, atol=2e-5 * out_fixed.abs().max().item(), rtol=0)
    torch.testing.assert_close(bases_adaptive, bases_fixed, atol=1e-5 * bases_fixed.abs().max().item(),
                               rtol=0)
    optimizer = torch.optim.SGD(adaptive.parameters(), lr=0.1)
    (adaptive(x, mass=mass, basis=evecs) - target).square().mean().backward()
    assert adaptive.basis_module.proj.weight.grad.abs().max() > 0
    optimizer.step()
    _, bases_after, _ = adaptive(x, mass=mass, basis=evecs, return_maps=True)
    assert (bases_after - bases_fixed).abs().max() > 1e-6
    # still orthonormal in the mass inner product, per head (up to the 1e-5 jitter)
    for h in range(2):
        gram = bases_after[:, h].T @ (mass[:, None] * bases_after[:, h])
        torch.testing.assert_close(gram, torch.eye(K, dtype=torch.float64), atol=2e-5, rtol=0)


def test_network_on_a_batch_of_meshes_matches_each_alone():
    transform = LaplacianEigenbasis(8)
    shapes = []
    for level, scale in ((1, 1.0), (2, 0.5), (2, 2.0)):
        vertices, faces = icosphere(level)
        pos = torch.tensor(vertices * scale, dtype=torch.float32)
        shapes.append(transform(Data(pos=pos, face=torch.tensor(faces))))
    batch = Batch.from_data_list(shapes)
    for kind in ("laplacian", "laplacian_init"):
        torch.manual_seed(0)
        net = FuncAttnNet(0, 16, 3, num_layers=2, heads=2, num_bases=8, basis_type=kind)
        out = net(None, batch.pos, batch.batch, mass=batch.mass, basis=batch.evecs)
        for g, shape in enumerate(shapes):
            alone = net(None, shape.pos, mass=shape.mass, basis=shape.evecs)
            torch.testing.assert_close(out[batch.batch == g], alone, atol=1e-5, rtol=1e-4)
