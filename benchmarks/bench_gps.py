"""Forward+backward time of PyG's GPS example model with FuncAttnGPSConv against
the same model with PyG's GPSConv(attn_type="multihead"), on the same batch.

    python benchmarks/bench_gps.py            # about 3 min on 2 cores, 3 GB
    python benchmarks/bench_gps.py --quick    # the ZINC-like batch only

Model: PyG's examples/graph_gps.py (ZINC: atom and bond embeddings, a
random-walk positional encoding of length 20, 10 GPS layers of width 64 with
GINEConv and 4 heads, attention dropout 0.5, add pooling, MLP head), training
mode.  The two models differ only in the GPS layer class (and attn_type);
functional attention uses 32 learned bases a head.  Batches: 128 generated
molecule-like graphs of 9-38 nodes (ZINC's sizes), and 4 graphs of 1,000
nodes, where multihead attention's L x L attention shows (about 3 GB here; 8
graphs of 2,000 nodes took over 22 GB).  Writes
``benchmarks/results/bench_gps.{md,json}``.
"""
import argparse
import json
import os
import statistics
import sys

import torch
from torch_geometric.data import Batch
from torch_geometric.nn import GPSConv

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine, time_ms, tune_allocator  # noqa: E402
from peers import GPSExample, molecule  # noqa: E402

from tg_funcattn.nn import FuncAttnGPSConv  # noqa: E402

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the ZINC-like batch only")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      "bench_gps"))
    parser.add_argument("--system-malloc", action="store_true", help="keep glibc's default malloc")
    args = parser.parse_args()
    tune_allocator(sys.argv)
    print(f"# {machine()}", flush=True)

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
