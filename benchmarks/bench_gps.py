"""Forward+backward time of PyG's GPS example model with FuncAttnGPSConv against
the same model with PyG's GPSConv(attn_type="multihead"), on the same batch.

    python benchmarks/bench_gps.py            # about 3 min on 2 cores, 3 GB
    python benchmarks/bench_gps.py --quick    # the ZINC-like batch only
    python benchmarks/bench_gps.py --accuracy # trained: does a Laplacian basis help?

Model: PyG's examples/graph_gps.py (ZINC: atom and bond embeddings, a
random-walk positional encoding of length 20, 10 GPS layers of width 64 with
GINEConv and 4 heads, attention dropout 0.5, add pooling, MLP head), training
mode.  The two models differ only in the GPS layer class (and attn_type);
functional attention uses 32 learned bases a head.  Batches: 128 generated
molecule-like graphs of 9-38 nodes (ZINC's sizes), and 4 graphs of 1,000
nodes, where multihead attention's L x L attention shows (about 3 GB here; 8
graphs of 2,000 nodes took over 22 GB).  Writes
``benchmarks/results/bench_gps.{md,json}``.

``--accuracy`` trains the same model instead, on a regression that needs the
whole graph: the diameter (in bonds) of generated molecule-like graphs of 9-38
nodes (``--train`` graphs, 500 for validation and 500 for test, L1 loss,
Adam 1e-3 as the example, ``--epochs``, batch 32, ``--seeds``): multihead
attention against functional attention with a learned basis and with the
graphs' own Laplacian basis (``LaplacianEigenbasis(8, method="graph")``, its
degrees as the mass) as ``laplacian`` and ``laplacian_init``.  Scores: test
L1 after the epoch of the best validation L1.  Writes
``benchmarks/results/bench_gps_accuracy.{md,json}``.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
from torch_geometric.data import Batch
from torch_geometric.nn import GPSConv

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine, time_ms, tune_allocator, write_results  # noqa: E402
from peers import GPSExample, molecule  # noqa: E402

from tg_funcattn.nn import FuncAttnGPSConv  # noqa: E402
from tg_funcattn.transforms import LaplacianEigenbasis  # noqa: E402

CHANNELS, PE_DIM, LAYERS, WALK, HEADS = 64, 8, 10, 20, 4
ATTN_KWARGS = {"dropout": 0.5}
ROUNDS = 3


def batch_of(sizes, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return Batch.from_data_list([molecule(gen, n, WALK) for n in sizes])


def measure(name, data):
    torch.manual_seed(0)
    models = {"multihead": GPSExample(GPSConv, "multihead", ATTN_KWARGS, CHANNELS, PE_DIM, LAYERS,
                                      WALK, HEADS),
              "functional": GPSExample(FuncAttnGPSConv, "functional", ATTN_KWARGS, CHANNELS,
                                       PE_DIM, LAYERS, WALK, HEADS)}

    def step(model):
        def run():
            model.zero_grad(set_to_none=True)
            model(data.x, data.pe, data.edge_index, data.edge_attr, data.batch).sum().backward()
        return run

    fns = {key: step(model) for key, model in models.items()}
    rounds = [time_ms(fns) for _ in range(ROUNDS)]  # the machine is shared: rounds vary
    ms = {key: statistics.median(r[key] for r in rounds) for key in fns}
    ratios = [r["functional"] / r["multihead"] for r in rounds]
    counts = torch.bincount(data.batch)
    row = {"batch": name, "graphs": int(data.num_graphs), "nodes": int(data.num_nodes),
           "max_nodes": int(counts.max()), "multihead_ms": ms["multihead"],
           "functional_ms": ms["functional"], "ratio": statistics.median(ratios),
           "ratio_range": [min(ratios), max(ratios)],
           "attn_params": {key: sum(p.numel() for c in m.convs for p in c.attn.parameters())
                           for key, m in models.items()}}
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}),
          flush=True)
    return row


#: --accuracy rows: (label, GPS layer class, attn_type, attn_kwargs, with the graph's basis)
ACCURACY_ROWS = {
    "multihead": ("GPSConv, multihead", GPSConv, "multihead", ATTN_KWARGS, False),
    "learned": ("FuncAttnGPSConv, learned basis (32 bases)", FuncAttnGPSConv, "functional",
                ATTN_KWARGS, False),
    "learned8": ("FuncAttnGPSConv, learned basis (8 bases)", FuncAttnGPSConv, "functional",
                 dict(ATTN_KWARGS, num_bases=8), False),
    "laplacian": ("FuncAttnGPSConv, the graph's Laplacian basis (8)", FuncAttnGPSConv,
                  "functional", dict(ATTN_KWARGS, num_bases=8, basis_type="laplacian"), True),
    "laplacian_init": ("FuncAttnGPSConv, laplacian_init (8)", FuncAttnGPSConv, "functional",
                       dict(ATTN_KWARGS, num_bases=8, basis_type="laplacian_init"), True),
}
GRAPH_BASIS = 8


def molecules(count, seed):
    gen = torch.Generator().manual_seed(seed)
    sizes = torch.randint(9, 39, (count,), generator=gen).tolist()
    transform = LaplacianEigenbasis(GRAPH_BASIS, method="graph")
    return [transform(molecule(gen, n, WALK)) for n in sizes]


def train_accuracy(name, seed, splits, epochs, batch_size=32):
    from torch_geometric.loader import DataLoader

    label, cls, attn_type, attn_kwargs, with_basis = ACCURACY_ROWS[name]
    torch.manual_seed(seed)
    model = GPSExample(cls, attn_type, attn_kwargs, CHANNELS, PE_DIM, LAYERS, WALK, HEADS)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)

    def run(data):
        basis = dict(mass=data.mass, basis=data.evecs, batch_size=data.num_graphs) \
            if with_basis else {}
        return model(data.x, data.pe, data.edge_index, data.edge_attr, data.batch,
                     **basis).view(-1)

    def l1(dataset):
        model.eval()
        with torch.no_grad():
            total = sum(float((run(d) - d.diameter).abs().sum())
                        for d in DataLoader(dataset, batch_size=128))
        return total / len(dataset)

    train, val, test = splits
    loader = DataLoader(train, batch_size=batch_size, shuffle=True)
    curve, best, start = [], None, time.time()
    for epoch in range(epochs):
        model.train()
        for data in loader:
            optimizer.zero_grad()
            (run(data) - data.diameter).abs().mean().backward()
            optimizer.step()
        curve.append(l1(val))
        if best is None or curve[-1] < best[0]:
            best = (curve[-1], l1(test), epoch + 1)
        print(f"{name} seed {seed} epoch {epoch + 1} val L1 {curve[-1]:.3f}", flush=True)
    return {"row": name, "seed": seed, "val_curve": curve, "val_l1": best[0], "test_l1": best[1],
            "best_epoch": best[2], "train_s": time.time() - start}


def accuracy(args):
    splits = (molecules(args.train, 1), molecules(500, 2), molecules(500, 3))
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = [train_accuracy(name, seed, splits, args.epochs) for name in ACCURACY_ROWS
            for seed in seeds]
    lines = ["# GPS example model trained: the diameter of molecule-like graphs", "",
             (f"Machine: {machine()}; {torch.get_num_threads()} threads.  PyG's "
              "examples/graph_gps.py model (10 GPS layers, width 64, GINEConv, 4 heads, "
              f"attention dropout 0.5), {args.train} training graphs of 9-38 nodes, 500 "
              f"validation, 500 test; target: the graph's diameter in bonds (mean "
              f"{statistics.mean(float(d.diameter) for d in splits[2]):.2f} on the test "
              f"graphs); L1 loss, Adam 1e-3, weight decay 1e-5, batch 32, {args.epochs} "
              f"epochs; seeds {', '.join(map(str, seeds))}.  Test L1 at the epoch of the best "
              "validation L1, mean ± half the range over seeds."), "",
             "| attention | val L1 | test L1 | best epoch | train time |", "|---|---|---|---|---|"]
    for name, (label, *_) in ACCURACY_ROWS.items():
        rs = [r for r in runs if r["row"] == name]

        def cell(key, rs=rs):
            values = [r[key] for r in rs]
            return f"{statistics.mean(values):.3f} ± {(max(values) - min(values)) / 2:.3f}"

        lines.append(f"| {label} | {cell('val_l1')} | {cell('test_l1')} | "
                     f"{', '.join(str(r['best_epoch']) for r in rs)} | "
                     f"{statistics.mean(r['train_s'] for r in rs) / 60:.1f} min |")
    report = "\n".join(lines) + "\n"
    print(report)
    write_results(args.out + "_accuracy", {"machine": machine(), "train": args.train,
                                           "epochs": args.epochs, "seeds": seeds, "runs": runs},
                  report)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the ZINC-like batch only")
    parser.add_argument("--accuracy", action="store_true",
                        help="train on the diameter regression instead of timing")
    parser.add_argument("--train", type=int, default=1000, help="--accuracy: training graphs")
    parser.add_argument("--epochs", type=int, default=20, help="--accuracy: epochs")
    parser.add_argument("--seeds", default="0,1", help="--accuracy: seeds")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      "bench_gps"))
    parser.add_argument("--system-malloc", action="store_true", help="keep glibc's default malloc")
    args = parser.parse_args()
    tune_allocator(sys.argv)
    print(f"# {machine()}", flush=True)
    if args.accuracy:
        accuracy(args)
        return

    gen = torch.Generator().manual_seed(0)
    zinc_sizes = torch.randint(9, 39, (128,), generator=gen).tolist()
    rows = [measure("ZINC-like, 128 graphs of 9-38 nodes", batch_of(zinc_sizes))]
    if not args.quick:
        rows.append(measure("4 graphs of 1,000 nodes", batch_of([1000] * 4)))

    lines = [
        "# GPS example model: FuncAttnGPSConv vs GPSConv(attn_type='multihead')", "",
        (f"Machine: {machine()}; malloc tuned (benchmarks/common.py).  PyG's "
         "examples/graph_gps.py model (10 GPS layers, width 64, GINEConv, 4 heads, attention "
         "dropout 0.5), training mode, forward+backward of the whole model on the same batch, "
         f"median of {ROUNDS} rounds of alternating runs.  Functional attention: 32 learned "
         "bases a head.  Ratio = functional / multihead (below 1: faster): the median of the "
         "rounds' ratios, in brackets their range."), "",
        "| batch | nodes | largest graph | multihead ms | functional ms | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['batch']} | {r['nodes']:,} | {r['max_nodes']:,} | "
                     f"{r['multihead_ms']:.1f} | {r['functional_ms']:.1f} | {r['ratio']:.2f} "
                     f"({r['ratio_range'][0]:.2f}-{r['ratio_range'][1]:.2f}) |")
    p = rows[0]["attn_params"]
    lines += ["", (f"Attention parameters of the 10 layers: multihead {p['multihead']:,}, "
                   f"functional {p['functional']:,}; all other parameters are the same modules."),
              ""]
    report = "\n".join(lines)
    print(report)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".md", "w") as f:
        f.write(report)
    with open(args.out + ".json", "w") as f:
        json.dump({"machine": machine(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
