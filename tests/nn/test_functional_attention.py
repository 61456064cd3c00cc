import copy
import math

import pytest
import torch
from helpers import KINDS, batch_vector
from probes import LargestTensor
from reference import dense_functional_attention, orthonormal_basis

from tg_funcattn.nn import FunctionalAttention


def make_layer(kind="learned", channels=16, heads=2, num_bases=4, dtype=torch.float64, **kwargs):
    layer = FunctionalAttention(channels, heads, num_bases, basis_type=kind, **kwargs).to(dtype)
    with torch.no_grad():  # move away from the special initial values
        layer.ridge_raw.uniform_(-1.0, 1.0)
        if layer.basis_type == "learned":
            layer.basis_module.temperature.uniform_(0.3, 1.5)
        if kind == "laplacian_init":
            layer.basis_module.proj.weight.normal_(0, 0.1)
            layer.basis_module.proj.bias.normal_(0, 0.1)
    return layer


def make_inputs(sizes, channels=16, num_bases=4, dtype=torch.float64, with_mass=True):
    batch = batch_vector(sizes)
    x = torch.randn(batch.numel(), channels, dtype=dtype)
    mass = torch.rand(batch.numel(), dtype=dtype) + 0.1 if with_mass else None
    ones = torch.ones(batch.numel(), dtype=dtype)
    m = mass if with_mass else ones  # an eigenbasis is orthonormal in the mass it is used with
    # the first num_bases columns (those used) orthonormal on every graph of at least
    # num_bases nodes, the two columns beyond them only where the graph has room
    basis = torch.cat([orthonormal_basis(n, num_bases + 2, m[batch == g]) if n >= num_bases + 2
                       else torch.cat([orthonormal_basis(n, num_bases, m[batch == g]),
                                       torch.randn(n, 2, dtype=dtype)], dim=1)
                       for g, n in enumerate(sizes)])
    return x, batch, mass, basis


def call(layer, x, batch, mass, basis, **kwargs):
    return layer(x, batch, mass=mass, basis=None if layer.basis_type == "learned" else basis, **kwargs)


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_and_repr(kind):
    layer = make_layer(kind, dtype=torch.float32)
    x, batch, mass, basis = make_inputs([5, 9], dtype=torch.float32)
    out, bases, fmap = call(layer, x, batch, mass, basis, return_maps=True)
    assert out.shape == (14, 16)
    assert bases.shape == (14, 2, 4)
    assert fmap.shape == (2, 2, 4, 4)
    assert repr(layer) == f"FunctionalAttention(16, heads=2, num_bases=4, basis_type='{kind}')"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("with_mass", [True, False])
def test_batched_equals_each_graph_alone(kind, with_mass):
    sizes = [1, 7, 300, 2000] if kind == "learned" else [4, 7, 300, 2000]
    layer = make_layer(kind)
    x, batch, mass, basis = make_inputs(sizes, with_mass=with_mass)
    if kind != "learned" and not with_mass:
        mass = torch.ones(x.shape[0], dtype=x.dtype)  # the basis is orthonormal for unit mass
    out = call(layer, x, batch, mass, basis)
    start = 0
    for n in sizes:
        sl = slice(start, start + n)
        alone = call(layer, x[sl], None, None if mass is None else mass[sl], basis[sl])
        torch.testing.assert_close(out[sl], alone, atol=1e-6, rtol=0)
        start += n


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("solve", ["primal", "dual"])
def test_matches_dense_reference(kind, solve):
    layer = make_layer(kind, solve=solve)
    x, batch, mass, basis = make_inputs([6, 11, 40])
    out, _, fmap = call(layer, x, batch, mass, basis, return_maps=True)
    ref, ref_map = dense_functional_attention(layer, x, batch, mass,
                                              None if kind == "learned" else basis, return_maps=True)
    torch.testing.assert_close(out, ref, atol=1e-9, rtol=1e-7)
    torch.testing.assert_close(fmap, ref_map, atol=1e-9, rtol=1e-7)


