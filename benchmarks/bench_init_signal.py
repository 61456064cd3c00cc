"""Does functional attention carry a signal at initialisation?  The diagnostic of
the learned basis's plateau, to check every change of the layer against.

    python benchmarks/bench_init_signal.py                        # part 1 (about 1 min)
    python benchmarks/bench_init_signal.py --rna-root ~/data/rna  # and part 2 (about 6 min)

Part 1 (no data): how much the output of a freshly initialised layer varies
across the nodes of a graph (standard deviation over the nodes, mean over the
channels), for ``FunctionalAttention(128, 8, 32)`` of every basis kind against
``torch.nn.MultiheadAttention(128, 8)`` on the same input: a smooth function on
a sphere, ``x = LayerNorm(sin(pos W + b))`` on 2,000 points of a Fibonacci
sphere with ``W ~ N(0, 1)`` ``[3, 128]`` and ``b ~ U(0, 2 pi)``.  The Laplacian
kinds get the sphere's eigenbasis and masses (the point-cloud Laplacian of
:mod:`tg_funcattn.geometry`).  Five draws of the input and the layers; the
table gives the median and the range of the ratio.  A branch whose output
hardly varies is nearly a constant map: a residual stream gives its
parameters almost no gradient.

Part 2 (``--rna-root``, the data and protocol of ``bench_rna.py``): the first
``--steps`` steps of ``FuncAttnNet``'s defaults (learned basis) on RNA surfaces,
seeds 0 and 1: per step the training loss and the gradient norms reaching the
basis projections (``proj.weight`` of every block), the temperatures and the
ridge parameters.

Writes ``benchmarks/results/bench_init_signal.{md,json}``.
"""
import argparse
import math
import os
import statistics
import sys
from types import SimpleNamespace

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine, write_results  # noqa: E402

from tg_funcattn.nn import FunctionalAttention  # noqa: E402

NODES, CHANNELS, HEADS, BASES, DRAWS = 2000, 128, 8, 32, 5
KINDS = ("learned", "laplacian", "laplacian_init")


def fibonacci_sphere(n):
    i = torch.arange(n, dtype=torch.float64) + 0.5
    polar = torch.acos(1 - 2 * i / n)
    azimuth = math.pi * (1 + 5 ** 0.5) * i
    return torch.stack([azimuth.cos() * polar.sin(), azimuth.sin() * polar.sin(), polar.cos()], 1)


def sphere_eigenbasis(pos):
    from tg_funcattn.geometry import eigenbasis, laplacian

    L, mass = laplacian(pos.numpy())
    _, evecs = eigenbasis(L, mass, BASES)
    return torch.as_tensor(evecs, dtype=torch.float32), torch.as_tensor(mass, dtype=torch.float32)


def variation(out):
    """Standard deviation over the nodes, mean over the channels."""
    return out.std(0).mean().item()


def output_variation():
    pos = fibonacci_sphere(NODES)
    basis, mass = sphere_eigenbasis(pos)
    pos = pos.float()
    rows = {kind: [] for kind in ("multihead",) + KINDS}
    for draw in range(DRAWS):
        gen = torch.Generator().manual_seed(draw)
        w = torch.randn(3, CHANNELS, generator=gen)
        b = 2 * math.pi * torch.rand(CHANNELS, generator=gen)
        x = F.layer_norm(torch.sin(pos @ w + b), (CHANNELS,))
        torch.manual_seed(draw)
        mha = torch.nn.MultiheadAttention(CHANNELS, HEADS, batch_first=True)
        with torch.no_grad():
            rows["multihead"].append(variation(mha(x[None], x[None], x[None])[0][0]))
        for kind in KINDS:
            torch.manual_seed(1000 + draw)
            layer = FunctionalAttention(CHANNELS, HEADS, BASES, basis_type=kind)
            extra = {} if kind == "learned" else {"mass": mass, "basis": basis}
            with torch.no_grad():
                rows[kind].append(variation(layer(x, **extra)))
    ratios = {kind: [v / m for v, m in zip(rows[kind], rows["multihead"])] for kind in KINDS}
    return {"std": rows, "ratio": ratios}


