"""The ``tg-funcattn`` command: train, evaluate, visualize, precompute.

    tg-funcattn train segmentation                  # SyntheticParts, no download
    tg-funcattn train segmentation --dataset shapenet --root PATH
    tg-funcattn train regression --target geodesic  # resolution transfer table
    tg-funcattn evaluate segmentation --ckpt runs/segmentation/checkpoints/best.ckpt
                                                    # -> runs/segmentation/checkpoints/evaluation_best.json
    tg-funcattn visualize --ckpt runs/segmentation/checkpoints/best.ckpt --out pictures
    tg-funcattn precompute --dataset rna --root PATH --num-eigenpairs 64
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from dataclasses import fields
from typing import List, Optional

from .nn.presets import PRESETS
from .training.config import (DATA_CONFIGS, RECIPES, SECTIONS, SEGMENTATION, RunConfig, add_arguments,
                              data_config)

EPILOG = ("Output (--out): metrics.json (metrics and configuration), checkpoints/best.ckpt and "
          "last.ckpt (the last finished epoch, to resume from with --ckpt), logs/ (CSV and "
          "TensorBoard; a resume into the same --out logs in logs/version_N; a new run into an "
          "--out that holds one is refused), "
          "and PNG pictures unless --no-viz. "
          "Training needs the 'train' extra, pictures the 'viz' extra: "
          "pip install 'tg-funcattn[train,viz]'.")

#: options that pick what to run rather than configure it (not fields of RunConfig)
_COMMAND_OPTIONS = ("command", "kind", "preset", "debug")

EVALUATE_EPILOG = ("Output: evaluation_<checkpoint name>.json (metrics and the data settings) in "
                   "--out, by default next to the checkpoint; training's own files are never written. "
                   "The network and the data settings are the checkpoint's, so the options of "
                   "training are not taken here.")

#: the trainer options of ``evaluate``: how to run the test
_EVALUATE_TRAINER = ("batch_size", "accelerator", "precision", "num_workers", "limit_batches",
                     "progress", "chunk_size")


def _data_folder_options(parser: argparse.ArgumentParser) -> None:
    """``--root`` and ``--eigen-cache`` of a command that reads a checkpoint's data."""
    parser.add_argument("--root", default=None, help="dataset folder, if it moved (default: the "
                        "absolute folder stored in the checkpoint)")
    parser.add_argument("--eigen-cache", default=None, help="eigenbasis cache folder, if it moved "
                        "(default: the checkpoint's)")


def _evaluate_options(parser: argparse.ArgumentParser, kind: str) -> None:
    """The options of ``evaluate``: the checkpoint, where its data is now, how to
    run the test, where the scores go; any other option is an error."""
    parser.add_argument("--ckpt", required=True, help="checkpoint written by training")
    _data_folder_options(parser)
    trainer = SECTIONS[kind]["trainer"]
    add_arguments(parser.add_argument_group("testing (PyTorch Lightning)"), trainer,
                  skip={f.name for f in fields(trainer)} - set(_EVALUATE_TRAINER))
    parser.add_argument("--out", default=None, help="folder for evaluation_<checkpoint name>.json "
                        "(default: the checkpoint's folder)")


def _run_options(parser: argparse.ArgumentParser, kind: str) -> None:
    """The options of a training run of ``kind``: the fields of its
    :class:`~tg_funcattn.training.config.RunConfig` sections."""
    sections = SECTIONS[kind]
    preset_keys = {"basis_type"}.union(*map(set, PRESETS.values()), *map(set, RECIPES.values())) \
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
    add_arguments(parser.add_argument_group("output"), sections["output"])


def _debug_option() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the traceback of an error "
                        "(default: one line saying what went wrong)")
    return common


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive int, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = [_debug_option()]
    parser = argparse.ArgumentParser(
        prog="tg-funcattn", description="Functional attention for point clouds and meshes: train, "
        "evaluate and visualize models, precompute eigenbases.", epilog=EPILOG)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for command, text in (("train", "train a model and test it"), ("evaluate", "test a checkpoint")):
        kinds = commands.add_parser(command, help=text, epilog=EPILOG).add_subparsers(
            dest="kind", required=True, metavar="TASK")
        for kind, what in ((SEGMENTATION, "part or surface segmentation"),
                           ("regression", "per-vertex regression, resolution transfer")):
            options, epilog = ((_run_options, EPILOG) if command == "train"
                               else (_evaluate_options, EVALUATE_EPILOG))
            options(kinds.add_parser(kind, help=what, epilog=epilog, parents=common), kind)

    pictures = commands.add_parser("visualize", help="draw a checkpoint's test predictions, "
                                   "bases and functional maps", parents=common)
    pictures.add_argument("--ckpt", required=True, help="checkpoint written by training")
    _data_folder_options(pictures)
    pictures.add_argument("--out", default="pictures", help="folder for the PNGs (default: %(default)s)")
    pictures.add_argument("--num-pictures", type=_positive_int, default=4, help="test shapes to "
                          "draw (default: %(default)s)")
    pictures.add_argument("--show", action="store_true", help="also open an interactive window")

    pre = commands.add_parser("precompute", help="compute the eigenbasis cache of a dataset",
                              parents=common)
    pre.add_argument("--num-eigenpairs", type=_positive_int, default=64,
                     help="eigenpairs per shape (default: %(default)s)")
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


def _evaluate(parser: argparse.ArgumentParser, args: argparse.Namespace):
    from .training import run

    given = vars(args)
    trainer = _checked(parser, SECTIONS[args.kind]["trainer"].from_dict,
                       {k: given[k] for k in _EVALUATE_TRAINER if k in given})
    return run.evaluate(args.ckpt, trainer, kind=args.kind, root=args.root,
                        eigen_cache=args.eigen_cache, out=args.out)


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace):
    root = getattr(args, "root", None)
    if root is not None and not os.path.isdir(root):  # never download or generate data elsewhere
        parser.error(f"--root {root}: no such folder (create it first to generate data there, or "
                     "point --root to the folder that holds the dataset)")
    from .training import run

    if args.command == "visualize":
        return {"pictures": [str(p) for p in run.visualize(
            args.ckpt, args.out, args.num_pictures, root=args.root, eigen_cache=args.eigen_cache,
            show=args.show)]}
    if args.command == "precompute":
        options = {k: v for k, v in vars(args).items() if k not in ("command", "num_eigenpairs", "debug")}
        return run.precompute(_checked(parser, data_config, options), args.num_eigenpairs)
    if args.command == "evaluate":
        return _evaluate(parser, args)
    return run.train(_checked(parser, run_config, args))


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the command of ``argv``; prints its result as one JSON line on
    stdout (everything else goes to stderr).  An error is one line on stderr (exit status 1), its traceback only
    with ``--debug``."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = " ".join(filter(None, (args.command, getattr(args, "kind", None))))
        why = " (the network and the data settings are the checkpoint's)" if args.command == "evaluate" else ""
        parser.error(f"{command} does not take {' '.join(unknown)}{why}; "
                     f"see: tg-funcattn {command} --help")
    try:
        # stdout is the result's JSON line: what libraries print (Lightning's progress
        # bars write to sys.stdout) goes to stderr
        with contextlib.redirect_stdout(sys.stderr):
            result = _run(parser, args)
    except Exception as error:  # noqa: BLE001 - the command's users get one line, --debug the rest
        if args.debug:
            raise
        parser.exit(1, f"tg-funcattn: error: {type(error).__name__}: {error}\n"
                       "(add --debug to see the traceback)\n")
    if result is not None:  # None in the non-zero ranks of a distributed run
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