def test_dense_reference_uniform_mass():
    layer = make_layer("learned")
    x, batch, _, _ = make_inputs([3, 25])
    torch.testing.assert_close(layer(x, batch), dense_functional_attention(layer, x, batch),
                               atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize("kind", KINDS)
def test_primal_and_dual_agree(kind):
    layer = make_layer(kind, solve="primal")
    x, batch, mass, basis = make_inputs([8, 30])
    primal, _, c_primal = call(layer, x, batch, mass, basis, return_maps=True)
    layer.solve = "dual"
    dual, _, c_dual = call(layer, x, batch, mass, basis, return_maps=True)
    torch.testing.assert_close(primal, dual, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(c_primal, c_dual, atol=1e-10, rtol=1e-8)


def test_auto_solve_picks_the_smaller_system():
    assert FunctionalAttention(16, 2, 4)._resolve_solve() == "primal"  # k=4 < d=8
    assert FunctionalAttention(16, 2, 32)._resolve_solve() == "dual"


@pytest.mark.parametrize("kind", KINDS)
def test_permutation_equivariance(kind):
    layer = make_layer(kind)
    x, batch, mass, basis = make_inputs([9, 23])
    out = call(layer, x, batch, mass, basis)
    perm = torch.cat([torch.randperm(9), 9 + torch.randperm(23)])  # within graphs: batch stays sorted
    out_perm = call(layer, x[perm], batch, mass[perm], basis[perm])
    torch.testing.assert_close(out_perm, out[perm], atol=1e-10, rtol=1e-8)


def _grid(n, warp):
    """Nested grid of the unit square (n = 2^j + 1), warped by t -> t^p, with
    trapezoid quadrature weights of the warped coordinates."""
    t = torch.linspace(0, 1, n, dtype=torch.float64) ** warp
    w = torch.zeros(n, dtype=torch.float64)
    w[1:] += (t[1:] - t[:-1]) / 2
    w[:-1] += (t[1:] - t[:-1]) / 2
    xs, ys = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], 1), torch.outer(w, w).reshape(-1)


def _smooth_features(pos, channels=16):
    g = torch.Generator().manual_seed(3)
    freq = torch.randn(2, channels, generator=g, dtype=torch.float64) * 2
    phase = torch.rand(channels, generator=g, dtype=torch.float64) * 2 * math.pi
    return torch.sin(pos @ freq + phase)


def test_quadrature_convergence_with_density():
    """The same smooth function on nested, non-uniform grids of one surface:
    with matching masses the outputs at the shared nodes converge (trapezoid
    rule, O(h^2)); with uniform weights they converge to a different, biased
    limit, so the mass is what makes the layer discretisation-invariant."""
    layer = make_layer("learned")
    levels = [9, 17, 33, 65, 129]
    coarse, _ = _grid(levels[0], warp=2.0)
    outs, outs_unweighted = [], []
    for n in levels:
        pos, mass = _grid(n, warp=2.0)
        stride = (n - 1) // (levels[0] - 1)
        idx = (torch.arange(levels[0])[:, None] * stride * n + torch.arange(levels[0]) * stride).reshape(-1)
        torch.testing.assert_close(pos[idx], coarse)  # nested: the coarse nodes are shared
        x = _smooth_features(pos)
        with torch.no_grad():
            outs.append(layer(x, mass=mass)[idx])
            outs_unweighted.append(layer(x)[idx])
    diffs = [(b - a).abs().max().item() for a, b in zip(outs, outs[1:])]
    for prev, nxt in zip(diffs, diffs[1:]):
        assert nxt < 0.4 * prev, diffs  # second order: about 1/4 per halving of h
    assert diffs[-1] < 1e-3 * outs[-1].abs().max().item()
    # uniform weights on the warped grid converge elsewhere
    bias = (outs_unweighted[-1] - outs[-1]).abs().max().item()
    assert bias > 100 * diffs[-1]


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck(kind):
    layer = make_layer(kind, channels=4, heads=2, num_bases=3)
    x, batch, mass, basis = make_inputs([3, 5], channels=4, num_bases=3)
    x.requires_grad_(True)
    mass.requires_grad_(True)
    inputs = (x, mass) if kind == "learned" else (x, mass, basis.requires_grad_(True))

    def fn(x, mass, basis=None):
        return call(layer, x, batch, mass, basis)

    assert torch.autograd.gradcheck(fn, inputs)
    params = [p for p in layer.parameters()]
    out = fn(*inputs)
    grads = torch.autograd.grad(out.square().sum(), params, allow_unused=True)
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_float32_parameter_gradients_match_float64():
    """Every parameter gets a gradient, and in float32 (a one-node graph in
    the batch) it is the float64 gradient of the same layer to 1e-4."""
    layer = make_layer("learned", dtype=torch.float32)
    wide = copy.deepcopy(layer).double()
    x, batch, mass, _ = make_inputs([1, 50], dtype=torch.float32)
    layer(x, batch, mass=mass).square().mean().backward()
    wide(x.double(), batch, mass=mass.double()).square().mean().backward()
    for (name, p), reference in zip(layer.named_parameters(), wide.parameters()):
        assert p.grad is not None and reference.grad.abs().max() > 0, name
        error = (p.grad.double() - reference.grad).norm() / reference.grad.norm()
        assert error < 1e-4, (name, error.item())


