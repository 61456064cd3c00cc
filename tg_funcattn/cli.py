"""The ``tg-funcattn`` command: train, evaluate, visualize, precompute.

    tg-funcattn train segmentation                  # SyntheticParts, no download
    tg-funcattn train segmentation --dataset shapenet --root PATH
    tg-funcattn train regression --target geodesic  # resolution transfer table
    tg-funcattn evaluate segmentation --ckpt runs/segmentation/checkpoints/best.ckpt
    tg-funcattn visualize --ckpt runs/segmentation/checkpoints/best.ckpt --out pictures
    tg-funcattn precompute --dataset rna --root PATH --num-bases 64
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

EPILOG = ("Output (--out): metrics.json (metrics and configuration), checkpoints/best.ckpt and "
          "last.ckpt, logs/ (CSV and TensorBoard), and PNG pictures unless --no-viz. "
          "Training needs the 'train' extra, pictures the 'viz' extra: "
          "pip install 'tg-funcattn[train,viz]'.")


def _common(parser: argparse.ArgumentParser, kind: str) -> None:
    data = parser.add_argument_group("data")
    if kind == "segmentation":
        data.add_argument("--dataset", default="synthetic", choices=["synthetic", "shapenet", "rna"],
                          help="synthetic: SyntheticParts, generated (default); shapenet: ShapeNet part "
                               "(instance/class mIoU); rna: RNA surface segmentation (accuracy on the "
                               "original vertices)")
        data.add_argument("--categories", default=None,
                          help="comma-separated category names (synthetic/shapenet; default: all)")
        data.add_argument("--points", type=int, default=None,
                          help="synthetic: mean points per shape (1024); rna: points sampled per "
                               "molecule and access (4096; 0 for the meshes)")
        data.add_argument("--shapes", type=int, default=100,
                          help="synthetic: training shapes per category (default: 100)")
    else:
        data.add_argument("--dataset", default="operator", choices=["operator", "mesh"],
                          help="operator: MeshOperatorRegression, generated (default); mesh: your "
                               "MeshRegression data in --root")
        data.add_argument("--target", default="geodesic", choices=["geodesic", "heat"],
                          help="operator: the operator to learn (default: geodesic)")
        data.add_argument("--levels", default="2,3,4",
                          help="operator: icosphere levels generated and tested (default: 2,3,4)")
        data.add_argument("--train-level", type=int, default=None,
                          help="operator: level trained on (default: the first of --levels)")
        data.add_argument("--num-shapes", type=int, default=100, help="operator: shapes (80%% train)")
        data.add_argument("--train-split", default="train", help="mesh: split file to train on")
        data.add_argument("--test-splits", default="test", help="mesh: comma-separated test splits")
    data.add_argument("--root", default=None, help="dataset folder (default: datasets/<dataset name>)")
    data.add_argument("--eigen-cache", default=None,
                      help="eigenbasis cache folder for the Laplacian bases (default: <root>/eigen_cache)")
    data.add_argument("--data-seed", type=int, default=0, help="seed of generated data")

    model = parser.add_argument_group("model")
    model.add_argument("--basis", default="learned", choices=["learned", "laplacian", "laplacian_init"])
    model.add_argument("--num-bases", type=int, default=16, help="basis functions per head (k)")
    model.add_argument("--hidden", type=int, default=64)
    model.add_argument("--layers", type=int, default=3)
    model.add_argument("--heads", type=int, default=4)
    model.add_argument("--mlp-ratio", type=float, default=2.0)
    model.add_argument("--dropout", type=float, default=0.0)
    model.add_argument("--local", default="none", choices=["none", "point_transformer", "edgeconv"],
                       help="local message-passing branch over a kNN graph (default: none)")
    model.add_argument("--k-neighbors", type=int, default=16)

    engine = parser.add_argument_group("training (PyTorch Lightning)")
    engine.add_argument("--max-epochs", type=int, default=20 if kind == "segmentation" else 150)
    engine.add_argument("--batch-size", type=int, default=16)
    engine.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (10%% warm-up, cosine decay)")
    engine.add_argument("--weight-decay", type=float, default=1e-4)
    engine.add_argument("--devices", default="auto", help="devices per node, e.g. 1, 4 or auto")
    engine.add_argument("--accelerator", default="auto", help="cpu, gpu or auto")
    engine.add_argument("--strategy", default="auto", help="e.g. ddp for several GPUs or nodes")
    engine.add_argument("--precision", default="32-true",
                        help="32-true, bf16-mixed or 16-mixed (the functional map solve stays in float64)")
    engine.add_argument("--num-workers", type=int, default=0, help="data loading processes")
    engine.add_argument("--limit-batches", type=float, default=None,
                        help="fraction (or number) of batches per epoch, for quick trials")
    engine.add_argument("--seed", type=int, default=0)
    engine.add_argument("--ckpt", default=None,
                        help="checkpoint to resume training from (or to evaluate with --eval-only)")
    engine.add_argument("--eval-only", action="store_true", help="only evaluate --ckpt")
    engine.add_argument("--no-progress", action="store_true", help="no progress bars")
    engine.add_argument("--chunk-size", type=int, default=None,
                        help="stream the attention over chunks of this many nodes: for graphs too "
                             "large for memory (inference in O(N hidden); training recomputes chunks)")

    output = parser.add_argument_group("output")
    output.add_argument("--out", default=f"runs/{kind}", help=f"output folder (default: runs/{kind})")
    output.add_argument("--no-viz", action="store_true", help="write no pictures")
    output.add_argument("--num-pictures", type=int, default=2, help="test shapes to draw")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tg-funcattn", description="Functional attention for point clouds and meshes: train, "
        "evaluate and visualize models, precompute eigenbases.", epilog=EPILOG)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a model and test it", epilog=EPILOG)
    train_kinds = train.add_subparsers(dest="kind", required=True, metavar="TASK")
    evaluate = commands.add_parser("evaluate", help="test a checkpoint", epilog=EPILOG)
    evaluate_kinds = evaluate.add_subparsers(dest="kind", required=True, metavar="TASK")
    for kind, text in (("segmentation", "part or surface segmentation"),
                       ("regression", "per-vertex regression, resolution transfer")):
        _common(train_kinds.add_parser(kind, help=text, epilog=EPILOG), kind)
        _common(evaluate_kinds.add_parser(kind, help=text, epilog=EPILOG), kind)

    pictures = commands.add_parser("visualize", help="draw a checkpoint's test predictions, "
                                   "bases and functional maps")
    pictures.add_argument("--ckpt", required=True, help="checkpoint written by training")
    pictures.add_argument("--root", default=None, help="dataset folder, if it moved")
    pictures.add_argument("--out", default="pictures", help="folder for the PNGs (default: pictures)")
    pictures.add_argument("--num-pictures", type=int, default=4)
    pictures.add_argument("--show", action="store_true", help="also open an interactive window")

    pre = commands.add_parser("precompute", help="compute the eigenbasis cache of a dataset")
    pre.add_argument("--dataset", required=True,
                     choices=["synthetic", "shapenet", "rna", "operator", "mesh"])
    pre.add_argument("--root", default=None, help="dataset folder (default: datasets/<dataset name>)")
    pre.add_argument("--num-bases", type=int, default=64, help="eigenpairs per shape (default: 64)")
    pre.add_argument("--eigen-cache", default=None, help="cache folder (default: <root>/eigen_cache)")
    pre.add_argument("--categories", default=None)
    pre.add_argument("--points", type=int, default=None)
    pre.add_argument("--shapes", type=int, default=100)
    pre.add_argument("--data-seed", type=int, default=0)
    pre.add_argument("--target", default="geodesic")
    pre.add_argument("--levels", default="2,3,4")
    pre.add_argument("--train-level", type=int, default=None)
    pre.add_argument("--num-shapes", type=int, default=100)
    pre.add_argument("--train-split", default="train")
    pre.add_argument("--test-splits", default="test")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from .training import run

    if args.command == "train":
        result = run.train(args, args.kind)
    elif args.command == "evaluate":
        args.eval_only = True
        result = run.evaluate(args, args.kind)
    elif args.command == "visualize":
        result = {"pictures": [str(p) for p in run.visualize(args)]}
    else:
        result = run.precompute(args)
    if result is not None:  # None in the non-zero ranks of a distributed run
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
