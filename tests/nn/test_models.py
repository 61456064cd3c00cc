import pytest
import torch
from helpers import batch_vector
from reference import orthonormal_basis
from torch_geometric.nn import GCNConv

from tg_funcattn.nn import FuncAttnBlock, FuncAttnNet
from tg_funcattn.nn.models import TRUNC_NORMAL_STD, ResidualLift, _weighted_mean
from tg_funcattn.nn.presets import PRESETS, preset
from tg_funcattn._validation import ValueChecks
from tg_funcattn.nn.inputs import GraphNeeds, validate_graph


@pytest.mark.parametrize("local", [None, "point_transformer", "edgeconv", GCNConv(16, 16),
                                   lambda c: GCNConv(c, c)])
def test_block_batched_equals_alone(local):
    block = FuncAttnBlock(16, heads=2, num_bases=4, local=local, k=5).double()
    sizes = [1, 9, 60]
    x = torch.randn(sum(sizes), 16, dtype=torch.float64)
    pos = torch.rand(sum(sizes), 3, dtype=torch.float64)
    batch = batch_vector(sizes)
    out = block(x, pos, batch)
    assert out.shape == x.shape
    s = 0
    for n in sizes:
        torch.testing.assert_close(out[s:s + n], block(x[s:s + n], pos[s:s + n]), atol=1e-8, rtol=0)
        s += n


def test_block_local_branch_matters_and_needs_pos():
    block = FuncAttnBlock(16, heads=2, num_bases=4, local="point_transformer")
    x, pos = torch.randn(30, 16), torch.rand(30, 3)
    without = FuncAttnBlock(16, heads=2, num_bases=4)
    without.load_state_dict({k: v for k, v in block.state_dict().items()
                             if not k.startswith("local.")})
    assert not torch.allclose(block(x, pos), without(x))
    with pytest.raises(ValueError, match="needs 'pos'"):
        block(x)
    with pytest.raises(ValueError, match="'local' must be one of"):
        FuncAttnBlock(16, heads=2, local="gat")
    assert "local=PointTransformerConv" in repr(block)


@pytest.mark.parametrize("task", ["node", "graph"])
@pytest.mark.parametrize("with_mass", [False, True])
def test_net_batched_equals_alone(task, with_mass):
    net = FuncAttnNet(3, 16, 5, num_layers=2, heads=2, num_bases=4, readout=task,
                      num_categories=3, local="edgeconv", k=4).double()
    sizes = [2, 11, 50]
    n = sum(sizes)
    x, pos = torch.randn(n, 3, dtype=torch.float64), torch.rand(n, 3, dtype=torch.float64)
    mass = torch.rand(n, dtype=torch.float64) + 0.5 if with_mass else None
    category = torch.tensor([2, 0, 1])
    out = net(x, pos, batch_vector(sizes), mass=mass, category=category)
    assert out.shape == ((n, 5) if task == "node" else (3, 5))
    s = 0
    for g, m in enumerate(sizes):
        alone = net(x[s:s + m], pos[s:s + m], mass=None if mass is None else mass[s:s + m],
                    category=category[g:g + 1])
        expected = out[s:s + m] if task == "node" else out[g:g + 1]
        torch.testing.assert_close(expected, alone, atol=1e-8, rtol=0)
        s += m


@pytest.mark.parametrize("readout", ["node", "graph"])
@pytest.mark.parametrize("local", [None, "edgeconv", "point_transformer"])
def test_net_with_empty_graphs_and_a_larger_batch_size(readout, local):
    """PyG's pooling convention: a ``batch_size`` beyond the last graph (a
    loader's last, smaller batch) and a graph index with no nodes give the
    other graphs' outputs as computed alone and, pooled, the head of a zero
    feature for the empty graphs."""
    net = FuncAttnNet(3, 16, 5, num_layers=2, heads=2, num_bases=4, readout=readout,
                      local=local, k=4).double()
    sizes = [11, 0, 9]
    n = sum(sizes)
    x, pos = torch.randn(n, 3, dtype=torch.float64), torch.rand(n, 3, dtype=torch.float64)
    out = net(x, pos, batch_vector(sizes), batch_size=6)
    first, second = net(x[:11], pos[:11]), net(x[11:], pos[11:])
    if readout == "node":
        torch.testing.assert_close(out, torch.cat([first, second]), atol=1e-10, rtol=0)
        return
    assert out.shape == (6, 5)
    torch.testing.assert_close(out[[0, 2]], torch.cat([first, second]), atol=1e-10, rtol=0)
    empty = net.head(torch.zeros(1, 16, dtype=torch.float64))
    torch.testing.assert_close(out[[1, 3, 4, 5]], empty.expand(4, 5), atol=1e-12, rtol=0)


