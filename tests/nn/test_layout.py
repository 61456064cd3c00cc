"""Validation once per forward pass, host synchronisations, streaming."""
import pytest
import torch
from helpers import batch_vector
from probes import HostSyncs

from tg_funcattn.nn import FuncAttnBlock, FuncAttnNet, FunctionalAttention


@pytest.mark.parametrize("kind, extra", [("learned", 0), ("laplacian_init", 1)])
@pytest.mark.parametrize("num_layers", [1, 4])
def test_host_syncs_per_forward_do_not_grow_with_depth(kind, extra, num_layers):
    """All value checks of a forward pass are read in one host synchronisation
    (plus one to read the number of graphs when ``batch_size`` is not given,
    plus one for the deferred factorisation check of ``laplacian_init``),
    whatever the number of blocks."""
    batch = batch_vector([30, 50, 20, 40])
    pos = torch.randn(140, 3)
    mass = torch.rand(140) + 0.1
    basis = None if kind == "learned" else torch.randn(140, 8)
    net = FuncAttnNet(0, 16, 3, num_layers=num_layers, heads=2, num_bases=8, basis_type=kind)
    with HostSyncs() as given:
        net(None, pos, batch, mass=mass, basis=basis, batch_size=4)
    with HostSyncs() as read:
        net(None, pos, batch, mass=mass, basis=basis)
    assert given.count == 1 + extra, given.names
    assert read.count == 2 + extra, read.names


def test_layer_and_block_validate_with_one_sync():
    batch = batch_vector([9, 14])
    x = torch.randn(23, 16)
    with HostSyncs() as layer_syncs:
        FunctionalAttention(16, 2, 4)(x, batch, mass=torch.rand(23) + 0.1, batch_size=2)
    with HostSyncs() as block_syncs:
        FuncAttnBlock(16, 2, 4)(x, None, batch, batch_size=2)
    assert layer_syncs.count == 1 and block_syncs.count == 1


def test_streaming_checkpoints_are_never_nested(monkeypatch):
    """With autograd and ``chunk_size``, every chunk is checkpointed once:
    no checkpoint runs inside another (the forward, nor the recomputation
    in the backward pass)."""
    import torch.utils.checkpoint as checkpoint_module

    original = checkpoint_module.checkpoint
    depth, deepest, calls = [0], [0], [0]

    def counting(fn, *args, **kwargs):
        def wrapped(*a, **k):
            depth[0] += 1
            deepest[0] = max(deepest[0], depth[0])
            try:
                return fn(*a, **k)
            finally:
                depth[0] -= 1
        calls[0] += 1
        return original(wrapped, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module, "checkpoint", counting)
    net = FuncAttnNet(0, 16, 3, num_layers=2, heads=2, num_bases=4)
    pos = torch.randn(100, 3)
    net(None, pos, batch_vector([40, 60]), chunk_size=30).square().sum().backward()
    assert calls[0] > 0 and deepest[0] == 1


def test_an_eigenbasis_of_other_points_names_the_likely_cause():
    """Eigenvectors computed before the points were resampled have the wrong row count."""
    layer = FunctionalAttention(16, 2, 4, basis_type="laplacian")
    cause = (r"one row per node: were the points resampled after LaplacianEigenbasis computed "
             r"data.mass and data.evecs .*CheckEigenbasis\(\)")
    with pytest.raises(ValueError, match=r"got \(642, 6\); " + cause):
        layer(torch.randn(500, 16), basis=torch.randn(642, 6))
    with pytest.raises(ValueError, match=r"'mass' must have shape \[N\] = \[500\], got \(642,\); "
                                         + cause.replace("one row", "one")):
        layer(torch.randn(500, 16), mass=torch.ones(642), basis=torch.randn(642, 6))
    with pytest.raises(ValueError, match=r"got \(500, 3\)$"):
        layer(torch.randn(500, 16), basis=torch.randn(500, 3))


@pytest.mark.parametrize("kind", ["learned", "laplacian_init"])
@pytest.mark.parametrize("chunk_size", [None, 50])
def test_host_reads_inside_the_segment_products_do_not_grow_with_depth(monkeypatch, kind,
                                                                       chunk_size):
    """Every read of tensor values on the host (``item``, ``tolist``, ``bool``,
    ``nonzero``), also inside the custom segment ops (which torch function modes
    do not see), counted by patching ``torch.Tensor``: the graph bounds are read
    once per forward pass, not per product, so 2 and 8 blocks read as often."""
    counts = []

    def counting(name):
        original = getattr(torch.Tensor, name)

        def method(self, *args, **kwargs):
            counts[-1] += 1
            return original(self, *args, **kwargs)
        return method

    for name in ("item", "tolist", "__bool__", "nonzero"):
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    batch = batch_vector([30, 50, 20, 40])
    pos, mass = torch.randn(140, 3), torch.rand(140) + 0.1
    basis = None if kind == "learned" else torch.randn(140, 8)
    for num_layers in (2, 8):
        net = FuncAttnNet(0, 16, 3, num_layers=num_layers, heads=2, num_bases=8, basis_type=kind)
        counts.append(0)
        net(None, pos, batch, mass=mass, basis=basis, chunk_size=chunk_size).sum().backward()
    assert counts[0] == counts[1], counts


def test_a_single_graph_reads_no_bounds(monkeypatch):
    reads = []
    original = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: reads.append(self.shape) or original(self))
    FuncAttnNet(0, 16, 3, num_layers=2, heads=2, num_bases=8)(None, torch.randn(40, 3),
                                                               batch_size=1).sum().backward()
    assert len(reads) == 1  # the value checks, read together; no graph bounds