def _constant_input_closed_form(layer, row):
    """The layer's output on a graph whose nodes all carry the features ``row``,
    in the limit of no ridge (float64).  Every coefficient row is the value
    ``f`` (a partition of unity), so ``K = 1 k^T`` has rank one and
    ``C V = Q K^T (K K^T)^+ V = (q . k / |k|^2) 1 v^T``; the partition sums
    it back to ``(q . k / |k|^2) v`` at every node."""
    def lin(module, t):
        weight = module.weight.double()
        return t @ weight.T + (0 if module.bias is None else module.bias.double())

    d = layer.head_channels
    f = lin(layer.lin_value, row.double())
    heads = []
    for h in range(layer.heads):
        fh = f[:, h * d:(h + 1) * d]
        q, k, v = lin(layer.lin_q, fh), lin(layer.lin_k, fh), lin(layer.lin_v, fh)
        heads.append((q * k).sum() / k.square().sum() * v)
    return lin(layer.lin_out, torch.cat(heads, dim=1))


def test_rank_deficient_keys_give_the_minimum_norm_solution():
    """Keys of rank one (constant features: every coefficient row equal) with
    essentially no ridge: the output is the closed form of the pseudo-inverse
    solution, and the gradients are finite.  All-zero keys give a zero map,
    so the output is the bias of the output projection."""
    layer = make_layer("learned", dtype=torch.float32, ridge=1e-3)
    with torch.no_grad():
        layer.ridge_raw.fill_(-30.0)  # rho = softplus(-30) ~ 1e-13 of ||K||^2: essentially no ridge
    for row in (torch.randn(1, 16), torch.zeros(1, 16)):  # zero input: the values are the bias
        x = row.repeat(64, 1).requires_grad_(True)
        out = layer(x)
        expected = _constant_input_closed_form(layer, row).float().expand_as(out)
        # float32 keys are rank one only to rounding, which the tiny ridge amplifies (float64:
        # 1e-6); with a relative ridge of softplus(0) it would be off by about 10%
        torch.testing.assert_close(out, expected, atol=1e-3 * expected.abs().max().item(), rtol=0)
        out.sum().backward()
        assert torch.isfinite(x.grad).all()
    with torch.no_grad():
        layer.lin_k.weight.zero_()  # all-zero keys
    x = torch.randn(10, 16, requires_grad=True)
    out = layer(x)
    torch.testing.assert_close(out, layer.lin_out.bias.detach().expand_as(out), atol=1e-6, rtol=0)
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_solve_stays_wide(dtype):
    layer = make_layer("learned", channels=32, heads=4, num_bases=8, dtype=torch.float32)
    x = torch.randn(300, 32) * 30  # large activations: an fp16 Gram matrix would overflow
    ref = layer(x)
    with torch.autocast("cpu", dtype=dtype):
        out, _, fmap = layer(x, return_maps=True)
    assert out.dtype == dtype
    assert fmap.dtype == torch.float64
    assert torch.isfinite(out).all()
    err = (out.float() - ref).abs().max() / ref.abs().max()
    assert err < 0.1


