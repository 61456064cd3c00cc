"""The cost of a local branch: one forward+backward of ``FuncAttnNet(0, 128, 260)``
on 8 graphs of 1,024 points with each local branch, against the same network
without one, in one process, alternating, best of ``--rounds``.

    python benchmarks/bench_local.py          # about 2 minutes on 2 cores

Rows: no local branch; ``local="edgeconv"`` (:class:`tg_funcattn.nn.models.EdgeConv`,
the first MLP layer per node, the rest in cache-sized chunks of nodes) and PyG's
``EdgeConv(MLP([256, 128, 128], act="gelu", norm=None), aggr="max")`` on the same weights (the per-edge
form, for the outputs and the time it saves); ``local="point_transformer"``
(:class:`tg_funcattn.nn.models.PointTransformerConv`, per-node products
gathered) and PyG's ``PointTransformerConv(128, 128)`` on the same weights.
Every local row uses ``k=8`` neighbours (a kNN graph built once per forward
pass, shared by the blocks).  Writes ``benchmarks/results/bench_local.{md,json}``.
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine, write_results  # noqa: E402

from tg_funcattn.nn import FuncAttnNet  # noqa: E402
from tg_funcattn.nn.models import mlp  # noqa: E402

K, GRAPHS, POINTS, WIDTH, CLASSES = 8, 8, 1024, 128, 260


#: each per-node branch and PyG's per-edge form of it, compared on the same weights
PAIRS = {"edgeconv": "edgeconv, PyG's per-edge form",
         "point_transformer": "point_transformer, PyG's per-edge form"}


def networks():
    from torch_geometric.nn import EdgeConv as PygEdgeConv
    from torch_geometric.nn import PointTransformerConv as PygPointTransformerConv

    torch.manual_seed(0)
    nets = {"none": FuncAttnNet(0, WIDTH, CLASSES),
            "edgeconv": FuncAttnNet(0, WIDTH, CLASSES, local="edgeconv", k=K),
            "edgeconv, PyG's per-edge form": FuncAttnNet(
                0, WIDTH, CLASSES, local=PygEdgeConv(mlp(2 * WIDTH, WIDTH, WIDTH), aggr="max"), k=K),
            "point_transformer": FuncAttnNet(0, WIDTH, CLASSES, local="point_transformer", k=K),
            "point_transformer, PyG's per-edge form": FuncAttnNet(
                0, WIDTH, CLASSES, local=PygPointTransformerConv(WIDTH, WIDTH), k=K)}
    for ours, pyg in PAIRS.items():
        nets[pyg].load_state_dict(nets[ours].state_dict())
    return nets


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "results", "bench_local"))
    args = parser.parse_args()
    nets = networks()
    g = torch.Generator().manual_seed(0)
    pos = torch.rand(GRAPHS * POINTS, 3, generator=g)
    batch = torch.arange(GRAPHS).repeat_interleave(POINTS)
    with torch.no_grad():
        outputs = {name: net(None, pos, batch, batch_size=GRAPHS) for name, net in nets.items()}
    differences = {ours: (outputs[ours] - outputs[pyg]).abs().max().item() for ours, pyg in PAIRS.items()}
    scales = {ours: outputs[ours].abs().max().item() for ours in PAIRS}
    times = {name: [] for name in nets}
    for _ in range(args.rounds):
        for name, net in nets.items():
            start = time.perf_counter()
            net(None, pos, batch, batch_size=GRAPHS).square().mean().backward()
            times[name].append(time.perf_counter() - start)
    best = {name: min(t) for name, t in times.items()}
    result = {"machine": machine(), "threads": torch.get_num_threads(), "rounds": args.rounds,
              "seconds": times, "max_abs_difference": differences, "output_scale": scales}
    lines = [f"Machine: {result['machine']}; {result['threads']} threads.", "",
             f"One forward+backward of FuncAttnNet(0, {WIDTH}, {CLASSES}) on {GRAPHS} graphs of "
             f"{POINTS} points, k={K}; best of {args.rounds} alternating rounds in one process.", "",
             "| local branch | seconds | x no local branch |", "|---|---|---|"]
    for name, t in best.items():
        lines.append(f"| {name} | {t:.2f} | {t / best['none']:.2f}x |")
    lines.append("")
    lines += [f"{ours} against PyG's per-edge form on the same weights: largest absolute output "
              f"difference {differences[ours]:.1e} (outputs up to {scales[ours]:.2f})."
              for ours in PAIRS]
    report = "\n".join(lines) + "\n"
    write_results(args.out, result, report)
    print(report)


if __name__ == "__main__":
    main()