def test_dropouts_reach_their_places():
    """A block's ``dropout`` drops the attention's output and inside the MLP;
    ``attn_dropout`` is the layer's dropout of the functional maps."""
    net = FuncAttnNet(3, 16, 5, num_layers=2, heads=2, num_bases=4, dropout=0.3, attn_dropout=0.2)
    assert all(b.dropout == 0.3 and b.attn.dropout == 0.2 for b in net.blocks)
    block = FuncAttnBlock(16, heads=2, num_bases=4, dropout=0.5).train()
    x = torch.randn(30, 16)
    with torch.no_grad():  # with the MLP's output zeroed only the attention's dropout remains
        block.mlp.lins[-1].weight.zero_(), block.mlp.lins[-1].bias.zero_()
        attn = block.attn(block.norm1(x))
        dropped = block(x) - x
    kept = dropped != 0
    assert 0.3 < float(kept.float().mean()) < 0.7
    torch.testing.assert_close(dropped[kept], 2 * attn[kept])
    with pytest.raises(ValueError, match="'dropout' must be a finite number >= 0.0 and < 1.0"):
        FuncAttnBlock(16, heads=2, dropout=1.0)


def test_category_conditioning_changes_output():
    net = FuncAttnNet(0, 16, 4, num_layers=1, heads=2, num_bases=4, num_categories=2)
    pos = torch.rand(20, 3)
    a = net(None, pos, category=torch.tensor([0]))
    b = net(None, pos, category=torch.tensor([1]))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="'category' \\[B\\] is required"):
        net(None, pos)
    with pytest.raises(ValueError, match="one entry per graph"):
        net(None, pos, category=torch.tensor([0, 1]))


def test_weighted_mean_pooling():
    h = torch.randn(7, 3, dtype=torch.float64)
    mass = torch.rand(7, dtype=torch.float64) + 0.1
    batch = batch_vector([3, 4])
    needs = GraphNeeds("learned", 1, False, 4, None)
    pooled = _weighted_mean(h, validate_graph(needs, 7, h.device, batch, None, mass, None, ValueChecks()))
    for g, idx in enumerate([slice(0, 3), slice(3, 7)]):
        expected = (mass[idx, None] * h[idx]).sum(0) / mass[idx].sum()
        torch.testing.assert_close(pooled[g], expected)


def test_net_bad_input_and_repr():
    net = FuncAttnNet(4, 16, 2, num_layers=1, heads=2, num_bases=4)
    pos = torch.rand(6, 3)
    with pytest.raises(ValueError, match=r"'x' must have shape \[N, 4\]"):
        net(torch.randn(6, 3), pos)
    with pytest.raises(ValueError, match="'x' is None"):
        net(None, pos)
    with pytest.raises(ValueError, match="'pos' is required"):
        net(torch.randn(6, 4), None)
    with pytest.raises(ValueError, match=r"'pos' must have shape \[N, 3\]"):
        net(torch.randn(6, 4), torch.rand(6, 2))
    with pytest.raises(ValueError, match="'pos' has 5 rows but 'x' has 6"):
        net(torch.randn(6, 4), torch.rand(5, 3))
    with pytest.raises(ValueError, match="built without num_categories"):
        net(torch.randn(6, 4), pos, category=torch.tensor([0]))
    with pytest.raises(ValueError, match="'readout' must be one of"):
        FuncAttnNet(4, 16, 2, readout="edge")
    assert repr(net) == ("FuncAttnNet(4, 16, 2, num_layers=1, heads=2, num_bases=4, "
                         "basis_type='learned', readout='node')")
    # every setting that differs from its default is shown
    net = FuncAttnNet(0, 16, 2, num_layers=1, heads=2, num_bases=4, num_categories=3,
                      local="edgeconv", k=8, head="mlp", dropout=0.1, ridge=0.3)
    assert repr(net) == ("FuncAttnNet(0, 16, 2, num_layers=1, heads=2, num_bases=4, "
                         "basis_type='learned', readout='node', num_categories=3, "
                         "local='edgeconv', k=8, dropout=0.1, head='mlp', ridge=0.3)")


