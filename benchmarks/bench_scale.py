"""The cost curve: forward+backward time and peak memory of the layer and of the
full model versus the number of nodes N (1k ... 1M) and the number of bases k
(16 ... 256), against full softmax attention (SDPA), Transolver-style physics
attention and PyG's PointTransformerConv measured in the same run; the cost
floor (three Linear(128, 128) on the same input) and one 1M-node graph
(layer and full model, inference and a training step).

    python benchmarks/bench_scale.py                  # the suite (about 50 min on 2 cores)
    python benchmarks/bench_scale.py --quick          # N <= 16k, a few minutes
    python benchmarks/bench_scale.py --device cuda    # the same suite on a GPU

Layer: channels 128, 8 heads, 64 bases (slices for physics attention), learned
basis, one graph.  Full model: ``FuncAttnNet`` (lift, 4 blocks, head; no local
branch) against the same network with the attention swapped for a peer
(``peers.PeerNet``).  Every size runs in a fresh process (fresh heap), the largest ones
one method per process.  Writes
``benchmarks/results/bench_scale{_cuda}.md``, ``.json`` and ``.png`` (log-log).
"""
import argparse
import json
import os
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import MALLOC_ENV, fwd_bwd, machine, peak_mib, time_ms, tune_allocator  # noqa: E402
from peers import PeerNet, PhysicsAttention, PointTransformerPeer, SoftmaxAttention  # noqa: E402

from tg_funcattn.nn import FuncAttnNet, FunctionalAttention  # noqa: E402
from tg_funcattn.ops import knn_graph  # noqa: E402

C, HEADS, BASES, LAYERS, OUT = 128, 8, 64, 4, 16
METHODS = ("funcattn", "physics", "sdpa", "ptconv")
LABELS = {"funcattn": "functional attention", "physics": "physics attention (Transolver)",
          "sdpa": "softmax attention (SDPA)", "ptconv": "PointTransformerConv k=16",
          "linear3": "3 x Linear(128, 128)"}


