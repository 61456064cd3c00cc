"""Training, evaluation, pictures and eigenbasis precomputation of a
:class:`~.config.RunConfig`, shared by the ``tg-funcattn`` command and the
example scripts."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Dict, Optional

import torch

from .._files import atomic_write
from .._optional import available, require
from ..nn.bases import uses_eigenbasis
from .config import REGRESSION, SEGMENTATION, DataConfig, RunConfig, TrainerConfig, data_config
from .data import build_data
from .logs import LOGS, new_version
from .pictures import write_run_pictures


# ---------------------------------------------------------------- settings
def net_settings(config: RunConfig, info: Dict) -> Dict:
    """The :class:`~tg_funcattn.nn.FuncAttnNet` keywords of ``config.model`` on
    the data that ``info`` describes (plain values only, kept in checkpoints)."""
    model = config.model
    return {**dataclasses.asdict(model), "basis_type": model.resolved_basis_type(config.data.dataset),
            "local": model.resolved_local(config.data.dataset),
            "in_channels": info["in_channels"],
            **({"pos_channels": info["pos_channels"]} if "pos_channels" in info else {}),
            "out_channels": info["num_classes"] if config.kind == SEGMENTATION else info["out_channels"],
            "num_categories": info.get("num_categories")}


def _eigenpairs(basis_type: str, num_bases: int) -> Optional[int]:
    """Laplacian eigenpairs per shape a network with these bases reads (``None``: none)."""
    return num_bases if uses_eigenbasis(basis_type) else None


def _loader(dataset, trainer: TrainerConfig, shuffle=False):
    from torch_geometric.loader import DataLoader

    return DataLoader(dataset, batch_size=trainer.batch_size, shuffle=shuffle,
                      num_workers=trainer.num_workers, persistent_workers=trainer.num_workers > 0)


def _monitor(data: DataConfig):
    if data.kind == REGRESSION:
        return "val_rel_l2", "min"
    return ("val_instance_miou", "max") if data.dataset != "rna" else ("val_accuracy", "max")


def make_trainer(trainer: TrainerConfig, out: Path, monitor, testing: bool = False):
    """The Lightning trainer of ``trainer``: CSV (and TensorBoard) logs in
    ``out/logs`` (see :mod:`~tg_funcattn.training.logs`),
    best and last checkpoints in ``out/checkpoints``.  With
    ``testing=True``, a single-device trainer without logs or checkpoints, so
    that every test shape is scored exactly once (a distributed sampler pads
    uneven splits with repeats)."""
    L = require("lightning", "Training")
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    common = dict(accelerator=trainer.accelerator, precision=trainer.precision, default_root_dir=str(out),
                  enable_progress_bar=trainer.progress, enable_model_summary=False,
                  limit_test_batches=trainer.limit_batches)
    if testing:
        return L.Trainer(devices=1, logger=False, enable_checkpointing=False, **common), None
    # the same version for both loggers, so the progress bar shows it as v_num=N
    version = new_version(out)
    loggers = [CSVLogger(save_dir=str(out), name=LOGS, version=version)]
    if available("tensorboard"):
        loggers.append(TensorBoardLogger(save_dir=str(out), name=LOGS, version=version,
                                         sub_dir="tensorboard"))
    checkpoint = ModelCheckpoint(dirpath=str(out / "checkpoints"), filename="best", monitor=monitor[0],
                                 mode=monitor[1], enable_version_counter=False)
    # last.ckpt after every epoch: Lightning 2.6's save_last=True writes it only when the
    # best checkpoint improves, so a resume could lose the epochs since then
    last = ModelCheckpoint(dirpath=str(out / "checkpoints"), filename="last", monitor=None,
                           save_top_k=1, every_n_epochs=1, enable_version_counter=False)
    engine = L.Trainer(max_epochs=trainer.max_epochs, devices=trainer.devices, strategy=trainer.strategy,
                       # the metrics are logged per epoch, so the step interval only
                       # decides Lightning's warning that an epoch is shorter than it
                       logger=loggers, callbacks=[checkpoint, last], log_every_n_steps=1,
                       limit_train_batches=trainer.limit_batches,
                       limit_val_batches=trainer.limit_batches, **common)
    return engine, checkpoint


@contextlib.contextmanager
def _lightning_warnings_only():
    """Lightning's info lines (available accelerators, a logger tip, "fit stopped",
    checkpoint restoring) are not shown while a command runs: its own output says
    what ran.  Lightning's warnings still are."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