@pytest.mark.parametrize("solve", ["primal", "dual"])
def test_dropout_drops_map_entries_only_in_training(solve):
    """``dropout`` acts on the functional map, as attention-weight dropout
    does: the output is not zeroed (an output dropout of 0.5 would zero half
    of it), it varies in training and, since the output is linear in the
    map, its mean over draws is the output of evaluation mode."""
    torch.manual_seed(0)
    layer = make_layer("learned", num_bases=4, dropout=0.5, solve=solve)
    x = torch.randn(20, 16, dtype=torch.float64)
    layer.eval()
    expected = layer(x)
    torch.testing.assert_close(layer(x), expected)
    layer.train()
    with torch.no_grad():
        draws = torch.stack([layer(x) for _ in range(400)])
    assert (draws[0] == 0).float().mean() < 0.01
    assert not torch.allclose(draws[0], draws[1])
    error = (draws.mean(0) - expected).abs().max() / expected.abs().max()
    spread = (draws - expected).abs().max() / expected.abs().max()
    assert error < 0.05 < spread


def test_reset_parameters_restores_initial_state():
    layer = FunctionalAttention(16, 2, 4, basis_type="laplacian_init", ridge=0.7)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(1.0)
    layer.reset_parameters()
    assert torch.all(layer.basis_module.proj.weight == 0) and torch.all(layer.basis_module.proj.bias == 0)
    torch.testing.assert_close(layer.ridge, torch.full((2,), 0.7))
    learned = FunctionalAttention(16, 2, 4, temperature=0.8)
    torch.testing.assert_close(learned.basis_module.temperature.detach(), torch.full((2,), 0.8))
    w = learned.basis_module.proj.weight  # orthogonal init: orthonormal columns (k=4 < d=8)
    torch.testing.assert_close(w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T,
                               torch.eye(min(w.shape)), atol=1e-5, rtol=0)


def test_shared_ridge_is_one_parameter_for_all_heads():
    layer = make_layer("learned", shared_ridge=True)
    assert layer.ridge_raw.shape == (1,) and layer.ridge.shape == (2,)
    x, batch, mass, basis = make_inputs([6, 11, 40])
    torch.testing.assert_close(call(layer, x, batch, mass, basis),
                               dense_functional_attention(layer, x, batch, mass), atol=1e-9, rtol=1e-7)
    # a per-head layer whose ridges all equal the shared one computes the same
    per_head = FunctionalAttention(16, 2, 4).double()
    state = layer.state_dict()
    state["ridge_raw"] = state["ridge_raw"].expand(2).clone()
    per_head.load_state_dict(state)
    torch.testing.assert_close(per_head(x, batch, mass=mass), layer(x, batch, mass=mass))
    layer(x, batch, mass=mass).sum().backward()
    assert layer.ridge_raw.grad is not None and layer.ridge_raw.grad.shape == (1,)


def test_laplacian_init_equals_laplacian_at_initialisation():
    fixed = FunctionalAttention(16, 2, 4, basis_type="laplacian").double()
    adaptive = FunctionalAttention(16, 2, 4, basis_type="laplacian_init").double()
    state = {k: v for k, v in adaptive.state_dict().items()}
    for name in fixed.state_dict():
        state[name] = fixed.state_dict()[name]
    adaptive.load_state_dict(state)
    x, batch, mass, basis = make_inputs([10, 20])
    out, expected = adaptive(x, batch, mass=mass, basis=basis), fixed(x, batch, mass=mass, basis=basis)
    # equal up to the relative jitter GRAM_JITTER = 1e-5 of the re-orthonormalisation
    torch.testing.assert_close(out, expected, atol=2e-5 * expected.abs().max().item(), rtol=0)
    assert not torch.equal(out, expected)


@pytest.mark.parametrize("kind", KINDS)
def test_memory_is_linear_no_n_by_k_by_d(kind):
    """No tensor of the forward or backward pass, and none that autograd saves,
    is larger than O(N (c + H k)): an N x k x d intermediate (here 8x larger)
    would show up."""
    channels, heads, k = 32, 4, 16  # d = 8; N*k*d = 4 * N*H*k... = 128 N
    layer = make_layer(kind, channels, heads, k, dtype=torch.float32)
    x, batch, mass, basis = make_inputs([700, 1300], channels, k, dtype=torch.float32)
    x.requires_grad_(True)
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with LargestTensor() as probe, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        call(layer, x, batch, mass, basis).sum().backward()
    n = x.shape[0]
    assert probe.largest <= n * (heads * (k + 1) + 2 * channels)
    assert max(saved) <= n * (heads * (k + 1) + 2 * channels)
    if kind != "laplacian":
        assert max(saved) >= n * heads * k  # the [H, N, k] basis is saved: the hook sees it
    assert probe.largest < n * k * channels  # the per-node outer products over all heads


