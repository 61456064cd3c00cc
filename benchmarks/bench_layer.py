"""Forward+backward time and peak memory of one FunctionalAttention layer against
peers measured in the same run.

    python benchmarks/bench_layer.py            # the full table (about 15 min on 2 cores)
    python benchmarks/bench_layer.py --quick    # N up to 16k

Layer: channels 128, 8 heads, 64 bases, learned basis, one graph of N nodes.
Peers: full softmax attention (SDPA), Transolver-style physics attention with 64
slices, PyG PointTransformerConv on a k=16 kNN graph (kNN built outside the timing).
Mixed batch: 16 graphs of random sizes (0.25x to 1.75x of the mean) against one
graph of the same total N.  Writes ``benchmarks/results/bench_layer.md``.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import fwd_bwd, machine, peak_mib, time_ms, tune_allocator  # noqa: E402
from peers import PhysicsAttention, PointTransformerPeer, SoftmaxAttention  # noqa: E402

from tg_funcattn.nn import FunctionalAttention  # noqa: E402
from tg_funcattn.ops import knn_graph  # noqa: E402

C, HEADS, BASES = 128, 8, 64


class Batched(torch.nn.Module):
    def __init__(self, layer, batch, num_graphs):
        super().__init__()
        self.layer, self.batch, self.num_graphs = layer, batch, num_graphs

    def forward(self, x):
        return self.layer(x, self.batch, batch_size=self.num_graphs)


def mixed_sizes(total, graphs=16, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.25, 1.75, graphs)
    sizes = np.floor(w / w.sum() * total).astype(int)
    sizes[-1] += total - sizes.sum()
    return sizes.tolist()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1024,4096,16384,32768,65536,131072,262144")
    parser.add_argument("--sdpa-max", type=int, default=32768, help="largest N for SDPA (O(N^2))")
    parser.add_argument("--ptconv-max", type=int, default=65536,
                        help="largest N for PointTransformerConv (about 80 KB a node)")
    parser.add_argument("--mixed", default="65536,262144", help="totals of the mixed batches")
    parser.add_argument("--quick", action="store_true", help="N <= 16k only")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "bench_layer"))
    parser.add_argument("--system-malloc", action="store_true", help="keep glibc's default malloc")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: one N in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args)), flush=True)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    mixed = [int(s) for s in args.mixed.split(",")] if args.mixed else []
    if args.quick:
        sizes, mixed = [s for s in sizes if s <= 16384], [s for s in mixed if s <= 16384] or [16384]

    rows = []
    print(f"# {machine()}; malloc: {'system' if args.system_malloc else 'tuned (MALLOC_MMAP_MAX_=0)'}",
          flush=True)
    for n in sizes:  # one process per size: every size starts from an empty heap
        cmd = [sys.executable, os.path.abspath(__file__), "--one", str(n)] + sys.argv[1:]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"N={n} failed:\n{result.stderr[-3000:]}")
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
        print(json.dumps({k: round(v, 2) for k, v in rows[-1].items()}), flush=True)

    torch.manual_seed(0)
    ours = FunctionalAttention(C, HEADS, BASES)
    mixed_rows = []
    for total in mixed:
        sizes_m = mixed_sizes(total)
        batch = torch.repeat_interleave(torch.arange(len(sizes_m)), torch.tensor(sizes_m))
        x = torch.randn(total, C, requires_grad=True)
        times = time_ms({"single": fwd_bwd(ours, x),
                         "mixed": fwd_bwd(Batched(ours, batch, len(sizes_m)), x)}, max_reps=15)
        single, batched = times["single"], times["mixed"]
        mixed_rows.append({"N": total, "sizes": sizes_m, "single_ms": single, "mixed_ms": batched})
        print(json.dumps({"N": total, "single_ms": round(single, 1), "mixed_ms": round(batched, 1)}),
              flush=True)

    report = render(rows, mixed_rows, args)
    print("\n" + report)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".md", "w") as f:
        f.write(report)
    with open(args.out + ".json", "w") as f:
        json.dump({"machine": machine(), "rows": rows, "mixed": mixed_rows}, f, indent=1)


def measure(n, args):
    """Time (and memory) of every method on one graph of ``n`` nodes."""
    torch.manual_seed(0)
    x = torch.randn(n, C, requires_grad=True)
    runs = {"funcattn": fwd_bwd(FunctionalAttention(C, HEADS, BASES), x),
            "physics": fwd_bwd(PhysicsAttention(C, HEADS, BASES), x)}
    if n <= args.sdpa_max:
        runs["sdpa"] = fwd_bwd(SoftmaxAttention(C, HEADS), x)
    if n <= args.ptconv_max:
        pos = torch.rand(n, 3)
        runs["ptconv"] = fwd_bwd(PointTransformerPeer(C), x, pos, knn_graph(pos, 16))
    row = {"N": n}
    for name, ms in time_ms(runs).items():
        row[f"{name}_ms"] = ms
    if not args.no_memory:
        for name, run in runs.items():
            row[f"{name}_mib"] = peak_mib(run)
    return row


def render(rows, mixed_rows, args):
    def ratio(row, name):
        t = row.get(f"{name}_ms")
        return f"{t:.0f} ({t / row['funcattn_ms']:.2f}x)" if t else "-"

    def mem(row, name):
        m = row.get(f"{name}_mib")
        return f"{m:.0f}" if m is not None else "-"

    lines = [f"Machine: {machine()}; "
             f"malloc {'system' if args.system_malloc else 'tuned (MALLOC_MMAP_MAX_=0)'}.",
             "Forward+backward of one layer, channels 128, 8 heads, 64 bases/slices; "
             "time in ms (peer time / funcattn time); peak tensor memory in MiB.", "",
             "| N | funcattn ms | us/node | physics attn | SDPA | PointTransformerConv k=16 "
             "| MiB funcattn | MiB physics | MiB SDPA | MiB PTConv |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['N']} | {r['funcattn_ms']:.1f} | {1e3 * r['funcattn_ms'] / r['N']:.2f} | "
                     f"{ratio(r, 'physics')} | {ratio(r, 'sdpa')} | {ratio(r, 'ptconv')} | "
                     f"{mem(r, 'funcattn')} | {mem(r, 'physics')} | {mem(r, 'sdpa')} | {mem(r, 'ptconv')} |")
    if mixed_rows:
        lines += ["", "| N (16 mixed graphs) | one graph ms | mixed batch ms | mixed / one |",
                  "|---|---|---|---|"]
        for m in mixed_rows:
            lines.append(f"| {m['N']} | {m['single_ms']:.1f} | {m['mixed_ms']:.1f} | "
                         f"{m['mixed_ms'] / m['single_ms']:.2f}x |")
    lines += ["", "Targets:"]
    by_n = {r["N"]: r for r in rows}
    if 32768 in by_n and "sdpa_ms" in by_n[32768]:
        s = by_n[32768]["sdpa_ms"] / by_n[32768]["funcattn_ms"]
        lines.append(f"- SDPA / funcattn at N=32k: {s:.1f}x (target >= 30x)")
    worst = max(r["funcattn_ms"] / r["physics_ms"] for r in rows if r["N"] >= 4096) if rows else None
    if worst:
        lines.append(f"- funcattn / physics attention, worst over N >= 4k: {worst:.2f}x (target <= 1.25x)")
    flat = [1e3 * r["funcattn_ms"] / r["N"] for r in rows if 16384 <= r["N"] <= 262144]
    if len(flat) > 1:
        lines.append(f"- time per node, max / min over 16k..256k: {max(flat) / min(flat):.2f} "
                     "(target <= 1.20)")
    for m in mixed_rows:
        lines.append(f"- mixed batch / one graph at N={m['N']}: {m['mixed_ms'] / m['single_ms']:.2f}x "
                     "(target <= 1.15x)")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    tune_allocator(sys.argv)
    main()
