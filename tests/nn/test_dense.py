"""DenseFunctionalAttention: functional attention behind the ``attn(x, mask)``
convention of PyG's SGFormer, Polynormer and PerformerAttention."""
import pytest
import torch
from helpers import batch_vector
from reference import orthonormal_basis
from torch_geometric.utils import to_dense_batch

from tg_funcattn.nn import DenseFunctionalAttention, FunctionalAttention

SIZES = [7, 3, 12, 5]


def padded(sizes, channels=16, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(sum(sizes), channels, generator=gen, dtype=dtype)
    batch = batch_vector(sizes)
    dense, mask = to_dense_batch(x, batch, fill_value=float("nan"))  # padding must not leak
    return x, batch, dense, mask


def layer(kind="learned", **kw):
    torch.manual_seed(0)
    return DenseFunctionalAttention(16, heads=4, num_bases=4, basis_type=kind, **kw).double()


def test_equals_the_flat_layer_on_valid_positions_and_zero_on_padding():
    dense_attn = layer()
    x, batch, dense, mask = padded(SIZES)
    out = dense_attn(dense, mask)
    assert out.shape == dense.shape
    torch.testing.assert_close(out[mask], dense_attn.attn(x, batch))
    assert (out[~mask] == 0).all()


def test_padded_batch_equals_each_graph_alone_and_empty_rows():
    dense_attn = layer()
    x, _, dense, mask = padded(SIZES)
    out = dense_attn(dense, mask)
    start = 0
    for b, n in enumerate(SIZES):
        alone = dense_attn(x[start:start + n].unsqueeze(0))  # no mask: every position valid
        torch.testing.assert_close(out[b, :n], alone[0])
        start += n
    # a row with no valid position is an empty graph: zeros, the others unchanged
    with_empty = torch.cat([dense[:1], torch.zeros_like(dense[:1]), dense[1:]])
    empty_mask = torch.cat([mask[:1], torch.zeros_like(mask[:1]), mask[1:]])
    out2 = dense_attn(with_empty, empty_mask)
    assert (out2[1] == 0).all()
    torch.testing.assert_close(out2[[0, 2, 3, 4]], out)
    assert (dense_attn(dense, torch.zeros_like(mask)) == 0).all()


def test_gradients_reach_valid_inputs_only_and_every_parameter():
    dense_attn = layer()
    _, _, dense, mask = padded(SIZES)
    dense = torch.nan_to_num(dense).requires_grad_()
    dense_attn(dense, mask).square().sum().backward()
    assert (dense.grad[~mask] == 0).all() and (dense.grad[mask] != 0).any()
    for name, p in dense_attn.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_mass_and_basis_follow_the_mask():
    dense_attn = layer("laplacian")  # at least num_bases nodes a graph
    x, batch, dense, mask = padded([7, 4, 12, 5])
    gen = torch.Generator().manual_seed(1)
    mass = torch.rand(len(x), generator=gen, dtype=torch.float64) + 0.5
    # the first 4 columns (those used) orthonormal in the mass on every graph
    basis = torch.cat([torch.cat([orthonormal_basis(n, 4, mass[batch == g], gen),
                                  torch.randn(n, 2, generator=gen, dtype=torch.float64)], dim=1)
                       for g, n in enumerate([7, 4, 12, 5])])
    out = dense_attn(dense, mask, mass=to_dense_batch(mass, batch)[0],
                     basis=to_dense_batch(basis, batch)[0])
    torch.testing.assert_close(out[mask], dense_attn.attn(x, batch, mass=mass, basis=basis))


def test_sgformer_and_polynormer_with_the_adapter_train():
    models = pytest.importorskip("torch_geometric.nn.models")
    if not hasattr(models, "Polynormer"):
        pytest.skip("SGFormer and Polynormer are in torch_geometric >= 2.6")
    SGFormer, Polynormer = models.SGFormer, models.Polynormer
    torch.manual_seed(0)
    x, batch, _, _ = padded(SIZES, channels=8, dtype=torch.float32)
    edge_index = torch.cat([torch.stack([torch.arange(s, s + n - 1), torch.arange(s + 1, s + n)])
                            for s, n in zip([0, 7, 10, 22], SIZES)], dim=1)
    edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    y = torch.randint(0, 3, (len(x),))

    sgformer = SGFormer(8, 16, 3, trans_num_layers=2, trans_num_heads=2)
    for i in range(2):
        sgformer.trans_conv.attns[i] = DenseFunctionalAttention(16, heads=2, num_bases=4)
    polynormer = Polynormer(8, 16, 3, heads=2, local_layers=1, global_layers=1)
    polynormer.global_attn[0] = DenseFunctionalAttention(32, heads=2, num_bases=4)
    polynormer._global = True  # the global stage, which Polynormer switches on after warm-up

    models = ((sgformer, sgformer.trans_conv.attns), (polynormer, polynormer.global_attn))
    for model, attns in models:
        model.reset_parameters()

        def eval_loss(model=model):  # without the models' dropout
            model.eval()
            with torch.no_grad():
                loss = torch.nn.functional.nll_loss(model(x, edge_index, batch), y).item()
            model.train()
            return loss

        before = eval_loss()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for step in range(30):
            opt.zero_grad()
            torch.nn.functional.nll_loss(model(x, edge_index, batch), y).backward()
            if step == 0:
                for name, p in attns.named_parameters():
                    assert p.grad is not None and p.grad.abs().sum() > 0, name
            opt.step()
        assert eval_loss() < 0.8 * before


def planted_partition(seed, blocks=5, size=100, p_in=0.05, p_out=0.005, noise=1.5):
    """A stochastic block model whose node features are the one-hot block plus
    Gaussian noise: a node's own features say little, its neighbours more."""
    from torch_geometric.utils import stochastic_blockmodel_graph

    torch.manual_seed(seed)
    probs = torch.full((blocks, blocks), p_out).fill_diagonal_(p_in)
    edge_index = stochastic_blockmodel_graph([size] * blocks, probs)
    y = torch.arange(blocks).repeat_interleave(size)
    x = torch.nn.functional.one_hot(y, blocks).float() + noise * torch.randn(len(y), blocks)
    perm = torch.randperm(len(y))
    return x, edge_index, y, perm[:len(y) // 2], perm[len(y) // 2:]


def validation_accuracy(model, data, optimizer, epochs, switch_at=None):
    """Full-batch training with ``optimizer``; Polynormer's global stage from
    epoch ``switch_at`` on."""
    x, edge_index, y, train, val = data
    batch = torch.zeros(len(y), dtype=torch.long)
    for epoch in range(epochs):
        if epoch == switch_at:
            model._global = True
        optimizer.zero_grad()
        torch.nn.functional.nll_loss(model(x, edge_index, batch)[train], y[train]).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        return (model(x, edge_index, batch).argmax(-1)[val] == y[val]).float().mean().item()


@pytest.mark.slow
def test_polynormer_with_the_swap_learns_a_planted_partition_as_well_as_unmodified():
    # PyG's Polynormer stacks its global layers without a residual: the swapped
    # layers alone must carry the class from the local stage to the prediction
    # (a layer whose output is nearly constant at initialisation stays at chance)
    models = pytest.importorskip("torch_geometric.nn.models")
    if not hasattr(models, "Polynormer"):
        pytest.skip("Polynormer is in torch_geometric >= 2.6")
    scores = {False: [], True: []}
    for seed in range(3):
        for swap in scores:
            data = planted_partition(seed)
            torch.manual_seed(seed)
            model = models.Polynormer(5, 64, 5)
            if swap:  # as the README shows
                for i in range(len(model.global_attn)):
                    model.global_attn[i] = DenseFunctionalAttention(64)
            optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
            scores[swap].append(validation_accuracy(model, data, optimizer, 60, switch_at=30))
    unmodified, swapped = (sum(scores[s]) / 3 for s in (False, True))
    assert unmodified > 0.6  # the task is learnable within the budget
    assert swapped >= 0.9 * unmodified, scores


@pytest.mark.slow
def test_sgformer_with_the_swap_and_the_readme_optimiser_trains_every_new_parameter():
    models = pytest.importorskip("torch_geometric.nn.models")
    if not hasattr(models, "SGFormer"):
        pytest.skip("SGFormer is in torch_geometric >= 2.6")
    scores = {}
    for swap in (False, True):
        data = planted_partition(0)
        torch.manual_seed(0)
        model = models.SGFormer(5, 64, 5, trans_num_heads=8)
        if swap:
            for i in range(len(model.trans_conv.attns)):
                model.trans_conv.attns[i] = DenseFunctionalAttention(64)
            initial = {n: p.detach().clone() for n, p in model.trans_conv.attns.named_parameters()}
        # the README's recipe: PyG's two parameter groups, built after the swap
        optimizer = torch.optim.Adam([
            dict(params=model.trans_conv.parameters(), weight_decay=1e-3),
            dict(params=list(model.graph_conv.parameters()) + list(model.fc.parameters()))],
            lr=1e-2)
        scores[swap] = validation_accuracy(model, data, optimizer, 60)
    for name, p in model.trans_conv.attns.named_parameters():
        assert not torch.equal(p, initial[name]), f"{name} was not trained"
    assert scores[False] > 0.6
    assert scores[True] >= 0.9 * scores[False], scores


def test_bad_input_names_the_argument():
    dense_attn = layer()
    _, _, dense, mask = padded(SIZES)
    with pytest.raises(ValueError, match="'x'"):
        dense_attn(dense[0], mask)
    with pytest.raises(ValueError, match="'mask'"):
        dense_attn(dense, mask[:, :3])
    with pytest.raises(TypeError, match="'mask'"):
        dense_attn(dense, mask.long())
    with pytest.raises(ValueError, match="'mass'"):
        dense_attn(dense, mask, mass=torch.rand(len(SIZES)))
    with pytest.raises(ValueError, match="'x'"):
        dense_attn(torch.nan_to_num(dense)[..., :8], mask)
    assert repr(dense_attn) == \
        "DenseFunctionalAttention(16, heads=4, num_bases=4, basis_type='learned')"
    assert isinstance(dense_attn.attn, FunctionalAttention)