@pytest.mark.parametrize("kind", KINDS)
def test_torch_compile_without_graph_breaks(kind):
    layer = make_layer(kind, dtype=torch.float32)
    x, batch, mass, basis = make_inputs([5, 40, 13], dtype=torch.float32)
    explanation = torch._dynamo.explain(layer)(x, batch, mass=mass, basis=None if kind == "learned" else basis,
                                                 batch_size=3)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


@pytest.mark.slow
def test_torch_compile_matches_eager():
    layer = make_layer("learned", dtype=torch.float32)
    compiled = torch.compile(layer, fullgraph=True, dynamic=True)
    for sizes in ([5, 40, 13], [100, 3, 7]):
        x, batch, mass, _ = make_inputs(sizes, dtype=torch.float32)
        x.requires_grad_(True)
        out = compiled(x, batch, mass=mass, batch_size=len(sizes))
        torch.testing.assert_close(out, layer(x, batch, mass=mass), atol=1e-5, rtol=1e-4)
        (grad,) = torch.autograd.grad(out.sum(), x)
        (ref,) = torch.autograd.grad(layer(x, batch, mass=mass).sum(), x)
        torch.testing.assert_close(grad, ref, atol=1e-4, rtol=1e-4)


# ----------------------------------------------------------------- bad input
def _layer32(kind="learned"):
    return FunctionalAttention(16, 2, 4, basis_type=kind)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(channels=10, heads=3), ValueError, "'channels' .* divisible by 'heads'"),
    (dict(channels=16, heads=0), ValueError, "'heads' must be a positive int"),
    (dict(channels=16, num_bases=0), ValueError, "'num_bases' must be a positive int"),
    (dict(channels=16, basis_type="spectral"), ValueError, "'basis_type' must be one of"),
    (dict(channels=16, solve="qr"), ValueError, "'solve' must be one of"),
    (dict(channels=16, dropout=1.0), ValueError, "'dropout'"),
    (dict(channels=16, ridge=0.0), ValueError, "'ridge' must be a positive finite number"),
        (dict(channels=16, ridge=float("inf")), ValueError, "'ridge' must be a positive finite number"),
        (dict(channels=True), ValueError, "'channels' must be a positive int, got True"),
])
def test_bad_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        FunctionalAttention(**kwargs)


def test_bad_x():
    layer = _layer32()
    with pytest.raises(ValueError, match=r"'x' must have shape \[N, 16\]"):
        layer(torch.randn(5, 15))
    with pytest.raises(ValueError, match="'x' must be 2-dimensional"):
        layer(torch.randn(2, 5, 16))
    with pytest.raises(TypeError, match="'x' must be a floating point tensor"):
        layer(torch.ones(5, 16, dtype=torch.long))
    with pytest.raises(TypeError, match="'x' has dtype torch.float64 but the layer's parameters are torch.float32"):
        layer(torch.randn(5, 16, dtype=torch.float64))
    with pytest.raises(TypeError, match="'x' must be a torch.Tensor"):
        layer([[0.0] * 16])
    for bad in (float("nan"), float("inf")):
        x = torch.randn(5, 16)
        x[2, 3] = bad
        with pytest.raises(ValueError, match="'x' contains 1 NaN or infinite"):
            layer(x)


def test_bad_batch():
    layer = _layer32()
    x = torch.randn(6, 16)
    with pytest.raises(ValueError, match="'batch' must be sorted"):
        layer(x, torch.tensor([0, 0, 1, 1, 0, 1]))
    with pytest.raises(ValueError, match="'batch' has 5 entries but there are 6 nodes"):
        layer(x, torch.tensor([0, 0, 1, 1, 1]))
    with pytest.raises(TypeError, match="'batch' must be an integer tensor"):
        layer(x, torch.zeros(6))
    with pytest.raises(ValueError, match="graph index 1 but 'batch_size' is 1"):
        layer(x, torch.tensor([0, 0, 0, 1, 1, 1]), batch_size=1)
    with pytest.raises(ValueError, match="negative graph index"):
        layer(x, torch.tensor([-1, 0, 0, 1, 1, 1]))
    with pytest.raises(ValueError, match="an empty graph"):
        layer(torch.randn(0, 16), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="graph 0 is empty"):
        layer(torch.randn(0, 16))
    with pytest.raises(ValueError, match="'batch_size' must be a positive int"):
        layer(x, torch.zeros(6, dtype=torch.long), batch_size=0)


