"""Does SyntheticParts separate a good model from a poor one?

    python benchmarks/bench_synthetic_parts.py      # about 3 minutes on 2 cores

Trains, with the same data, optimiser and epochs, (a) a per-point MLP that sees each
point's position, normal and category but nothing of the rest of the shape, and (b) a
FuncAttnNet (global functional attention), and reports test accuracy and mIoU.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from torch_geometric.loader import DataLoader

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine  # noqa: E402

from tg_funcattn.datasets import (NUM_SHAPENET_PARTS, SHAPENET_CATEGORIES,  # noqa: E402
                                  SyntheticParts, category_part_mask)
from tg_funcattn.metrics import PartSegmentationIoU, restrict_to_category  # noqa: E402
from tg_funcattn.nn import FuncAttnNet  # noqa: E402


class PointMLP(torch.nn.Module):
    """Labels every point from its own position, normal and category only."""

    def __init__(self, hidden=128):
        super().__init__()
        self.category = torch.nn.Embedding(len(SHAPENET_CATEGORIES), hidden)
        self.inp = torch.nn.Linear(6, hidden)
        self.mlp = torch.nn.Sequential(torch.nn.GELU(), torch.nn.Linear(hidden, hidden), torch.nn.GELU(),
                                       torch.nn.Linear(hidden, hidden), torch.nn.GELU(),
                                       torch.nn.Linear(hidden, NUM_SHAPENET_PARTS))

    def forward(self, x, pos, batch, category, batch_size=None):
        return self.mlp(self.inp(torch.cat([x, pos], -1)) + self.category(category)[batch])


def train_and_test(model, train, test, epochs, lr=2e-3):
    loader = DataLoader(train, batch_size=16, shuffle=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * len(loader))
    start = time.time()
    for _ in range(epochs):
        model.train()
        for data in loader:
            optimizer.zero_grad()
            out = model(data.x, data.pos, data.batch, category=data.category.view(-1),
                        batch_size=data.num_graphs)
            F.cross_entropy(out, data.y).backward()
            optimizer.step()
            scheduler.step()
    model.eval()
    metric = PartSegmentationIoU(category_part_mask(), list(SHAPENET_CATEGORIES))
    correct = count = 0
    with torch.no_grad():
        for data in DataLoader(test, batch_size=16):
            category = data.category.view(-1)
            out = model(data.x, data.pos, data.batch, category=category, batch_size=data.num_graphs)
            pred = restrict_to_category(out, category, metric.part_mask, data.batch)
            metric.update(pred, data.y, category, data.batch)
            correct += int((pred == data.y).sum())
            count += data.num_nodes
    scores = metric.compute()
    return {"accuracy": correct / count, "instance_miou": scores["instance_miou"],
            "class_miou": scores["class_miou"], "per_category": scores["per_category"],
            "parameters": sum(p.numel() for p in model.parameters()), "seconds": time.time() - start}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=14)
    parser.add_argument("--root", default=None)
    args = parser.parse_args()
    root = args.root or tempfile.mkdtemp()
    sizes = dict(num_train=80, num_val=10, num_test=20, num_points=512, seed=0)
    train, test = SyntheticParts(root, split="train", **sizes), SyntheticParts(root, split="test", **sizes)
    torch.manual_seed(0)
    models = {"per-point MLP": PointMLP(),
              "FuncAttnNet": FuncAttnNet(3, 64, NUM_SHAPENET_PARTS, num_layers=3, heads=4, num_bases=16,
                                         num_categories=len(SHAPENET_CATEGORIES), head="mlp")}
    rows = {name: train_and_test(model, train, test, args.epochs) for name, model in models.items()}
    lines = [f"Machine: {machine()}. SyntheticParts, {len(train)} train / {len(test)} test shapes of "
             f"~512 points, {args.epochs} epochs, same optimiser.", "",
             "| model | parameters | accuracy | instance mIoU | class mIoU | "
             + " | ".join(rows["FuncAttnNet"]["per_category"]) + " | train s |",
             "|---|---|---|---|---|" + "---|" * len(rows["FuncAttnNet"]["per_category"]) + "---|"]
    for name, r in rows.items():
        per = " | ".join(f"{100 * v:.1f}" for v in r["per_category"].values())
        lines.append(f"| {name} | {r['parameters']:,} | {100 * r['accuracy']:.1f} | "
                     f"{100 * r['instance_miou']:.1f} | {100 * r['class_miou']:.1f} | {per} | "
                     f"{r['seconds']:.0f} |")
    report = "\n".join(lines) + "\n"
    print(report)
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "bench_synthetic_parts")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + ".md", "w") as f:
        f.write(report)
    with open(out + ".json", "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
