"""The per-graph kernels behind one dispatch point, measured against each other
in the same run: the segment products (``bmm`` loop, the scatter
``reference``, ``triton`` on CUDA) and the per-graph sum (native
``index_add`` / ``segment_reduce``, ``torch_scatter.segment_csr`` where
installed).  These numbers are what ``tg_funcattn.ops`` dispatches on.

    python benchmarks/bench_kernels.py                # CPU
    python benchmarks/bench_kernels.py --device cuda  # GPU (adds the Triton kernels)
    TRITON_INTERPRET=1 python benchmarks/bench_kernels.py --sizes 256 --sum-sizes 512 --out /tmp/k
                                                      # the Triton kernels through the interpreter

Writes ``benchmarks/results/bench_kernels{_cuda}.md`` and ``.json``.
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine, time_ms, tune_allocator, write_results  # noqa: E402

from tg_funcattn.ops import segment_backend, segment_matmul_nn, segment_matmul_tn  # noqa: E402
from tg_funcattn.ops import segment as seg  # noqa: E402

H, P, Q = 8, 64, 17  # heads, bases, head channels + 1: the shapes of the learned-basis layer


def layouts(total, graphs):
    g = torch.Generator().manual_seed(0)
    w = torch.rand(graphs, generator=g) * 1.5 + 0.25
    sizes = (w / w.sum() * total).long()
    sizes[-1] += total - sizes.sum()
    return torch.cat([torch.zeros(1, dtype=torch.long), sizes.cumsum(0)])


def backends(device):
    """``bmm`` and ``reference``, and ``triton`` where it runs: on CUDA, or on the
    CPU through ``TRITON_INTERPRET=1`` (slow: for a dry run, not a timing)."""
    names = ["bmm", "reference"]
    if (torch.device(device).type == "cuda" or seg._interpreting()) and seg._installed("triton"):
        names.append("triton")
    return names


def product_rows(args):
    rows = []
    dev = args.device
    for total in args.sizes:
        for graphs in (1, 32):
            ptr = layouts(total, graphs).to(dev)
            a = torch.randn(H, total, P, device=dev)
            b = torch.randn(H, total, Q, device=dev)
            c = torch.randn(graphs, H, P, Q, device=dev)
            fns = {}
            for name in backends(dev):
                if name == "reference" and total > args.reference_max:
                    continue

                def tn(name=name):
                    with segment_backend(name):
                        segment_matmul_tn(a, b, ptr)

                def nn(name=name):
                    with segment_backend(name):
                        segment_matmul_nn(a, c, ptr)

                fns[f"tn_{name}"], fns[f"nn_{name}"] = tn, nn
            times = time_ms(fns, device=dev, max_reps=15)
            rows.append({"N": total, "graphs": graphs, **{k: v for k, v in times.items()}})
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                              for k, v in rows[-1].items()}), flush=True)
    return rows


def sum_rows(args):
    rows = []
    dev = args.device
    have_scatter = seg._installed("torch_scatter")
    for total, width in [(n, w) for n in args.sum_sizes for w in (128, 1)]:
        ptr = layouts(total, 16).to(dev)
        batch = seg.ptr2index(ptr, total)
        src = torch.randn(total, width, device=dev).squeeze(1)
        fns = {"index_add": lambda: src.new_zeros((16,) + src.shape[1:]).index_add_(0, batch, src),
               "segment_reduce": lambda: torch.segment_reduce(src, "sum", offsets=ptr)}
        if have_scatter:
            import torch_scatter
            fns["torch_scatter"] = lambda: torch_scatter.segment_csr(src, ptr, reduce="sum")
        times = time_ms(fns, device=dev, max_reps=15)
        rows.append({"N": total, "width": width, **times})
        print(json.dumps({k: round(v, 3) for k, v in rows[-1].items()}), flush=True)
    return rows


def render(result):
    lines = [f"Machine: {result['machine']}.", "",
             f"**Segment products** (heads {H}, p = {P}, q = {Q}, float32); ms, ratio to `bmm`:", "",
             "| N | graphs | op | " + " | ".join(result["backends"]) + " |",
             "|---|---|---|" + "---|" * len(result["backends"])]
    for row in result["products"]:
        for op in ("tn", "nn"):
            base = row[f"{op}_bmm"]
            cells = []
            for name in result["backends"]:
                t = row.get(f"{op}_{name}")
                cells.append("-" if t is None else f"{t:.2f} ({t / base:.2f}x)")
            lines.append(f"| {row['N']} | {row['graphs']} | {op} | " + " | ".join(cells) + " |")
    names = [k for k in result["sums"][0] if k not in ("N", "width")]
    lines += ["", "**Per-graph sum** (16 graphs); ms, ratio to `index_add`:", "",
              "| N | width | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for row in result["sums"]:
        cells = [f"{row[n]:.2f} ({row[n] / row['index_add']:.2f}x)" for n in names]
        lines.append(f"| {row['N']} | {row['width']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reference-max", type=int, default=16384,
                        help="largest N for the reference (it forms N x p x q)")
    parser.add_argument("--sizes", default="16384,262144", help="N of the segment products")
    parser.add_argument("--sum-sizes", default="262144,1048576", help="N of the per-graph sums")
    parser.add_argument("--out", default=None)
    parser.add_argument("--system-malloc", action="store_true")
    args = parser.parse_args()
    args.sizes = [int(n) for n in args.sizes.split(",")]
    args.sum_sizes = [int(n) for n in args.sum_sizes.split(",")]
    suffix = "" if args.device == "cpu" else "_" + torch.device(args.device).type
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   "bench_kernels" + suffix)
    result = {"machine": machine(args.device), "backends": backends(args.device),
              "products": product_rows(args), "sums": sum_rows(args)}
    report = render(result)
    print("\n" + report)
    write_results(out, result, report)


if __name__ == "__main__":
    tune_allocator(sys.argv)
    main()
