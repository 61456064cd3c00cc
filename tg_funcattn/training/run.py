"""Training, evaluation, pictures and eigenbasis precomputation, shared by the
``tg-funcattn`` command and the example scripts."""
from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path
from typing import Dict

import torch

from .._optional import available, require
from .data import default_root, regression_data, segmentation_data

log = logging.getLogger(__name__)

SEGMENTATION, REGRESSION = "segmentation", "regression"


# ---------------------------------------------------------------- settings
def data_settings(args, kind: str) -> Dict:
    """The data part of the configuration, plain values only (kept in checkpoints)."""
    settings = {"dataset": args.dataset, "root": args.root or default_root(args.dataset),
                "basis": resolve_basis(args.basis, args.dataset), "num_bases": args.num_bases,
                "eigen_cache": args.eigen_cache, "sign_flip": getattr(args, "sign_flip", False),
                "data_seed": args.data_seed}
    if kind == SEGMENTATION:
        points = args.points if args.points is not None else {"synthetic": 1024, "rna": 4096}.get(args.dataset)
        settings.update(points=points, shapes=args.shapes,
                        categories=args.categories.split(",") if args.categories else None)
    else:
        settings.update(target=args.target, levels=[int(v) for v in args.levels.split(",")],
                        train_level=args.train_level, num_shapes=args.num_shapes,
                        train_split=args.train_split, test_splits=args.test_splits.split(","))
        if settings["train_level"] is None:
            settings["train_level"] = settings["levels"][0]
    return settings


#: datasets of meshes, where ``--basis auto`` takes the Laplacian-initialised basis
MESH_DATASETS = ("rna",)


def resolve_basis(basis: str, dataset: str) -> str:
    """``auto``: ``laplacian_init`` on meshes (eigenbases of the surface, the
    best FuncAttnNet on real RNA surfaces), ``learned`` on point clouds."""
    if basis != "auto":
        return basis
    return "laplacian_init" if dataset in MESH_DATASETS else "learned"


def net_settings(args, info: Dict, kind: str) -> Dict:
    return {"in_channels": info["in_channels"], "hidden_channels": args.hidden,
            "out_channels": info["num_classes"] if kind == SEGMENTATION else info["out_channels"],
            "num_layers": args.layers, "heads": args.heads, "num_bases": args.num_bases,
            "basis": resolve_basis(args.basis, args.dataset),
            "num_categories": info.get("num_categories"),
            "local": None if args.local == "none" else args.local, "k": args.k_neighbors,
            "mlp_ratio": args.mlp_ratio, "dropout": args.dropout, "init": args.init,
            "head": args.head, **getattr(args, "net_extra", {})}


def build_data(kind: str, settings: Dict):
    """``(train, val, tests, info)`` with ``tests`` a dict of named test sets."""
    if kind == SEGMENTATION:
        train, val, test, info = segmentation_data(settings)
        return train, val, {"test": test}, info
    return regression_data(settings)


def _loader(dataset, args, shuffle=False):
    from torch_geometric.loader import DataLoader

    return DataLoader(dataset, batch_size=args.batch_size, shuffle=shuffle, num_workers=args.num_workers,
                      persistent_workers=args.num_workers > 0)


def _monitor(kind: str, settings: Dict):
    if kind == REGRESSION:
        return "val_rel_l2", "min"
    return ("val_instance_miou", "max") if settings["dataset"] != "rna" else ("val_accuracy", "max")


def make_trainer(args, out: Path, monitor, testing: bool = False):
    """The Lightning trainer of ``args``: CSV (and TensorBoard) logs in
    ``out/logs``, best and last checkpoints in ``out/checkpoints``.  With
    ``testing=True``, a single-device trainer without logs or checkpoints, so
    that every test shape is scored exactly once (a distributed sampler pads
    uneven splits with repeats)."""
    L = require("lightning", "Training")
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    common = dict(accelerator=args.accelerator, precision=args.precision, default_root_dir=str(out),
                  enable_progress_bar=not args.no_progress, enable_model_summary=False,
                  limit_test_batches=args.limit_batches)
    if testing:
        return L.Trainer(devices=1, logger=False, enable_checkpointing=False, **common), None
    loggers = [CSVLogger(save_dir=str(out), name="logs", version="")]
    if available("tensorboard"):
        loggers.append(TensorBoardLogger(save_dir=str(out), name="logs", version="tensorboard"))
    checkpoint = ModelCheckpoint(dirpath=str(out / "checkpoints"), filename="best", monitor=monitor[0],
                                 mode=monitor[1], enable_version_counter=False)
    # last.ckpt after every epoch: Lightning 2.6's save_last=True writes it only when the
    # best checkpoint improves, so a resume could lose the epochs since then
    last = ModelCheckpoint(dirpath=str(out / "checkpoints"), filename="last", monitor=None,
                           save_top_k=1, every_n_epochs=1, enable_version_counter=False)
    trainer = L.Trainer(max_epochs=args.max_epochs, devices=args.devices, strategy=args.strategy,
                        logger=loggers, callbacks=[checkpoint, last], log_every_n_steps=10,
                        limit_train_batches=args.limit_batches, limit_val_batches=args.limit_batches,
                        **common)
    return trainer, checkpoint


