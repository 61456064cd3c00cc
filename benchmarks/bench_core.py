"""Forward and forward+backward time of ``FuncAttnNet`` and its host
synchronisations per forward pass, this working tree against an earlier
revision, measured in the same run.

    python benchmarks/bench_core.py                      # against 67e7b4b (before nn/inputs.py)
    python benchmarks/bench_core.py --baseline REV --sizes 4096

Network: ``FuncAttnNet(0, 128, 8)``, 4 blocks, 8 heads, 32 bases, positions
only, on a batch of 8 graphs of random sizes (0.25x to 1.75x of the mean)
totalling N nodes, with random masses; ``learned`` and ``laplacian_init``
(with a random mass-orthonormal basis per graph); for N above ``--chunk``
also streamed with ``chunk_size``.  The baseline revision is
extracted with ``git archive`` into a temporary folder; each revision runs
in its own process, alternating, ``--rounds`` times, and the median of the
rounds is reported.  Host synchronisations are counted by
``tests/probes.py``'s ``HostSyncs`` (calls that read tensor values on the
host: ``item``, ``tolist``, ``bool(tensor)``, ...) over one forward pass
without and with ``batch_size``.  Writes ``benchmarks/results/bench_core.{md,json}``.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

KINDS = ("learned", "laplacian_init")


def worker(sizes, kinds, chunk, save):
    """Times the network of the importable ``tg_funcattn`` (this process's path)."""
    import numpy as np
    import torch
    from common import fwd_bwd, peak_mib, time_ms
    from probes import HostSyncs

    from tg_funcattn.nn import FuncAttnNet

    results, outputs = {}, {}
    for n in sizes:
        rng = np.random.default_rng(0)
        w = rng.uniform(0.25, 1.75, 8)
        counts = np.floor(w / w.sum() * n).astype(int)
        counts[-1] += n - counts.sum()
        batch = torch.repeat_interleave(torch.arange(8), torch.from_numpy(counts))
        g = torch.Generator().manual_seed(0)
        pos = torch.randn(n, 3, generator=g)
        mass = torch.rand(n, generator=g) + 0.1
        for kind in kinds:
            torch.manual_seed(0)
            net = FuncAttnNet(0, 128, 8, num_layers=4, heads=8, num_bases=32, basis_type=kind)
            basis = None
            if kind != "learned":
                parts, start = [], 0
                for c in counts.tolist():
                    raw = torch.randn(c, 32, generator=g)
                    sqrt_m = mass[start:start + c].sqrt().unsqueeze(1)
                    parts.append(torch.linalg.qr(sqrt_m * raw)[0] / sqrt_m)
                    start += c
                basis = torch.cat(parts)

            class Run(torch.nn.Module):
                def __init__(self, batch_size=None, chunk_size=None):
                    super().__init__()
                    self.net, self.batch_size, self.chunk_size = net, batch_size, chunk_size

                def forward(self, p):
                    return self.net(None, p, batch, mass=mass, basis=basis,
                                    batch_size=self.batch_size, chunk_size=self.chunk_size)

            with torch.no_grad():
                outputs[f"{kind}/{n}"] = Run()(pos)
            for chunk_size in (None, chunk) if chunk and n > chunk else (None,):
                syncs = []
                for run in (Run(None, chunk_size), Run(8, chunk_size)):
                    with torch.no_grad(), HostSyncs() as counter:
                        run(pos)
                    syncs.append(counter.count)

                def forward():
                    with torch.no_grad():
                        Run(None, chunk_size)(pos)

                times = time_ms({"forward": forward,
                                 "forward_backward": fwd_bwd(Run(None, chunk_size), pos)},
                                min_time=1.0, max_reps=5)
                key = f"{kind}/{n}" + ("" if chunk_size is None else f"/{chunk_size}")
                results[key] = dict(times, syncs=syncs[0], syncs_batch_size=syncs[1])
                if chunk_size is not None:  # what the recomputation is for
                    results[key]["peak_mib"] = peak_mib(fwd_bwd(Run(None, chunk_size), pos))
    if save:
        torch.save(outputs, save)
    return results


def run_revision(path, sizes, kinds, chunk, save=""):
    env = dict(os.environ, PYTHONPATH=path + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker",
                          "--sizes", ",".join(map(str, sizes)), "--kinds", ",".join(kinds),
                          "--chunk", str(chunk), "--save", save,
                          "--expect", path],
                         env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"the worker for {path} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _range(row, metric):
    low, high = row[f"{metric}_ratio_range"]
    return f"({low:.2f}-{high:.2f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="67e7b4b", help="git revision to compare against")
    parser.add_argument("--sizes", default="4096,65536")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=16384,
                        help="also time chunk_size=CHUNK for graphs batches larger than it (0: no)")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "bench_core"))
    parser.add_argument("--system-malloc", action="store_true", help="keep glibc's default malloc")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--expect", help=argparse.SUPPRESS)
    parser.add_argument("--save", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = args.kinds.split(",")
    if args.worker:
        import tg_funcattn
        if not os.path.abspath(tg_funcattn.__file__).startswith(os.path.abspath(args.expect)):
            raise RuntimeError(f"imported {tg_funcattn.__file__}, expected one under {args.expect}")
        print(json.dumps(worker(sizes, kinds, args.chunk, args.save)))
        return

    from common import machine, tune_allocator, write_results
    tune_allocator(sys.argv)
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", ROOT, "archive", args.baseline, "tg_funcattn"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        revisions = {"before": tmp, "after": ROOT}
        rounds = {name: [] for name in revisions}
        saved = {name: os.path.join(tmp, f"{name}.pt") for name in revisions}
        for r in range(args.rounds):
            for name, path in revisions.items():
                rounds[name].append(run_revision(path, sizes, kinds, args.chunk,
                                                 saved[name] if r == 0 else ""))
                print(f"round {r + 1}/{args.rounds} {name} done", file=sys.stderr, flush=True)
        import torch
        before, after = (torch.load(saved[name]) for name in revisions)
        output_diff = {key: float((after[key] - before[key]).abs().max()) for key in before}
    baseline = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", args.baseline],
                              check=True, capture_output=True, text=True).stdout.strip()
    rows = {}
    for key in rounds["after"][0]:
        row = {}
        for name in revisions:
            for metric in ("forward", "forward_backward"):
                row[f"{name}_{metric}_ms"] = statistics.median(r[key][metric] for r in rounds[name])
                row[f"{name}_{metric}_ms_rounds"] = [r[key][metric] for r in rounds[name]]
            row[f"{name}_syncs"] = rounds[name][0][key]["syncs"]
            row[f"{name}_syncs_batch_size"] = rounds[name][0][key]["syncs_batch_size"]
        for metric in ("forward", "forward_backward"):  # after / before within each round
            ratios = [a[key][metric] / b[key][metric]
                      for a, b in zip(rounds["after"], rounds["before"])]
            row[f"{metric}_ratio_range"] = [min(ratios), max(ratios)]
        if "peak_mib" in rounds["after"][0][key]:
            row.update({f"{name}_peak_mib": rounds[name][0][key]["peak_mib"] for name in revisions})
        row["max_abs_output_difference"] = output_diff["/".join(key.split("/")[:2])]
        rows[key] = row
    result = {"machine": machine(), "baseline": baseline, "rounds": args.rounds,
              "malloc": "glibc default" if args.system_malloc else "tuned (benchmarks/common.py)",
              "rows": rows}
    lines = [f"# FuncAttnNet at {baseline} (before) and in this tree (after)", "",
             f"{result['machine']}; malloc {result['malloc']}; median of {args.rounds} alternating "
             "rounds, one process per revision and round.  4 blocks, width 128, 8 heads, 32 "
             "bases, 8 graphs of random sizes.  Ratio = after / before of the medians (below 1: "
             "faster), in brackets its range over the rounds (after / before within a round).  Host "
             "syncs: per forward pass, without / with `batch_size`.  Output difference: the "
             "largest absolute difference between the two revisions' outputs (same seed).", "",
             "| basis, N | forward ms before | after | ratio | fwd+bwd ms before | after | ratio "
             "| host syncs before | after | output difference |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key, row in rows.items():
        kind, n, *chunk = key.split("/")
        label = f"{kind}, {int(n):,}" + (f", chunk_size={int(chunk[0]):,}" if chunk else "")
        lines.append(
            f"| {label} | {row['before_forward_ms']:.1f} | {row['after_forward_ms']:.1f} "
            f"| {row['after_forward_ms'] / row['before_forward_ms']:.2f} {_range(row, 'forward')} "
            f"| {row['before_forward_backward_ms']:.1f} | {row['after_forward_backward_ms']:.1f} "
            f"| {row['after_forward_backward_ms'] / row['before_forward_backward_ms']:.2f} "
            f"{_range(row, 'forward_backward')} "
            f"| {row['before_syncs']} / {row['before_syncs_batch_size']} "
            f"| {row['after_syncs']} / {row['after_syncs_batch_size']} "
            f"| {row['max_abs_output_difference']:.1e} |")
    streamed = [(key, row) for key, row in rows.items() if "after_peak_mib" in row]
    if streamed:
        lines += ["", "Peak tensor memory of forward+backward when streaming (MiB; the profiler's "
                  "allocation events).",
                  "", "| basis, N, chunk_size | before | after | ratio |", "|---|---|---|---|"]
        for key, row in streamed:
            kind, n, chunk = key.split("/")
            lines.append(f"| {kind}, {int(n):,}, {int(chunk):,} | {row['before_peak_mib']:.0f} "
                         f"| {row['after_peak_mib']:.0f} "
                         f"| {row['after_peak_mib'] / row['before_peak_mib']:.2f} |")
    report = "\n".join(lines) + "\n"
    write_results(args.out, result, report)
    print(report)


if __name__ == "__main__":
    main()