class ThreeLinear(torch.nn.Module):
    """The projections every attention variant needs: three Linear(C, C) on the
    same input (summed so that one backward reaches all three)."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = (torch.nn.Linear(C, C) for _ in range(3))

    def forward(self, x):
        return self.a(x) + self.b(x) + self.c(x)


class Model(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, pos):
        return self.net(x, pos)


def layer_methods(n, args):
    return [m for m in ("funcattn", "physics", "linear3", "sdpa", "ptconv")
            if (m != "sdpa" or n <= args.sdpa_max) and (m != "ptconv" or n <= args.ptconv_max)]


def layer_row(n, args):
    dev = args.device
    torch.manual_seed(0)
    x = torch.randn(n, C, device=dev, requires_grad=True)
    make = {"funcattn": lambda: fwd_bwd(FunctionalAttention(C, HEADS, BASES).to(dev), x),
            "physics": lambda: fwd_bwd(PhysicsAttention(C, HEADS, BASES).to(dev), x),
            "linear3": lambda: fwd_bwd(ThreeLinear().to(dev), x),
            "sdpa": lambda: fwd_bwd(SoftmaxAttention(C, HEADS).to(dev), x)}
    if "ptconv" in layer_methods(n, args):
        pos = torch.rand(n, 3, device=dev)
        edges = knn_graph(pos, 16)
        make["ptconv"] = lambda: fwd_bwd(PointTransformerPeer(C).to(dev), x, pos, edges)
    methods = [args.only] if args.only else layer_methods(n, args)
    return _measure({"N": n}, {m: make[m]() for m in methods}, args)


def k_row(k, args):
    dev, n = args.device, args.k_nodes
    torch.manual_seed(0)
    x = torch.randn(n, C, device=dev, requires_grad=True)
    runs = {"funcattn": fwd_bwd(FunctionalAttention(C, HEADS, k).to(dev), x),
            "physics": fwd_bwd(PhysicsAttention(C, HEADS, k).to(dev), x)}
    return _measure({"k": k, "N": n}, runs, args)


def model_methods(n, args):
    return [m for m in ("funcattn", "physics", "sdpa", "ptconv")
            if (m != "sdpa" or n <= args.model_sdpa_max)
            and (m != "ptconv" or n <= args.model_ptconv_max)]


def model_row(n, args):
    dev = args.device
    torch.manual_seed(0)
    x = torch.randn(n, 3, device=dev)
    pos = torch.rand(n, 3, device=dev)
    edges = knn_graph(pos, 16) if "ptconv" in model_methods(n, args) else None

    def peer(kind):
        return PeerNet(kind, 6, C, OUT, LAYERS, HEADS, BASES).to(dev)

    make = {"funcattn": lambda: fwd_bwd(Model(FuncAttnNet(3, C, OUT, num_layers=LAYERS, heads=HEADS,
                                                          num_bases=BASES).to(dev)), x, pos),
            "physics": lambda: fwd_bwd(peer("physics"), x, pos),
            "sdpa": lambda: fwd_bwd(peer("sdpa"), x, pos),
            "ptconv": lambda: fwd_bwd(peer("ptconv"), x, pos, edges)}
    methods = [args.only] if args.only else model_methods(n, args)
    return _measure({"N": n}, {m: make[m]() for m in methods}, args)


def big_row(n, args):
    """One graph of ``n`` nodes: layer inference (one pass and streamed in
    chunks), layer forward+backward, full-model inference (streamed)."""
    dev = args.device
    torch.manual_seed(0)
    layer = FunctionalAttention(C, HEADS, BASES).to(dev)
    x = torch.randn(n, C, device=dev, requires_grad=True)
    chunk = args.chunk_size

    def infer(**kw):
        def run():
            with torch.no_grad():
                layer(x, **kw)
        return run

    model = FuncAttnNet(3, C, OUT, num_layers=LAYERS, heads=HEADS, num_bases=BASES).to(dev).eval()
    feats, pos = torch.randn(n, 3, device=dev), torch.rand(n, 3, device=dev)

    def model_infer():
        with torch.no_grad():
            model(feats, pos, chunk_size=chunk)

    runs = {"layer_infer": infer(), "layer_infer_chunked": infer(chunk_size=chunk),
            "layer_fwd_bwd": fwd_bwd(layer, x),
            "model_infer_chunked": model_infer}
    row = {"N": n, "chunk_size": chunk, "input_mib": x.numel() * 4 / 2 ** 20}
    for name, ms in time_ms(runs, max_reps=3, min_reps=1, device=dev).items():
        row[f"{name}_ms"] = ms
    for name, run in runs.items():
        row[f"{name}_mib"] = peak_mib(run, dev)
    return row


def big_train_row(n, args):
    """A training step of the full model on one graph of ``n`` nodes, streamed
    (attention chunks and blocks checkpointed); its own process, glibc's malloc."""
    dev = args.device
    torch.manual_seed(0)
    model = FuncAttnNet(3, C, OUT, num_layers=LAYERS, heads=HEADS, num_bases=BASES).to(dev)
    feats, pos = torch.randn(n, 3, device=dev), torch.rand(n, 3, device=dev)

    def step():
        for p in model.parameters():
            p.grad = None
        model(feats, pos, chunk_size=args.chunk_size).square().mean().backward()

    row = {"N": n, "model_fwd_bwd_chunked_ms": time_ms({"step": step}, max_reps=3, min_reps=1,
                                                       device=dev)["step"]}
    row["model_fwd_bwd_chunked_mib"] = peak_mib(step, dev)
    return row


def _measure(row, runs, args):
    for name, ms in time_ms(runs, device=args.device).items():
        row[f"{name}_ms"] = ms
    if not args.no_memory:
        for name, run in runs.items():
            if row[f"{name}_ms"] < 20e3:  # memory needs one more call
                row[f"{name}_mib"] = peak_mib(run, args.device)
    return row