def _task_class(kind: str):
    from .tasks import RegressionTask, SegmentationTask

    return SegmentationTask if kind == SEGMENTATION else RegressionTask


def load_task(path, kind: str = None):
    """A trained task from a checkpoint, loaded with ``weights_only=True``."""
    if kind is None:
        hparams = torch.load(path, map_location="cpu", weights_only=True).get("hyper_parameters", {})
        kind = SEGMENTATION if "part_mask" in hparams else REGRESSION
    return _task_class(kind).load_from_checkpoint(path, map_location="cpu", weights_only=True), kind


def _test_metrics(trainer, task, tests, args, ckpt_path=None) -> Dict:
    results = {}
    for name, dataset in tests.items():
        out = trainer.test(task, _loader(dataset, args), ckpt_path=ckpt_path, verbose=False,
                           weights_only=True if ckpt_path else None)[0]
        results[name] = {k.replace("test_", ""): round(float(v), 5) for k, v in out.items()
                         if k != "test_loss"}
        ckpt_path = None  # loaded once
    return results


def _summary(kind: str, results: Dict) -> Dict:
    if kind == SEGMENTATION:
        return dict(results["test"])
    return {"rel_l2": {name: r["rel_l2"] for name, r in results.items()}}


def _write(out: Path, payload: Dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(payload, indent=1, default=str))


# ---------------------------------------------------------------- commands
def train(args, kind: str) -> Dict:
    """Trains (or resumes with ``--ckpt``), tests the best checkpoint, writes
    ``metrics.json`` and pictures to ``--out`` and returns the summary."""
    L = require("lightning", "Training")
    start = time.time()
    out = Path(args.out)
    if args.eval_only:
        return evaluate(args, kind)
    settings = data_settings(args, kind)
    L.seed_everything(args.seed, workers=True, verbose=False)
    train_set, val_set, tests, info = build_data(kind, settings)
    net = net_settings(args, info, kind)
    optim = dict(lr=args.lr, weight_decay=args.weight_decay, optimizer=args.optimizer,
                 schedule=args.schedule)
    if kind == SEGMENTATION:
        task = _task_class(kind)(net, info["part_mask"], info["category_names"], data=settings,
                                 **optim)
    else:
        task = _task_class(kind)(net, data=settings, **optim)
    task.chunk_size = args.chunk_size
    trainer, checkpoint = make_trainer(args, out, _monitor(kind, settings))
    trainer.fit(task, _loader(train_set, args, shuffle=True), _loader(val_set, args),
                ckpt_path=args.ckpt, weights_only=True if args.ckpt else None)
    if not trainer.is_global_zero:  # the other processes of a distributed run are done
        return None
    best = checkpoint.best_model_path or str(out / "checkpoints" / "last.ckpt")
    tester = trainer if trainer.world_size == 1 else make_trainer(args, out, None, testing=True)[0]
    results = _test_metrics(tester, task, tests, args, ckpt_path=best)
    summary = _summary(kind, results)
    summary["wall_seconds"] = round(time.time() - start, 1)
    _write(out, {"task": kind, "metrics": summary, "per_split": results, "checkpoint": best,
                 "config": vars(args), "data": settings, "net": net})
    if not args.no_viz:
        best_task, _ = load_task(best, kind)
        pictures(best_task, kind, tests, out, num=args.num_pictures)
    return summary