@pytest.mark.parametrize("basis_type", ["learned", "laplacian", "laplacian_init"])
def test_empty_graphs_have_no_rows_and_zero_maps(basis_type):
    """A graph index skipped in ``batch`` or a ``batch_size`` beyond the last
    graph (PyG's pooling convention) leaves the other graphs as computed alone;
    the empty graphs' functional maps are zero."""
    torch.manual_seed(0)
    layer = FunctionalAttention(16, 4, 4, basis_type).double()
    sizes = [7, 0, 9]
    x = torch.randn(16, 16, dtype=torch.float64)
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    kw, alone = {}, [{}, {}]
    if basis_type != "learned":
        mass = torch.rand(16, dtype=torch.float64) + 0.5
        # orthonormal in the mass on each graph: M^{-1/2} Q
        basis = torch.cat([torch.linalg.qr(torch.randn(n, 4, dtype=torch.float64))[0]
                           / mass[s:s + n, None].sqrt() for s, n in ((0, 7), (7, 9))])
        kw = dict(mass=mass, basis=basis)
        alone = [dict(mass=mass[:7], basis=basis[:7]), dict(mass=mass[7:], basis=basis[7:])]
    out, _, maps = layer(x, batch, batch_size=5, return_maps=True, **kw)
    first, _, map0 = layer(x[:7], return_maps=True, **alone[0])
    second, _, map2 = layer(x[7:], return_maps=True, **alone[1])
    assert torch.allclose(out, torch.cat([first, second]), atol=1e-12)
    assert maps.shape[0] == 5
    assert torch.allclose(maps[0], map0[0]) and torch.allclose(maps[2], map2[0])
    assert not maps[[1, 3, 4]].any()
    small = torch.tensor([0] * 13 + [2] * 3)  # a graph with fewer nodes than bases is still refused
    if basis_type != "learned":
        with pytest.raises(ValueError, match="graph 2 has 3 nodes, fewer than the 4 required"):
            layer(x, small, batch_size=5, **kw)


def test_bad_mass():
    layer = _layer32()
    x = torch.randn(6, 16)
    with pytest.raises(ValueError, match=r"'mass' must have shape \[N\] = \[6\]"):
        layer(x, mass=torch.ones(5))
    with pytest.raises(ValueError, match="use mass.view"):
        layer(x, mass=torch.ones(6, 1))
    with pytest.raises(TypeError, match="'mass' must be a floating point tensor"):
        layer(x, mass=torch.ones(6, dtype=torch.long))
    with pytest.raises(ValueError, match="'mass' must be strictly positive"):
        layer(x, mass=torch.tensor([1.0, 1, 0, 1, 1, 1]))
    with pytest.raises(ValueError, match="'mass' must be strictly positive"):
        layer(x, mass=-torch.ones(6))
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="'mass' contains 1 NaN"):
            layer(x, mass=torch.tensor([1.0, 1, bad, 1, 1, 1]))


def test_bad_basis():
    x = torch.randn(6, 16)
    with pytest.raises(ValueError, match="'basis' is only used with basis_type='laplacian'"):
        _layer32()(x, basis=torch.randn(6, 4))
    for kind in ("laplacian", "laplacian_init"):
        layer = _layer32(kind)
        with pytest.raises(ValueError, match="needs the 'basis' argument"):
            layer(x)
        with pytest.raises(ValueError, match=r"'basis' must have shape \[N, >= num_bases\]"):
            layer(x, basis=torch.randn(6, 3))
        with pytest.raises(ValueError, match=r"'basis' must have shape"):
            layer(x, basis=torch.randn(5, 4))
        with pytest.raises(ValueError, match="'basis' contains"):
            layer(x, mass=torch.ones(6), basis=torch.full((6, 4), float("nan")))
        x7 = torch.randn(7, 16)
        with pytest.raises(ValueError, match="graph 1 has 3 nodes, fewer than the 4 required"):
            layer(x7, torch.tensor([0, 0, 0, 0, 1, 1, 1]), torch.ones(7), torch.randn(7, 4))


