"""Smoke runs of the examples and the tg-funcattn command on tiny data."""
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import ROOT, assert_picture, copy_sample, requires, skip_unless_rendering

from tg_funcattn._optional import available
from tg_funcattn.cli import build_parser, main, run_config
from tg_funcattn.nn import FuncAttnNet
from tg_funcattn.training.config import ModelConfig, RunConfig
from tg_funcattn.training.run import load_model, load_task

# training needs the 'train' extra, the generated data the 'mesh' extra
pytestmark = requires("lightning", "trimesh")

TINY_SEG = ["--shapes", "4", "--points", "96", "--max-epochs", "4", "--batch-size", "4",
            "--no-progress", "--num-pictures", "1", "--lr", "5e-3"]
TINY_REG = ["--levels", "1,2", "--num-shapes", "10", "--max-epochs", "6", "--batch-size", "4",
            "--no-progress", "--num-pictures", "1", "--lr", "5e-3"]


def epoch_losses(out: Path, key: str):
    with open(out / "logs" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get(key)]
    return [float(r[key]) for r in rows]


def epoch_end_steps(out: Path):
    """The optimiser step count at the end of each training epoch (0-based)."""
    with open(out / "logs" / "metrics.csv") as f:
        return [int(r["step"]) for r in csv.DictReader(f) if r.get("train_loss")]