@pytest.mark.parametrize("kind", ["laplacian", "laplacian_init"])
def test_net_with_laplacian_basis_depends_only_on_its_span(kind):
    """Every block reads the given basis: the output depends on the space it
    spans (another space changes it) but not on how it is written (any
    orthogonal change of the columns, as an eigensolver's sign or rotation
    within an eigenspace; for laplacian_init at its zero initial correction)."""
    net = FuncAttnNet(0, 16, 3, num_layers=2, heads=2, num_bases=4, basis_type=kind).double()
    pos = torch.rand(12, 3, dtype=torch.float64)
    mass = torch.ones(12, dtype=torch.float64)
    basis, _ = torch.linalg.qr(torch.randn(12, 4, dtype=torch.float64))
    out = net(None, pos, mass=mass, basis=basis)
    assert out.shape == (12, 3)
    rotation, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))
    torch.testing.assert_close(net(None, pos, mass=mass, basis=basis @ rotation), out,
                               atol=1e-10, rtol=1e-8)
    other, _ = torch.linalg.qr(torch.randn(12, 4, dtype=torch.float64))
    assert (net(None, pos, mass=mass, basis=other) - out).abs().max() > 1e-3


def _shifted_clouds(generator, num_graphs=8, points=64, spread=4.0):
    """Unit cubes of random points, each graph shifted along x by its own
    random offset; a point's label is whether it lies beyond the mean x of
    its graph.  A point's position alone says almost nothing about its
    label (the offset is unknown), the whole graph says everything."""
    batch = batch_vector([points] * num_graphs)
    pos = torch.rand(num_graphs * points, 3, generator=generator)
    offset = (torch.rand(num_graphs, generator=generator) - 0.5) * spread
    pos[:, 0] += offset[batch]
    mean = torch.zeros(num_graphs).index_add_(0, batch, pos[:, 0]) / points
    return pos, batch, (pos[:, 0] > mean[batch]).long()


@pytest.mark.parametrize("attention", [True, False])
def test_net_learns_a_task_that_needs_the_whole_graph(attention, monkeypatch):
    """Trained on 8 graphs, the network labels the points of unseen graphs;
    the same network with its attention replaced by zeros (a per-point MLP of
    the same architecture, the same training) stays near chance, so the
    property holds only because the attention carries the graph's mean."""
    torch.manual_seed(0)
    net = FuncAttnNet(0, 32, 2, num_layers=2, heads=4, num_bases=8)
    if not attention:
        for block in net.blocks:
            monkeypatch.setattr(block.attn, "forward_validated",
                                lambda h, layout, **kwargs: torch.zeros_like(h))
    generator = torch.Generator().manual_seed(1)
    pos, batch, y = _shifted_clouds(generator)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(None, pos, batch), y).backward()
        opt.step()
    pos, batch, y = _shifted_clouds(generator)  # unseen graphs
    with torch.no_grad():
        accuracy = (net(None, pos, batch).argmax(1) == y).float().mean().item()
    if attention:
        assert accuracy > 0.9, accuracy
    else:
        assert accuracy < 0.65, accuracy


def test_net_returns_maps_per_block():
    """The pairs are each block's attention bases and maps on that block's own
    (normalised) input, in block order, recomputed here block by block."""
    net = FuncAttnNet(0, 16, 3, num_layers=2, heads=2, num_bases=4).double()
    pos = torch.rand(30, 3, dtype=torch.float64)
    batch = batch_vector([10, 20])
    out, maps = net(None, pos, batch, return_maps=True)
    torch.testing.assert_close(out, net(None, pos, batch))  # asking for the maps changes nothing
    assert len(maps) == 2
    h = net.lift(pos)
    for block, (bases, fmap) in zip(net.blocks, maps):
        assert bases.shape == (30, 2, 4) and fmap.shape == (2, 2, 4, 4)
        _, expected_bases, expected_map = block.attn(block.norm1(h), batch, return_maps=True)
        torch.testing.assert_close(bases, expected_bases)
        torch.testing.assert_close(fmap, expected_map)
        h = block(h, pos, batch)
    assert not torch.allclose(maps[0][1], maps[1][1])  # two blocks, two different maps
    torch.testing.assert_close(net.head(h if net.norm is None else net.norm(h)), out)


