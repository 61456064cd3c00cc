"""FuncAttnGPSConv: the GPS layer with functional attention, in the model of
PyG's GPS example (examples/graph_gps.py: ZINC with GINEConv), on generated
molecule-like graphs."""
import sys

import pytest
import torch
from helpers import ROOT
from reference import orthonormal_basis
from torch.nn import Linear, ReLU, Sequential
from torch_geometric.data import Batch
from torch_geometric.nn import GINEConv, GPSConv

from tg_funcattn.nn import FuncAttnGPSConv, FunctionalAttention

sys.path.insert(0, str(ROOT / "benchmarks"))
from peers import EDGE_TYPES, GPSExample, molecule  # noqa: E402  (the model the benchmark times)

WALK = 8


def GPS(channels, pe_dim, num_layers, attn_type, attn_kwargs, gps_cls):
    """PyG's GPS example model at small sizes; ``gps_cls`` is the one class
    that is swapped."""
    return GPSExample(gps_cls, attn_type, attn_kwargs, channels=channels, pe_dim=pe_dim,
                      num_layers=num_layers, walk_length=WALK)


def functional_gps(num_bases=8, **kwargs):
    return GPS(32, 4, 3, "functional", dict(num_bases=num_bases, **kwargs), FuncAttnGPSConv)


