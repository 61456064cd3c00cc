"""Accuracy on real data: RNA surface segmentation (Poulenard et al. 2019), every
model under one protocol and one budget.

    python benchmarks/bench_rna.py --root ~/data/rna              # the CPU table
    python benchmarks/bench_rna.py --root ~/data/rna --rows funcattn,physics --seeds 0
    python benchmarks/bench_rna.py --root ~/data/rna --full --device cuda   # the paper's budget

The data is the public repository ``nmwsharp/RNA-Surface-Segmentation-Dataset``
(683 molecular-surface meshes, about 15k vertices each, 260 classes); clone it
anywhere outside this repository and pass its folder as ``--root``.

Protocol (the same for every row):

* Splits: the official ``test.txt`` (136 molecules) is the test set; from the
  official ``train.txt`` (547) a fixed shuffle holds out ``--val`` molecules
  for validation and trains on the next ``--train`` ones (all the others with
  ``--full``).  Nothing is chosen on the test set: configurations are compared
  on validation accuracy.
* Input: xyz only.  Meshes are centred and scaled into the unit sphere;
  every access samples ``--points`` points uniformly by area
  (:class:`~tg_funcattn.transforms.SampleMeshPoints`) and rotates them by a
  uniform random rotation (:class:`~tg_funcattn.transforms.RandomRotation`).
  Validation and test molecules get one fixed sample and one fixed rotation
  each (seeded by their index), the same for every model and seed.
* Scores: accuracy on the sampled points (the paper's point-cloud protocol)
  and transferred to every original mesh vertex by its nearest sampled point
  (the dataset's and DiffusionNet's protocol).
* Optimiser: AdamW, ``--lr``, weight decay ``--weight-decay``, a linear
  warm-up over 10% of the steps then cosine decay, ``--batch-size`` molecules
  per step, ``--epochs`` epochs; the scores are those of the last epoch.
* Seeds: every row is trained with each of ``--seeds`` (initialisation,
  training samples and order); the table gives the mean and the spread
  (half the range) over seeds.
* Plateau: every model first learns what a point's own position tells
  (its distance from the centre, since the rotations hide the rest), a
  training loss near 3.3; the "escape" column is the first epoch (from 1)
  whose mean training loss is 20% below that of epoch 3 (``-`` if never).

Rows needing Laplacian eigenbases (``basis_type="laplacian_init"``) compute them
on the meshes once (:class:`~tg_funcattn.transforms.LaplacianEigenbasis`
with an on-disk cache, ``--eigen-cache``) and interpolate them to the
sampled points, with the eigenvectors' deterministic signs (``--sign-flip``
flips them at random in training); the precompute time is reported
separately.

Rows (``--rows``): ``funcattn`` (FuncAttnNet with its defaults, learned
basis), ``laplacian_init`` (the same with the meshes' eigenbases), its
initialisation and head variants, ``edgeconv`` and ``point_transformer``
(``laplacian_init`` plus a local branch over a kNN graph), ``funcattn_hks`` and
``laplacian_init_hks`` (the heat kernel signature at 16 times as the only
input, intrinsic: no positions, no rotation to learn; ``edgeconv_hks`` with
the EdgeConv branch, whose kNN graph still comes from the positions), ``paper_preset`` (the authors' model,
``FuncAttnNet.from_preset("paper_rna")``) under this protocol and
``paper_preset_recipe`` under the authors' own optimiser settings, and peers
of the same width, depth, heads and bases: ``physics`` (Transolver-style
physics attention), ``dgcnn`` and ``pointnet2`` (``peers.py``).  ``--set
key=value,...`` changes FuncAttnNet settings of every FuncAttnNet row but
the presets.

Runs are independent processes, ``--jobs`` at a time with
``torch.set_num_threads(--threads)`` each (times are comparable within a
table, not across machines).  Writes ``benchmarks/results/bench_rna{_full}.md``
and ``.json``; ``--resume`` reuses the runs of an interrupted table.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F
from torch_geometric.data import Data

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine, write_results  # noqa: E402
from peers import DGCNN, PeerNet, PointNet2  # noqa: E402

from tg_funcattn._files import atomic_write  # noqa: E402
from tg_funcattn.datasets import NUM_RNA_CLASSES, RNASurfaceSegmentation  # noqa: E402
from tg_funcattn.nn import FuncAttnNet  # noqa: E402
from tg_funcattn.training.config import RECIPES  # noqa: E402
from tg_funcattn.training.data import HKS_TIMES, rna_validation_split  # noqa: E402
from tg_funcattn.transforms import (HeatKernelSignature, LaplacianEigenbasis,  # noqa: E402
                                    NormalizeMesh, RandomEigenvectorSignFlip, RandomRotation,
                                    SampleMeshPoints, transfer_to_vertices)

WIDTH, LAYERS, HEADS, BASES = 128, 4, 8, 32
EIGEN_K = 64
#: kNN neighbours of the local branches and of DGCNN, half of FuncAttnNet's
#: (16) and DGCNN's (20) defaults (``--full`` keeps these too)
LOCAL_K, DGCNN_K = 8, 10


#: FuncAttnNet settings given with ``--set`` (they apply to every FuncAttnNet row
#: but the presets)
OVERRIDES = {}


def _funcattn(in_channels=0, **kw):
    settings = dict(hidden_channels=WIDTH, num_layers=LAYERS, heads=HEADS, num_bases=BASES)
    settings.update(kw)
    return lambda: FuncAttnNet(in_channels, out_channels=NUM_RNA_CLASSES,
                               **{**settings, **OVERRIDES})


def parse_overrides(text):
    """``"num_bases=32,dropout=0.1"`` -> ``{"num_bases": 32, "dropout": 0.1}``."""
    result = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value pairs, got {item!r}")
        try:
            result[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            result[key.strip()] = value.strip()
    return result


#: The paper's training recipe (``RECIPES["paper_rna"]``) without its budget: Adam,
#: one-cycle schedule stepped per epoch, one molecule per step.
PAPER_RECIPE = {key: value for key, value in RECIPES["paper_rna"].items()
                if key in ("optimizer", "lr", "weight_decay", "schedule", "batch_size")}

#: name -> (label, model factory, kind of forward call[, recipe replacing the
#: bench's optimiser settings])
ROWS = {
    "funcattn": ("FuncAttnNet", _funcattn(), "funcattn"),
    "laplacian_init": ("FuncAttnNet, basis=laplacian_init", _funcattn(basis_type="laplacian_init"),
                       "funcattn"),
    "laplacian_init_mlp_head": ("FuncAttnNet, basis=laplacian_init, head=mlp",
                                _funcattn(basis_type="laplacian_init", head="mlp"), "funcattn"),
    "laplacian_init_trunc_normal": ("FuncAttnNet, basis=laplacian_init, init=trunc_normal",
                                    _funcattn(basis_type="laplacian_init", init="trunc_normal"),
                                    "funcattn"),
    "laplacian_init_trunc_normal_mlp_head": (
        "FuncAttnNet, basis=laplacian_init, init=trunc_normal, head=mlp",
        _funcattn(basis_type="laplacian_init", init="trunc_normal", head="mlp"), "funcattn"),
    "funcattn_hks": (f"FuncAttnNet, input: HKS ({HKS_TIMES} times) instead of xyz",
                     _funcattn(HKS_TIMES, pos_channels=0), "funcattn"),
    "laplacian_init_hks": (f"FuncAttnNet, basis=laplacian_init, input: HKS ({HKS_TIMES} times) "
                           "instead of xyz",
                           _funcattn(HKS_TIMES, pos_channels=0, basis_type="laplacian_init"),
                           "funcattn"),
    "edgeconv_hks": (f"FuncAttnNet, basis=laplacian_init + edgeconv (k={LOCAL_K}), input: HKS "
                     f"({HKS_TIMES} times) instead of xyz",
                     _funcattn(HKS_TIMES, pos_channels=0, basis_type="laplacian_init",
                               local="edgeconv", k=LOCAL_K), "funcattn"),
    "edgeconv": (f"FuncAttnNet, basis=laplacian_init + edgeconv (k={LOCAL_K})",
                 _funcattn(basis_type="laplacian_init", local="edgeconv", k=LOCAL_K),
                 "funcattn"),
    "point_transformer": (f"FuncAttnNet, basis=laplacian_init + point_transformer (k={LOCAL_K})",
                          _funcattn(basis_type="laplacian_init", local="point_transformer",
                                    k=LOCAL_K),
                          "funcattn"),
    "paper_preset": ("paper preset (paper_rna)",
                     lambda: FuncAttnNet.from_preset("paper_rna", 0, NUM_RNA_CLASSES), "funcattn"),
    "paper_preset_recipe": ("paper preset, the paper's recipe (Adam 1e-3, one-cycle, batch 1)",
                            lambda: FuncAttnNet.from_preset("paper_rna", 0, NUM_RNA_CLASSES),
                            "funcattn", PAPER_RECIPE),
    "physics": ("physics attention (Transolver-style)",
                lambda: PeerNet("physics", 3, WIDTH, NUM_RNA_CLASSES, LAYERS, HEADS, BASES), "peer"),
    "dgcnn": (f"DGCNN (EdgeConv, k={DGCNN_K})", lambda: DGCNN(0, WIDTH, NUM_RNA_CLASSES, k=DGCNN_K),
              "dense"),
    "pointnet2": ("PointNet++ (PyG example)", lambda: PointNet2(0, NUM_RNA_CLASSES), "dense"),
}
#: cheap rows first, so that an interrupted table (``--resume``) has them
DEFAULT_ROWS = ["funcattn", "laplacian_init", "laplacian_init_mlp_head", "laplacian_init_trunc_normal",
                "laplacian_init_trunc_normal_mlp_head", "paper_preset", "paper_preset_recipe",
                "physics", "pointnet2", "dgcnn", "edgeconv", "point_transformer", "funcattn_hks",
                "laplacian_init_hks", "edgeconv_hks"]


def needs_hks(name):
    """The row reads heat kernel signatures (from the eigenpairs) instead of positions."""
    return name.endswith("_hks")


def needs_basis(name):
    return "laplacian_init" in ROWS[name][0] or needs_hks(name)


# ------------------------------------------------------------------------ data
class Sampled(torch.utils.data.Dataset):
    """Meshes -> rotated point samples: fresh every access, or fixed per index
    (``seed``) for validation and test."""

    def __init__(self, meshes, points, seed=None, sign_flip=False):
        self.meshes, self.points, self.seed, self.sign_flip = meshes, points, seed, sign_flip

    def __len__(self):
        return len(self.meshes)

    def __getitem__(self, i):
        generator = None if self.seed is None else torch.Generator().manual_seed(
            self.seed * 1_000_003 + i)
        mesh = self.meshes[i]  # a shallow copy: the transforms replace attributes, never edit them
        data = Data(**{key: mesh[key] for key in ("pos", "face", "y", "evecs", "hks")
                       if key in mesh})
        data = SampleMeshPoints(self.points, keep_mesh=True, generator=generator)(data)
        data = RandomRotation(generator=generator)(data)
        if "evecs" in data and self.seed is None and self.sign_flip:
            data = RandomEigenvectorSignFlip()(data)
        return data


def load_splits(args, with_basis, with_hks=False):
    steps = [NormalizeMesh("sphere")]
    if with_basis:
        steps.append(LaplacianEigenbasis(EIGEN_K, cache_dir=args.eigen_cache))
    from torch_geometric.transforms import Compose

    pre = Compose(steps)
    train = RNASurfaceSegmentation(args.root, "train", pre_transform=pre)
    test = RNASurfaceSegmentation(args.root, "test", pre_transform=pre)
    val_ids, rest = (ids.tolist() for ids in rna_validation_split(len(train), args.val / len(train)))
    train_ids = rest if args.full else rest[:args.train]
    # the signature from the cached eigenpairs, on the meshes (SampleMeshPoints carries it)
    hks = HeatKernelSignature(HKS_TIMES) if with_hks else (lambda data: data)
    return ([hks(train[i]) for i in train_ids], [hks(train[i]) for i in val_ids],
            [hks(test[i]) for i in range(len(test))])


# ----------------------------------------------------------------------- model
def forward(model, kind, data):
    if kind == "funcattn":
        basis = data.evecs if model.uses_eigenbasis else None
        return model(data.hks if model.in_channels else None, data.pos, data.batch,
                     batch_size=data.num_graphs, mass=data.mass if basis is not None else None,
                     basis=basis)
    if kind == "peer":
        return model(None, data.pos, batch_size=data.num_graphs)
    return model(None, data.pos, data.num_graphs)


def evaluate(model, kind, dataset, batch_size, device):
    from torch_geometric.loader import DataLoader

    model.eval()
    correct = count = v_correct = v_count = 0
    with torch.no_grad():
        for data in DataLoader(dataset, batch_size=batch_size):
            data = data.to(device)
            pred = forward(model, kind, data).argmax(-1)
            correct += int((pred == data.y).sum())
            count += data.y.numel()
            for g in range(data.num_graphs):
                example = data.get_example(g)
                on_vertices = transfer_to_vertices(pred[data.batch == g], example.pos,
                                                   example.mesh_pos)
                v_correct += int((on_vertices == example.mesh_y).sum())
                v_count += example.mesh_y.numel()
    return correct / count, v_correct / v_count


def train_one(name, seed, args):
    """One (row, seed): train, then score on validation and test."""
    from torch_geometric.loader import DataLoader

    torch.set_num_threads(args.threads)
    label, make, kind, *override = ROWS[name]
    recipe = dict(optimizer="adamw", lr=args.lr, weight_decay=args.weight_decay, schedule="cosine",
                  batch_size=args.batch_size)
    recipe.update(*override)
    train, val, test = load_splits(args, needs_basis(name), needs_hks(name))
    torch.manual_seed(seed)
    device = torch.device(args.device)
    model = make().to(device)
    loader = DataLoader(Sampled(train, args.points, sign_flip=args.sign_flip),
                        batch_size=recipe["batch_size"], shuffle=True)
    optimizer, schedule, per_epoch = make_optimizer(model, recipe, args.epochs, len(loader))
    losses = []
    start = time.time()
    for _ in range(args.epochs):
        model.train()
        loss_sum = 0.0
        for data in loader:
            data = data.to(device)
            optimizer.zero_grad()
            loss = F.cross_entropy(forward(model, kind, data), data.y)
            loss.backward()
            optimizer.step()
            if not per_epoch:
                schedule.step()
            loss_sum += float(loss.detach()) * data.num_graphs
        if per_epoch:
            schedule.step()
        losses.append(loss_sum / len(train))
        print(f"{name} seed {seed} epoch {len(losses)} loss {losses[-1]:.3f} "
              f"{time.time() - start:.0f}s", file=sys.stderr, flush=True)
    train_s = time.time() - start
    val_points, _ = evaluate(model, kind, Sampled(val, args.points, seed=1), args.batch_size, device)
    test_points, test_vertices = evaluate(model, kind, Sampled(test, args.points, seed=2),
                                          args.batch_size, device)
    return {"row": name, "seed": seed, "parameters": sum(p.numel() for p in model.parameters()),
            "losses": losses, "escape_epoch": escape_epoch(losses), "train_s": train_s,
            "val_points": val_points, "test_points": test_points, "test_vertices": test_vertices}


def make_optimizer(model, recipe, epochs, steps_per_epoch):
    """``(optimizer, schedule, stepped_per_epoch)`` of a recipe: AdamW or Adam;
    ``cosine`` (linear warm-up over 10% of the steps, then cosine decay, per
    step) or ``onecycle`` (PyTorch's OneCycleLR stepped once per epoch, as the
    authors train)."""
    make = torch.optim.AdamW if recipe["optimizer"] == "adamw" else torch.optim.Adam
    optimizer = make(model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    if recipe["schedule"] == "onecycle":
        return optimizer, torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=recipe["lr"], total_steps=max(2, epochs), pct_start=0.3,
            final_div_factor=1000), True
    total = epochs * steps_per_epoch
    warmup = max(1, total // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: (
        (step + 1) / warmup if step < warmup else
        0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))))
    return optimizer, schedule, False


def escape_epoch(losses, reference_epoch=3, drop=0.2):
    """First epoch (from 1) whose loss is ``drop`` below that of ``reference_epoch``."""
    if len(losses) < reference_epoch:
        return None
    threshold = (1 - drop) * losses[reference_epoch - 1]
    return next((e + 1 for e, loss in enumerate(losses) if loss <= threshold), None)


def precompute_seconds(args, count=8):
    """Seconds per mesh of the eigenbasis precompute (normalise, clean, cotangent
    Laplacian, ``EIGEN_K`` eigenpairs), measured without the cache on the
    first ``count`` test meshes."""
    torch.set_num_threads(args.threads)
    meshes = RNASurfaceSegmentation(args.root, "test")
    transform = LaplacianEigenbasis(EIGEN_K)
    start = time.time()
    for i in range(count):
        m = meshes[i]
        transform(NormalizeMesh("sphere")(Data(pos=m.pos, face=m.face)))
    return (time.time() - start) / count


# ------------------------------------------------------------------------ table
def _stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return sum(values) / len(values), (max(values) - min(values)) / 2


def render(result):
    rows = result["rows"]
    first = rows[0]["name"]
    base_time = _stats([r["train_s"] for r in result["runs"] if r["row"] == first])[0]
    a = result["args"]
    budget = (f"{a['train_molecules']} training molecules, {a['points']} points, {a['epochs']} epochs, "
              f"batch {a['batch_size']}, AdamW lr {a['lr']:g} (10% warm-up, cosine), weight decay "
              f"{a['weight_decay']:g}; validation {a['val']} molecules, test 136 (official list); "
              f"seeds {', '.join(str(s) for s in a['seeds'])}; eigenvector signs "
              + ("flipped at random in training" if a.get("sign_flip") else
                 "as computed (largest entry positive), no flips"))
    if a.get("set"):
        budget += "; FuncAttnNet rows with " + ", ".join(f"{k}={v}" for k, v in a["set"].items())
    lines = [f"Machine: {result['machine']}; {a['jobs']} runs at a time, {a['threads']} thread(s) each.",
             f"Budget: {budget}.", "",
             "| model | parameters | val acc. (points) | test acc. (points) | test acc. (vertices) "
             "| escape epoch | last train loss | train time |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        runs = [r for r in result["runs"] if r["row"] == row["name"]]
        if not runs:
            continue

        def cell(key):
            mean, spread = _stats([r[key] for r in runs])
            return f"{100 * mean:.1f} ± {100 * spread:.1f}"

        escapes = ", ".join("-" if r["escape_epoch"] is None else str(r["escape_epoch"])
                            for r in sorted(runs, key=lambda r: r["seed"]))
        t = _stats([r["train_s"] for r in runs])[0]
        loss, loss_spread = _stats([r["losses"][-1] for r in runs])
        lines.append(f"| {row['label']} | {runs[0]['parameters']:,} | {cell('val_points')} | "
                     f"{cell('test_points')} | {cell('test_vertices')} | {escapes} | "
                     f"{loss:.2f} ± {loss_spread:.2f} | {t / base_time:.2f}x ({t / 60:.1f} min) |")
    lines.append("")
    lines.append("Accuracies in %, mean ± half the range over seeds; escape epoch per seed (first "
                 "epoch with a training loss 20% below epoch 3's; - never; a model still far above "
                 "the plateau at epoch 3 can 'escape' onto it, so read it with the last training "
                 "loss: the position-only plateau is about 3.3); train time relative to the first "
                 "row, mean over seeds.")
    missing = [ROWS[name][0] for name in DEFAULT_ROWS
               if not any(r["row"] == name for r in result["runs"])]
    if missing:
        lines.append("Rows of the full table not run here: " + "; ".join(missing) + ".")
    if result.get("eigen_seconds_per_mesh") is not None:
        n = a["train_molecules"] + a["val"] + 136
        per = result["eigen_seconds_per_mesh"]
        lines.append(f"Eigenbasis precompute (rows with basis=laplacian_init, k={EIGEN_K}, once, "
                     f"cached): {per:.1f} s per mesh, about {per * n / 60:.0f} min for the {n} meshes "
                     "used, not included in the train time.")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------- main
def settings(args):
    """What makes two tables comparable (everything but the seeds and rows)."""
    return {"train_molecules": 547 - args.val if args.full else args.train, "val": args.val,
            "points": args.points, "epochs": args.epochs, "batch_size": args.batch_size,
            "lr": args.lr, "weight_decay": args.weight_decay, "jobs": args.jobs,
            "threads": args.threads, "device": args.device, "sign_flip": args.sign_flip,
            "set": OVERRIDES}


def write_atomic(path, text):
    atomic_write(path, lambda f: f.write(text.encode()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True,
                        help="clone of nmwsharp/RNA-Surface-Segmentation-Dataset (off/, labels/, "
                             "train.txt, test.txt)")
    parser.add_argument("--rows", default=",".join(DEFAULT_ROWS),
                        help=f"comma-separated rows of {list(ROWS)}")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--train", type=int, default=256, help="training molecules")
    parser.add_argument("--val", type=int, default=64, help="validation molecules held out of train")
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--full", action="store_true",
                        help="the paper's budget: every training molecule, 4096 points, 200 epochs")
    parser.add_argument("--set", default="",
                        help="FuncAttnNet settings for every FuncAttnNet row but the presets, "
                             "e.g. num_bases=32,dropout=0.1 (write the table elsewhere with --out)")
    parser.add_argument("--sign-flip", action="store_true",
                        help="flip the eigenvectors' signs at random in training "
                             "(RandomEigenvectorSignFlip; default: their deterministic signs)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--eigen-cache", default=None,
                        help="eigenbasis cache folder (default: <root>/eigen_cache)")
    parser.add_argument("--resume", action="store_true", help="reuse the runs of an interrupted table")
    parser.add_argument("--out", default=None, help="output path without extension")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # internal: one run per process
    args = parser.parse_args()
    if args.full:
        args.points, args.epochs = 4096, 200
    args.eigen_cache = args.eigen_cache or os.path.join(args.root, "eigen_cache")
    OVERRIDES.update(parse_overrides(args.set))
    if args.one:
        print(json.dumps(train_one(args.one[0], int(args.one[1]), args)), flush=True)
        return
    torch.set_num_threads(args.threads)
    rows = [r for r in args.rows.split(",") if r]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; choose from {list(ROWS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   "bench_rna" + ("_full" if args.full else ""))
    partial = out + ".partial.json"
    done = {}
    if args.resume:  # runs of an interrupted table, and of a finished one with the same settings
        if os.path.exists(out + ".json"):
            with open(out + ".json") as f:
                previous = json.load(f)
            if {k: v for k, v in previous["args"].items() if k != "seeds"} == settings(args):
                done = {(r["row"], r["seed"]): r for r in previous["runs"]}
        if os.path.exists(partial):
            with open(partial) as f:
                done.update({(r["row"], r["seed"]): r for r in json.load(f)})
    if any(needs_basis(r) for r in rows):  # eigenbases of every mesh, once, before the runs
        load_splits(args, with_basis=True)
    forwarded = [a for a in sys.argv[1:] if a != "--resume"]

    def run(key):
        if key in done:
            return done[key]
        cmd = [sys.executable, os.path.abspath(__file__), "--one", key[0], str(key[1])] + forwarded
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"run {key} failed with exit code {proc.returncode}")
        record = json.loads(proc.stdout.strip().splitlines()[-1])
        done[key] = record
        write_atomic(partial, json.dumps(list(done.values())))
        return record

    keys = [(r, s) for r in rows for s in seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        runs = list(pool.map(run, keys))
    result = {"machine": machine(args.device), "args": dict(settings(args), seeds=seeds),
              "rows": [{"name": r, "label": ROWS[r][0]} for r in rows], "runs": runs}
    if any(needs_basis(r) for r in rows):
        result["eigen_seconds_per_mesh"] = precompute_seconds(args)
    report = render(result)
    write_results(out, result, report)
    os.remove(partial)
    print(report)


if __name__ == "__main__":
    main()
