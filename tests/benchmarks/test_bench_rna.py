"""The RNA benchmark's runs (``benchmarks/bench_rna.py``): a run interrupted
after any epoch and continued with ``--resume`` ends exactly where the
uninterrupted run ends, and the direct evaluation on the vertices is the
model on the mesh itself."""
import json
import shutil
import subprocess
import sys

import pytest
import torch
from helpers import ROOT, copy_sample

sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_rna  # noqa: E402


def _dataset(tmp_path, molecules=5):
    """The RNA sample with its training list grown to ``molecules`` copies."""
    root = copy_sample("rna_surface_segmentation", tmp_path)
    names = []
    for i in range(molecules):
        name = f"{i}XYZ_A"
        shutil.copy(root / "off" / "1ABC_X.off", root / "off" / f"{name}.off")
        shutil.copy(root / "labels" / "1ABC_X.txt", root / "labels" / f"{name}.txt")
        names.append(f"{name}.off")
    (root / "train.txt").write_text("\n".join(names) + "\n")
    return root


def _args(root, tmp_path, *extra):
    return bench_rna.parse_args(["--root", str(root), "--train", "3", "--val", "1", "--points", "48",
                                 "--epochs", "3", "--batch-size", "2", "--out",
                                 str(tmp_path / "table"), *extra])


@pytest.mark.parametrize("row", ["laplacian_init_hks", "funcattn"])
def test_resumed_run_ends_where_the_uninterrupted_run_ends(tmp_path, monkeypatch, row):
    root = _dataset(tmp_path)
    whole = bench_rna.train_one(row, 0, _args(root, tmp_path, "--checkpoints",
                                              str(tmp_path / "a")))
    assert len(whole["losses"]) == len(whole["val_curve"]) == 3

    evaluate, calls = bench_rna.evaluate, []

    def interrupted(*args, **kwargs):  # the process dies after the second epoch's checkpoint
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(bench_rna, "evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bench_rna.train_one(row, 0, _args(root, tmp_path, "--checkpoints", str(tmp_path / "b")))
    monkeypatch.setattr(bench_rna, "evaluate", evaluate)
    resumed = bench_rna.train_one(row, 0, _args(root, tmp_path, "--checkpoints",
                                                str(tmp_path / "b"), "--resume"))
    for key in ("losses", "val_curve", "val_points", "test_points", "test_vertices",
                "test_vertices_direct"):
        assert resumed[key] == whole[key], key


def test_checkpoint_of_another_table_is_refused(tmp_path):
    root = _dataset(tmp_path)
    checkpoints = str(tmp_path / "c")
    bench_rna.train_one("funcattn", 0, _args(root, tmp_path, "--checkpoints", checkpoints))
    args = _args(root, tmp_path, "--checkpoints", checkpoints, "--resume", "--lr", "1e-3")
    with pytest.raises(SystemExit, match="belongs to another table"):
        bench_rna.train_one("funcattn", 0, args)


def test_direct_evaluation_runs_the_model_on_the_vertices(tmp_path):
    """OnVertices hands the model the mesh's vertices, their lumped areas and
    the eigenbasis at the vertices, rotated, so that the model's accuracy
    there is that of a direct call on the rotated mesh."""
    root = _dataset(tmp_path)
    args = _args(root, tmp_path)
    _, _, test = bench_rna.load_splits(args, with_basis=True, with_hks=True)
    torch.manual_seed(0)
    model = bench_rna.ROWS["laplacian_init_hks"][1]().eval()
    accuracy = bench_rna.evaluate(model, "funcattn", bench_rna.OnVertices(test, seed=2), 2, "cpu",
                                  transfer=False)[0]
    mesh = test[0]
    data = bench_rna.OnVertices(test, seed=2)[0]
    assert torch.equal(data.mass, mesh.mass) and torch.equal(data.evecs, mesh.evecs)
    assert torch.allclose(data.pos.norm(dim=1), mesh.pos.norm(dim=1), atol=1e-6)  # a rotation
    assert not torch.allclose(data.pos, mesh.pos)
    with torch.no_grad():
        pred = model(mesh.hks, data.pos, mass=mesh.mass, basis=mesh.evecs).argmax(-1)
    assert accuracy == pytest.approx(float((pred == mesh.y).float().mean()))


def test_the_table_is_built_row_by_row(tmp_path):
    """Every finished run is in the table at once; a later ``--resume`` with
    other rows adds them and keeps the earlier ones; unfinished runs are named."""
    root = _dataset(tmp_path)
    base = [sys.executable, str(ROOT / "benchmarks" / "bench_rna.py"), "--root", str(root),
            "--train", "3", "--val", "1", "--points", "48", "--epochs", "2", "--batch-size", "2",
            "--jobs", "1", "--out", str(tmp_path / "table"), "--checkpoints", str(tmp_path / "ck")]
    for extra in (["--rows", "funcattn", "--seeds", "0"],
                  ["--rows", "laplacian_init_hks", "--seeds", "0", "--resume"]):
        subprocess.run(base + extra, check=True, capture_output=True, cwd=ROOT)
    table = json.loads((tmp_path / "table.json").read_text())
    assert [r["name"] for r in table["rows"]] == ["funcattn", "laplacian_init_hks"]
    assert [(r["row"], r["seed"]) for r in table["runs"]] == [("funcattn", 0),
                                                             ("laplacian_init_hks", 0)]
    report = (tmp_path / "table.md").read_text()
    assert "Runs not finished yet" not in report and "Rows of the full table not run here" in report
    # a second seed asked for but not run (another table's settings would start afresh)
    subprocess.run(base + ["--rows", "funcattn", "--seeds", "1", "--resume", "--epochs", "2"],
                   check=True, capture_output=True, cwd=ROOT)
    table = json.loads((tmp_path / "table.json").read_text())
    assert [(r["row"], r["seed"]) for r in table["runs"]] == [
        ("funcattn", 0), ("funcattn", 1), ("laplacian_init_hks", 0)]
    assert "Runs not finished yet: FuncAttnNet, basis=laplacian_init, input: HKS (16 times) " \
           "instead of xyz (seed 1)" in (tmp_path / "table.md").read_text()