# Lightning 2.6 calls a torch.utils._pytree check that torch 2.13 deprecates, once per
# run: its code, not ours, and nothing a user can act on
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")

def _read_checkpoint(path) -> Dict:
    """The contents of the checkpoint file ``path`` (``weights_only=True``); a
    missing, empty, truncated or foreign file is an error naming it."""
    expected = "expected a checkpoint written by tg-funcattn training (checkpoints/best.ckpt or last.ckpt)"
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path}: no such file; {expected}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch's unpickler raises many kinds on a damaged file
        size = os.path.getsize(path)
        raise ValueError(f"checkpoint {path} ({size} bytes) cannot be read: it is truncated or not a "
                         f"checkpoint ({type(error).__name__}); {expected}") from error
    if not isinstance(checkpoint, dict) or "hyper_parameters" not in checkpoint:
        raise ValueError(f"checkpoint {path} has no hyper-parameters; {expected}")
    missing = [key for key in ("net", "optim", "data")
               if not isinstance(checkpoint["hyper_parameters"].get(key), dict)]
    if missing or not isinstance(checkpoint.get("state_dict"), dict):
        what = ", ".join(f"hyper_parameters['{key}']" for key in missing) or "state_dict"
        raise ValueError(f"checkpoint {path} has no {what}; {expected}")
    bad = next((name for name, value in checkpoint["state_dict"].items()
                if torch.is_tensor(value) and value.is_floating_point()
                and not bool(torch.isfinite(value).all())), None)
    if bad is not None:
        raise ValueError(f"checkpoint {path}: parameter {bad} holds NaN or infinite values (the "
                         "training diverged before it was written); use a checkpoint of an earlier "
                         "epoch or train again with a lower --lr")
    return checkpoint


def load_task(path, chunk_size: Optional[int] = None):
    """``(task, kind)`` of a checkpoint written by training, loaded with
    ``weights_only=True``; the task streams over ``chunk_size`` nodes."""
    require("lightning", "Training")
    from .tasks import RegressionTask, SegmentationTask

    checkpoint = _read_checkpoint(path)
    arguments = checkpoint["hyper_parameters"]
    kind = data_config(arguments["data"]).kind
    task = (SegmentationTask if kind == SEGMENTATION else RegressionTask)(**arguments,
                                                                         chunk_size=chunk_size)
    task.load_state_dict(checkpoint["state_dict"])
    return task, kind


def load_model(path, map_location="cpu"):
    """The trained :class:`~tg_funcattn.nn.FuncAttnNet` of a checkpoint written
    by training (``checkpoints/best.ckpt`` or ``last.ckpt``), on
    ``map_location``, in eval mode; loaded with ``weights_only=True``."""
    task, _ = load_task(path)
    return task.model.to(map_location).eval()


#: data sets that are generated (the others are downloaded or the user's)
_GENERATED = ("synthetic", "operator")


def _test_sets(task, ckpt, root: Optional[str] = None, eigen_cache: Optional[str] = None):
    """``(tests, data)``: the test sets of the data a trained task was trained
    on, read from ``root`` (and ``eigen_cache``) if given, else from where the
    checkpoint ``ckpt`` says they were; a data folder that is no longer there is
    an error, not a new download or generation somewhere else."""
    data = data_config(task.hparams.data)
    given = {k: v for k, v in (("root", root), ("eigen_cache", eigen_cache)) if v is not None}
    data = dataclasses.replace(data, **given).absolute()
    if root is None and not os.path.isdir(data.root):
        again = " (it is generated there again)" if data.dataset in _GENERATED else ""
        raise FileNotFoundError(f"the {data.dataset} data of checkpoint {ckpt} is not at {data.root} any "
                                f"more: pass --root with the folder that holds it now{again}")
    net = task.hparams.net
    return build_data(data, _eigenpairs(net["basis_type"], net["num_bases"]))[2], data


