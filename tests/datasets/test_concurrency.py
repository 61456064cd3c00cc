"""Several processes making the same dataset at once, and runs killed midway: real processes, started together, into one root."""
import inspect
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from helpers import requires

import tg_funcattn.datasets._readers as dio
from tg_funcattn._files import STALE_AFTER, owner_tag, remove_stale
from tg_funcattn.datasets import SyntheticParts

#: tiny datasets: 4 categories x 4 shapes of about 64 points; 4 shapes at 2 levels
PARTS = dict(split="trainval", num_train=2, num_val=1, num_test=1, num_points=64)
MESHES = dict(level=2, split="train", levels=(1, 2), num_shapes=4, seed=1)

#: a process that makes a dataset and saves its examples; argv: root, kind,
#: folder for its files, what to hang in (or "none")
WORKER = r'''
import os, sys, time
from pathlib import Path

root, kind, folder, hang = sys.argv[1:5]
folder = Path(folder)
import torch
import tg_funcattn.datasets.synthetic_parts as parts
from tg_funcattn.datasets import MeshOperatorRegression, SyntheticParts

if hang == "generation":  # stops for good after the first shape file is written
    real, calls = parts.sample_shape, []
    def sample_shape(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            time.sleep(3600)
        return real(*args, **kwargs)
    parts.sample_shape = sample_shape
elif hang == "processing":  # stops for good in the middle of writing a processed file
    def save(obj, f, *args, **kwargs):
        f.write(b"partial")
        f.flush()
        time.sleep(3600)
    torch.save = save
(folder / "ready").touch()
while not (folder.parent / "go").exists():
    time.sleep(0.005)
if kind == "parts":
    data = SyntheticParts(root, **PARTS)
else:
    data = MeshOperatorRegression(root, **MESHES)
torch.save(tensors(data), folder / "examples.pt")
'''

needs_mesh = requires("trimesh", "potpourri3d")


def tensors(dataset):
    """The tensors of each example of ``dataset``."""
    return [{k: v for k, v in example.to_dict().items() if torch.is_tensor(v)} for example in dataset]


#: the worker processes of the running test
STARTED = []


@pytest.fixture(autouse=True)
def _no_worker_outlives_its_test():
    yield
    for worker in STARTED:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    STARTED.clear()


def start(tmp_path: Path, root: Path, kind: str, count: int, hang: str = "none"):
    """``count`` worker processes, started together once all have imported the
    library; returns them with their folders."""
    script = tmp_path / "worker.py"
    script.write_text(f"PARTS = {PARTS!r}\nMESHES = {MESHES!r}\n{inspect.getsource(tensors)}{WORKER}")
    (tmp_path / "workers").mkdir(exist_ok=True)
    (tmp_path / "workers" / "go").unlink(missing_ok=True)
    folders = [Path(tempfile.mkdtemp(dir=tmp_path / "workers")) for _ in range(count)]
    workers = []
    for folder in folders:
        workers.append(subprocess.Popen([sys.executable, str(script), str(root), kind, str(folder), hang],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    STARTED.extend(workers)
    deadline = time.monotonic() + 120
    while not all((f / "ready").exists() for f in folders):
        assert all(w.poll() is None for w in workers), [w.communicate()[1] for w in workers]
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.01)
    (tmp_path / "workers" / "go").touch()
    return workers, folders


def leftovers(root: Path):
    """What killed runs leave: staging folders and temporary files."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name.startswith(".generating-") or p.name.endswith(".tmp"))


def examples_of(folder: Path):
    return torch.load(folder / "examples.pt", weights_only=True)


def assert_same(a, b):
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


@pytest.mark.parametrize("kind", ["parts", pytest.param("mesh", marks=needs_mesh)])
@pytest.mark.parametrize("count", [2, 4])
def test_processes_making_the_same_dataset_at_once_all_succeed(tmp_path, kind, count):
    root = tmp_path / "root"
    workers, folders = start(tmp_path, root, kind, count)
    errors = [w.communicate(timeout=300)[1] for w in workers]
    assert [w.returncode for w in workers] == [0] * count, "\n".join(errors)
    first = examples_of(folders[0])
    for folder in folders[1:]:
        assert_same(examples_of(folder), first)
    assert leftovers(root) == []
    assert len(list(root.glob("raw_*"))) == 1


def kill_when(worker, condition):
    """Kills ``worker`` with SIGKILL once ``condition()`` holds."""
    deadline = time.monotonic() + 120
    while not condition():
        assert worker.poll() is None, worker.communicate()[1]
        assert time.monotonic() < deadline, "the worker never got there"
        time.sleep(0.01)
    os.kill(worker.pid, signal.SIGKILL)
    worker.communicate()  # reaped: its pid no longer exists
    assert worker.returncode == -signal.SIGKILL


@pytest.mark.parametrize("hang", ["generation", "processing"])
def test_a_run_killed_midway_is_recovered_by_the_next(tmp_path, hang):
    root = tmp_path / "root"
    (worker,), _ = start(tmp_path, root, "parts", 1, hang)
    if hang == "generation":
        kill_when(worker, lambda: any(root.glob(".generating-*/*/*.txt")))
        assert [p.name for p in root.iterdir()][0].startswith(".generating-")
    else:
        kill_when(worker, lambda: any(root.glob("processed/*.tmp")))
    assert leftovers(root)
    recovered = SyntheticParts(root, **PARTS)
    assert leftovers(root) == []
    assert_same(tensors(recovered), tensors(SyntheticParts(tmp_path / "fresh", **PARTS)))


def test_only_certainly_abandoned_leftovers_are_removed(tmp_path):
    """Those of a process of this host that no longer exists, or older than
    STALE_AFTER; never those of a live writer, here or on another host."""
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    host = owner_tag().split("@")[1]
    names = {"dead": f"{gone.pid}@{host}", "live": owner_tag(), "elsewhere": f"{gone.pid}@other-host"}
    for label, owner in names.items():
        (tmp_path / f".generating-{owner}.abc_12").mkdir()
        (tmp_path / f"train.pt.{owner}.xyz_34.tmp").write_bytes(b"partial")
    old = tmp_path / ".generating-old.abc_12"  # a name without its writer
    old.mkdir()
    os.utime(old, (time.time() - STALE_AFTER - 60,) * 2)
    remove_stale(tmp_path, ".generating-*")
    remove_stale(tmp_path, "*.tmp")
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == sorted([f".generating-{names['live']}.abc_12", f"train.pt.{names['live']}.xyz_34.tmp",
                           f".generating-{names['elsewhere']}.abc_12",
                           f"train.pt.{names['elsewhere']}.xyz_34.tmp"])


def test_a_foreign_folder_in_place_of_the_generated_one_is_kept(tmp_path):
    settings = {"seed": 0}
    first = dio.generated_raw_folder(tmp_path, settings, lambda d: (d / "data.txt").write_text("x"))
    (first / "generator.json").unlink()  # not something this code leaves: a folder of someone else
    with pytest.raises(FileExistsError, match=f"{first} exists but has no generator.json"):
        dio.generated_raw_folder(tmp_path, settings, lambda d: (d / "data.txt").write_text("y"))
    assert (first / "data.txt").read_text() == "x" and leftovers(tmp_path) == []
