"""PyG's building blocks against the library's own, where PyG has one: the
MLP, the per-graph sum, and the nearest-point search (same inputs, outputs
compared, alternating rounds in one process).

    python benchmarks/bench_pyg_blocks.py

* MLP: ``torch_geometric.nn.MLP([c, 2c, c], act="gelu", norm=None)`` against
  ``Linear -> GELU -> Dropout -> Linear`` (the library's former private MLP),
  forward+backward on ``[N, 128]``.
* Per-graph sum: ``torch_geometric.utils.segment(src, ptr)`` (torch-scatter's
  ``segment_csr`` when installed, else ``torch.segment_reduce``) against
  :func:`tg_funcattn.ops.segment.segment_sum` (``index_add`` on the CPU),
  forward+backward on ``[N, 128]`` rows of 8 graphs.
* Nearest point and kNN: PyG's ``nearest`` and ``knn_graph`` need pyg-lib;
  where it is missing the report says so.

Writes ``benchmarks/results/bench_pyg_blocks.{md,json}``.
"""
import os
import statistics
import sys

import torch
import torch_geometric.typing
from torch_geometric.nn import MLP as PygMLP
from torch_geometric.utils import segment

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine, time_ms, tune_allocator, write_results  # noqa: E402

from tg_funcattn._optional import available  # noqa: E402
from tg_funcattn.ops.segment import segment_sum  # noqa: E402

ROUNDS = 5


def own_mlp(c):
    return torch.nn.Sequential(torch.nn.Linear(c, 2 * c), torch.nn.GELU(), torch.nn.Dropout(0.0),
                               torch.nn.Linear(2 * c, c))


def compare(fns, check):
    rounds = [time_ms(fns) for _ in range(ROUNDS)]
    ms = {k: statistics.median(r[k] for r in rounds) for k in fns}
    ratios = [r["pyg"] / r["own"] for r in rounds]
    return {"own_ms": ms["own"], "pyg_ms": ms["pyg"], "ratio": statistics.median(ratios),
            "ratio_range": [min(ratios), max(ratios)], "max_abs_difference": check}


def mlp_row(n, c=128):
    torch.manual_seed(0)
    own, pyg = own_mlp(c), PygMLP([c, 2 * c, c], act="gelu", norm=None, dropout=0.0)
    with torch.no_grad():  # the same weights
        for a, b in ((own[0], pyg.lins[0]), (own[3], pyg.lins[1])):
            b.weight.copy_(a.weight), b.bias.copy_(a.bias)
    x = torch.randn(n, c, requires_grad=True)

    def step(module):
        return lambda: module(x).square().sum().backward()

    with torch.no_grad():
        check = float((own(x) - pyg(x)).abs().max())
    return dict(block=f"MLP {c} -> {2 * c} -> {c}", nodes=n,
                **compare({"own": step(own), "pyg": step(pyg)}, check))


def segment_row(n, width, graphs=8):
    src = torch.randn(n, width, requires_grad=True) if width else torch.randn(n, requires_grad=True)
    ptr = torch.linspace(0, n, graphs + 1).long()
    batch = torch.repeat_interleave(torch.arange(graphs), ptr.diff())

    def step(fn):
        return lambda: fn().square().sum().backward()

    with torch.no_grad():
        check = float((segment_sum(src, ptr, batch) - segment(src, ptr)).abs().max())
    return dict(block=f"per-graph sum of [N{', ' + str(width) if width else ''}], {graphs} graphs",
                nodes=n, **compare({"own": step(lambda: segment_sum(src, ptr, batch)),
                                    "pyg": step(lambda: segment(src, ptr))}, check))


def main():
    tune_allocator(sys.argv)
    rows = [mlp_row(4096), mlp_row(65536), segment_row(65536, 128), segment_row(65536, 0)]
    lines = ["# PyG's building blocks against the library's own", "",
             f"Machine: {machine()}; malloc tuned (benchmarks/common.py); forward+backward, "
             f"median of {ROUNDS} rounds of alternating runs; ratio = PyG / own (above 1: PyG's "
             "is slower), in brackets the range of the rounds' ratios.  torch-scatter "
             f"installed: {torch_geometric.typing.WITH_TORCH_SCATTER}; pyg-lib's nearest: "
             f"{torch_geometric.typing.WITH_NEAREST}; torch-cluster: "
             f"{available('torch_cluster')}.", "",
             "| block | nodes | own ms | PyG ms | ratio | largest output difference |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['block']} | {r['nodes']:,} | {r['own_ms']:.2f} | {r['pyg_ms']:.2f} | "
                     f"{r['ratio']:.2f} ({r['ratio_range'][0]:.2f}-{r['ratio_range'][1]:.2f}) | "
                     f"{r['max_abs_difference']:.1e} |")
    if not (torch_geometric.typing.WITH_NEAREST or available("torch_cluster")):
        lines.append("")
        lines.append("Nearest point and kNN: PyG's `nearest` and `knn_graph` need pyg-lib (not on "
                     "PyPI), and torch-cluster is not installed either, so the library's searches "
                     "(SciPy's k-d tree, blocked `cdist`) run and nothing is compared.")
    report = "\n".join(lines) + "\n"
    print(report)
    write_results(os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                               "bench_pyg_blocks"), {"machine": machine(), "rows": rows}, report)


if __name__ == "__main__":
    main()
