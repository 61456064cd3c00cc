"""Accuracy on real data: RNA surface segmentation (Poulenard et al. 2019), every
model under one protocol and one budget.

    python benchmarks/bench_rna.py --root ~/data/rna              # the quick CPU table
    python benchmarks/bench_rna.py --root ~/data/rna --rows funcattn,physics --seeds 0
    python benchmarks/bench_rna.py --root ~/data/rna --protocol long \
        --rows edgeconv_hks,diffusionnet --diffusion-net ~/data/diffusion-net   # converged
    python benchmarks/bench_rna.py --root ~/data/rna --protocol full --device cuda   # the paper's

The data is the public repository ``nmwsharp/RNA-Surface-Segmentation-Dataset``
(683 molecular-surface meshes, about 15k vertices each, 260 classes); clone it
anywhere outside this repository and pass its folder as ``--root``.

Protocols (``--protocol``; ``--train``, ``--points`` and ``--epochs`` override
the budget):

* ``short`` (the quick check): 256 training molecules, 1,024 points, 15
  epochs.  No curve has flattened by then: it ranks how fast models start.
* ``long`` (converged on this CPU): every training molecule but the
  validation ones (483), 1,024 points, 60 epochs, about 70 minutes for the
  slowest FuncAttnNet row on one thread; the validation curve of every run is
  recorded, so whether it flattened over the last 10% of the epochs is read
  off the table (the ``val change`` column).
* ``full`` (the paper's budget, for a GPU): 483 molecules, 4,096 points,
  200 epochs.

The same for every row:

* Splits: the official ``test.txt`` (136 molecules) is the test set; from the
  official ``train.txt`` (547) a fixed shuffle holds out ``--val`` molecules
  for validation and trains on the next ``--train`` ones (all the others in
  the long and full protocols).  Nothing is chosen on the test set:
  configurations are compared on validation accuracy.
* Input: xyz only.  Meshes are centred and scaled into the unit sphere;
  every access samples ``--points`` points uniformly by area
  (:class:`~tg_funcattn.transforms.SampleMeshPoints`) and rotates them by a
  uniform random rotation (:class:`~tg_funcattn.transforms.RandomRotation`).
  Validation and test molecules get one fixed sample and one fixed rotation
  each (seeded by their index), the same for every model and seed.
* Scores: accuracy on the sampled points (the paper's point-cloud protocol),
  transferred to every original mesh vertex by its nearest sampled point
  (the dataset's and DiffusionNet's protocol), and ``test_vertices_direct``:
  the model run on each test mesh's vertices themselves (the vertices as
  the point set, their lumped areas as the mass, the eigenbasis and the
  signature at the vertices, the same fixed rotation per molecule).  A
  model that is a quadrature of the surface should score there as on the
  samples; the point peers are run the same way (PointNet++'s and DGCNN's
  neighbourhoods then hold denser points than in training).
* Validation accuracy is measured after every epoch (``val_curve``), in a
  forked random state, so that it does not change the training.
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

DiffusionNet (Sharp et al. 2022, the dataset's reference model) is the
authors' implementation, imported from a clone of ``nmwsharp/diffusion-net``
given by ``--diffusion-net`` (never copied here), with its own operators
(cotangent Laplacian, lumped mass, 128 eigenpairs, gradients; cached by its
own code in ``<root>/diffusion_net_ops``) on the full meshes, as in its RNA
experiment: width 128, 4 blocks, dropout, Adam 1e-3 halved every quarter of
the epochs, one molecule per step, scored on the vertices.  ``diffusionnet``
takes the positions under the same random rotations as the other rows,
``diffusionnet_hks`` its own heat kernel signature (16 times).  A step costs
about 8 times a FuncAttnNet step here (15,000 vertices against 1,024
points), so ``--diffusionnet-epochs`` (default: ``--epochs``) can give it
the same time instead of the same epochs; the table says which.

Runs are independent processes, ``--jobs`` at a time with
``torch.set_num_threads(--threads)`` each (times are comparable within a
table, not across machines).  Every run saves a checkpoint after every epoch
(``--checkpoints``, default ``<root>/bench_rna_checkpoints``), and the table,
``benchmarks/results/bench_rna{,_long,_full}.md`` and ``.json``, is written
after every finished run (the missing ones named).  ``--resume`` keeps the
finished runs of a table with the same settings (also of rows not given in
``--rows``: a table is built row by row) and continues the others from their
last epoch, so a table longer than one sitting is built in parts.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import threading
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
#: (16) and DGCNN's (20) defaults (every protocol keeps these)
LOCAL_K, DGCNN_K = 8, 10
#: protocol -> (training molecules, None: all but the validation ones; points; epochs)
PROTOCOLS = {"short": (256, 1024, 15), "long": (None, 1024, 60), "full": (None, 4096, 200)}
#: DiffusionNet's RNA experiment: eigenpairs of its operators, input signature times
DIFFUSIONNET_K_EIG, DIFFUSIONNET_HKS = 128, 16


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

#: DiffusionNet's RNA recipe (Adam 1e-3, halved every 50 of 200 epochs: every
#: quarter of the epochs here, one molecule per step)
DIFFUSIONNET_RECIPE = dict(optimizer="adam", lr=1e-3, weight_decay=0.0, schedule="quarters",
                           batch_size=1)


def diffusion_net():
    """The ``diffusion_net`` package of the clone given by ``--diffusion-net``."""
    import diffusion_net as module  # on sys.path from --diffusion-net

    return module


def _diffusionnet(in_channels):
    return diffusion_net().layers.DiffusionNet(
        C_in=in_channels, C_out=NUM_RNA_CLASSES, C_width=WIDTH, N_block=LAYERS,
        last_activation=lambda x: F.log_softmax(x, dim=-1), outputs_at="vertices", dropout=True)


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
    "diffusionnet": ("DiffusionNet (authors' code), input: xyz, full meshes",
                     lambda: _diffusionnet(3), "diffusionnet", dict(DIFFUSIONNET_RECIPE)),
    "diffusionnet_hks": (f"DiffusionNet (authors' code), input: its HKS ({DIFFUSIONNET_HKS} "
                         "times), full meshes", lambda: _diffusionnet(DIFFUSIONNET_HKS),
                         "diffusionnet", dict(DIFFUSIONNET_RECIPE)),
}
#: cheap rows first, so that an interrupted table (``--resume``) has them
DEFAULT_ROWS = ["funcattn", "laplacian_init", "laplacian_init_mlp_head", "laplacian_init_trunc_normal",
                "laplacian_init_trunc_normal_mlp_head", "paper_preset", "paper_preset_recipe",
                "physics", "pointnet2", "dgcnn", "edgeconv", "point_transformer", "funcattn_hks",
                "laplacian_init_hks", "edgeconv_hks"]
#: the rows of the long protocol's table
LONG_ROWS = ["funcattn_hks", "laplacian_init_hks", "edgeconv_hks", "pointnet2", "diffusionnet_hks",
             "diffusionnet"]


def needs_hks(name):
    """The row reads heat kernel signatures (from the eigenpairs) instead of positions."""
    return name.endswith("_hks")


def needs_basis(name):
    return ROWS[name][2] != "diffusionnet" and ("laplacian_init" in ROWS[name][0] or needs_hks(name))


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


class OnVertices(torch.utils.data.Dataset):
    """Meshes -> their own vertices as the point set (lumped areas as the mass,
    the eigenbasis and signature at the vertices), one fixed rotation per
    index (``seed``)."""

    def __init__(self, meshes, seed):
        self.meshes, self.seed = meshes, seed

    def __len__(self):
        return len(self.meshes)

    def __getitem__(self, i):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        mesh = self.meshes[i]
        data = Data(**{key: mesh[key] for key in ("pos", "y", "evecs", "mass", "hks", "eigen_num_nodes",
                                                  "eigen_extent") if key in mesh})
        return RandomRotation(generator=generator)(data)


class DiffusionNetMeshes(torch.utils.data.Dataset):
    """Meshes -> DiffusionNet's inputs: its normalisation, its operators (from
    its own cache in ``cache_dir``), xyz under a random rotation (fresh, or
    fixed per index with ``seed``) or its heat kernel signature."""

    def __init__(self, meshes, cache_dir, hks, seed=None):
        self.meshes, self.cache_dir, self.hks, self.seed = meshes, cache_dir, hks, seed

    def __len__(self):
        return len(self.meshes)

    def operators(self, i):
        dn = diffusion_net()
        mesh = self.meshes[i]
        verts = dn.geometry.normalize_positions(mesh.pos.float())
        return verts, dn.geometry.get_operators(verts, mesh.face.t().contiguous(),
                                                k_eig=DIFFUSIONNET_K_EIG, op_cache_dir=self.cache_dir)

    def __getitem__(self, i):
        verts, (_, mass, L, evals, evecs, grad_x, grad_y) = self.operators(i)
        if self.hks:
            x = diffusion_net().geometry.compute_hks_autoscale(evals, evecs, DIFFUSIONNET_HKS)
        else:
            generator = None if self.seed is None else torch.Generator().manual_seed(
                self.seed * 1_000_003 + i)
            x = RandomRotation(generator=generator)(Data(pos=verts)).pos
        return dict(x=x, mass=mass, L=L, evals=evals, evecs=evecs, gradX=grad_x, gradY=grad_y,
                    y=self.meshes[i].y)


def load_splits(args, with_basis, with_hks=False):
    steps = [NormalizeMesh("sphere")]
    if with_basis:
        steps.append(LaplacianEigenbasis(EIGEN_K, cache_dir=args.eigen_cache))
    from torch_geometric.transforms import Compose

    pre = Compose(steps)
    train = RNASurfaceSegmentation(args.root, "train", pre_transform=pre)
    test = RNASurfaceSegmentation(args.root, "test", pre_transform=pre)
    val_ids, rest = (ids.tolist() for ids in rna_validation_split(len(train), args.val / len(train)))
    train_ids = rest[:args.train]  # None: all
    # the signature from the cached eigenpairs, on the meshes (SampleMeshPoints carries it)
    hks = HeatKernelSignature(HKS_TIMES) if with_hks else (lambda data: data)
    return ([hks(train[i]) for i in train_ids], [hks(train[i]) for i in val_ids],
            [hks(test[i]) for i in range(len(test))])


# ----------------------------------------------------------------------- model
def forward(model, kind, data):
    if kind == "funcattn":
        basis = data.evecs if model.uses_eigenbasis else None
        return model(data.hks if model.in_channels else None, data.pos, data.batch,
                     batch_size=data.num_graphs, mass=data.mass if "mass" in data else None,
                     basis=basis)
    if kind == "diffusionnet":
        return model(data["x"], data["mass"], L=data["L"], evals=data["evals"], evecs=data["evecs"],
                     gradX=data["gradX"], gradY=data["gradY"])
    if kind == "peer":
        return model(None, data.pos, batch_size=data.num_graphs)
    return model(None, data.pos, data.num_graphs)


def loss_of(kind, out, y):
    # DiffusionNet's last activation is a log-softmax, as in its RNA experiment
    return F.nll_loss(out, y) if kind == "diffusionnet" else F.cross_entropy(out, y)


def loader_of(kind, dataset, batch_size, shuffle=False):
    if kind == "diffusionnet":  # one mesh per step, as DiffusionNet trains
        return torch.utils.data.DataLoader(dataset, batch_size=None, shuffle=shuffle)
    from torch_geometric.loader import DataLoader

    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle)


def to_device(kind, data, device):
    if kind == "diffusionnet":
        return {key: value.to(device) for key, value in data.items()}
    return data.to(device)


@torch.no_grad()
def evaluate(model, kind, dataset, batch_size, device, transfer=True):
    """``(accuracy on the points, accuracy transferred to the mesh vertices)``;
    the second is ``None`` without ``transfer`` (points that are the vertices)."""
    model.eval()
    correct = count = v_correct = v_count = 0
    with torch.random.fork_rng(devices=[]):  # evaluation draws nothing from the training's stream
        for data in loader_of(kind, dataset, batch_size):
            data = to_device(kind, data, device)
            y = data["y"] if kind == "diffusionnet" else data.y
            pred = forward(model, kind, data).argmax(-1)
            correct += int((pred == y).sum())
            count += y.numel()
            if not transfer:
                continue
            for g in range(data.num_graphs):
                example = data.get_example(g)
                on_vertices = transfer_to_vertices(pred[data.batch == g], example.pos,
                                                   example.mesh_pos)
                v_correct += int((on_vertices == example.mesh_y).sum())
                v_count += example.mesh_y.numel()
    return correct / count, (v_correct / v_count if transfer else None)


def checkpoint_path(name, seed, args):
    return os.path.join(args.checkpoints, f"{os.path.basename(args.out)}_{name}_seed{seed}.pt")


def train_one(name, seed, args):
    """One (row, seed): train (from its checkpoint with ``--resume``), saving a
    checkpoint after every epoch, then score on validation and test."""
    torch.set_num_threads(args.threads)
    label, make, kind, *override = ROWS[name]
    recipe = dict(optimizer="adamw", lr=args.lr, weight_decay=args.weight_decay, schedule="cosine",
                  batch_size=args.batch_size)
    recipe.update(*override)
    epochs = args.diffusionnet_epochs if kind == "diffusionnet" else args.epochs
    if kind == "diffusionnet":
        train, val, test = load_splits(args, with_basis=False)
        cache = os.path.join(args.root, "diffusion_net_ops")
        hks = needs_hks(name)
        train_set = DiffusionNetMeshes(train, cache, hks)
        val_set, test_set = (DiffusionNetMeshes(val, cache, hks, seed=1),
                             DiffusionNetMeshes(test, cache, hks, seed=2))
    else:
        train, val, test = load_splits(args, needs_basis(name), needs_hks(name))
        train_set = Sampled(train, args.points, sign_flip=args.sign_flip)
        val_set, test_set = Sampled(val, args.points, seed=1), Sampled(test, args.points, seed=2)
    torch.manual_seed(seed)
    device = torch.device(args.device)
    model = make().to(device)
    loader = loader_of(kind, train_set, recipe["batch_size"], shuffle=True)
    optimizer, schedule, per_epoch = make_optimizer(model, recipe, epochs, len(loader))
    identity = {"row": name, "seed": seed,
                "settings": {k: v for k, v in settings(args).items() if k != "jobs"}}
    state = {"losses": [], "val_curve": [], "train_s": 0.0}
    path = checkpoint_path(name, seed, args)
    if args.resume and os.path.exists(path):
        saved = torch.load(path, weights_only=True)
        if json.loads(saved["identity"]) != identity:
            raise SystemExit(f"{path} belongs to another table ({saved['identity']}); move it or "
                             "run without --resume")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        torch.set_rng_state(saved["rng"])
        state = json.loads(saved["state"])
    while len(state["losses"]) < epochs:
        start = time.time()
        model.train()
        loss_sum = 0.0
        for data in loader:
            data = to_device(kind, data, device)
            y = data["y"] if kind == "diffusionnet" else data.y
            optimizer.zero_grad()
            loss = loss_of(kind, forward(model, kind, data), y)
            loss.backward()
            optimizer.step()
            if not per_epoch:
                schedule.step()
            loss_sum += float(loss.detach()) * (1 if kind == "diffusionnet" else data.num_graphs)
        if per_epoch:
            schedule.step()
        state["train_s"] += time.time() - start
        state["losses"].append(loss_sum / len(train))
        state["val_curve"].append(evaluate(model, kind, val_set, args.batch_size, device,
                                           transfer=False)[0])
        os.makedirs(args.checkpoints, exist_ok=True)
        atomic_write(path, lambda f: torch.save(
            {"identity": json.dumps(identity), "state": json.dumps(state), "model": model.state_dict(),
             "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
             "rng": torch.get_rng_state()}, f))
        print(f"{name} seed {seed} epoch {len(state['losses'])} loss {state['losses'][-1]:.3f} "
              f"val {100 * state['val_curve'][-1]:.1f} {state['train_s']:.0f}s", file=sys.stderr,
              flush=True)
    record = {"row": name, "seed": seed, "epochs": epochs,
              "parameters": sum(p.numel() for p in model.parameters()), "losses": state["losses"],
              "escape_epoch": escape_epoch(state["losses"]), "train_s": state["train_s"],
              "val_curve": state["val_curve"]}
    if kind == "diffusionnet":  # its points are the vertices
        test_vertices = evaluate(model, kind, test_set, 1, device, transfer=False)[0]
        record.update(val_points=None, val_vertices=state["val_curve"][-1], test_points=None,
                      test_vertices=test_vertices, test_vertices_direct=test_vertices)
    else:
        test_points, test_vertices = evaluate(model, kind, test_set, args.batch_size, device)
        direct = evaluate(model, kind, OnVertices(test, seed=2), args.batch_size, device,
                          transfer=False)[0]
        record.update(val_points=state["val_curve"][-1], test_points=test_points,
                      test_vertices=test_vertices, test_vertices_direct=direct)
    return record


def make_optimizer(model, recipe, epochs, steps_per_epoch):
    """``(optimizer, schedule, stepped_per_epoch)`` of a recipe: AdamW or Adam;
    ``cosine`` (linear warm-up over 10% of the steps, then cosine decay, per
    step), ``onecycle`` (PyTorch's OneCycleLR stepped once per epoch, as the
    authors train) or ``quarters`` (halved after every quarter of the epochs,
    as DiffusionNet trains)."""
    make = torch.optim.AdamW if recipe["optimizer"] == "adamw" else torch.optim.Adam
    optimizer = make(model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    if recipe["schedule"] == "onecycle":
        return optimizer, torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=recipe["lr"], total_steps=max(2, epochs), pct_start=0.3,
            final_div_factor=1000), True
    if recipe["schedule"] == "quarters":
        return optimizer, torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=max(1, epochs // 4), gamma=0.5), True
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
    count = min(count, len(meshes))
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
    budget = (f"{a['protocol']} protocol: {a['train_molecules']} training molecules, {a['points']} "
              f"points, {a['epochs']} epochs, batch {a['batch_size']}, AdamW lr {a['lr']:g} (10% "
              f"warm-up, cosine), weight decay {a['weight_decay']:g}; validation {a['val']} "
              "molecules, test 136 (official list); seeds "
              f"{', '.join(str(s) for s in a['seeds'])}; eigenvector signs "
              + ("flipped at random in training" if a.get("sign_flip") else
                 "as computed (largest entry positive), no flips"))
    if a.get("set"):
        budget += "; FuncAttnNet rows with " + ", ".join(f"{k}={v}" for k, v in a["set"].items())
    if any(ROWS[row["name"]][2] == "diffusionnet" for row in rows):
        budget += (f"; DiffusionNet rows: the full meshes, {a['diffusionnet_epochs']} epochs, its "
                   "RNA recipe (Adam 1e-3 halved every quarter of the epochs, batch 1)")
    # tables from before the direct evaluation and the validation curves have neither column
    direct = any("test_vertices_direct" in r for r in result["runs"])
    curves = any(r.get("val_curve") for r in result["runs"])
    header = (["model", "parameters", "val acc.", "test acc. (points)",
               "test acc. (vertices, nearest point)"]
              + ["test acc. (vertices, direct)"] * direct
              + ["val change, last 10% of epochs"] * curves
              + ["escape epoch", "last train loss", "train time"])
    lines = [f"Machine: {result['machine']}; {a['jobs']} runs at a time, {a['threads']} thread(s) each.",
             f"Budget: {budget}.", "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    for row in rows:
        runs = [r for r in result["runs"] if r["row"] == row["name"]]
        if not runs:
            continue

        def cell(key, runs=runs):
            mean, spread = _stats([r.get(key) for r in runs])
            return "-" if mean is None else f"{100 * mean:.1f} ± {100 * spread:.1f}"

        on_vertices = runs[0].get("val_points") is None  # DiffusionNet: validation on the vertices
        val = cell("val_vertices" if on_vertices else "val_points") + (" (vertices)" if on_vertices
                                                                        else "")
        escapes = ", ".join("-" if r["escape_epoch"] is None else str(r["escape_epoch"])
                            for r in sorted(runs, key=lambda r: r["seed"]))
        t = _stats([r["train_s"] for r in runs])[0]
        loss, loss_spread = _stats([r["losses"][-1] for r in runs])
        cells = ([row["label"], f"{runs[0]['parameters']:,}", val, cell("test_points"),
                  cell("test_vertices")] + [cell("test_vertices_direct")] * direct
                 + [late_change(runs)] * curves
                 + [escapes, f"{loss:.2f} ± {loss_spread:.2f}",
                    f"{t / base_time:.2f}x ({t / 60:.1f} min)"])
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Accuracies in %, mean ± half the range over seeds; val acc. on the sampled points "
                 "(on the vertices for DiffusionNet, which runs on the meshes); direct: the model "
                 "run on the test meshes' vertices (lumped areas as the mass); val change: the "
                 "largest change of validation accuracy over the last 10% of the epochs, in points, "
                 "per seed (- where no curve was recorded); escape epoch per seed (first epoch with a "
                 "training loss 20% below epoch 3's; - never; a model still far above the plateau "
                 "at epoch 3 can 'escape' onto it, so read it with the last training loss: the "
                 "position-only plateau is about 3.3); train time relative to the first row, mean "
                 "over seeds, validation excluded.")
    missing = [ROWS[name][0] for name in (LONG_ROWS if a["protocol"] == "long" else DEFAULT_ROWS)
               if not any(r["row"] == name for r in result["runs"])]
    if missing:
        lines.append("Rows of the full table not run here: " + "; ".join(missing) + ".")
    unfinished = [f"{row['label']} (seed {', '.join(str(s) for s in seeds)})" for row in rows
                  if any(r["row"] == row["name"] for r in result["runs"])
                  for seeds in [[s for s in a["seeds"] if not any(
                      r["row"] == row["name"] and r["seed"] == s for r in result["runs"])]] if seeds]
    if unfinished:
        lines.append("Runs not finished yet: " + "; ".join(unfinished) + ".")
    if result.get("eigen_seconds_per_mesh") is not None:
        n = a["train_molecules"] + a["val"] + 136
        per = result["eigen_seconds_per_mesh"]
        lines.append(f"Eigenbasis precompute (rows with basis=laplacian_init, k={EIGEN_K}, once, "
                     f"cached): {per:.1f} s per mesh, about {per * n / 60:.0f} min for the {n} meshes "
                     "used, not included in the train time.")
    return "\n".join(lines) + "\n"


def late_change(runs, fraction=0.1):
    """Per seed, the largest change (in points) of the validation curve over
    the last ``fraction`` of its epochs, from the epoch before them."""
    changes = []
    for r in sorted(runs, key=lambda r: r["seed"]):
        curve = r.get("val_curve")
        if not curve:
            changes.append("-")
            continue
        tail = curve[-max(1, round(fraction * len(curve))) - 1:]
        changes.append(f"{100 * (max(tail) - min(tail)):.1f}")
    return ", ".join(changes)


# ------------------------------------------------------------------------- main
def settings(args):
    """What makes two tables comparable (everything but the seeds and rows)."""
    return {"protocol": args.protocol, "train_molecules": args.train_molecules, "val": args.val,
            "points": args.points, "epochs": args.epochs,
            "diffusionnet_epochs": args.diffusionnet_epochs, "batch_size": args.batch_size,
            "lr": args.lr, "weight_decay": args.weight_decay, "jobs": args.jobs,
            "threads": args.threads, "device": args.device, "sign_flip": args.sign_flip,
            "set": OVERRIDES}


def parse_args(argv=None):
    """The command line, with the protocol's budget and the default folders filled in."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True,
                        help="clone of nmwsharp/RNA-Surface-Segmentation-Dataset (off/, labels/, "
                             "train.txt, test.txt)")
    parser.add_argument("--protocol", choices=list(PROTOCOLS), default="short",
                        help="budget: short (256 molecules, 1024 points, 15 epochs), long (483, "
                             "1024, 60), full (483, 4096, 200; the paper's)")
    parser.add_argument("--rows", default=None,
                        help=f"comma-separated rows of {list(ROWS)} (default: the protocol's table)")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--train", type=int, default=None, help="training molecules")
    parser.add_argument("--val", type=int, default=64, help="validation molecules held out of train")
    parser.add_argument("--points", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--diffusionnet-epochs", type=int, default=None,
                        help="epochs of the DiffusionNet rows (default: --epochs)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--set", default="",
                        help="FuncAttnNet settings for every FuncAttnNet row but the presets, "
                             "e.g. num_bases=32,dropout=0.1 (write the table elsewhere with --out)")
    parser.add_argument("--sign-flip", action="store_true",
                        help="flip the eigenvectors' signs at random in training "
                             "(RandomEigenvectorSignFlip; default: their deterministic signs)")
    parser.add_argument("--diffusion-net", default=None,
                        help="clone of nmwsharp/diffusion-net (for the diffusionnet rows)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--eigen-cache", default=None,
                        help="eigenbasis cache folder (default: <root>/eigen_cache)")
    parser.add_argument("--checkpoints", default=None,
                        help="folder of the runs' checkpoints (default: <root>/bench_rna_checkpoints)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the finished runs of an interrupted table and continue the "
                             "others from their last checkpoint")
    parser.add_argument("--out", default=None, help="output path without extension")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # internal: one run per process
    parser.add_argument("--operators", nargs=2, type=int, help=argparse.SUPPRESS)  # internal
    args = parser.parse_args(argv)
    train, points, epochs = PROTOCOLS[args.protocol]
    args.train = train if args.train is None else args.train
    args.train_molecules = 547 - args.val if args.train is None else args.train
    args.points = args.points or points
    args.epochs = args.epochs or epochs
    args.diffusionnet_epochs = args.diffusionnet_epochs or args.epochs
    args.eigen_cache = args.eigen_cache or os.path.join(args.root, "eigen_cache")
    args.checkpoints = args.checkpoints or os.path.join(args.root, "bench_rna_checkpoints")
    args.out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                        "bench_rna" + ("" if args.protocol == "short"
                                                       else "_" + args.protocol))
    OVERRIDES.update(parse_overrides(args.set))
    return args


