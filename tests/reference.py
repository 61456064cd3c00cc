"""A plain dense implementation of functional attention, written from the formulas
in docs (one graph and one head at a time, explicit inverses), used as the
independent reference of the tests."""
import torch
import torch.nn.functional as F

PARTITION_EPS = 1e-6
STANDARDIZE_EPS = 1e-6
GRAM_JITTER = 1e-5


def orthonormal_basis(n: int, k: int, mass: torch.Tensor, generator=None) -> torch.Tensor:
    """A random basis ``[n, k]`` with ``Psi^T diag(mass) Psi = I`` (just random
    values if ``n < k``, where no such basis exists)."""
    raw = torch.randn(n, k, dtype=mass.dtype, generator=generator)
    if n < k:
        return raw
    sqrt_m = mass.sqrt().unsqueeze(1)
    q, _ = torch.linalg.qr(sqrt_m * raw)
    return q / sqrt_m


def dense_functional_attention(layer, x, batch=None, mass=None, basis=None, return_maps=False):
    """Output of ``layer`` computed graph by graph and head by head (and the
    functional maps ``[B, H, k, k]`` if asked)."""
    if batch is None:
        batch = torch.zeros(x.shape[0], dtype=torch.long)
    H, d, k = layer.heads, layer.head_channels, layer.num_bases
    out = torch.empty_like(x)
    maps = []
    for g in range(int(batch.max()) + 1):
        idx = (batch == g).nonzero().view(-1)
        xg = x[idx]
        n = xg.shape[0]
        m = torch.full((n,), 1.0 / n, dtype=x.dtype) if mass is None else mass[idx]
        value = xg @ layer.lin_value.weight.T + layer.lin_value.bias
        basis_module = layer.basis_module
        if layer.basis_type != "laplacian":
            u_all = xg @ basis_module.lin_in.weight.T
            if basis_module.lin_in.bias is not None:
                u_all = u_all + basis_module.lin_in.bias
        heads, maps_g = [], []
        for h in range(H):
            f = value[:, h * d:(h + 1) * d]
            if layer.basis_type == "learned":
                mn = m / m.sum()
                u = u_all[:, h * d:(h + 1) * d]
                # standardised over the graph: mass-weighted mean and variance
                mean = mn @ u
                second = mn @ u.square().mean(1)
                variance = mn @ (u - mean).square().mean(1)
                u = (u - mean) / torch.sqrt(variance + STANDARDIZE_EPS * second)
                tau = basis_module.temperature[h].clamp(0.1, 5.0)
                phi = torch.softmax((u @ basis_module.proj.weight.T + basis_module.proj.bias) / tau, dim=1)
                norm = phi.T @ mn + PARTITION_EPS
                coef = (phi.T @ (mn[:, None] * f)) / norm[:, None]
            else:
                psi = basis[idx][:, :k]
                if layer.basis_type == "laplacian":
                    phi = psi
                else:
                    u = u_all[:, h * d:(h + 1) * d]
                    p = psi + u @ basis_module.proj.weight.T + basis_module.proj.bias
                    gram = p.T @ (m[:, None] * p)
                    jitter = max(GRAM_JITTER, 8 * torch.finfo(x.dtype).eps) * gram.diagonal().mean()
                    r = torch.linalg.cholesky(gram + jitter * torch.eye(k, dtype=x.dtype), upper=True)
                    phi = p @ torch.linalg.inv(r)
                coef = phi.T @ (m[:, None] * f)
            q = coef @ layer.lin_q.weight.T
            kk = coef @ layer.lin_k.weight.T
            v = coef @ layer.lin_v.weight.T
            raw = layer.ridge_raw[h if layer.ridge_raw.numel() == H else 0]  # per head or shared
            lam = F.softplus(raw) * kk.square().sum() / min(k, d)  # relative to the keys
            fmap = q @ kk.T @ torch.linalg.inv(kk @ kk.T + lam * torch.eye(k, dtype=x.dtype))
            heads.append(phi @ (fmap @ v))
            maps_g.append(fmap)
        out[idx] = torch.cat(heads, dim=1) @ layer.lin_out.weight.T + layer.lin_out.bias
        maps.append(torch.stack(maps_g))
    return (out, torch.stack(maps)) if return_maps else out


def authors_functional_attention(x, params, heads, num_bases, return_keys=False):
    """The learned-basis layer of one graph in the authors' parametrisation,
    written from the paper's formulas (``docs/functional-attention.md``):
    plain sums over the nodes (``M = I``), the slice norm offset by ``1e-5``,
    and the map ``C = Q K^T ((1 - a) K K^T + a I)^{-1}`` with
    ``a = sigmoid(alpha)``.  ``params`` holds the authors' parameter names:
    ``in_project_x``, ``in_project_fx``, ``slice1`` and ``to_out`` as
    ``(weight, bias)``, ``to_q``/``to_k``/``to_v`` weights, ``temperature``
    ``[H]`` and the scalar ``alpha``.  With ``return_keys`` also the keys
    ``K`` of every head."""
    n, c = x.shape
    d = c // heads
    a = torch.sigmoid(params["alpha"])
    fx = x @ params["in_project_fx"][0].T + params["in_project_fx"][1]
    ux = x @ params["in_project_x"][0].T + params["in_project_x"][1]
    outs, keys = [], []
    for h in range(heads):
        f, u = fx[:, h * d:(h + 1) * d], ux[:, h * d:(h + 1) * d]
        tau = params["temperature"][h].clamp(0.1, 5.0)
        w = torch.softmax((u @ params["slice1"][0].T + params["slice1"][1]) / tau, dim=1)  # [n, k]
        tokens = (w.T @ f) / (w.sum(0) + 1e-5)[:, None]  # [k, d]
        q, k, v = tokens @ params["to_q"].T, tokens @ params["to_k"].T, tokens @ params["to_v"].T
        eye = torch.eye(num_bases, dtype=x.dtype)
        fmap = q @ k.T @ torch.linalg.inv((1 - a) * (k @ k.T) + a * eye)
        outs.append(w @ (fmap @ v))
        keys.append(k)
    out = torch.cat(outs, dim=1) @ params["to_out"][0].T + params["to_out"][1]
    return (out, keys) if return_keys else out
