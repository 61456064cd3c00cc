"""Quickstart: train a FuncAttnNet for part segmentation of generated point clouds.

No download: the shapes (airplanes, tables, mugs, lamps with part labels) are
generated on the fly.  About a minute on a 2-core CPU; prints the test accuracy.

    python examples/quickstart.py [--epochs 14] [--device cpu]
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch_geometric.loader import DataLoader

from tg_funcattn.datasets import CATEGORIES, NUM_PARTS, generate_part_shapes
from tg_funcattn.nn import FuncAttnNet


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=14)
    parser.add_argument("--train-shapes", type=int, default=320)
    parser.add_argument("--test-shapes", type=int, default=80)
    parser.add_argument("--points", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--bases", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    train = generate_part_shapes(args.train_shapes, args.points, seed=args.seed)
    test = generate_part_shapes(args.test_shapes, args.points, seed=args.seed + 10_000)
    train_loader = DataLoader(train, batch_size=args.batch_size, shuffle=True)
    test_loader = DataLoader(test, batch_size=args.batch_size)

    model = FuncAttnNet(in_channels=3, hidden_channels=args.hidden, out_channels=NUM_PARTS,
                        num_layers=args.layers, heads=4, num_bases=args.bases,
                        num_categories=len(CATEGORIES)).to(args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * len(train_loader)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=steps)
    print(f"{model}\n{sum(p.numel() for p in model.parameters()):,} parameters, "
          f"{len(train)} training shapes of {args.points} points")

    def run(data):
        data = data.to(args.device)
        return model(data.x, data.pos, data.batch, category=data.category,
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
    correct = count = 0
    with torch.no_grad():
        for data in test_loader:
            pred = run(data).argmax(-1).cpu()
            correct += int((pred == data.y).sum())
            count += data.num_nodes
    result = {"test_accuracy": round(correct / count, 4), "epochs": args.epochs,
              "train_seconds": round(time.time() - start, 1)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