def folder(path: Path) -> str:
    """``path``, created: a ``--root`` must exist, also for generated data."""
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def run_example(script, args, cwd):
    result = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args],
                            capture_output=True, text=True, timeout=900, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def segmentation_run(tmp_path_factory):
    """One short training run of examples/segmentation.py, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("segmentation")
    out = tmp / "run"
    summary = run_example("segmentation.py", TINY_SEG + ["--root", folder(tmp / "data"), "--out", str(out)],
                          cwd=tmp)
    return tmp, out, summary


def test_segmentation_example_writes_metrics_checkpoints_logs(segmentation_run):
    tmp, out, summary = segmentation_run
    assert set(summary) >= {"accuracy", "instance_miou", "class_miou", "wall_seconds"}
    assert 0 <= summary["instance_miou"] <= 1
    written = json.loads((out / "metrics.json").read_text())
    assert written["metrics"] == summary and written["config"]["data"]["dataset"] == "synthetic"
    assert written["config"]["data"]["shapes"] == 4
    assert written["net"]["hidden_channels"] == ModelConfig().hidden_channels
    for name in ("best.ckpt", "last.ckpt"):
        assert (out / "checkpoints" / name).stat().st_size > 10_000
    losses = epoch_losses(out, "train_loss")
    assert len(losses) == 4 and losses[-1] < losses[0]  # the loss decreases
    assert (out / "logs" / "tensorboard").is_dir() or not available("tensorboard")


@requires("matplotlib")
def test_segmentation_example_pictures(segmentation_run):
    _, out, _ = segmentation_run
    for name in ("curves.png", "functional_maps.png"):  # matplotlib only
        assert_picture(out / name)
    skip_unless_rendering()
    for name in ("prediction_0.png", "bases.png"):
        assert_picture(out / name, min_bytes=5000)


def test_checkpoint_round_trip_gives_identical_predictions(segmentation_run, tmp_path):
    from torch_geometric.data import Batch

    from tg_funcattn.datasets import SyntheticParts

    tmp, out, _ = segmentation_run
    task, kind = load_task(out / "checkpoints" / "last.ckpt")
    assert kind == "segmentation" and task.hparams.data["dataset"] == "synthetic"
    data = SyntheticParts(tmp / "data", split="test", num_train=4, num_val=1, num_test=1, num_points=96)
    batch = Batch.from_data_list(list(data))
    task.eval()
    with torch.no_grad():
        before = task(batch)
    path = tmp_path / "copy.ckpt"
    import lightning as L

    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(task)
    trainer.save_checkpoint(path)
    again, _ = load_task(path)
    again.eval()
    with torch.no_grad():
        assert torch.equal(again(batch), before)
    raw = torch.load(path, map_location="cpu", weights_only=True)  # no pickle needed
    assert "hyper_parameters" in raw
    # the network alone, as a user takes it out of a checkpoint
    net = load_model(path)
    assert isinstance(net, FuncAttnNet) and not net.training
    with torch.no_grad():
        assert torch.equal(net(batch.x, batch.pos, batch.batch, category=batch.category.view(-1),
                               batch_size=batch.num_graphs), before)


def test_metrics_json_config_reads_back(segmentation_run):
    _, out, _ = segmentation_run
    saved = json.loads((out / "metrics.json").read_text())["config"]
    config = RunConfig.from_dict(saved)
    assert config.to_dict() == saved and config.kind == "segmentation"
    assert config.data.shapes == 4 and config.trainer.max_epochs == 4
    with pytest.raises(ValueError, match="unknown OptimConfig key 'momentum'"):
        RunConfig.from_dict({**saved, "optim": {**saved["optim"], "momentum": 0.9}})
    with pytest.raises(ValueError, match="unknown RunConfig key 'extra'"):
        RunConfig.from_dict({**saved, "extra": {}})


@pytest.mark.parametrize("argv, message", [
    (["train", "segmentation", "--num-bases", "0"], "'num_bases' (--num-bases) must be >= 1, got 0"),
    (["train", "regression", "--levels", "2,3", "--train-level", "4"], "is not one of the levels"),
    (["precompute", "--dataset", "operator", "--shapes", "3"], "key 'shapes'"),
    (["train", "segmentation", "--dataset", "rna", "--basis-type", "laplacian"],
     "(--points 4096) carry an interpolated one: use --basis-type laplacian_init, or --points 0"),
    (["train", "regression", "--levels", "a,b"],
     "argument --levels: expected comma-separated int values (e.g. 2,3,4), got 'a,b'")])
def test_bad_option_values_are_usage_errors_naming_the_option(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("chunk", [None, "100"])
def test_evaluate_reproduces_the_test_metrics(segmentation_run, tmp_path, chunk):
    """Also when streaming over chunks of 100 nodes (cutting through the graphs of a batch)."""
    tmp, out, summary = segmentation_run
    extra = ["--chunk-size", chunk] if chunk else []
    code = main(["evaluate", "segmentation", "--ckpt", str(out / "checkpoints" / "best.ckpt"),
                 "--out", str(tmp_path), "--no-progress"] + extra)
    assert code == 0
    evaluated = json.loads((tmp_path / "evaluation_best.json").read_text())["metrics"]
    for key in ("accuracy", "instance_miou", "class_miou"):
        assert evaluated[key] == pytest.approx(summary[key], abs=1e-5)


def test_resume_from_a_checkpoint(segmentation_run, tmp_path):
    tmp, out, _ = segmentation_run
    resumed = tmp_path / "resumed"
    main(["train", "segmentation", *TINY_SEG, "--max-epochs", "5", "--root", folder(tmp / "data"),
          "--ckpt", str(out / "checkpoints" / "last.ckpt"), "--out", str(resumed), "--no-viz"])
    with open(resumed / "logs" / "metrics.csv") as f:
        epochs = sorted({int(r["epoch"]) for r in csv.DictReader(f) if r.get("train_loss")})
    assert epochs == [4]  # only the fifth epoch was trained


@requires("matplotlib")
def test_visualize_command(segmentation_run, tmp_path):
    skip_unless_rendering()
    _, out, _ = segmentation_run
    main(["visualize", "--ckpt", str(out / "checkpoints" / "best.ckpt"), "--out", str(tmp_path),
          "--num-pictures", "1"])
    assert_picture(tmp_path / "prediction_0.png", min_bytes=5000)
    assert_picture(tmp_path / "bases.png", min_bytes=5000)


@requires("matplotlib")
def test_regression_example_reports_every_resolution(tmp_path):
    summary = run_example("mesh_regression.py",
                          TINY_REG + ["--root", folder(tmp_path / "data"), "--out", str(tmp_path / "run")],
                          cwd=tmp_path)
    assert set(summary["rel_l2"]) == {"level_1", "level_2"}
    assert all(0 < v < 2 for v in summary["rel_l2"].values())
    losses = epoch_losses(tmp_path / "run", "train_rel_l2")
    assert losses[-1] < losses[0]
    assert_picture(tmp_path / "run" / "functional_maps.png")


def test_regression_on_user_mesh_data(tmp_path):
    root = copy_sample("mesh_regression", tmp_path, "meshes")
    (root / "train.txt").write_text("sphere\n")
    (root / "test.txt").write_text("sphere\n")
    main(["train", "regression", "--dataset", "mesh", "--root", str(root), "--max-epochs", "2",
          "--out", str(tmp_path / "run"), "--no-viz", "--no-progress"])
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(written["metrics"]["rel_l2"]) == {"test"}
    # the reported score is the relative L2 error of the best checkpoint on the test mesh
    from tg_funcattn.training.config import data_config
    from tg_funcattn.training.data import build_data

    tests = build_data(data_config(written["config"]["data"]), None)[2]
    model = load_model(written["checkpoint"])
    errors = []
    for data in tests["test"]:
        with torch.no_grad():
            pred = model(data.x if model.in_channels else None, data.pos,
                         mass=data.mass if "mass" in data else None).double()
        y = data.y.view(data.num_nodes, -1).double()
        errors.append(float(torch.linalg.vector_norm(pred - y) / torch.linalg.vector_norm(y)))
    assert written["metrics"]["rel_l2"]["test"] == pytest.approx(sum(errors) / len(errors), rel=1e-4)


@pytest.mark.parametrize("basis", ["laplacian", "laplacian_init"])
def test_laplacian_bases_train(tmp_path, basis):
    main(["train", "segmentation", *TINY_SEG, "--max-epochs", "1", "--basis-type", basis, "--num-bases", "8",
          "--root", folder(tmp_path / "data"), "--out", str(tmp_path / "run"), "--no-viz"])
    assert list((tmp_path / "data" / "eigen_cache").rglob("*.npz"))
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["net"]["basis_type"] == basis


def direct_vertex_accuracy(model, root, transforms):
    """The accuracy of ``model`` run on every test mesh of the RNA sample at
    ``root``, its vertices as the points, built here from the raw meshes."""
    from torch_geometric.data import Batch
    from torch_geometric.transforms import Compose

    from tg_funcattn.datasets import RNASurfaceSegmentation

    correct = total = 0
    for mesh in RNASurfaceSegmentation(root, "test"):
        data = Batch.from_data_list([Compose(transforms)(mesh)])
        with torch.no_grad():
            logits = model(data.x if model.in_channels else None, data.pos, data.batch,
                           mass=data.mass, basis=data.evecs if model.uses_eigenbasis else None)
        assert logits.shape[0] == mesh.num_nodes  # every vertex, not the samples
        correct += int((logits.argmax(-1) == data.y).sum())
        total += mesh.num_nodes
    return correct / total


def test_rna_sample_trains_and_scores_the_vertices_directly(tmp_path):
    """The test score is the network run on each test mesh's own vertices
    (lumped areas as the mass), not the sampled points' labels carried to them."""
    from tg_funcattn.transforms import HeatKernelSignature, LaplacianEigenbasis, NormalizeMesh

    root = copy_sample("rna_surface_segmentation", tmp_path, "rna")
    main(["train", "segmentation", "--dataset", "rna", "--root", str(root), "--points", "128",
          "--max-epochs", "2", "--out", str(tmp_path / "run"), "--no-viz", "--no-progress"])
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    metrics = saved["metrics"]
    assert set(metrics) == {"accuracy", "wall_seconds"} and 0 <= metrics["accuracy"] <= 1
    # the mesh defaults: the surface's eigenbasis, an EdgeConv branch of 8 neighbours and
    # the heat kernel signature (16 times) instead of the positions
    net = saved["net"]
    assert (net["basis_type"], net["local"], net["k"], net["in_channels"], net["pos_channels"]) \
        == ("laplacian_init", "edgeconv", 8, 16, 0)
    from tg_funcattn.training.config import data_config
    from tg_funcattn.training.data import build_data

    _, val, tests, _ = build_data(data_config(saved["config"]["data"]), 64)
    assert val[0].num_nodes == 128  # validation: the sampled points
    assert tests["test"][0].num_nodes == 85 and "mesh_pos" not in tests["test"][0]  # the vertices
    fresh = copy_sample("rna_surface_segmentation", tmp_path, "fresh")
    expected = direct_vertex_accuracy(
        load_model(saved["checkpoint"]), fresh,
        [NormalizeMesh("sphere"), LaplacianEigenbasis(64), HeatKernelSignature(16, attr_name=None)])
    assert metrics["accuracy"] == pytest.approx(expected, abs=1e-6)


