"""The layer against its projections: one forward+backward of
``FunctionalAttention(128, 8, 64)`` (learned basis) on one graph of ``--nodes``
nodes against three ``Linear(128, 128)`` on the same input (``bench_scale.py``'s
``ThreeLinear``), in one process, alternating, median of ``--rounds``.

    python benchmarks/bench_floor.py                  # tuned malloc (common.MALLOC_ENV)
    python benchmarks/bench_floor.py --system-malloc  # glibc's defaults

Another revision of the library: ``PYTHONPATH=<its checkout> python ...``.
Writes ``benchmarks/results/bench_floor{,_system_malloc}.{md,json}``.
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_scale import ThreeLinear  # noqa: E402
from common import machine, tune_allocator, write_results  # noqa: E402

import tg_funcattn  # noqa: E402
from tg_funcattn.nn import FunctionalAttention  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=262144)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--system-malloc", action="store_true", help="keep glibc's default malloc")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    tune_allocator(sys.argv)
    torch.manual_seed(0)
    x = torch.randn(args.nodes, 128, requires_grad=True)
    models = {"layer": FunctionalAttention(128, 8, 64), "linear3": ThreeLinear()}

    def step(model):
        start = time.perf_counter()
        model(x).sum().backward()
        return time.perf_counter() - start

    for model in models.values():  # warm-up
        step(model)
    seconds = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            seconds[name].append(step(model))
    medians = {name: statistics.median(t) for name, t in seconds.items()}
    ratios = [a / b for a, b in zip(seconds["layer"], seconds["linear3"])]
    malloc = "glibc's default malloc" if args.system_malloc else "malloc tuned (common.MALLOC_ENV)"
    result = {"machine": machine(), "malloc": malloc, "nodes": args.nodes,
              "library": os.path.dirname(tg_funcattn.__file__), "seconds": seconds,
              "ratio_of_medians": medians["layer"] / medians["linear3"]}
    report = (f"Machine: {result['machine']}; {malloc}.\n\n"
              f"FunctionalAttention(128, 8, 64) forward+backward on {args.nodes} nodes: "
              f"{medians['layer']:.3f} s; three Linear(128, 128): {medians['linear3']:.3f} s "
              f"(medians of {args.rounds} alternating rounds); ratio of medians "
              f"{result['ratio_of_medians']:.2f}x, per round {min(ratios):.2f}-{max(ratios):.2f}x.\n")
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   "bench_floor" + ("_system_malloc" if args.system_malloc else ""))
    write_results(out, result, report)
    print(report)


if __name__ == "__main__":
    main()
