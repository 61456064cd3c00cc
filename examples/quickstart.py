"""Quickstart: train a FuncAttnNet for part segmentation of generated point clouds.

No download: SyntheticParts writes airplanes, lamps, mugs and tables with part labels
in the ShapeNet part layout (under datasets/synthetic_parts) and reads them back.
About a minute on a 2-core CPU; prints accuracy and instance / class mIoU.

    python examples/quickstart.py [--epochs 14] [--device cpu]
"""
import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch_geometric.loader import DataLoader

from tg_funcattn.datasets import (NUM_SHAPENET_PARTS, SHAPENET_CATEGORIES, SyntheticParts,
                                  category_part_mask)
from tg_funcattn.metrics import PartSegmentationIoU, restrict_to_category
from tg_funcattn.nn import FuncAttnNet

DATA_ROOT = Path(__file__).resolve().parent.parent / "datasets" / "synthetic_parts"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(DATA_ROOT))
    parser.add_argument("--epochs", type=int, default=14)
    parser.add_argument("--shapes", type=int, default=80, help="training shapes per category")
    parser.add_argument("--points", type=int, default=512, help="mean points per shape")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--hidden-channels", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=3)
    parser.add_argument("--num-bases", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    sizes = dict(num_train=args.shapes, num_val=max(1, args.shapes // 8),
                 num_test=max(1, args.shapes // 4), num_points=args.points, seed=args.seed)
    train = SyntheticParts(args.root, split="train", **sizes)
    test = SyntheticParts(args.root, split="test", **sizes)
    train_loader = DataLoader(train, batch_size=args.batch_size, shuffle=True)
    test_loader = DataLoader(test, batch_size=args.batch_size)

    model = FuncAttnNet(in_channels=3, hidden_channels=args.hidden_channels, out_channels=NUM_SHAPENET_PARTS,
                        num_layers=args.num_layers, heads=4, num_bases=args.num_bases,
                        num_categories=len(SHAPENET_CATEGORIES)).to(args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr,
                                                    total_steps=args.epochs * len(train_loader))
    print(f"{model}\n{sum(p.numel() for p in model.parameters()):,} parameters, "
          f"{len(train)} training and {len(test)} test shapes")

    def run(data):
        data = data.to(args.device)
        return model(data.x, data.pos, data.batch, category=data.category.view(-1),
                     batch_size=data.num_graphs)

    start = time.time()
    for epoch in range(1, args.epochs + 1):
        model.train()
        total = 0.0
        for data in train_loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(run(data), data.y.to(args.device))
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * data.num_graphs
        print(f"epoch {epoch:2d}  loss {total / len(train):.4f}  ({time.time() - start:.0f} s)")

    model.eval()
    names = list(SHAPENET_CATEGORIES)
    miou = PartSegmentationIoU(category_part_mask(), names)
    correct = count = 0
    with torch.no_grad():
        for data in test_loader:
            category = data.category.view(-1)
            pred = restrict_to_category(run(data).cpu(), category, miou.part_mask, data.batch)
            miou.update(pred, data.y, category, data.batch)
            correct += int((pred == data.y).sum())
            count += data.num_nodes
    scores = miou.compute()
    result = {"accuracy": round(correct / count, 4), "instance_miou": round(scores["instance_miou"], 4),
              "class_miou": round(scores["class_miou"], 4), "epochs": args.epochs,
              "train_seconds": round(time.time() - start, 1)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