def run_child(kind, value, argv, args, done):
    """One row, measured in a fresh process (rows in ``done``, from an earlier
    interrupted run with ``--resume``, are reused).  Layer rows of at least
    ``--split-above`` nodes measure every method in its own process: the
    tuned allocator never returns memory, and the peaks of several methods
    on a 1M-node graph would add up."""
    key = f"{kind}={value}"
    if key in done:
        return done[key]
    if kind == "layer" and value >= args.split_above:
        row = {"malloc": "system"}
        for method in layer_methods(value, args):
            row.update(_child(kind, value, argv + ["--only", method], system_malloc=True))
    elif kind == "big_train":
        row = _child(kind, value, argv, system_malloc=True)
    elif kind == "model" and value >= args.model_split_above:
        row = {}
        for method in model_methods(value, args):
            row.update(_child(kind, value, argv + ["--only", method]))
    else:
        row = _child(kind, value, argv)
    print(kind, json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}),
          flush=True)
    done[key] = row
    with open(args.partial, "w") as f:
        json.dump(done, f)
    return row


def _child(kind, value, argv, system_malloc=False):
    cmd = [sys.executable, os.path.abspath(__file__), "--one", kind, str(value)] + argv
    env = None
    if system_malloc:  # glibc's default: the tuned heap fragments past 24 GB at 1M nodes
        env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
        cmd.append("--system-malloc")
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"{kind}={value} failed (exit {result.returncode}; -9 is the OOM killer):\n"
                         f"{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", default="1024,4096,16384,65536,262144,1048576",
                        help="N of the layer rows")
    parser.add_argument("--model-sizes", default="1024,4096,16384,65536,262144")
    parser.add_argument("--ks", default="16,32,64,128,256")
    parser.add_argument("--k-nodes", type=int, default=65536, help="N of the k rows")
    parser.add_argument("--big", type=int, default=1048576, help="N of the big-graph row (0: none)")
    parser.add_argument("--chunk-size", type=int, default=65536)
    parser.add_argument("--no-big-train", action="store_true",
                        help="skip the full-model training step on the big graph (about 10 min on 2 cores)")
    parser.add_argument("--sdpa-max", type=int, default=65536, help="largest N for SDPA (O(N^2))")
    parser.add_argument("--model-sdpa-max", type=int, default=16384)
    parser.add_argument("--model-ptconv-max", type=int, default=16384,
                        help="largest N for the PointTransformer network (about 200 KB a node)")
    parser.add_argument("--model-split-above", type=int, default=65536,
                        help="model rows this large measure each network in its own process")
    parser.add_argument("--ptconv-max", type=int, default=65536,
                        help="largest N for PointTransformerConv (about 80 KB a node)")
    parser.add_argument("--quick", action="store_true", help="N <= 16k, k at 16k nodes, no big row")
    parser.add_argument("--split-above", type=int, default=524288,
                        help="layer rows this large measure each method in its own process")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the rows of an interrupted run (<out>.partial.json)")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--out", default=None, help="output path without extension")
    parser.add_argument("--system-malloc", action="store_true", help="keep glibc's default malloc")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # internal: one row per process
    parser.add_argument("--only", help=argparse.SUPPRESS)  # internal: one method of a layer row
    args = parser.parse_args()
    if args.quick:
        args.sizes = ",".join(s for s in args.sizes.split(",") if int(s) <= 16384)
        args.model_sizes = ",".join(s for s in args.model_sizes.split(",") if int(s) <= 16384)
        args.k_nodes, args.big = 16384, 0
    if args.one:
        kind, value = args.one[0], int(args.one[1])
        fn = {"layer": layer_row, "k": k_row, "model": model_row, "big": big_row,
              "big_train": big_train_row}[kind]
        print(json.dumps(fn(value, args)), flush=True)
        return
    suffix = "" if args.device == "cpu" else "_" + torch.device(args.device).type
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   "bench_scale" + suffix)
    argv = [a for a in sys.argv[1:] if a not in ("--quick", "--resume")]
    argv += ["--k-nodes", str(args.k_nodes), "--big", str(args.big)]
    args.partial = out + ".partial.json"
    done = {}
    if args.resume and os.path.exists(args.partial):
        with open(args.partial) as f:
            done = json.load(f)
    print(f"# {machine(args.device)}", flush=True)
    result = {"machine": machine(args.device), "device": args.device,
              "malloc": "system" if args.system_malloc else "tuned (MALLOC_MMAP_MAX_=0)",
              "layer": [run_child("layer", n, argv, args, done) for n in _ints(args.sizes)],
              "k": [run_child("k", k, argv, args, done) for k in _ints(args.ks)],
              "model": [run_child("model", n, argv, args, done) for n in _ints(args.model_sizes)],
              "big": run_child("big", args.big, argv, args, done) if args.big else None}
    if args.big and not args.no_big_train:
        result["big"].update(run_child("big_train", args.big, argv, args, done))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + ".json", "w") as f:
        json.dump(result, f, indent=1)
    report = render(result, os.path.basename(out) + ".png")
    with open(out + ".md", "w") as f:
        f.write(report)
    plot(result, out + ".png")
    os.remove(args.partial)
    print("\n" + report)