def rna_gradients(root, steps, seeds):
    import bench_rna
    from torch_geometric.loader import DataLoader

    args = SimpleNamespace(root=os.path.expanduser(root), val=64, train=256,
                           eigen_cache=None)
    train, _, _ = bench_rna.load_splits(args, with_basis=False)
    _, make, kind = bench_rna.ROWS["funcattn"]
    runs = []
    for seed in seeds:
        torch.manual_seed(seed)
        model = make()
        loader = DataLoader(bench_rna.Sampled(train, 1024), batch_size=8, shuffle=True)
        recipe = dict(optimizer="adamw", lr=2e-3, weight_decay=1e-4, schedule="cosine")
        optimizer, schedule, _ = bench_rna.make_optimizer(model, recipe, 15, len(loader))
        groups = {"basis projection": "basis_module.proj.weight",
                  "temperature": "basis_module.temperature", "ridge": "ridge_raw"}
        record = {"seed": seed, "loss": [], **{name: [] for name in groups}}
        data_iter = iter(loader)
        for _ in range(steps):
            try:
                data = next(data_iter)
            except StopIteration:
                data_iter = iter(loader)
                data = next(data_iter)
            optimizer.zero_grad()
            loss = F.cross_entropy(bench_rna.forward(model, kind, data), data.y)
            loss.backward()
            for name, suffix in groups.items():
                grads = [p.grad for n, p in model.named_parameters()
                         if n.endswith(suffix) and p.grad is not None]
                record[name].append(math.sqrt(sum(float(g.square().sum()) for g in grads)))
            record["loss"].append(loss.item())
            optimizer.step()
            schedule.step()
        runs.append(record)
    return runs


def render(result):
    lines = [f"Machine: {result['machine']}.", "",
             f"## Output variation at initialisation ({NODES} points on a sphere, width {CHANNELS}, "
             f"{HEADS} heads, {BASES} bases, {DRAWS} draws)", "",
             "| layer | std over nodes (median) | ratio to MultiheadAttention: median (range) |",
             "|---|---|---|",
             f"| MultiheadAttention({CHANNELS}, {HEADS}) | "
             f"{statistics.median(result['variation']['std']['multihead']):.4f} | 1 |"]
    for kind in KINDS:
        r = result["variation"]["ratio"][kind]
        lines.append(f"| FunctionalAttention, basis_type='{kind}' | "
                     f"{statistics.median(result['variation']['std'][kind]):.4f} | "
                     f"{statistics.median(r):.2f} ({min(r):.2f}-{max(r):.2f}) |")
    if result.get("rna"):
        steps = len(result["rna"][0]["loss"])
        shown = [s for s in (1, 2, 4, 8, 16, 32, 64, 128) if s <= steps]
        lines += ["", f"## First {steps} steps on RNA surfaces (FuncAttnNet defaults, bench_rna.py's "
                  "short protocol: batch 8, AdamW 2e-3, 10% warm-up of 15 epochs)", "",
                  "| seed | quantity | " + " | ".join(f"step {s}" for s in shown) + " |",
                  "|---|---|" + "---|" * len(shown)]
        for run in result["rna"]:
            for name in ("loss", "basis projection", "temperature", "ridge"):
                label = "training loss" if name == "loss" else f"grad. norm, {name}"
                lines.append(f"| {run['seed']} | {label} | " +
                             " | ".join(f"{run[name][s - 1]:.3g}" for s in shown) + " |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rna-root", default=None,
                        help="clone of nmwsharp/RNA-Surface-Segmentation-Dataset (part 2)")
    parser.add_argument("--steps", type=int, default=64, help="training steps of part 2")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "results", "bench_init_signal"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = {"machine": machine(), "variation": output_variation()}
    if args.rna_root:
        result["rna"] = rna_gradients(args.rna_root, args.steps, seeds=(0, 1))
    report = render(result)
    write_results(args.out, result, report)
    print(report)


if __name__ == "__main__":
    main()