def _test_metrics(engine, task, tests, trainer: TrainerConfig, ckpt_path=None) -> Dict:
    results = {}
    for name, dataset in tests.items():
        out = engine.test(task, _loader(dataset, trainer), ckpt_path=ckpt_path, verbose=False,
                          weights_only=True if ckpt_path else None)[0]
        results[name] = {k.replace("test_", ""): round(float(v), 5) for k, v in out.items()
                         if k != "test_loss"}
        ckpt_path = None  # loaded once
    return results


def _summary(kind: str, results: Dict) -> Dict:
    if kind == SEGMENTATION:
        return dict(results["test"])
    return {"rel_l2": {name: r["rel_l2"] for name, r in results.items()}}


def _write(path: Path, payload: Dict) -> None:
    """``payload`` as JSON in ``path``, written atomically: a failed write keeps the previous file."""
    text = json.dumps(payload, indent=1, default=str).encode()
    atomic_write(path, lambda f: f.write(text))


def _claim(out: Path) -> None:
    """Makes ``out/checkpoints`` for a new run, refusing a folder that holds
    another run's checkpoints or scores (creating the folder is the claim, so
    of two runs started together into one ``out`` the second is refused).  The
    other processes of a distributed run leave it to the first."""
    if any(os.environ.get(key, "0") != "0" for key in ("RANK", "LOCAL_RANK", "NODE_RANK")):
        return
    out.mkdir(parents=True, exist_ok=True)
    held = [str(p) for p in (out / "checkpoints", out / "metrics.json") if p.exists()]
    if not held:
        try:
            (out / "checkpoints").mkdir()
        except FileExistsError:
            held = [str(out / "checkpoints")]
    if held:
        raise FileExistsError(f"--out {out} already holds a run ({', '.join(held)}), which a new "
                              f"run would replace: resume it with --ckpt "
                              f"{out / 'checkpoints' / 'last.ckpt'}, or give a fresh --out")


# ---------------------------------------------------------------- commands
def train(config: RunConfig) -> Optional[Dict]:
    """Trains (or resumes from ``config.trainer.ckpt``), tests the best
    checkpoint, writes ``metrics.json`` and pictures to ``config.out_dir`` and
    returns the summary (``None`` in the other processes of a distributed run).
    The checkpoints store the data root as an absolute path."""
    L = require("lightning", "Training")
    from .tasks import RegressionTask, SegmentationTask

    start = time.time()
    config = dataclasses.replace(config, data=config.data.absolute())
    out, run, model = Path(config.out_dir).absolute(), config.trainer, config.model
    if run.ckpt:
        if not Path(run.ckpt).is_file():
            raise FileNotFoundError(f"--ckpt {run.ckpt}: no such checkpoint file to resume from")
        _read_checkpoint(run.ckpt)  # this package's, readable with weights_only=True, finite
    else:
        _claim(out)
    L.seed_everything(run.seed, workers=True, verbose=False)
    basis_type = model.resolved_basis_type(config.data.dataset)
    train_set, val_set, tests, info = build_data(config.data, _eigenpairs(basis_type, model.num_bases))
    net = net_settings(config, info)
    plain = config.to_dict()
    if config.kind == SEGMENTATION:
        task = SegmentationTask(net, plain["optim"], plain["data"], info["part_mask"],
                                info["category_names"], chunk_size=run.chunk_size)
    else:
        task = RegressionTask(net, plain["optim"], plain["data"], chunk_size=run.chunk_size)
    with _lightning_warnings_only():
        engine, checkpoint = make_trainer(run, out, _monitor(config.data))
        engine.fit(task, _loader(train_set, run, shuffle=True), _loader(val_set, run),
                   ckpt_path=run.ckpt, weights_only=True if run.ckpt else None)
        if not engine.is_global_zero:  # the other processes of a distributed run are done
            return None
        best = checkpoint.best_model_path or str(out / "checkpoints" / "last.ckpt")
        tester = engine if engine.world_size == 1 else make_trainer(run, out, None, testing=True)[0]
        results = _test_metrics(tester, task, tests, run, ckpt_path=best)
    summary = _summary(config.kind, results)
    summary["wall_seconds"] = round(time.time() - start, 1)
    _write(out / "metrics.json", {"task": config.kind, "metrics": summary, "per_split": results,
                                  "checkpoint": best, "config": plain, "net": net})
    if config.output.viz:
        best_task, _ = load_task(best)
        write_run_pictures(best_task, config.kind, tests, out, config.output.num_pictures)
    return summary


