"""The cost of a local branch: one forward+backward of ``FuncAttnNet(0, 128, 260)``
on 8 graphs of 1,024 points with each local branch, against the same network
without one, in one process, alternating, best of ``--rounds``.

    python benchmarks/bench_local.py          # about 2 minutes on 2 cores

Rows: no local branch; ``local="edgeconv"`` (:class:`tg_funcattn.nn.models.EdgeConv`,
the first MLP layer per node); PyG's ``EdgeConv(MLP(256, 128, 128), aggr="max")``
on the same weights (the per-edge form, for the outputs and the time it saves);
``local="point_transformer"``.  Every local row uses ``k=8`` neighbours (a kNN
graph built once per forward pass, shared by the blocks).  Writes
``benchmarks/results/bench_local.{md,json}``.
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine, write_results  # noqa: E402

from tg_funcattn.nn import FuncAttnNet  # noqa: E402
from tg_funcattn.nn.models import MLP  # noqa: E402

K, GRAPHS, POINTS, WIDTH, CLASSES = 8, 8, 1024, 128, 260


def networks():
    from torch_geometric.nn import EdgeConv as PygEdgeConv

    torch.manual_seed(0)
    nets = {"none": FuncAttnNet(0, WIDTH, CLASSES),
            "edgeconv": FuncAttnNet(0, WIDTH, CLASSES, local="edgeconv", k=K),
            "edgeconv, PyG's per-edge form": FuncAttnNet(
                0, WIDTH, CLASSES, local=PygEdgeConv(MLP(2 * WIDTH, WIDTH, WIDTH), aggr="max"), k=K),
            "point_transformer": FuncAttnNet(0, WIDTH, CLASSES, local="point_transformer", k=K)}
    nets["edgeconv, PyG's per-edge form"].load_state_dict(nets["edgeconv"].state_dict())
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
    difference = (outputs["edgeconv"] - outputs["edgeconv, PyG's per-edge form"]).abs().max().item()
    scale = outputs["edgeconv"].abs().max().item()
    times = {name: [] for name in nets}
    for _ in range(args.rounds):
        for name, net in nets.items():
            start = time.perf_counter()
            net(None, pos, batch, batch_size=GRAPHS).square().mean().backward()
            times[name].append(time.perf_counter() - start)
    best = {name: min(t) for name, t in times.items()}
    result = {"machine": machine(), "threads": torch.get_num_threads(), "rounds": args.rounds,
              "seconds": times, "edgeconv_max_abs_difference": difference,
              "edgeconv_output_scale": scale}
    lines = [f"Machine: {result['machine']}; {result['threads']} threads.", "",
             f"One forward+backward of FuncAttnNet(0, {WIDTH}, {CLASSES}) on {GRAPHS} graphs of "
             f"{POINTS} points, k={K}; best of {args.rounds} alternating rounds in one process.", "",
             "| local branch | seconds | x no local branch |", "|---|---|---|"]
    for name, t in best.items():
        lines.append(f"| {name} | {t:.2f} | {t / best['none']:.2f}x |")
    lines += ["", f"EdgeConv per node against PyG's per-edge form on the same weights: largest "
              f"absolute output difference {difference:.1e} (outputs up to {scale:.2f})."]
    report = "\n".join(lines) + "\n"
    write_results(args.out, result, report)
    print(report)


if __name__ == "__main__":
    main()
