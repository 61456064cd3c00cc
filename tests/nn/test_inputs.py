"""Preconditions the layers check instead of computing something silently wrong: the masses of a Laplacian basis, the mass
orthonormality of a fixed basis, and the inputs of FuncAttnNet (dtype,
category, magnitude)."""
import pytest
import torch
from helpers import batch_vector, icosphere, requires
from probes import HostSyncs
from reference import dense_functional_attention, orthonormal_basis
from torch_geometric.data import Batch, Data
from torch_geometric.nn import GINConv

from tg_funcattn.nn import FuncAttnBlock, FuncAttnGPSConv, FuncAttnNet, FunctionalAttention

K = 9


def _entry_points(kind, **kwargs):
    """The four entry points with ``kind``, each as ``call(x, pos, batch, mass, basis)``."""
    torch.manual_seed(0)
    layer = FunctionalAttention(16, 2, K, basis_type=kind, **kwargs)
    block = FuncAttnBlock(16, 2, K, basis_type=kind, **kwargs)
    net = FuncAttnNet(16, 16, 3, num_layers=2, heads=2, num_bases=K, basis_type=kind, **kwargs)
    gps = FuncAttnGPSConv(16, GINConv(torch.nn.Linear(16, 16)), heads=2,
                          attn_kwargs=dict(num_bases=K, basis_type=kind, **kwargs))
    empty = torch.empty(2, 0, dtype=torch.long)
    return {
        "FunctionalAttention": lambda x, pos, batch, mass, basis: layer(x, batch, mass, basis),
        "FuncAttnBlock": lambda x, pos, batch, mass, basis: block(x, pos, batch, mass, basis),
        "FuncAttnNet": lambda x, pos, batch, mass, basis: net(x, pos, batch, mass, basis),
        "FuncAttnGPSConv": lambda x, pos, batch, mass, basis: gps(x, empty, batch, mass=mass,
                                                                  basis=basis),
    }


@pytest.fixture(scope="module")
def two_spheres():
    """Two icospheres (levels 2 and 3) with the float32 eigenbases and masses of
    LaplacianEigenbasis, as one batch."""
    pytest.importorskip("trimesh")
    pytest.importorskip("potpourri3d")
    from tg_funcattn.transforms import LaplacianEigenbasis

    graphs = []
    for level in (2, 3):
        vertices, faces = icosphere(level)
        data = Data(pos=torch.tensor(vertices, dtype=torch.float32),
                    face=torch.tensor(faces, dtype=torch.long))
        graphs.append(LaplacianEigenbasis(K)(data))
    return Batch.from_data_list(graphs)


@pytest.mark.parametrize("kind", ["laplacian", "laplacian_init"])
def test_laplacian_kinds_refuse_a_missing_mass_at_every_entry_point(kind):
    """Without ``mass`` the nodes were weighted ``1/n``, not in the inner product
    the basis is orthonormal in; every entry point now refuses it, naming
    ``mass`` and where it comes from, and runs with it (the layer equal to the
    dense reference with that mass)."""
    sizes = [30, 40]
    batch = batch_vector(sizes)
    mass = torch.rand(70) + 0.1
    basis = torch.cat([orthonormal_basis(n, K, mass[s:s + n])
                       for s, n in zip((0, 30), sizes)])
    x, pos = torch.randn(70, 16), torch.randn(70, 3)
    for name, call in _entry_points(kind).items():
        with pytest.raises(ValueError, match=rf"basis_type='{kind}' needs the 'mass' argument: "
                                             r".*data\.mass of tg_funcattn\.transforms\."
                                             r"LaplacianEigenbasis"):
            call(x, pos, batch, None, basis)
        assert torch.isfinite(call(x, pos, batch, mass, basis)).all(), name
    layer = FunctionalAttention(16, 2, K, basis_type=kind).double()
    x64 = x.double()
    torch.testing.assert_close(layer(x64, batch, mass.double(), basis.double()),
                               dense_functional_attention(layer, x64, batch, mass.double(),
                                                          basis.double()))


@requires("trimesh", "potpourri3d")
def test_a_fixed_basis_must_be_mass_orthonormal_per_graph(two_spheres):
    """``basis_type="laplacian"`` refuses a basis that is not orthonormal in the
    mass inner product (scaled by 100 on one graph: output about 7600 times too
    large before; rank one), naming the graph and the deviation found; real
    float32 eigenbases pass, with no host synchronisation of the check's own;
    ``check_basis=False`` skips it; ``"laplacian_init"`` re-orthonormalises
    any full-rank basis, so a scaled one gives the same output there."""
    data = two_spheres
    n = data.num_nodes
    torch.manual_seed(1)
    x = torch.randn(n, 16)
    first = data.ptr[1].item()
    scaled = data.evecs.clone()
    scaled[first:] *= 100  # graph 1 only
    rank_one = data.evecs.clone()
    rank_one[:first] = data.evecs[:first, :1]  # graph 0: every column the first
    for name, call in _entry_points("laplacian").items():
        call(x, data.pos, data.batch, data.mass, data.evecs)  # the real eigenbasis passes
        with pytest.raises(ValueError, match=r"'basis' must be orthonormal in the 'mass' inner "
                                             r"product on every graph .* every entry within 0\.01"
                                             r"\), but on graph 1 an entry of Phi\^T diag\(mass\) "
                                             r"Phi - I is 1e\+04"):
            call(x, data.pos, data.batch, data.mass, scaled)
        with pytest.raises(ValueError, match=r"on graph 0 an entry of Phi\^T diag\(mass\) Phi - I "
                                             r"is 1\. .*basis_type='laplacian_init'"):
            call(x, data.pos, data.batch, data.mass, rank_one)
    for call in _entry_points("laplacian", check_basis=False).values():
        assert torch.isfinite(call(x, data.pos, data.batch, data.mass, scaled)).all()

    # the check reads its values with the other input checks: one sync with batch_size
    net = FuncAttnNet(16, 16, 3, num_layers=2, heads=2, num_bases=K, basis_type="laplacian")
    with HostSyncs() as syncs:
        net(x, data.pos, data.batch, data.mass, data.evecs, batch_size=2)
    assert syncs.count == 1, syncs.names

    # the same output as the dense reference on the real eigenbasis; laplacian_init
    # gives the same output for the scaled basis as for the eigenbasis
    layer = FunctionalAttention(16, 2, K, basis_type="laplacian").double()
    x64, mass64 = x.double(), data.mass.double()
    torch.testing.assert_close(layer(x64, data.batch, mass64, data.evecs.double()),
                               dense_functional_attention(layer, x64, data.batch, mass64,
                                                          data.evecs.double()))
    adapted = FunctionalAttention(16, 2, K, basis_type="laplacian_init").double()
    torch.testing.assert_close(adapted(x64, data.batch, mass64, scaled.double()),
                               adapted(x64, data.batch, mass64, data.evecs.double()))