def test_rna_learned_basis_on_positions_scores_the_vertices_with_their_lumped_mass(tmp_path):
    from tg_funcattn.transforms import LumpedMass, NormalizeMesh

    root = copy_sample("rna_surface_segmentation", tmp_path, "rna")
    main(["train", "segmentation", "--dataset", "rna", "--root", str(root), "--points", "128",
          "--input-features", "xyz", "--basis-type", "learned", "--local", "none",
          "--max-epochs", "1", "--out", str(tmp_path / "run"), "--no-viz", "--no-progress"])
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    fresh = copy_sample("rna_surface_segmentation", tmp_path, "fresh")
    expected = direct_vertex_accuracy(load_model(saved["checkpoint"]), fresh,
                                      [NormalizeMesh("sphere"), LumpedMass()])
    assert saved["metrics"]["accuracy"] == pytest.approx(expected, abs=1e-6)


def test_rna_sample_trains_on_the_heat_kernel_signature(tmp_path):
    """--input-features hks (the mesh default): the signature of the mesh as
    the only input (16 channels, no positions), for the learned basis too (the
    eigenpairs are computed for the signature)."""
    root = copy_sample("rna_surface_segmentation", tmp_path, "rna")
    main(["train", "segmentation", "--dataset", "rna", "--root", str(root), "--points", "128",
          "--input-features", "hks", "--basis-type", "learned", "--max-epochs", "1",
          "--out", str(tmp_path / "run"), "--no-viz", "--no-progress"])
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (saved["net"]["in_channels"], saved["net"]["pos_channels"]) == (16, 0)
    assert 0 <= saved["metrics"]["accuracy"] <= 1
    with pytest.raises(ValueError, match="--input-features\\) hks needs meshes \\(rna\\)"):
        run_config(build_parser().parse_args(["train", "segmentation", "--input-features", "hks"]))