def reference_rna_parameters(c_in=3, width=128, heads=8, layers=4, bases=128, mlp_ratio=2,
                             classes=260):
    """Parameters of the authors' RNA model (``FuncAttn`` in ``RNA-Segmentation/src/models/
    funcattn.py`` of xjffff/FUNCATTN), counted from its architecture: 542,888 for the
    configuration of its training script (counted there with the authors' class)."""
    d, hidden = width // heads, mlp_ratio * width
    lift = (c_in * width + width) + 2 * (width * width + width) + width  # + the placeholder
    attention = (2 * (width * width + width)  # in_project_x, in_project_fx
                 + d * bases + bases  # slice projection
                 + heads  # temperature
                 + 3 * d * d  # to_q, to_k, to_v (no bias)
                 + width * width + width  # to_out
                 + 1)  # alpha, one ridge for all heads
    mlp = width * hidden + hidden + hidden * width + width
    block = 2 * 2 * width + attention + mlp  # two LayerNorms
    return lift + layers * block + width * classes + classes


def test_paper_rna_preset_has_the_reference_parameter_count():
    net = FuncAttnNet.from_preset("paper_rna")
    assert reference_rna_parameters() == 542_888
    # less the bias of the slices' input projection of every block, which the
    # per-graph standardisation of that input would cancel (the layer has none)
    assert sum(p.numel() for p in net.parameters()) == reference_rna_parameters() - 4 * 128
    assert net.num_bases == 128 and net.norm is None
    assert isinstance(net.head, torch.nn.Linear) and isinstance(net.lift, ResidualLift)
    # overrides replace single settings; preset() is a copy
    small = FuncAttnNet.from_preset("paper_rna", 6, 50, num_bases=32)
    assert small.num_bases == 32 and small.head.out_features == 50
    settings = preset("paper_rna")
    settings["num_bases"] = 1
    assert settings != PRESETS["paper_rna"] and PRESETS["paper_rna"]["num_bases"] == 128
    with pytest.raises(ValueError, match="unknown preset 'paper'; known presets: \\['paper_rna'\\]"):
        FuncAttnNet.from_preset("paper")


def test_trunc_normal_init():
    torch.manual_seed(0)
    net = FuncAttnNet(0, 64, 10, num_layers=2, heads=4, num_bases=8, init="trunc_normal")
    linears = [m for part in (net.lift, *net.blocks) for m in part.modules()
               if isinstance(m, torch.nn.Linear)]
    weights = torch.cat([m.weight.flatten() for m in linears])
    assert abs(weights.std().item() - TRUNC_NORMAL_STD) < 0.1 * TRUNC_NORMAL_STD
    assert all(torch.all(m.bias == 0) for m in linears if m.bias is not None)
    # the head keeps PyTorch's default (as the authors' head), much wider than 0.02
    assert net.head.weight.std() > 2 * TRUNC_NORMAL_STD
    # laplacian_init keeps its zero correction, so the basis starts as the given one
    lap = FuncAttnNet(0, 64, 10, num_layers=2, heads=4, num_bases=8, basis_type="laplacian_init",
                      init="trunc_normal")
    assert all(torch.all(b.attn.basis_module.proj.weight == 0) for b in lap.blocks)
    # reset_parameters draws again with the same rule
    lap.reset_parameters()
    assert all(torch.all(b.attn.basis_module.proj.weight == 0) for b in lap.blocks)


def test_linear_head_and_residual_lift_compose_as_documented():
    net = FuncAttnNet(0, 16, 5, num_layers=2, heads=2, num_bases=4, head="linear",
                      lift="residual").double()
    pos = torch.rand(30, 3, dtype=torch.float64)
    lift = net.lift
    h0 = torch.nn.functional.gelu(lift.lin0(pos))
    h = lift.lin2(h0 + torch.nn.functional.gelu(lift.lin1(h0))) + lift.offset
    for block in net.blocks:
        h = block(h, pos)
    torch.testing.assert_close(net(None, pos), net.head(h))  # no final norm, one Linear
    assert 0 <= lift.offset.min() and lift.offset.max() < 1 / 16