def main():
    args = parse_args()
    rows = [r for r in (args.rows or ",".join(LONG_ROWS if args.protocol == "long"
                                              else DEFAULT_ROWS)).split(",") if r]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; choose from {list(ROWS)}")
    with_diffusionnet = any(ROWS[r][2] == "diffusionnet" for r in rows) or (
        args.one and ROWS[args.one[0]][2] == "diffusionnet")
    if with_diffusionnet:
        if args.diffusion_net is None or not os.path.isdir(os.path.join(args.diffusion_net, "src",
                                                                         "diffusion_net")):
            raise SystemExit("the diffusionnet rows need --diffusion-net, a clone of "
                             "nmwsharp/diffusion-net (with src/diffusion_net/), got "
                             f"{args.diffusion_net!r}")
        sys.path.insert(0, os.path.join(os.path.abspath(args.diffusion_net), "src"))
    if args.one:
        print(json.dumps(train_one(args.one[0], int(args.one[1]), args)), flush=True)
        return
    if args.operators:
        diffusionnet_operators(args, *args.operators)
        return
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    out = args.out
    done, previous_rows = {}, []
    if args.resume and os.path.exists(out + ".json"):  # the runs of a table with these settings
        with open(out + ".json") as f:
            previous = json.load(f)
        if {k: v for k, v in previous["args"].items() if k != "seeds"} == settings(args):
            done = {(r["row"], r["seed"]): r for r in previous["runs"] if r["row"] in ROWS}
            previous_rows = [r["name"] for r in previous["rows"] if r["name"] in ROWS]
    table_rows = previous_rows + [r for r in rows if r not in previous_rows]
    eigen_seconds = precompute_seconds(args) if any(needs_basis(r) for r in table_rows) else None
    if any(needs_basis(r) for r in rows):  # eigenbases of every mesh, once, before the runs
        load_splits(args, with_basis=True)
    forwarded = sys.argv[1:]  # --resume included: a run continues from its checkpoint
    # SciPy's and the BLAS's threads too (DiffusionNet's eigensolver would oversubscribe the cores)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               OPENBLAS_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    if with_diffusionnet:  # DiffusionNet's operators of every mesh, once, ``--jobs`` processes
        with ThreadPoolExecutor(args.jobs) as pool:
            for proc in pool.map(lambda part: subprocess.run(
                    [sys.executable, os.path.abspath(__file__), "--operators", str(part),
                     str(args.jobs)] + forwarded, env=env), range(args.jobs)):
                if proc.returncode != 0:
                    raise SystemExit(f"DiffusionNet's operators failed ({proc.returncode})")
    all_seeds = sorted({seed for _, seed in done} | set(seeds))
    lock = threading.Lock()

    def write_table():
        """The table of the runs finished so far (the missing ones named)."""
        runs = [done[(r, seed)] for r in table_rows for seed in all_seeds if (r, seed) in done]
        result = {"machine": machine(args.device), "args": dict(settings(args), seeds=all_seeds),
                  "rows": [{"name": r, "label": ROWS[r][0]} for r in table_rows], "runs": runs,
                  "eigen_seconds_per_mesh": eigen_seconds}
        report = render(result)
        write_results(out, result, report)
        return report

    def run(key):
        if key in done:
            return
        cmd = [sys.executable, os.path.abspath(__file__), "--one", key[0], str(key[1])] + forwarded
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"run {key} failed with exit code {proc.returncode}")
        with lock:
            done[key] = json.loads(proc.stdout.strip().splitlines()[-1])
            write_table()

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(run, [(r, seed) for r in rows for seed in seeds]))
    print(write_table())


def diffusionnet_operators(args, part, parts):
    """DiffusionNet's operators of every ``parts``-th mesh from ``part``, into its cache."""
    torch.set_num_threads(args.threads)
    train, val, test = load_splits(args, with_basis=False)
    meshes = train + val + test
    cache = os.path.join(args.root, "diffusion_net_ops")
    for i in range(part, len(meshes), parts):
        DiffusionNetMeshes(meshes, cache, hks=True).operators(i)


if __name__ == "__main__":
    main()