def test_func_attn_net_names_the_dtype_of_x_and_pos():
    """float64/float16 inputs of a float32 model failed inside the lift with
    torch's ``mat1 and mat2 must have the same dtype``."""
    torch.manual_seed(0)
    net = FuncAttnNet(3, 16, 2, num_layers=1, heads=2, num_bases=4)
    pos = torch.randn(20, 3)
    for dtype in (torch.float64, torch.float16):
        with pytest.raises(TypeError, match=rf"'x' has dtype {dtype} but the model's parameters "
                                            r"are torch\.float32; convert one with \.to\(\)"):
            net(torch.randn(20, 3).to(dtype), pos)
    positions_only = FuncAttnNet(0, 16, 2, num_layers=1, heads=2, num_bases=4)
    with pytest.raises(TypeError, match=r"'pos' has dtype torch\.float64 but the model's "
                                        r"parameters are torch\.float32"):
        positions_only(None, pos.double())
    assert net.double()(torch.randn(20, 3, dtype=torch.float64), pos.double()).dtype == torch.float64
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast decides the dtypes
        assert torch.isfinite(positions_only(None, pos.double().float())).all()


def test_func_attn_net_checks_category():
    """An index out of range gave ``IndexError: index out of range in self``, a
    float index torch's embedding error."""
    torch.manual_seed(0)
    net = FuncAttnNet(0, 16, 2, num_layers=1, heads=2, num_bases=4, num_categories=3)
    pos, batch = torch.randn(20, 3), batch_vector([8, 12])
    for category, graph, value in (([0, 3], 1, 3), ([-1, 2], 0, -1)):
        with pytest.raises(ValueError, match=rf"'category' must hold indices in \[0, 3\) "
                                             rf"\(num_categories=3\), but graph {graph} has "
                                             rf"category {value}$"):
            net(None, pos, batch, category=torch.tensor(category))
    with pytest.raises(TypeError, match=r"'category' must be an integer tensor \(category indices "
                                        r"in \[0, 3\)\), got dtype torch\.float32"):
        net(None, pos, batch, category=torch.tensor([0.0, 1.0]))
    with HostSyncs() as syncs:  # read with the other value checks
        net(None, pos, batch, category=torch.tensor([2, 0]), batch_size=2)
    assert syncs.count == 1, syncs.names


def test_finite_but_overflowing_inputs_are_named():
    """``x * 1e30`` (finite) gave a NaN output (or, with ``laplacian_init``, a
    Gram matrix "not positive semi-definite"); the net now names the input and
    its largest value, and the layer says the Gram matrix overflowed."""
    torch.manual_seed(0)
    x, pos, batch = torch.randn(20, 3), torch.randn(20, 3), batch_vector([8, 12])
    for kind in ("learned", "laplacian_init"):
        net = FuncAttnNet(3, 16, 2, num_layers=1, heads=2, num_bases=4, basis_type=kind)
        basis = None if kind == "learned" else torch.randn(20, 4)
        mass = None if kind == "learned" else torch.ones(20)
        largest = f"{x.abs().max().item() * 1e30:.3g}".replace("+", r"\+")
        with pytest.raises(ValueError, match=rf"'x' is finite but its largest \|value\| is "
                                             rf"{largest}, above 1\.84e\+19, the square root "
                                             r"of the largest torch\.float32: its squares overflow"):
            net(x * 1e30, pos, batch, mass, basis)
        with pytest.raises(ValueError, match=r"'pos' is finite but its largest \|value\|"):
            net(x, pos * 1e30, batch, mass, basis)
        # float64 has the range for it
        assert torch.isfinite(net.double()(x.double() * 1e30, pos.double(), batch,
                                           None if mass is None else mass.double(),
                                           None if basis is None else basis.double())).all()
    layer = FunctionalAttention(16, 2, 4, basis_type="laplacian_init")
    with pytest.raises(ValueError, match=r"'x' is finite but its largest \|value\|"):
        layer(torch.randn(20, 16) * 1e20, batch, torch.ones(20), torch.randn(20, 4))
    with torch.no_grad():  # a learned correction: the basis grows with x, its Gram matrix overflows
        layer.basis_module.proj.weight.normal_()
    x = torch.randn(20, 16)
    with pytest.raises(ValueError, match=r"the mass Gram matrix of the basis of graph 0 has NaN or "
                                         r"infinite entries: the values overflowed inside the "
                                         r"layer \(its inputs were finite"):
        layer(x / x.abs().max() * 1.5e19, batch, torch.ones(20), torch.randn(20, 4))
