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
from dataclasses import fields
from typing import List, Optional

from .nn.presets import PRESETS
from .training.config import DATA_CONFIGS, SECTIONS, SEGMENTATION, RunConfig, add_arguments, data_config

EPILOG = ("Output (--out): metrics.json (metrics and configuration), checkpoints/best.ckpt and "
          "last.ckpt (the last finished epoch, to resume from with --ckpt), logs/ (CSV and "
          "TensorBoard; a later run into the same --out, e.g. a resume, in logs/version_N), "
          "and PNG pictures unless --no-viz. "
          "Training needs the 'train' extra, pictures the 'viz' extra: "
          "pip install 'tg-funcattn[train,viz]'.")

#: options that pick what to run rather than configure it (not fields of RunConfig)
_COMMAND_OPTIONS = ("command", "kind", "preset", "eval_only")


def _run_options(parser: argparse.ArgumentParser, kind: str, command: str) -> None:
    """The options of a training or evaluation run of ``kind``: the fields of
    its :class:`~tg_funcattn.training.config.RunConfig` sections."""
    sections = SECTIONS[kind]
    preset_keys = {"basis_type"}.union(*(set(p["net"]) | set(p["train"]) for p in PRESETS.values())) \
        if kind == SEGMENTATION else set()
    add_arguments(parser.add_argument_group("data"), sections["data"], preset_keys=preset_keys)
    model = parser.add_argument_group("model")
    if kind == SEGMENTATION:
        model.add_argument("--preset", default=argparse.SUPPRESS, choices=sorted(PRESETS),
                           help="a published configuration (network and training recipe, e.g. "
                                "paper_rna: the authors' RNA model); options given explicitly win")
    add_arguments(model, sections["model"], preset_keys=preset_keys)
    engine = parser.add_argument_group("training (PyTorch Lightning)")
    add_arguments(engine, sections["optim"], preset_keys=preset_keys)
    add_arguments(engine, sections["trainer"], preset_keys=preset_keys)
    if command == "train":
        engine.add_argument("--eval-only", action="store_true", help="only evaluate --ckpt")
    add_arguments(parser.add_argument_group("output"), sections["output"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tg-funcattn", description="Functional attention for point clouds and meshes: train, "
        "evaluate and visualize models, precompute eigenbases.", epilog=EPILOG)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for command, text in (("train", "train a model and test it"), ("evaluate", "test a checkpoint")):
        kinds = commands.add_parser(command, help=text, epilog=EPILOG).add_subparsers(
            dest="kind", required=True, metavar="TASK")
        for kind, what in ((SEGMENTATION, "part or surface segmentation"),
                           ("regression", "per-vertex regression, resolution transfer")):
            _run_options(kinds.add_parser(kind, help=what, epilog=EPILOG), kind, command)

    pictures = commands.add_parser("visualize", help="draw a checkpoint's test predictions, "
                                   "bases and functional maps")
    pictures.add_argument("--ckpt", required=True, help="checkpoint written by training")
    pictures.add_argument("--root", default=None, help="dataset folder, if it moved")
    pictures.add_argument("--out", default="pictures", help="folder for the PNGs (default: %(default)s)")
    pictures.add_argument("--num-pictures", type=int, default=4, help="test shapes to draw "
                          "(default: %(default)s)")
    pictures.add_argument("--show", action="store_true", help="also open an interactive window")

    pre = commands.add_parser("precompute", help="compute the eigenbasis cache of a dataset")
    pre.add_argument("--num-bases", type=int, default=64, help="eigenpairs per shape (default: %(default)s)")
    data = pre.add_argument_group("data")
    data.add_argument("--dataset", required=True,
                      choices=[name for section in DATA_CONFIGS for name in section.datasets])
    added = {"dataset"}
    for section in DATA_CONFIGS:  # the options of every data set, each once
        add_arguments(data, section, skip=added)
        added |= {f.name for f in fields(section)}
    return parser


def run_config(args: argparse.Namespace) -> RunConfig:
    """The run of parsed ``train``/``evaluate`` options: the options given over
    the ``--preset``'s values over the defaults."""
    options = {k: v for k, v in vars(args).items() if k not in _COMMAND_OPTIONS}
    return RunConfig.create(args.kind, options, getattr(args, "preset", None))


def _checked(parser: argparse.ArgumentParser, build, *args):
    """``build(*args)``; a ValueError (a bad option value) becomes a usage error."""
    try:
        return build(*args)
    except ValueError as error:
        parser.error(str(error))


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .training import run

    if args.command == "visualize":
        result = {"pictures": [str(p) for p in run.visualize(
            args.ckpt, args.out, args.num_pictures, root=args.root, show=args.show)]}
    elif args.command == "precompute":
        options = {k: v for k, v in vars(args).items() if k not in ("command", "num_bases")}
        result = run.precompute(_checked(parser, data_config, options), args.num_bases)
    else:
        config = _checked(parser, run_config, args)
        evaluating = args.command == "evaluate" or getattr(args, "eval_only", False)
        result = run.evaluate(config) if evaluating else run.train(config)
    if result is not None:  # None in the non-zero ranks of a distributed run
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
