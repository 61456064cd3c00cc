"""The datasets of the examples, built from plain settings (kept in checkpoints)."""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Tuple

import torch
from torch_geometric.transforms import Compose

from ..datasets import (NUM_SHAPENET_PARTS, SHAPENET_CATEGORIES, MeshOperatorRegression,
                        MeshRegression, RNASurfaceSegmentation, ShapeNetPart, SyntheticParts,
                        category_part_mask)
from ..transforms import (LaplacianEigenbasis, NormalizeMesh, RandomEigenvectorSignFlip,
                          RandomRotation)

DEFAULT_ROOTS = {"synthetic": "synthetic_parts", "shapenet": "shapenet_part",
                 "rna": "rna_surface_segmentation", "operator": "mesh_operator_regression",
                 "mesh": "mesh_regression"}


def default_root(dataset: str) -> str:
    return os.path.join("datasets", DEFAULT_ROOTS[dataset])


def _pre_transforms(settings: Dict, normalize: Optional[str] = None):
    """``(pre_transform, train_transforms)``: optional normalisation, and the
    eigenbasis for the Laplacian bases, with sign-flip augmentation if
    ``settings["sign_flip"]`` (off by default: on RNA surfaces the
    deterministic signs of :class:`LaplacianEigenbasis` trained
    ``laplacian_init`` to 52.0% validation accuracy, random flips to 38.3%;
    ``benchmarks/results/bench_rna{,_sign_flip}.md``)."""
    steps = [NormalizeMesh(normalize)] if normalize else []
    augment = []
    if settings["basis"] != "learned":
        cache = settings.get("eigen_cache") or os.path.join(settings["root"], "eigen_cache")
        steps.append(LaplacianEigenbasis(settings["num_bases"], cache_dir=cache))
        if settings.get("sign_flip", False):
            augment.append(RandomEigenvectorSignFlip())
    return (Compose(steps) if steps else None), augment


def rna_validation_split(num_train: int, fraction: float = 0.1, seed: int = 0):
    """``(validation, training)`` indices of the official RNA training list: a
    fixed random ``fraction`` (at least one molecule) held out for validation."""
    order = torch.randperm(num_train, generator=torch.Generator().manual_seed(seed))
    num_val = max(1, round(fraction * num_train))
    return order[:num_val], order[num_val:]


def segmentation_data(settings: Dict) -> Tuple[object, object, object, Dict]:
    """``(train, val, test, info)`` for ``settings["dataset"]`` in
    ``synthetic``, ``shapenet`` or ``rna``; ``info`` has ``in_channels``,
    ``num_classes``, ``num_categories``, ``part_mask`` and ``category_names``."""
    dataset, root = settings["dataset"], settings["root"]
    if dataset in ("synthetic", "shapenet"):
        pre_transform, augment = _pre_transforms(settings)
        train_transform = Compose(augment) if augment else None
        if dataset == "synthetic":
            size = settings.get("shapes", 100)
            kwargs = dict(num_train=size, num_val=max(1, size // 7), num_test=max(1, (3 * size) // 10),
                          num_points=settings.get("points", 1024), seed=settings.get("data_seed", 0))
            make = lambda split, transform: SyntheticParts(  # noqa: E731
                root, split, settings.get("categories"), pre_transform=pre_transform,
                transform=transform, **kwargs)
        else:
            make = lambda split, transform: ShapeNetPart(  # noqa: E731
                root, settings.get("categories"), split, pre_transform=pre_transform,
                transform=transform)
        splits = make("train", train_transform), make("val", None), make("test", None)
        info = {"in_channels": 3, "num_classes": NUM_SHAPENET_PARTS,
                "num_categories": len(SHAPENET_CATEGORIES),
                "part_mask": category_part_mask().tolist(),
                "category_names": list(SHAPENET_CATEGORIES)}
        return (*splits, info)
    if dataset == "rna":
        # molecules are scaled into the unit sphere and rotated uniformly at random in
        # training (they have no canonical pose); eigenbases are computed on the meshes
        # and interpolated to the sampled points.  Validation is a fixed tenth of the
        # official training list, so that nothing is chosen on the test set.
        pre_transform, augment = _pre_transforms(settings, normalize="sphere")
        points = settings.get("points") or None
        make = lambda split, transform: RNASurfaceSegmentation(  # noqa: E731
            root, split, num_points=points, pre_transform=pre_transform, transform=transform)
        train = make("train", Compose([RandomRotation()] + augment))
        val_ids, train_ids = rna_validation_split(len(train))
        val = make("train", None)[val_ids]
        test = make("test", None)
        info = {"in_channels": 0, "num_classes": train.num_classes, "num_categories": None,
                "part_mask": None, "category_names": None}
        return train[train_ids], val, test, info
    raise ValueError(f"unknown segmentation dataset {dataset!r}; use synthetic, shapenet or rna")


def regression_data(settings: Dict) -> Tuple[object, object, Dict[str, object], Dict]:
    """``(train, val, tests, info)``: ``tests`` maps a name (e.g. ``level_3``)
    to a test set, for the resolution-transfer table."""
    dataset, root = settings["dataset"], settings["root"]
    pre_transform, augment = _pre_transforms(settings)
    train_transform = Compose(augment) if augment else None
    if dataset == "operator":
        levels: List[int] = settings.get("levels", [2, 3, 4])
        kwargs = dict(target=settings.get("target", "geodesic"), levels=levels,
                      num_shapes=settings.get("num_shapes", 100), seed=settings.get("data_seed", 0),
                      pre_transform=pre_transform)
        level = settings.get("train_level", levels[0])
        train = MeshOperatorRegression(root, level, "train", transform=train_transform, **kwargs)
        tests = {f"level_{lv}": MeshOperatorRegression(root, lv, "test", **kwargs) for lv in levels}
        val = tests[f"level_{level}"]
    elif dataset == "mesh":
        train = MeshRegression(root, settings.get("train_split", "train"), transform=train_transform,
                               pre_transform=pre_transform)
        tests = {name: MeshRegression(root, name, pre_transform=pre_transform)
                 for name in settings.get("test_splits", ["test"])}
        val = next(iter(tests.values()))
    else:
        raise ValueError(f"unknown regression dataset {dataset!r}; use operator or mesh")
    sample = train[0]
    if "y" not in sample or sample.y.shape[0] != sample.num_nodes:
        raise ValueError("the regression example trains on per-vertex targets; this data has "
                         "per-face or per-shape targets")
    info = {"in_channels": 0 if sample.x is None else sample.x.shape[1],
            "out_channels": 1 if sample.y.dim() == 1 else sample.y.shape[1]}
    return train, val, tests, info