def test_laplacian_init_survives_vanishing_and_repeated_columns():
    """A sampled eigenbasis can lose a column (an eigenfunction of a mesh component
    that no sampled point hit): the re-orthonormalised basis keeps it at zero and
    the other columns orthonormal, instead of failing."""
    layer = make_layer("laplacian_init", num_bases=4)
    with torch.no_grad():
        layer.basis_module.proj.weight.zero_()
        layer.basis_module.proj.bias.zero_()
    n = 30
    mass = torch.full((n,), 1.0 / n, dtype=torch.float64)
    psi = orthonormal_basis(n, 4, mass)
    for damaged in (psi.clone().index_fill_(1, torch.tensor([3]), 0.0),  # a vanishing column
                    torch.cat([psi[:, :3], psi[:, 2:3]], 1)):  # a repeated one
        out, bases, _ = layer(torch.randn(n, 16, dtype=torch.float64), mass=mass, basis=damaged,
                              return_maps=True)
        assert torch.isfinite(out).all()
        phi = bases[:, 0]
        gram = phi.T @ (mass[:, None] * phi)
        torch.testing.assert_close(gram[:3, :3], torch.eye(3, dtype=torch.float64), atol=1e-4, rtol=0)
        # the lost direction contributes (almost) nothing: exactly zero for a vanishing
        # column, GRAM_JITTER / 2 for a repeated one (c - c / (1 + eps), normalised)
        assert gram[3, 3] <= 0.5e-5 * (1 + 1e-6)


def test_matches_the_authors_parametrisation():
    """A second, independent reference: the learned-basis layer as the authors
    parametrise it (plain sums, absolute ridge ``(1 - a) K K^T + a I``, no
    standardisation of the slice input), written from the paper's formulas.
    Mapped, one graph at a time: the per-graph standardisation of this layer
    folded into the authors' input projection of the slices (rows of head
    ``h`` divided by its standard deviation ``s_h``, bias ``-mean / s_h``);
    the relative ridge ``rho_h = lambda min(k, d) / ||K_h||_F^2`` with
    ``lambda = a / (1 - a)`` and the authors' keys ``K_h``; the constant factor
    ``1 / (1 - a)`` of the authors' map absorbed by the output projection.  On
    graphs of 10 nodes the authors' slice-norm offset ``1e-5`` on plain sums
    equals ``PARTITION_EPS`` on the sums normalised by ``n``."""
    from reference import STANDARDIZE_EPS, authors_functional_attention

    heads, k, c = 2, 4, 16
    d = c // heads
    g = torch.Generator().manual_seed(7)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * 0.4

    params = {"in_project_fx": (rand(c, c), rand(c)),
              "slice1": (rand(k, d), rand(k)), "to_out": (rand(c, c), rand(c)),
              "to_q": rand(d, d), "to_k": rand(d, d), "to_v": rand(d, d),
              "temperature": torch.tensor([0.5, 0.8], dtype=torch.float64),
              "alpha": torch.tensor(-0.3, dtype=torch.float64)}
    w_in = rand(c, c)
    layer = FunctionalAttention(c, heads, k).double()
    a = torch.sigmoid(params["alpha"])
    lam = a / (1 - a)
    with torch.no_grad():
        basis_module = layer.basis_module
        basis_module.lin_in.weight.copy_(w_in)
        for lin, (weight, bias) in ((layer.lin_value, params["in_project_fx"]),
                                    (basis_module.proj, params["slice1"])):
            lin.weight.copy_(weight)
            lin.bias.copy_(bias)
        basis_module.temperature.copy_(params["temperature"])
        for lin, name in ((layer.lin_q, "to_q"), (layer.lin_k, "to_k"), (layer.lin_v, "to_v")):
            lin.weight.copy_(params[name])
        layer.lin_out.weight.copy_(params["to_out"][0] / (1 - a))
        layer.lin_out.bias.copy_(params["to_out"][1])
    for _ in range(3):
        x = torch.randn(10, c, generator=g, dtype=torch.float64)
        u = x @ w_in.T
        mean = u.mean(0)
        second = u.square().view(10, heads, d).mean((0, 2))
        s = ((u - mean).square().view(10, heads, d).mean((0, 2)) + STANDARDIZE_EPS * second).sqrt()
        s = s.repeat_interleave(d)
        params["in_project_x"] = (w_in / s[:, None], -mean / s)
        expected, keys = authors_functional_attention(x, params, heads, k, return_keys=True)
        rho = torch.stack([lam * min(k, d) / key.square().sum() for key in keys])
        with torch.no_grad():
            layer.ridge_raw.copy_(rho + torch.log(-torch.expm1(-rho)))  # softplus^-1
        torch.testing.assert_close(layer(x), expected, atol=1e-7, rtol=1e-6)