def evaluate(args, kind: str) -> Dict:
    """Tests the checkpoint ``--ckpt`` on the data it was trained on (or on
    ``--root`` if given); writes ``metrics.json`` to ``--out``."""
    if not args.ckpt:
        raise SystemExit("evaluation needs --ckpt PATH (a checkpoint written by training)")
    start = time.time()
    task, kind = load_task(args.ckpt, kind)
    task.chunk_size = args.chunk_size
    settings = dict(task.hparams.data)
    if args.root:
        settings["root"] = args.root
    _, _, tests, _ = build_data(kind, settings)
    trainer, _ = make_trainer(args, Path(args.out), None, testing=True)
    results = _test_metrics(trainer, task, tests, args)
    summary = _summary(kind, results)
    summary["wall_seconds"] = round(time.time() - start, 1)
    _write(Path(args.out), {"task": kind, "metrics": summary, "per_split": results,
                            "checkpoint": str(args.ckpt), "data": settings})
    return summary


def pictures(task, kind: str, tests: Dict, out: Path, num: int = 2, show: bool = False) -> list:
    """PNGs of predictions, bases, functional maps and training curves; a
    machine without the rendering libraries gets a warning and no 3D pictures."""
    from .. import viz

    written = []
    curves = out / "logs" / "metrics.csv"
    if curves.is_file() and available("matplotlib"):
        written.append(viz.plot_training_curves(curves, out / "curves.png"))
    ok, reason = viz.rendering_available() if available("open3d") else \
        (False, "open3d is not installed (pip install 'tg-funcattn[viz]')")
    dataset = next(iter(tests.values()))
    task.eval()
    with torch.no_grad():
        for i in range(min(num, len(dataset))):
            from torch_geometric.data import Batch

            data = Batch.from_data_list([dataset[i]])
            logits, maps = task(data, return_maps=True)
            bases, fmaps = maps[0]
            if i == 0 and available("matplotlib"):
                written.append(viz.plot_functional_maps(
                    fmaps[0], out / "functional_maps.png", title="functional maps C, block 1"))
            if not ok:
                continue
            face = data.face if "face" in data else None
            if kind == SEGMENTATION:
                pred = task.predict_labels(data, logits)
                pos, target = data.pos, data.y
                if "mesh_pos" in data:  # score and draw on the original vertices
                    from ..transforms import transfer_to_vertices

                    pred = transfer_to_vertices(pred, data.pos, data.mesh_pos)
                    pos, target = data.mesh_pos, data.mesh_y
                if show:
                    viz.show_segmentation(pos, pred, target, face)
                written.append(viz.render_segmentation(pos, pred, target, out / f"prediction_{i}.png",
                                                       face, title=f"test shape {i}"))
            else:
                target = data.y.view(data.num_nodes, -1)[:, 0]
                fields = torch.stack([target, logits[:, 0], (logits[:, 0] - target).abs()], 1)
                written.append(viz.render_fields(data.pos, fields, out / f"prediction_{i}.png", face,
                                                 ["target", "prediction", "|error|"], f"test shape {i}"))
            if i == 0:
                k = min(4, bases.shape[-1])
                written.append(viz.render_fields(
                    data.pos, bases[:, 0, :k], out / "bases.png", face,
                    [f"basis {j}" for j in range(k)], "block 1, head 1"))
    if not ok:
        warnings.warn(f"3D pictures skipped: {reason}", stacklevel=2)
    return written


def visualize(args) -> list:
    """Pictures of a trained checkpoint's test predictions."""
    if not args.ckpt:
        raise SystemExit("visualize needs --ckpt PATH")
    task, kind = load_task(args.ckpt)
    settings = dict(task.hparams.data)
    if args.root:
        settings["root"] = args.root
    _, _, tests, _ = build_data(kind, settings)
    return pictures(task, kind, tests, Path(args.out), num=args.num_pictures, show=args.show)


def precompute(args) -> Dict:
    """Builds the datasets with ``basis="laplacian"`` so that their eigenbases
    land in the cache and the processed files (no training)."""
    kind = SEGMENTATION if args.dataset in ("synthetic", "shapenet", "rna") else REGRESSION
    args.basis = "laplacian"
    start = time.time()
    train_set, val_set, tests, _ = build_data(kind, data_settings(args, kind))
    unique = {id(d): d for d in (train_set, val_set, *tests.values())}
    shapes = sum(len(d) for d in unique.values())
    return {"dataset": args.dataset, "shapes": shapes, "num_bases": args.num_bases,
            "seconds": round(time.time() - start, 1)}
