"""PyG's Polynormer with its global attention swapped for functional attention, as the
README shows, on a planted-partition node classification.

    python benchmarks/bench_polynormer.py          # about 2 min

Data (per seed): a stochastic block model of 5 blocks of 300 nodes (edge
probability 0.02 within a block, 0.002 across), features the one-hot block
plus Gaussian noise of standard deviation 2, half the nodes for training, a
quarter for validation.  Model: ``Polynormer(5, 64, 5)`` (PyG's defaults: 7
local layers, 2 global layers, 1 head), trained full-batch with Adam (lr 0.01,
``model.parameters()``) for 40 epochs of the local stage and 40 of the global
stage (``model._global = True``, as Polynormer switches after its warm-up).
Rows: the unmodified model and the model with ``global_attn[i] =
DenseFunctionalAttention(64)`` (the README's swap: the layer's default 8 heads), with one
head (Polynormer's own default number of heads), and with one head whose ``lin_q`` and
``lin_k`` stay at their initial values (a diagnostic).  Scores: validation accuracy at the end of
each stage.  Writes ``benchmarks/results/bench_polynormer.{md,json}``.
"""
import argparse
import os
import statistics
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine, write_results  # noqa: E402

from tg_funcattn.nn import DenseFunctionalAttention  # noqa: E402

BLOCKS, SIZE, P_IN, P_OUT, NOISE, HIDDEN = 5, 300, 0.02, 0.002, 2.0, 64
EPOCHS = (40, 40)


def _one_head_fixed_map():
    """One head with ``lin_q`` and ``lin_k`` left out of training (a diagnostic:
    the functional map stays at its initial value)."""
    attn = DenseFunctionalAttention(HIDDEN, 1)
    for lin in (attn.attn.lin_q, attn.attn.lin_k):
        lin.weight.requires_grad_(False)
    return attn


ROWS = {"unmodified": None,
        f"DenseFunctionalAttention({HIDDEN}) (8 heads, the README's swap)":
            lambda: DenseFunctionalAttention(HIDDEN),
        f"DenseFunctionalAttention({HIDDEN}, 1)": lambda: DenseFunctionalAttention(HIDDEN, 1),
        f"DenseFunctionalAttention({HIDDEN}, 1), lin_q and lin_k not trained (diagnostic)":
            _one_head_fixed_map}


def planted_partition(seed):
    from torch_geometric.utils import stochastic_blockmodel_graph

    torch.manual_seed(seed)
    probs = torch.full((BLOCKS, BLOCKS), P_OUT).fill_diagonal_(P_IN)
    edge_index = stochastic_blockmodel_graph([SIZE] * BLOCKS, probs)
    y = torch.arange(BLOCKS).repeat_interleave(SIZE)
    x = F.one_hot(y, BLOCKS).float() + NOISE * torch.randn(len(y), BLOCKS)
    perm = torch.randperm(len(y))
    return x, edge_index, y, perm[:len(y) // 2], perm[len(y) // 2:3 * len(y) // 4]


def run(seed, swap):
    from torch_geometric.nn.models import Polynormer

    x, edge_index, y, train, val = planted_partition(seed)
    torch.manual_seed(seed)
    model = Polynormer(BLOCKS, HIDDEN, BLOCKS)
    if swap is not None:
        for i in range(len(model.global_attn)):
            model.global_attn[i] = swap()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    batch = torch.zeros(len(y), dtype=torch.long)

    def accuracy():
        model.eval()
        with torch.no_grad():
            pred = model(x, edge_index, batch).argmax(-1)
        model.train()
        return (pred[val] == y[val]).float().mean().item()

    scores, losses = [], []
    for epoch in range(sum(EPOCHS)):
        if epoch == EPOCHS[0]:
            scores.append(accuracy())
            model._global = True
        optimizer.zero_grad()
        loss = F.nll_loss(model(x, edge_index, batch)[train], y[train])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    scores.append(accuracy())
    return {"seed": seed, "local_val": scores[0], "global_val": scores[1], "losses": losses}


def render(result):
    lines = [f"Machine: {result['machine']}.", "",
             f"Polynormer(5, {HIDDEN}, 5) on a planted partition ({BLOCKS} x {SIZE} nodes, "
             f"p_in {P_IN}, p_out {P_OUT}, noise {NOISE}), {EPOCHS[0]} local + {EPOCHS[1]} global "
             f"epochs, Adam 0.01; seeds {', '.join(str(s) for s in result['seeds'])}.", "",
             "| global attention | val. acc. after the local stage | val. acc. after the global stage "
             "(per seed) | last training loss |", "|---|---|---|---|"]
    for name, runs in result["rows"].items():
        local = statistics.mean(r["local_val"] for r in runs)
        final = [r["global_val"] for r in runs]
        lines.append(f"| {name} | {local:.3f} | {statistics.mean(final):.3f} "
                     f"({', '.join(f'{v:.3f}' for v in final)}) | "
                     f"{statistics.mean(r['losses'][-1] for r in runs):.2f} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4,5")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "results", "bench_polynormer"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    result = {"machine": machine(), "seeds": seeds,
              "rows": {name: [run(seed, swap) for seed in seeds] for name, swap in ROWS.items()}}
    report = render(result)
    write_results(args.out, result, report)
    print(report)


if __name__ == "__main__":
    main()