def evaluation_path(ckpt, out: Optional[str] = None) -> Path:
    """Where :func:`evaluate` writes the scores of checkpoint ``ckpt``:
    ``<out>/evaluation_<checkpoint name>.json``, ``out`` defaulting to the
    checkpoint's folder (never a file that training writes)."""
    ckpt = Path(ckpt)
    return Path(out if out is not None else ckpt.parent) / f"evaluation_{ckpt.stem}.json"


def evaluate(ckpt, trainer: TrainerConfig = TrainerConfig(), *, kind: Optional[str] = None,
             root: Optional[str] = None, eigen_cache: Optional[str] = None,
             out: Optional[str] = None) -> Dict:
    """Tests the checkpoint ``ckpt`` on the test sets of the data it was
    trained on (from ``root``/``eigen_cache`` if given, else from the folder
    the checkpoint names) and writes the scores, with the data settings, to
    :func:`evaluation_path` ``(ckpt, out)``.  The network and data are the
    checkpoint's; ``trainer`` gives the batch size, accelerator, precision,
    workers, batch limit, progress bar and ``chunk_size``.  ``kind``, if given,
    is the kind of model expected (``"segmentation"`` or ``"regression"``)."""
    start = time.time()
    task, found = load_task(ckpt, trainer.chunk_size)
    if kind is not None and found != kind:
        raise ValueError(f"checkpoint {ckpt} holds a {found} model, not a {kind} one")
    tests, data = _test_sets(task, ckpt, root, eigen_cache)
    target = evaluation_path(ckpt, out)
    with _lightning_warnings_only():
        engine, _ = make_trainer(trainer, target.parent, None, testing=True)
        results = _test_metrics(engine, task, tests, trainer)
    summary = _summary(found, results)
    summary["wall_seconds"] = round(time.time() - start, 1)
    _write(target, {"task": found, "metrics": summary, "per_split": results,
                    "checkpoint": str(Path(ckpt).absolute()), "data": dataclasses.asdict(data)})
    return summary


def visualize(ckpt: str, out: str, num_pictures: int, root: Optional[str] = None,
              eigen_cache: Optional[str] = None, show: bool = False) -> list:
    """Pictures of a trained checkpoint's test predictions, in ``out``; the
    data is read from ``root``/``eigen_cache`` if given (else from where the
    checkpoint says)."""
    task, kind = load_task(ckpt)
    tests, _ = _test_sets(task, ckpt, root, eigen_cache)
    return write_run_pictures(task, kind, tests, Path(out), num_pictures, show=show)


def precompute(data: DataConfig, num_eigenpairs: int) -> Dict:
    """Builds the data sets of ``data`` with ``num_eigenpairs`` Laplacian
    eigenpairs per shape, so that they land in the cache and the processed
    files (no training)."""
    start = time.time()
    train_set, val_set, tests, _ = build_data(data, num_eigenpairs)
    unique = {id(d): d for d in (train_set, val_set, *tests.values())}
    shapes = sum(len(d) for d in unique.values())
    return {"dataset": data.dataset, "shapes": shapes, "num_eigenpairs": num_eigenpairs,
            "seconds": round(time.time() - start, 1)}