def molecules(count=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [molecule(gen, int(torch.randint(9, 30, (1,), generator=gen)), WALK)
            for _ in range(count)]


def run(model, data):
    return model(data.x, data.pe, data.edge_index, data.edge_attr, data.batch)


def attention_parameters(model):
    return [(name, p) for name, p in model.named_parameters() if ".attn." in name]


def test_trains_and_every_attention_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = functional_gps()
    data = Batch.from_data_list(molecules(16))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(30):
        opt.zero_grad()
        loss = (run(model, data).squeeze(-1) - data.y).abs().mean()
        loss.backward()
        if step == 0:
            params = attention_parameters(model)
            assert len(params) == 3 * len(list(model.convs[0].attn.parameters()))
            for name, p in params:
                assert p.grad is not None, name
                assert p.grad.abs().sum() > 0, name
        losses.append(loss.item())
        opt.step()
    assert losses[-1] < 0.5 * losses[0]


def test_batched_equals_each_graph_alone():
    torch.manual_seed(0)
    model = functional_gps().double()
    graphs = molecules(6)
    for g in graphs:
        g.pe = g.pe.double()
    model.train()
    run(model, Batch.from_data_list(graphs))  # non-trivial BatchNorm running statistics
    model.eval()  # BatchNorm then uses running statistics: per node, no cross-graph mixing
    batch = Batch.from_data_list(graphs)
    together = run(model, batch)
    for i, g in enumerate(graphs):
        alone = run(model, Batch.from_data_list([g]))
        torch.testing.assert_close(together[i], alone[0], rtol=1e-9, atol=1e-9)
    # with batch_size given (no host synchronisation in the attention): the same
    x = torch.cat((model.node_emb(batch.x.squeeze(-1)), model.pe_lin(model.pe_norm(batch.pe))), 1)
    edge_attr = model.edge_emb(batch.edge_attr)
    conv = model.convs[0]
    torch.testing.assert_close(
        conv(x, batch.edge_index, batch.batch, batch_size=len(graphs), edge_attr=edge_attr),
        conv(x, batch.edge_index, batch.batch, edge_attr=edge_attr))


def test_edge_attr_reaches_the_local_conv():
    torch.manual_seed(0)
    model = functional_gps().eval()
    data = Batch.from_data_list(molecules(4))
    out = run(model, data)
    changed = data.clone()
    changed.edge_attr = (data.edge_attr + 1) % EDGE_TYPES
    assert not torch.allclose(run(model, changed), out)
    # GINEConv cannot run without it (edge_attr None): the keyword is what reached it
    conv = model.convs[0]
    x = torch.randn(data.num_nodes, 32)
    with pytest.raises(AttributeError):
        conv(x, data.edge_index, data.batch)


def test_reset_parameters_restores_the_initial_state():
    def layer():
        nn = Sequential(Linear(32, 32), ReLU(), Linear(32, 32))
        return FuncAttnGPSConv(32, GINEConv(nn, edge_dim=8), heads=4,
                               attn_kwargs=dict(num_bases=8))

    torch.manual_seed(0)
    trained, fresh = layer(), layer()
    data = Batch.from_data_list(molecules(4))
    x = torch.randn(data.num_nodes, 32)
    edge_attr = torch.randn(data.edge_index.shape[1], 8)
    opt = torch.optim.Adam(trained.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        trained(x, data.edge_index, data.batch, edge_attr=edge_attr).square().mean().backward()
        opt.step()
    for module in (trained, fresh):
        torch.manual_seed(1)
        module.reset_parameters()
    # every parameter and BatchNorm statistic is reset, none keeps its trained value
    fresh_state = fresh.state_dict()
    for name, value in trained.state_dict().items():
        torch.testing.assert_close(value, fresh_state[name], msg=name)
    torch.testing.assert_close(trained(x, data.edge_index, data.batch, edge_attr=edge_attr),
                               fresh(x, data.edge_index, data.batch, edge_attr=edge_attr))


def test_equals_gpsconv_when_both_attentions_output_zero():
    """An independent reference for everything but the attention: PyG's GPSConv
    with the same conv, MLP and norms, both attentions' output projections
    zeroed (so each global branch is x itself)."""
    torch.manual_seed(0)
    data = Batch.from_data_list(molecules(4))
    x = torch.randn(data.num_nodes, 32)
    edge_attr = torch.randn(data.edge_index.shape[1], 8)

    def conv():
        return GINEConv(Sequential(Linear(32, 32), ReLU(), Linear(32, 32)), edge_dim=8)

    ours = FuncAttnGPSConv(32, conv(), heads=4, attn_kwargs=dict(num_bases=8))
    pyg = GPSConv(32, conv(), heads=4)
    shared = {k: v for k, v in ours.state_dict().items() if not k.startswith("attn.")}
    missing, unexpected = pyg.load_state_dict(shared, strict=False)
    assert all(k.startswith("attn.") for k in missing) and not unexpected
    out_before = ours(x, data.edge_index, data.batch, edge_attr=edge_attr)
    with torch.no_grad():
        for lin in (ours.attn.lin_out, pyg.attn.out_proj):
            lin.weight.zero_()
            lin.bias.zero_()
    out = ours(x, data.edge_index, data.batch, edge_attr=edge_attr)
    torch.testing.assert_close(out, pyg(x, data.edge_index, data.batch, edge_attr=edge_attr))
    # and our attention is applied: zeroing its output changed the result
    assert not torch.allclose(out, out_before)


def test_plain_gpsconv_with_functional_attention_assigned_skips_it():
    """Why the layer exists: GPSConv dispatches on the type of ``attn``."""
    torch.manual_seed(0)
    data = Batch.from_data_list(molecules(4))
    x = torch.randn(data.num_nodes, 32)
    edge_attr = torch.randn(data.edge_index.shape[1], 8)
    gps = GPSConv(32, GINEConv(Sequential(Linear(32, 32), ReLU(), Linear(32, 32)), edge_dim=8),
                  heads=4)
    gps.attn = FunctionalAttention(32, heads=4, num_bases=8)
    gps(x, data.edge_index, data.batch, edge_attr=edge_attr).square().sum().backward()
    assert all(p.grad is None for p in gps.attn.parameters())
    with pytest.raises(AttributeError):
        gps.reset_parameters()


def test_gps_example_model_swaps_one_class():
    """The same model code runs with PyG's GPSConv and with FuncAttnGPSConv."""
    torch.manual_seed(0)
    data = Batch.from_data_list(molecules(4))
    pyg = GPS(32, 4, 2, "multihead", {"dropout": 0.5}, GPSConv)
    ours = GPS(32, 4, 2, "functional", {"dropout": 0.5}, FuncAttnGPSConv)
    assert run(pyg, data).shape == run(ours, data).shape == (4, 1)
    assert ours.convs[0].attn.dropout == 0.5


def test_laplacian_basis_and_mass_reach_the_attention():
    torch.manual_seed(0)
    data = Batch.from_data_list(molecules(3))
    layer = FuncAttnGPSConv(32, None, heads=4, norm=None,
                            attn_kwargs=dict(num_bases=4, basis_type="laplacian"))
    x = torch.randn(data.num_nodes, 32)
    mass, other = torch.rand(2, data.num_nodes) + 0.5
    # a basis orthonormal in each mass on every graph (the Laplacian kinds need its mass)
    basis, basis_other = (torch.cat([orthonormal_basis(int(n), 6, m[data.batch == g])
                                     for g, n in enumerate(data.batch.bincount())])
                          for m in (mass, other))
    out = layer(x, data.edge_index, data.batch, mass=mass, basis=basis, batch_size=3)
    expected = x + layer.attn(x, data.batch, mass=mass, basis=basis)
    torch.testing.assert_close(out - layer.mlp(expected), expected)
    out_other = layer(x, data.edge_index, data.batch, mass=other, basis=basis_other)
    expected = x + layer.attn(x, data.batch, mass=other, basis=basis_other)
    torch.testing.assert_close(out_other - layer.mlp(expected), expected)
    assert not torch.allclose(out_other, out)
    with pytest.raises(ValueError, match="basis_type='laplacian' needs the 'mass' argument"):
        layer(x, data.edge_index, data.batch, basis=basis)


@pytest.mark.parametrize("basis_type", ["laplacian", "laplacian_init"])
def test_graph_laplacian_basis_of_molecules(basis_type):
    """Graphs without positions get a Laplacian basis of their own edges
    (LaplacianEigenbasis(method="graph"): orthonormal in the degrees), which
    the Laplacian kinds take as they are, batched as alone."""
    from tg_funcattn.transforms import LaplacianEigenbasis

    torch.manual_seed(0)
    graphs = [LaplacianEigenbasis(6, method="graph")(m) for m in molecules(3)]
    data = Batch.from_data_list(graphs)
    layer = FuncAttnGPSConv(32, GINEConv(Sequential(Linear(32, 32)), edge_dim=8), heads=4,
                            attn_kwargs=dict(num_bases=6, basis_type=basis_type)).eval()
    x, edge_attr = torch.randn(data.num_nodes, 32), torch.randn(data.num_edges, 8)
    out = layer.attn(x, data.batch, mass=data.mass, basis=data.evecs)  # checked orthonormal
    start = 0
    for g in graphs:
        alone = layer.attn(x[start:start + g.num_nodes], mass=g.mass, basis=g.evecs)
        torch.testing.assert_close(out[start:start + g.num_nodes], alone, atol=1e-5, rtol=1e-5)
        start += g.num_nodes
    full = layer(x, data.edge_index, data.batch, mass=data.mass, basis=data.evecs,
                 edge_attr=edge_attr)
    assert torch.isfinite(full).all()


def test_loader_batch_size_beyond_the_last_batch():
    """A model that passes its loader's batch size (as GPS models pass
    ``batch_size`` to pooling) runs the last, smaller batch unchanged."""
    torch.manual_seed(0)
    data = Batch.from_data_list(molecules(3))
    layer = FuncAttnGPSConv(32, GINEConv(Sequential(Linear(32, 32)), edge_dim=8), heads=4,
                            attn_kwargs=dict(num_bases=4)).eval()
    x, edge_attr = torch.randn(data.num_nodes, 32), torch.randn(data.num_edges, 8)
    out = layer(x, data.edge_index, data.batch, batch_size=32, edge_attr=edge_attr)
    torch.testing.assert_close(out, layer(x, data.edge_index, data.batch, edge_attr=edge_attr))


def test_bad_input_names_the_argument():
    conv = GINEConv(Sequential(Linear(32, 32)))
    with pytest.raises(ValueError, match="attn_type"):
        FuncAttnGPSConv(32, conv, attn_type="multihead")
    with pytest.raises(ValueError, match="attn_kwargs"):
        FuncAttnGPSConv(32, conv, attn_kwargs={"heads": 2})
    with pytest.raises(ValueError, match="dropout"):
        FuncAttnGPSConv(32, conv, dropout=1.5)
    with pytest.raises(TypeError, match="num_base"):
        FuncAttnGPSConv(32, conv, attn_kwargs={"num_base": 2})
    layer = FuncAttnGPSConv(32, None, heads=4)
    with pytest.raises(TypeError, match="edge_attr"):
        layer(torch.randn(5, 32), torch.zeros(2, 0, dtype=torch.long), edge_attr=torch.ones(0, 4))
    with pytest.raises(ValueError, match="'x'"):
        layer(torch.randn(5, 16), torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="basis"):
        layer(torch.randn(5, 32), torch.zeros(2, 0, dtype=torch.long), basis=torch.randn(5, 8))
    assert "FuncAttnGPSConv(32" in repr(layer) and "num_bases=32" in repr(layer)