def _smooth_sphere_input(n, channels, generator):
    """``LayerNorm(sin(pos W + b))`` on ``n`` points of a Fibonacci sphere: a
    smooth function of the position, as a network's first block sees it."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    polar, azimuth = torch.acos(1 - 2 * i / n), math.pi * (1 + 5 ** 0.5) * i
    pos = torch.stack([azimuth.cos() * polar.sin(), azimuth.sin() * polar.sin(), polar.cos()], 1)
    w = torch.randn(3, channels, generator=generator, dtype=torch.float64)
    b = 2 * math.pi * torch.rand(channels, generator=generator, dtype=torch.float64)
    return torch.nn.functional.layer_norm(torch.sin(pos @ w + b), (channels,)).float()


def test_learned_basis_output_varies_across_nodes_at_initialisation():
    """A freshly initialised layer is not a near-constant map: on a smooth input
    its output varies across the nodes at least 0.3x as much as softmax
    attention's (``torch.nn.MultiheadAttention``), median of 3 draws (the
    authors' parametrisation measures 0.09x; ``benchmarks/bench_init_signal.py``)."""
    ratios = []
    for draw in range(3):
        x = _smooth_sphere_input(600, 64, torch.Generator().manual_seed(draw))
        torch.manual_seed(draw)
        mha = torch.nn.MultiheadAttention(64, 4, batch_first=True)
        layer = FunctionalAttention(64, 4, 16)
        with torch.no_grad():
            ours = layer(x).std(0).mean()
            softmax = mha(x[None], x[None], x[None])[0][0].std(0).mean()
        ratios.append((ours / softmax).item())
    assert sorted(ratios)[1] >= 0.3, ratios


def test_learned_partition_ignores_offset_and_scale_of_each_graph():
    """The learned basis standardises its input per graph: adding a constant
    vector to the features of a graph or scaling them by a positive factor
    leaves its partition unchanged (and the other graphs' too)."""
    layer = make_layer("learned")
    x, batch, mass, _ = make_inputs([9, 14])
    _, bases, _ = layer(x, batch, mass=mass, return_maps=True)
    moved = x.clone()
    moved[batch == 0] = 3.0 * x[batch == 0] + torch.randn(1, 16, dtype=torch.float64)
    moved[batch == 1] = 1e-3 * x[batch == 1]
    _, moved_bases, _ = layer(moved, batch, mass=mass, return_maps=True)
    torch.testing.assert_close(moved_bases, bases, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kind", ["learned", "laplacian"])
def test_without_bias_the_layer_is_positively_homogeneous(kind):
    """With ``bias=False`` the layer is scale-free: the ridge is relative to the
    keys and the partition is standardised, so ``f(a x) = a f(x)`` for
    ``a > 0``, for tiny and large ``a`` alike.  (``"laplacian_init"`` adds a
    correction of the unstandardised input to its basis, which is not.)"""
    layer = make_layer(kind, bias=False)
    x, batch, mass, basis = make_inputs([9, 14])
    out = call(layer, x, batch, mass, basis)
    for a in (1e-4, 3.0, 1e3):
        torch.testing.assert_close(call(layer, a * x, batch, mass, basis), a * out,
                                   atol=1e-9 * a, rtol=1e-6)


@pytest.mark.parametrize("name", ["x", "mass"])
def test_inputs_whose_sums_overflow_are_refused_naming_them(name):
    """3e38 is finite in float32, but the layer's sums and Gram matrices of it
    overflow (the output was all NaN): refused as the network refuses it."""
    layer = FunctionalAttention(16, 2, 4)
    x, mass = torch.randn(10, 16), torch.rand(10) + 0.5
    if name == "x":
        x = torch.full((10, 16), 3e38)
    else:
        mass = torch.full((10,), 3e38)
    with pytest.raises(ValueError, match=f"'{name}' is finite but its largest .value. is 3e\\+38"):
        layer(x, mass=mass)