def _ints(text):
    return [int(s) for s in text.split(",") if s]


def _cell(row, name):
    t = row.get(f"{name}_ms")
    if t is None:
        return "-"
    return f"{t:.0f} ({t / row['funcattn_ms']:.2f}x)" if name != "funcattn" else f"{t:.1f}"


def _mib(row, name):
    m = row.get(f"{name}_mib")
    return "-" if m is None else f"{m:.0f}"


def render(r, png):
    lines = [f"Machine: {r['machine']}; malloc {r['malloc']}.",
             "Forward+backward; time in ms (peer / functional attention); peak tensor memory in MiB. "
             "Times over 20 s are one call (the warm-up, page faults included), not a median of "
             "several, and their memory is not measured.",
             "", f"![cost curve]({png})", "",
             "**Layer** (channels 128, 8 heads, 64 bases or slices, one graph):", "",
             "| N | funcattn ms | physics | SDPA | PTConv k=16 | 3 x Linear | funcattn / 3 Linear "
             "| MiB funcattn | MiB physics | MiB SDPA | MiB PTConv |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in r["layer"]:
        lines.append(f"| {row['N']}{' *' if row.get('malloc') == 'system' else ''} | {_cell(row, 'funcattn')} | {_cell(row, 'physics')} | "
                     f"{_cell(row, 'sdpa')} | {_cell(row, 'ptconv')} | {row['linear3_ms']:.1f} | "
                     f"{row['funcattn_ms'] / row['linear3_ms']:.2f}x | {_mib(row, 'funcattn')} | "
                     f"{_mib(row, 'physics')} | {_mib(row, 'sdpa')} | {_mib(row, 'ptconv')} |")
    if any(row.get("malloc") == "system" for row in r["layer"]):
        lines += ["", "\\* each method in its own process with glibc's default malloc (the tuned heap "
                  "fragments past this machine's 24 GB), so every method pays its page faults."]
    if r["k"]:
        lines += ["", f"**Layer versus k** (N = {r['k'][0]['N']}):", "",
                  "| k | funcattn ms | physics | MiB funcattn | MiB physics |", "|---|---|---|---|---|"]
        for row in r["k"]:
            lines.append(f"| {row['k']} | {_cell(row, 'funcattn')} | {_cell(row, 'physics')} | "
                         f"{_mib(row, 'funcattn')} | {_mib(row, 'physics')} |")
    if r["model"]:
        lines += ["", f"**Full model** (lift, {LAYERS} blocks of width {C}, head; one graph):", "",
                  "| N | FuncAttnNet ms | Transolver-style | softmax transformer | PointTransformer "
                  "| MiB FuncAttnNet | MiB Transolver | MiB softmax | MiB PointTransformer |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for row in r["model"]:
            lines.append(f"| {row['N']} | {_cell(row, 'funcattn')} | {_cell(row, 'physics')} | "
                         f"{_cell(row, 'sdpa')} | {_cell(row, 'ptconv')} | {_mib(row, 'funcattn')} | "
                         f"{_mib(row, 'physics')} | {_mib(row, 'sdpa')} | {_mib(row, 'ptconv')} |")
    big = r["big"]
    if big:
        lines += ["", f"**One graph of {big['N']} nodes** (input {big['input_mib']:.0f} MiB; "
                  f"chunks of {big['chunk_size']} nodes):", "", "| run | time s | peak MiB |",
                  "|---|---|---|"]
        for name, text in (("layer_infer", "layer inference, one pass"),
                           ("layer_infer_chunked", "layer inference, streamed"),
                           ("layer_fwd_bwd", "layer forward+backward"),
                           ("model_infer_chunked", f"FuncAttnNet ({LAYERS} blocks) inference, streamed"),
                           ("model_fwd_bwd_chunked",
                            f"FuncAttnNet ({LAYERS} blocks) training step, streamed (own process, glibc malloc)")):
            if name + "_ms" in big:
                lines.append(f"| {text} | {big[name + '_ms'] / 1e3:.1f} | {big[name + '_mib']:.0f} |")
    lines += ["", "Targets:"] + targets(r)
    return "\n".join(lines) + "\n"


def targets(r):
    out = []
    rows = {row["N"]: row for row in r["layer"]}
    large = [row for row in r["layer"] if row["N"] >= 65536]
    if large:
        worst = max(row["funcattn_ms"] / row["physics_ms"] for row in large)
        out.append(f"- funcattn / physics attention, worst over N >= 64k: {worst:.2f}x (target <= 1.1x)")
    if 65536 in rows and "sdpa_ms" in rows[65536]:
        out.append(f"- SDPA / funcattn at N = 64k: "
                   f"{rows[65536]['sdpa_ms'] / rows[65536]['funcattn_ms']:.0f}x (target >= 50x)")
    if 262144 in rows:
        out.append(f"- funcattn / three Linear(128, 128) at N = 256k: "
                   f"{rows[262144]['funcattn_ms'] / rows[262144]['linear3_ms']:.2f}x (target <= 2.5x)")
    big = r["big"]
    if big:
        out.append(f"- {big['N']}-node graph, inference peak: {big['layer_infer_chunked_mib']:.0f} MiB "
                   f"streamed, {big['layer_infer_mib']:.0f} MiB one pass (target < 4096 MiB)")
        out.append(f"- {big['N']}-node graph, forward+backward peak: {big['layer_fwd_bwd_mib']:.0f} MiB "
                   "(target < 16384 MiB)")
    return out


def plot(r, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(20, 4.6))
    styles = {"funcattn": "o-", "physics": "s-", "sdpa": "^-", "ptconv": "v-", "linear3": "k--"}

    def curves(ax, rows, key, names, value="ms", scale=1e-3):
        for name in names:
            pts = [(row[key], row[f"{name}_{value}"] * scale) for row in rows
                   if row.get(f"{name}_{value}") is not None]
            if pts:
                ax.plot(*zip(*pts), styles[name], label=LABELS[name], ms=4)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)

    curves(axes[0], r["layer"], "N", ("funcattn", "physics", "sdpa", "ptconv", "linear3"))
    axes[0].set(title="one layer, forward+backward", xlabel="nodes N", ylabel="seconds")
    axes[0].legend(fontsize=8)
    curves(axes[1], r["model"], "N", ("funcattn", "physics", "sdpa", "ptconv"))
    axes[1].set(title=f"full model ({LAYERS} blocks), forward+backward", xlabel="nodes N",
                ylabel="seconds")
    if r["k"]:
        curves(axes[2], r["k"], "k", ("funcattn", "physics"))
        axes[2].set(title=f"one layer at N = {r['k'][0]['N']}, versus k", xlabel="bases / slices k",
                    ylabel="seconds")
    curves(axes[3], r["layer"], "N", ("funcattn", "physics", "sdpa", "ptconv"), value="mib", scale=1.0)
    axes[3].set(title="one layer, peak memory", xlabel="nodes N", ylabel="MiB")
    fig.suptitle(f"tg_funcattn cost curve: {r['machine']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    tune_allocator(sys.argv)
    main()