def test_rna_validation_is_held_out_of_the_training_list():
    from tg_funcattn.training.data import rna_validation_split

    val, train = rna_validation_split(547)
    assert len(val) == 55 and len(train) == 492
    assert sorted(val.tolist() + train.tolist()) == list(range(547))
    assert torch.equal(rna_validation_split(547)[0], val)  # fixed
    assert [len(part) for part in rna_validation_split(2)] == [1, 1]


def test_preset_sets_network_and_recipe_and_explicit_options_win(tmp_path):
    config = run_config(build_parser().parse_args(
        ["train", "segmentation", "--preset", "paper_rna", "--num-bases", "32"]))
    model, optim, trainer = config.model, config.optim, config.trainer
    assert (model.hidden_channels, model.num_layers, model.heads, model.num_bases) == (128, 4, 8, 32)
    assert (optim.optimizer, optim.schedule, optim.lr, trainer.batch_size, trainer.max_epochs) == \
        ("adam", "onecycle", 1e-3, 1, 200)
    assert (model.init, model.head, model.basis_type) == ("trunc_normal", "linear", "learned")
    assert (model.lift, model.shared_ridge) == ("residual", True)
    plain = run_config(build_parser().parse_args(["train", "segmentation"]))
    assert (plain.model.lift, plain.model.shared_ridge) == ("mlp", False)
    assert plain.model.basis_type == "auto" and plain.optim.optimizer == "adamw"
    assert model.resolved_local("rna") is None  # the authors' model has no local branch
    on_meshes = run_config(build_parser().parse_args(
        ["train", "segmentation", "--preset", "paper_rna", "--dataset", "rna"]))
    assert on_meshes.data.resolved_input_features == "xyz"  # and reads the positions
    # the defaults: on meshes the eigenbasis and an EdgeConv branch, on point clouds neither
    assert (plain.model.resolved_basis_type("rna"), plain.model.resolved_local("rna"),
            plain.model.k) == ("laplacian_init", "edgeconv", 8)
    assert (plain.model.resolved_basis_type("synthetic"), plain.model.resolved_local("synthetic")) \
        == ("learned", None)
    assert plain.data.resolved_input_features == "xyz"  # synthetic: point clouds
    # a short run with the preset trains the preset's network under the authors' schedule
    main(["train", "segmentation", *TINY_SEG, "--max-epochs", "2", "--preset", "paper_rna",
          "--batch-size", "4", "--points", "96", "--num-bases", "8",
          "--root", folder(tmp_path / "data"), "--out", str(tmp_path / "run"), "--no-viz"])
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["net"]["lift"] == "residual" and saved["net"]["init"] == "trunc_normal"
    task, _ = load_task(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert task.hparams.optim["optimizer"] == "adam" and task.hparams.optim["schedule"] == "onecycle"


def test_precompute_fills_the_cache(tmp_path):
    main(["precompute", "--dataset", "synthetic", "--root", str(tmp_path), "--num-eigenpairs", "4",
          "--shapes", "2", "--points", "64"])
    assert len(list((tmp_path / "eigen_cache").rglob("*.npz"))) == 4 * (2 + 1 + 1)


def test_distributed_data_parallel_on_two_cpu_processes(segmentation_run, tmp_path):
    """The two processes share each epoch's shapes (half the optimiser steps of
    the single-process run with the same batch size), and the reported test
    metrics are those of the whole test set (a single-process evaluation of
    the best checkpoint gives the same), not of one process's share."""
    _, single, _ = segmentation_run
    summary = run_example("segmentation.py", TINY_SEG + [
        "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--max-epochs", "2",
        "--root", folder(tmp_path / "data"), "--out", str(tmp_path / "run"), "--no-viz"], cwd=tmp_path)
    steps, single_steps = epoch_end_steps(tmp_path / "run"), epoch_end_steps(single)[:2]
    assert len(steps) == 2 and [s + 1 for s in steps] == [(s + 1) // 2 for s in single_steps], \
        (steps, single_steps)
    main(["evaluate", "segmentation", "--ckpt", str(tmp_path / "run" / "checkpoints" / "best.ckpt"),
          "--out", str(tmp_path / "evaluated"), "--no-progress"])
    evaluated = json.loads((tmp_path / "evaluated" / "evaluation_best.json").read_text())["metrics"]
    for key in ("accuracy", "instance_miou", "class_miou"):
        assert evaluated[key] == pytest.approx(summary[key], abs=1e-5), key


def test_help_texts():
    parser = build_parser()
    for argv in (["--help"], ["train", "--help"], ["train", "segmentation", "--help"],
                 ["evaluate", "regression", "--help"], ["visualize", "--help"], ["precompute", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(argv)
        assert exit_info.value.code == 0
    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "segmentation" in text and "regression" in text
    entry = subprocess.run([sys.executable, "-m", "tg_funcattn.cli", "train", "segmentation", "--help"],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert entry.returncode == 0 and "--basis-type" in entry.stdout and "--precision" in entry.stdout


def logged_train_epochs(out: Path):
    """The training epochs of every CSV log in ``out/logs``, one entry per logged epoch."""
    epochs = []
    for path in sorted((out / "logs").rglob("metrics.csv")):
        with open(path) as f:
            epochs += [int(r["epoch"]) for r in csv.DictReader(f) if r.get("train_loss")]
    return epochs


def test_a_killed_run_resumes_from_its_last_epoch_and_keeps_its_logs(tmp_path):
    """last.ckpt is the last finished epoch whatever the validation score, and a resume into
    the same folder keeps the killed run's logs (and hparams.yaml) and logs its own epochs
    next to them: every epoch once."""
    out, last = tmp_path / "run", tmp_path / "run" / "checkpoints" / "last.ckpt"
    # a learning rate too small to change the validation score: the best checkpoint stays
    # at epoch 0, and Lightning 2.6's save_last=True would too
    args = ["train", "segmentation", *TINY_SEG, "--lr", "1e-12", "--root", folder(tmp_path / "data"),
            "--out", str(out), "--no-viz"]
    # more epochs than it lives through, so that it is still training when killed
    process = subprocess.Popen([sys.executable, "-m", "tg_funcattn.cli", *args, "--max-epochs", "40"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 300
        while len(set(logged_train_epochs(out) if (out / "logs").is_dir() else [])) < 2:
            assert process.poll() is None and time.monotonic() < deadline, "the run ended before its 2nd epoch"
            time.sleep(0.05)
    finally:
        process.kill()  # SIGKILL, by its pid
        process.wait()
    killed_logs = {p: p.read_bytes() for p in (out / "logs").rglob("*") if p.is_file()}
    stopped = torch.load(last, map_location="cpu", weights_only=True)["epoch"]  # last finished epoch
    assert stopped >= 1 and sorted(logged_train_epochs(out)) == list(range(stopped + 1))

    main([*args, "--max-epochs", str(stopped + 3), "--ckpt", str(last)])
    assert sorted(logged_train_epochs(out)) == list(range(stopped + 3))  # each epoch once
    for path, content in killed_logs.items():  # the killed run's logs are as they were
        assert path.read_bytes() == content, path
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == stopped + 2


def test_a_resume_that_fails_at_once_names_the_checkpoint_and_keeps_the_logs(tmp_path):
    logs = tmp_path / "run" / "logs"
    logs.mkdir(parents=True)
    (logs / "metrics.csv").write_text("epoch,step,train_loss\n0,3,1.5\n")
    (logs / "hparams.yaml").write_text("net: {}\n")
    with pytest.raises(FileNotFoundError, match="--ckpt .*missing.ckpt: no such checkpoint file"):
        main(["train", "segmentation", *TINY_SEG, "--root", folder(tmp_path / "data"), "--debug",
              "--ckpt", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "run"), "--no-viz"])
    assert (logs / "metrics.csv").read_text() == "epoch,step,train_loss\n0,3,1.5\n"
    assert sorted(p.name for p in logs.iterdir()) == ["hparams.yaml", "metrics.csv"]


def test_a_failed_metrics_write_keeps_the_previous_file(tmp_path, monkeypatch):
    """A write that fails on its way to the disk (here: fsync on a full disk) leaves the
    previous metrics.json as it was, and no temporary file."""
    from tg_funcattn.training import run

    run._write(tmp_path / "metrics.json", {"metrics": {"accuracy": 0.5}})
    before = (tmp_path / "metrics.json").read_bytes()

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        run._write(tmp_path / "metrics.json", {"metrics": {"accuracy": 0.9}})
    assert (tmp_path / "metrics.json").read_bytes() == before
    assert json.loads(before) == {"metrics": {"accuracy": 0.5}}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_help_shows_every_default_and_the_split_sizes():
    """``train segmentation --help`` is enough to reproduce the README's runs: every
    option with a value shows its default, and --shapes says what val/test get."""
    import re

    from tg_funcattn.training.config import SegmentationDataConfig

    sub = build_parser()._subparsers._group_actions[0].choices["train"]
    seg = sub._subparsers._group_actions[0].choices["segmentation"]
    text = " ".join(seg.format_help().split())
    for flag in ("--hidden-channels", "--num-layers", "--heads", "--max-epochs", "--batch-size", "--lr", "--shapes"):
        assert re.search(re.escape(flag) + r" [A-Z_]+ [^-]*\(default: [^)]+\)", text), flag
    assert "validation gets shapes // 7 and test 3 * shapes // 10" in text
    assert SegmentationDataConfig(shapes=20).synthetic_split_sizes == (20, 2, 6)
    assert SegmentationDataConfig(shapes=3).synthetic_split_sizes == (3, 1, 1)


def cli(*argv, cwd=None, timeout=600):
    """``python -m tg_funcattn.cli *argv`` in a subprocess (stdout and stderr as text)."""
    return subprocess.run([sys.executable, "-m", "tg_funcattn.cli", *map(str, argv)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=timeout, cwd=cwd)


def test_stdout_is_the_json_line_and_stderr_has_no_lightning_noise(tmp_path):
    """``tg-funcattn ... | jq`` works: Filament's native prints went to stdout, and
    stderr carried Lightning's LeafSpec deprecation and log_every_n_steps warnings,
    its LitLogger tip, accelerator lines, and ``v_num=oard`` in the progress bar."""
    with_progress = [a for a in TINY_SEG if a != "--no-progress"]
    result = cli("train", "segmentation", *with_progress, "--max-epochs", "1", "--root", folder(tmp_path / "data"),
                 "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and "accuracy" in json.loads(lines[0]), result.stdout
    assert "Epoch 0" in result.stderr  # the progress bar is on
    for noise in ("LeafSpec", "log_every_n_steps", "Tip:", "litlogger", "GPU available", "TPU available",
                  "v_num=oard", "Trainer.fit` stopped"):
        assert noise not in result.stderr, noise


def test_a_checkpoint_finds_its_data_from_any_folder(segmentation_run, tmp_path):
    """The data root is stored as an absolute path: evaluating from another folder reads
    the data the model was trained on (it regenerated it under ./datasets)."""
    tmp, out, summary = segmentation_run
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = cli("evaluate", "segmentation", "--ckpt", out / "checkpoints" / "best.ckpt", "--no-progress",
                 cwd=elsewhere)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["accuracy"] == pytest.approx(summary["accuracy"], abs=1e-5)
    assert list(elsewhere.iterdir()) == []  # nothing generated or written here
    stored = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)["hyper_parameters"]["data"]
    assert stored["root"] == str(tmp / "data") and os.path.isabs(stored["root"])


def test_a_relative_data_root_is_stored_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    main(["train", "segmentation", *TINY_SEG, "--max-epochs", "1", "--root", "data", "--out", "run",
          "--no-viz"])
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["config"]["data"]["root"] == str(tmp_path / "data")
    assert saved["checkpoint"] == str(tmp_path / "run" / "checkpoints" / "best.ckpt")


def test_moved_data_is_an_error_naming_the_folder_and_root_reads_it(segmentation_run, tmp_path):
    tmp, out, summary = segmentation_run
    checkpoint = tmp_path / "model.ckpt"
    saved = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    saved["hyper_parameters"]["data"]["root"] = str(tmp_path / "gone")
    torch.save(saved, checkpoint)
    moved = cli("evaluate", "segmentation", "--ckpt", checkpoint, "--no-progress", cwd=tmp_path)
    assert moved.returncode == 1 and moved.stdout == ""
    assert f"is not at {tmp_path / 'gone'}" in moved.stderr and "pass --root" in moved.stderr
    assert not (tmp_path / "gone").exists()
    found = cli("evaluate", "segmentation", "--ckpt", checkpoint, "--root", tmp / "data", "--no-progress")
    assert found.returncode == 0, found.stderr[-2000:]
    assert json.loads(found.stdout)["accuracy"] == pytest.approx(summary["accuracy"], abs=1e-5)


def test_evaluate_writes_next_to_the_checkpoint_never_over_training_outputs(segmentation_run, tmp_path):
    tmp, out, summary = segmentation_run
    training_files = {p: p.read_bytes() for p in out.rglob("*")
                      if p.is_file() and not p.name.startswith("evaluation_")}
    ckpt = out / "checkpoints" / "best.ckpt"
    assert main(["evaluate", "segmentation", "--ckpt", str(ckpt), "--no-progress"]) == 0
    written = json.loads((out / "checkpoints" / "evaluation_best.json").read_text())
    assert written["metrics"]["accuracy"] == pytest.approx(summary["accuracy"], abs=1e-5)
    assert written["checkpoint"] == str(ckpt) and written["data"]["root"] == str(tmp / "data")
    # --out at the training folder: its metrics.json keeps the training run's metrics and configuration
    assert main(["evaluate", "segmentation", "--ckpt", str(ckpt), "--out", str(out), "--no-progress"]) == 0
    for path, content in training_files.items():
        assert path.read_bytes() == content, path
    assert (out / "evaluation_best.json").is_file()


@pytest.mark.parametrize("argv, flag", [
    (["evaluate", "segmentation", "--ckpt", "x.ckpt", "--points", "5"], "--points"),
    (["evaluate", "segmentation", "--ckpt", "x.ckpt", "--hidden-channels", "8"], "--hidden-channels"),
    (["evaluate", "regression", "--ckpt", "x.ckpt", "--max-epochs", "3"], "--max-epochs"),
    (["visualize", "--ckpt", "x.ckpt", "--batch-size", "3"], "--batch-size")])
def test_options_that_do_not_apply_to_a_command_are_errors(capsys, argv, flag):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"does not take {flag}" in err


def test_an_error_is_one_line_and_debug_shows_the_traceback(tmp_path):
    """A missing data set (MeshRegression, which has no download) and a missing checkpoint."""
    for argv in (["train", "regression", "--dataset", "mesh", "--root", folder(tmp_path / "nothing"),
                  "--no-progress"],
                 ["evaluate", "segmentation", "--ckpt", tmp_path / "missing.ckpt"]):
        result = cli(*argv, cwd=tmp_path)  # the default --out, runs/regression, is new there
        assert result.returncode == 1 and result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert "Traceback" not in result.stderr and len(lines) == 2, result.stderr
        assert lines[0].startswith("tg-funcattn: error: ") and str(tmp_path) in lines[0]
        assert lines[1] == "(add --debug to see the traceback)"
        debug = cli(*argv, "--debug", cwd=tmp_path)
        assert debug.returncode == 1 and "Traceback" in debug.stderr


@pytest.mark.parametrize("content", [b"", b"\x80", "half"])
def test_a_broken_checkpoint_is_an_error_naming_it(segmentation_run, tmp_path, content):
    _, out, _ = segmentation_run
    if content == "half":
        whole = (out / "checkpoints" / "best.ckpt").read_bytes()
        content = whole[: len(whole) // 2]
    path = tmp_path / "broken.ckpt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"checkpoint {path} .*cannot be read: it is truncated or not a "
                                         "checkpoint.*expected a checkpoint written by tg-funcattn"):
        load_model(path)


def test_train_accuracy_is_logged_per_epoch_as_validation_scores_it(tmp_path):
    """With a learning rate too small to move the weights, the logged training
    accuracy equals the share of training points the checkpoint labels right
    (within each shape's category), computed here shape by shape."""
    from tg_funcattn.training.data import build_data

    out = tmp_path / "run"
    main(["train", "segmentation", *TINY_SEG, "--max-epochs", "1", "--lr", "1e-12", "--root",
          folder(tmp_path / "data"), "--out", str(out), "--no-viz"])
    logged = epoch_losses(out, "train_accuracy")
    config = RunConfig.from_dict(json.loads((out / "metrics.json").read_text())["config"])
    train_set = build_data(config.data, None)[0]
    task, _ = load_task(out / "checkpoints" / "last.ckpt")
    correct = total = 0
    with torch.no_grad():
        for data in train_set:
            data.batch = torch.zeros(data.num_nodes, dtype=torch.long)
            logits = task.model(data.x, data.pos, data.batch, category=data.category.view(-1))
            labels = logits[:, task.part_mask[int(data.category)]].argmax(-1)
            correct += int((task.part_mask[int(data.category)].nonzero().view(-1)[labels] == data.y).sum())
            total += data.num_nodes
    assert len(logged) == 1 and logged[0] == pytest.approx(correct / total, abs=1e-6)


def test_a_second_run_into_the_same_out_is_refused_and_the_first_kept(segmentation_run, tmp_path):
    tmp, out, _ = segmentation_run
    before = {p.name: p.read_bytes() for p in (out / "checkpoints").iterdir()}
    metrics = (out / "metrics.json").read_bytes()
    result = cli("train", "segmentation", *TINY_SEG, "--seed", "1", "--root", folder(tmp / "data"),
                 "--out", out, "--no-viz")
    assert result.returncode == 1 and result.stdout == ""
    assert f"--out {out} already holds a run" in result.stderr
    assert f"--ckpt {out / 'checkpoints' / 'last.ckpt'}" in result.stderr and "fresh --out" in result.stderr
    assert {p.name: p.read_bytes() for p in (out / "checkpoints").iterdir()} == before
    assert (out / "metrics.json").read_bytes() == metrics


def test_a_diverged_run_fails_and_reports_no_scores(tmp_path):
    out = tmp_path / "run"
    result = cli("train", "segmentation", *TINY_SEG, "--lr", "1e30", "--root",
                 folder(tmp_path / "data"), "--out", out, "--no-viz")
    assert result.returncode == 1 and result.stdout == ""
    assert re.search(r"FloatingPointError: the training loss is -?(nan|inf) at epoch 0",
                     result.stderr), result.stderr
    assert "lower the learning rate (--lr, now 1e+30)" in result.stderr and "--precision" in result.stderr
    assert not (out / "metrics.json").exists()


def test_evaluate_refuses_non_finite_weights_and_checkpoints_without_the_network(
        segmentation_run, tmp_path):
    _, out, _ = segmentation_run
    saved = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    name = next(iter(saved["state_dict"]))
    saved["state_dict"][name] = torch.full_like(saved["state_dict"][name], float("nan"))
    torch.save(saved, tmp_path / "nan.ckpt")
    with pytest.raises(ValueError, match=f"parameter {name} holds NaN or infinite values"):
        load_model(tmp_path / "nan.ckpt")
    saved = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    del saved["hyper_parameters"]["net"]
    torch.save(saved, tmp_path / "no_net.ckpt")
    with pytest.raises(ValueError, match=r"has no hyper_parameters\['net'\]"):
        load_model(tmp_path / "no_net.ckpt")


def test_resuming_from_a_pickle_names_the_file_and_never_advises_weights_only_false(
        segmentation_run, tmp_path):
    tmp, _, _ = segmentation_run
    pickled = tmp_path / "pickled.ckpt"
    torch.save({"hyper_parameters": {"net": object()}}, pickled)  # a pickled object
    result = cli("train", "segmentation", *TINY_SEG, "--root", folder(tmp / "data"),
                 "--ckpt", pickled, "--out", tmp_path / "run", "--no-viz")
    assert result.returncode == 1
    assert f"checkpoint {pickled}" in result.stderr and "cannot be read" in result.stderr
    assert "weights_only=False" not in result.stderr