@pytest.mark.parametrize("kwargs, match", [
    (dict(init="xavier"), "'init' must be one of"),
    (dict(head="conv"), "'head' must be one of"),
    (dict(lift="deep"), "'lift' must be one of"),
    (dict(mlp_ratio=0), "'mlp_ratio' must be a positive finite number, got 0"),
    (dict(mlp_ratio=-2), "'mlp_ratio' must be a positive finite number, got -2"),
    (dict(mlp_ratio=float("nan")), "'mlp_ratio' must be a positive finite number, got nan"),
    (dict(num_layers=True), "'num_layers' must be a positive int, got True"),
    (dict(k=0, local="edgeconv"), "'k' must be a positive int, got 0"),
    (dict(dropout=-0.1), r"'dropout' must be a finite number >= 0.0 and < 1.0, got -0.1"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FuncAttnNet(0, 16, 2, **{**dict(num_layers=1, heads=2, num_bases=4), **kwargs})


def test_a_local_module_instance_is_copied_per_block():
    """``local=GCNConv(...)`` once gave every block the same conv (tied weights)."""
    conv = GCNConv(16, 16)
    net = FuncAttnNet(3, 16, 2, num_layers=3, heads=2, num_bases=4, local=conv)
    convs = [block.local for block in net.blocks]
    assert all(c is not conv for c in convs) and len({id(c) for c in convs}) == 3
    weights = {c.lin.weight.data_ptr() for c in convs}
    assert len(weights) == 3
    assert not torch.equal(convs[0].lin.weight, convs[1].lin.weight)  # re-initialised each
    assert sum(p.numel() for c in convs for p in c.parameters()) == \
        3 * sum(p.numel() for p in conv.parameters())


def test_edge_attr_and_edge_index_reach_the_local_conv():
    """Extra keyword arguments go to the local conv: GINEConv needs ``edge_attr``."""
    from torch_geometric.nn import GINEConv

    def gine(channels):
        return GINEConv(torch.nn.Sequential(torch.nn.Linear(channels, channels), torch.nn.ReLU()),
                        edge_dim=4)

    net = FuncAttnNet(3, 16, 2, num_layers=1, heads=2, num_bases=4, local=gine).double()
    x, pos = torch.randn(12, 3, dtype=torch.float64), torch.randn(12, 3, dtype=torch.float64)
    batch = batch_vector([5, 7])
    edge_index = torch.tensor([[0, 1, 2, 3, 5, 6, 7, 8, 9, 10], [1, 2, 3, 4, 6, 7, 8, 9, 10, 11]])
    edge_attr = torch.randn(10, 4, dtype=torch.float64)
    out = net(x, pos, batch, edge_index=edge_index, edge_attr=edge_attr)
    changed = net(x, pos, batch, edge_index=edge_index, edge_attr=2 * edge_attr)
    assert not torch.allclose(out, changed)  # edge_attr is used
    # the edges are the given ones, not the kNN graph of pos: with one block, nodes without
    # an incoming edge (0 and 5) do not depend on edge_attr
    torch.testing.assert_close(out[[0, 5]], changed[[0, 5]])
    block = FuncAttnBlock(16, 2, 4, local=gine(16)).double()
    h = torch.randn(12, 16, dtype=torch.float64)
    assert not torch.allclose(block(h, None, batch, edge_index=edge_index, edge_attr=edge_attr),
                              block(h, None, batch, edge_index=edge_index, edge_attr=-edge_attr))
    with pytest.raises(ValueError, match=r"\['edge_attr'\] go to the local branch, but the model has none"):
        FuncAttnNet(3, 16, 2, num_layers=1, heads=2, num_bases=4)(x, pos, batch, edge_attr=edge_attr)


def test_mass_and_basis_pass_through_pyg_sequential():
    """``torch_geometric.nn.Sequential`` passes arguments by position."""
    from torch_geometric.nn import Sequential

    from tg_funcattn.nn import FunctionalAttention

    layer = FunctionalAttention(16, 2, 4, basis_type="laplacian").double()
    block = FuncAttnBlock(16, 2, 4, basis_type="laplacian").double()
    model = Sequential("x, batch, mass, basis", [(layer, "x, batch, mass, basis -> x")])
    x = torch.randn(20, 16, dtype=torch.float64)
    batch = batch_vector([8, 12])
    mass = torch.rand(20, dtype=torch.float64) + 0.1
    basis = torch.cat([orthonormal_basis(8, 4, mass[:8]), orthonormal_basis(12, 4, mass[8:])])
    torch.testing.assert_close(model(x, batch, mass, basis), layer(x, batch, mass=mass, basis=basis))
    with pytest.raises(ValueError, match="needs the 'mass' argument"):  # the mass is used
        layer(x, batch, basis=basis)
    pos = torch.randn(20, 3, dtype=torch.float64)
    blocks = Sequential("x, pos, batch, mass, basis", [(block, "x, pos, batch, mass, basis -> x")])
    torch.testing.assert_close(blocks(x, pos, batch, mass, basis),
                               block(x, pos, batch, mass=mass, basis=basis))


def test_edgeconv_per_node_equals_pygs_per_edge_form():
    """The local EdgeConv computes its first layer per node; on the same
    weights it gives PyG's EdgeConv(MLP(2C, C, C), aggr="max"): on a kNN graph
    with every node's edges together (the view path) and on any edges (the
    scatter path, a node without edges getting zeros), values and gradients."""
    from torch_geometric.nn import EdgeConv as PygEdgeConv

    from torch_geometric.nn import MLP

    from tg_funcattn.nn.models import EdgeConv, knn_edges

    torch.manual_seed(0)
    ours = EdgeConv(16).double()
    pyg = PygEdgeConv(MLP([32, 16, 16], act="gelu", norm=None), aggr="max").double()
    pyg.load_state_dict(ours.state_dict())
    x = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    batch = batch_vector([20, 30])
    checks = ValueChecks()
    layout = validate_graph(GraphNeeds("learned", 1, False, 4, None), 50, x.device, batch, None,
                            None, None, checks)
    checks.run()
    edge_index, regular = knn_edges(torch.randn(50, 3, dtype=torch.float64), 5, layout)
    assert regular == 5 and torch.equal(edge_index[1], torch.arange(50).repeat_interleave(5))
    some = edge_index[:, torch.randperm(edge_index.shape[1])[:120]]  # irregular, nodes without edges
    for edges, k in ((edge_index, regular), (edge_index, None), (some, None)):
        expected = pyg(x, edges)
        out = ours(x, edges, k)
        torch.testing.assert_close(out, expected)
        torch.testing.assert_close(torch.autograd.grad(out.square().sum(), x)[0],
                                   torch.autograd.grad(expected.square().sum(), x)[0])
    # a graph with no more than k nodes: fewer neighbours there, so no view
    checks = ValueChecks()
    layout = validate_graph(GraphNeeds("learned", 1, False, 4, None), 50, x.device,
                            batch_vector([5, 45]), None, None, None, checks)
    checks.run()
    assert layout.bounds == [0, 5, 50] and knn_edges(torch.randn(50, 3), 5, layout)[1] is None


@pytest.mark.parametrize("add_self_loops", [True, False])
def test_point_transformer_per_node_equals_pygs_layer(add_self_loops):
    """On the network's kNN graph the local PointTransformerConv gathers
    per-node products; on the same weights it gives PyG's layer, values and
    gradients of every parameter (lin_dst's, zero up to round-off, included);
    on other edges, or with an attention MLP, it is PyG's layer."""
    from torch_geometric.nn import PointTransformerConv as PygPointTransformerConv

    from tg_funcattn.nn.models import PointTransformerConv, knn_edges

    torch.manual_seed(0)
    ours = PointTransformerConv(16, 16, add_self_loops=add_self_loops).double()
    pyg = PygPointTransformerConv(16, 16, add_self_loops=add_self_loops).double()
    pyg.load_state_dict(ours.state_dict())
    x = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    pos = torch.randn(50, 3, dtype=torch.float64)
    checks = ValueChecks()
    layout = validate_graph(GraphNeeds("learned", 1, False, 4, None), 50, x.device,
                            batch_vector([20, 30]), None, None, None, checks)
    checks.run()
    edge_index, regular = knn_edges(pos, 5, layout)
    some = edge_index[:, torch.randperm(edge_index.shape[1])[:120]]
    for edges, k in ((edge_index, regular), (some, None)):
        expected = pyg(x, pos, edges)
        out = ours(x, pos, edges, k)
        torch.testing.assert_close(out, expected)
        for got, want in zip(torch.autograd.grad(out.square().sum(), [x, *ours.parameters()]),
                             torch.autograd.grad(expected.square().sum(), [x, *pyg.parameters()])):
            torch.testing.assert_close(got, want)
    attention = PointTransformerConv(16, 16, attn_nn=torch.nn.Linear(16, 16)).double()
    reference = PygPointTransformerConv(16, 16, attn_nn=torch.nn.Linear(16, 16)).double()
    reference.load_state_dict(attention.state_dict())
    torch.testing.assert_close(attention(x, pos, edge_index, regular), reference(x, pos, edge_index))
