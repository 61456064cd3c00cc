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
from typing import Dict, List, Optional

from .nn.presets import PRESETS

#: The defaults of the model and training options.  Segmentation: the best
#: configuration of ``benchmarks/bench_rna.py`` on real RNA surfaces at its CPU
#: budget without a local branch (``--local edgeconv --k-neighbors 8`` added
#: about 9 points at about 6x the time per epoch; see the README, "Results on
#: real data"); ``basis="auto"`` is ``laplacian_init`` for meshes (rna) and
#: ``learned`` for point clouds.
DEFAULTS: Dict[str, Dict[str, object]] = {
    "segmentation": dict(basis="auto", num_bases=32, hidden=128, layers=4, heads=8, mlp_ratio=2.0,
                         dropout=0.0, init="default", head="linear", max_epochs=15, batch_size=8,
                         optimizer="adamw", lr=2e-3, weight_decay=1e-4, schedule="cosine"),
    "regression": dict(basis="learned", num_bases=16, hidden=64, layers=3, heads=4, mlp_ratio=2.0,
                       dropout=0.0, init="default", head="mlp", max_epochs=150, batch_size=16,
                       optimizer="adamw", lr=2e-3, weight_decay=1e-4, schedule="cosine"),
}
#: preset keys (FuncAttnNet arguments and recipe) -> option names
_PRESET_OPTIONS = {"hidden_channels": "hidden", "num_layers": "layers", "heads": "heads",
                   "num_bases": "num_bases", "mlp_ratio": "mlp_ratio", "dropout": "dropout",
                   "init": "init", "head": "head", "optimizer": "optimizer", "lr": "lr",
                   "weight_decay": "weight_decay", "schedule": "schedule",
                   "batch_size": "batch_size", "max_epochs": "max_epochs", "points": "points"}

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
    data.add_argument("--sign-flip", action="store_true",
                      help="flip the eigenvectors' signs at random in training (Laplacian bases; "
                           "default: keep their deterministic signs, which trained better on RNA)")
    data.add_argument("--data-seed", type=int, default=0, help="seed of generated data")

    defaults = DEFAULTS[kind]

    def default(key):
        return f"(default: {defaults[key]}" + (", or the preset's)" if kind == "segmentation" else ")")

    model = parser.add_argument_group("model")
    if kind == "segmentation":
        model.add_argument("--preset", default=None, choices=sorted(PRESETS),
                           help="a published configuration (network and training recipe, e.g. "
                                "paper_rna: the authors' RNA model); options given explicitly win")
    model.add_argument("--basis", default=None, choices=["auto", "learned", "laplacian", "laplacian_init"],
                       help="basis of the attention; auto: laplacian_init on meshes (rna), learned "
                            "on point clouds " + default("basis"))
    model.add_argument("--num-bases", type=int, default=None,
                       help="basis functions per head (k) " + default("num_bases"))
    model.add_argument("--hidden", type=int, default=None, help="width " + default("hidden"))
    model.add_argument("--layers", type=int, default=None, help="blocks " + default("layers"))
    model.add_argument("--heads", type=int, default=None, help="attention heads " + default("heads"))
    model.add_argument("--mlp-ratio", type=float, default=None,
                       help="MLP width / width " + default("mlp_ratio"))
    model.add_argument("--dropout", type=float, default=None, help=default("dropout"))
    model.add_argument("--init", default=None, choices=["default", "trunc_normal"],
                       help="weight initialisation: PyTorch's, or trunc_normal (std 0.02, the "
                            "authors') " + default("init"))
    model.add_argument("--head", default=None, choices=["mlp", "linear"],
                       help="output head: LayerNorm + 2-layer MLP, or one Linear " + default("head"))
    model.add_argument("--local", default="none", choices=["none", "point_transformer", "edgeconv"],
                       help="local message-passing branch over a kNN graph (default: none)")
    model.add_argument("--k-neighbors", type=int, default=16, help="(default: 16)")

    engine = parser.add_argument_group("training (PyTorch Lightning)")
    engine.add_argument("--max-epochs", type=int, default=None, help=default("max_epochs"))
    engine.add_argument("--batch-size", type=int, default=None,
                        help="shapes per step " + default("batch_size"))
    engine.add_argument("--optimizer", default=None, choices=["adamw", "adam"], help=default("optimizer"))
    engine.add_argument("--lr", type=float, default=None, help="peak learning rate " + default("lr"))
    engine.add_argument("--weight-decay", type=float, default=None, help=default("weight_decay"))
    engine.add_argument("--schedule", default=None, choices=["cosine", "onecycle"],
                        help="cosine: linear warm-up over 10%% of the steps, then cosine decay, per "
                             "step; onecycle: PyTorch's OneCycleLR stepped once per epoch (the "
                             "authors') " + default("schedule"))
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


def resolve_defaults(args: argparse.Namespace, kind: str) -> argparse.Namespace:
    """Fills the options left unset: from ``--preset`` if given (its network
    settings that have no option, e.g. ``lift``, go to ``args.net_extra``),
    else from :data:`DEFAULTS`."""
    args.net_extra = {}
    chosen = getattr(args, "preset", None)
    if chosen:
        settings = {**PRESETS[chosen]["net"], **PRESETS[chosen]["train"]}
        for key, value in settings.items():
            option = _PRESET_OPTIONS.get(key)
            if option is None:
                args.net_extra[key] = value
            elif getattr(args, option, None) is None:
                setattr(args, option, value)
        if args.basis is None:
            args.basis = "learned"
    for key, value in DEFAULTS[kind].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from .training import run

    if args.command in ("train", "evaluate"):
        resolve_defaults(args, args.kind)

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
