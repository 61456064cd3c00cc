"""The datasets of the examples, built from a :class:`~.config.DataConfig`."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from torch_geometric.transforms import Compose

from ..datasets import (NUM_SHAPENET_PARTS, SHAPENET_CATEGORIES, MeshOperatorRegression,
                        MeshRegression, RNASurfaceSegmentation, ShapeNetPart, SyntheticParts,
                        category_part_mask)
from ..transforms import (HeatKernelSignature, LaplacianEigenbasis, LumpedMass, NormalizeMesh,
                          RandomEigenvectorSignFlip, RandomRotation, check_eigenbasis)
from .config import SEGMENTATION, DataConfig, RegressionDataConfig, SegmentationDataConfig


#: The heat kernel signature of ``--input-features hks``: time scales, and the
#: eigenpairs it is computed from (as in ``benchmarks/bench_rna.py``)
HKS_TIMES, HKS_EIGENPAIRS = 16, 64


def _pre_transforms(data: DataConfig, eigenpairs: Optional[int], normalize: Optional[str] = None,
                    hks: bool = False):
    """``(pre_transform, train_transforms)``: optional normalisation, and
    ``eigenpairs`` Laplacian eigenpairs per shape (``None``: none, the
    network learns its bases), with sign-flip augmentation if
    ``data.sign_flip`` (off by default: on RNA surfaces the
    deterministic signs of :class:`LaplacianEigenbasis` trained
    ``laplacian_init`` to 52.0% validation accuracy, random flips to 38.3%;
    ``benchmarks/results/bench_rna{,_sign_flip}.md``)."""
    steps = [NormalizeMesh(normalize)] if normalize else []
    augment = []
    if hks:  # the signature as data.x, from at least HKS_EIGENPAIRS eigenpairs
        eigenpairs = max(eigenpairs or 0, HKS_EIGENPAIRS)
    if eigenpairs is not None:
        steps.append(LaplacianEigenbasis(eigenpairs, cache_dir=data.eigen_cache_dir))
        if data.sign_flip:
            augment.append(RandomEigenvectorSignFlip())
    if hks:
        steps.append(HeatKernelSignature(HKS_TIMES, attr_name=None))
    return (Compose(steps) if steps else None), augment


def rna_validation_split(num_train: int, fraction: float = 0.1, seed: int = 0):
    """``(validation, training)`` indices of the official RNA training list: a
    fixed random ``fraction`` (at least one molecule) held out for validation."""
    order = torch.randperm(num_train, generator=torch.Generator().manual_seed(seed))
    num_val = max(1, round(fraction * num_train))
    return order[:num_val], order[num_val:]


def segmentation_data(data: SegmentationDataConfig,
                      eigenpairs: Optional[int]) -> Tuple[object, object, object, Dict]:
    """``(train, val, test, info)`` of ``data.dataset`` (``synthetic``,
    ``shapenet`` or ``rna``) with ``eigenpairs`` Laplacian eigenpairs per
    shape (``None``: none); ``info`` has ``in_channels``, ``num_classes``,
    ``num_categories``, ``part_mask`` and ``category_names``."""
    dataset, root = data.dataset, data.root_dir
    categories = list(data.categories) if data.categories is not None else None
    if dataset in ("synthetic", "shapenet"):
        pre_transform, augment = _pre_transforms(data, eigenpairs)
        train_transform = Compose(augment) if augment else None
        if dataset == "synthetic":
            num_train, num_val, num_test = data.synthetic_split_sizes
            kwargs = dict(num_train=num_train, num_val=num_val, num_test=num_test,
                          num_points=data.num_points, seed=data.data_seed)
            make = lambda split, transform: SyntheticParts(  # noqa: E731
                root, categories, split=split, pre_transform=pre_transform, transform=transform, **kwargs)
        else:
            make = lambda split, transform: ShapeNetPart(  # noqa: E731
                root, categories, split=split, pre_transform=pre_transform, transform=transform)
        splits = make("train", train_transform), make("val", None), make("test", None)
        info = {"in_channels": 3, "num_classes": NUM_SHAPENET_PARTS,
                "num_categories": len(SHAPENET_CATEGORIES),
                "part_mask": category_part_mask().tolist(),
                "category_names": list(SHAPENET_CATEGORIES)}
        return (*splits, info)
    # rna: molecules are scaled into the unit sphere and rotated uniformly at random in
    # training (they have no canonical pose); eigenbases are computed on the meshes
    # and interpolated to the sampled points.  Validation is a fixed tenth of the
    # official training list, so that nothing is chosen on the test set, scored on its
    # sampled points.  The test meshes are scored on their own vertices, the network run
    # on them directly with their lumped areas as the mass (9 and 15 points above carrying
    # the sampled points' labels to the nearest vertices in benchmarks/results/bench_rna_long.md).
    hks = data.resolved_input_features == "hks"
    pre_transform, augment = _pre_transforms(data, eigenpairs, normalize="sphere", hks=hks)
    points = data.num_points or None
    make = lambda split, transform, num_points: RNASurfaceSegmentation(  # noqa: E731
        root, split, num_points=num_points, pre_transform=pre_transform, transform=transform)
    train = make("train", Compose([RandomRotation()] + augment), points)
    val_ids, train_ids = rna_validation_split(len(train))
    val = make("train", None, points)[val_ids]
    with_mass = eigenpairs is not None or hks  # LaplacianEigenbasis stores the mass
    test = make("test", None if with_mass else LumpedMass(), None)
    info = {"in_channels": HKS_TIMES if hks else 0, **({"pos_channels": 0} if hks else {}),
            "num_classes": train.num_classes, "num_categories": None,
            "part_mask": None, "category_names": None}
    return train[train_ids], val, test, info


def regression_data(data: RegressionDataConfig,
                    eigenpairs: Optional[int]) -> Tuple[object, object, Dict[str, object], Dict]:
    """``(train, val, tests, info)``: ``tests`` maps a name (e.g. ``level_3``)
    to a test set, for the resolution-transfer table."""
    root = data.root_dir
    pre_transform, augment = _pre_transforms(data, eigenpairs)
    train_transform = Compose(augment) if augment else None
    if data.dataset == "operator":
        levels = list(data.levels)
        kwargs = dict(target=data.target, levels=levels, num_shapes=data.num_shapes,
                      seed=data.data_seed, pre_transform=pre_transform)
        train = MeshOperatorRegression(root, data.level, "train", transform=train_transform, **kwargs)
        tests = {f"level_{lv}": MeshOperatorRegression(root, lv, "test", **kwargs) for lv in levels}
        val = tests[f"level_{data.level}"]
    else:
        train = MeshRegression(root, data.train_split, transform=train_transform,
                               pre_transform=pre_transform)
        tests = {name: MeshRegression(root, name, pre_transform=pre_transform)
                 for name in data.test_splits}
        val = next(iter(tests.values()))
    sample = train[0]
    if "y" not in sample or sample.y.shape[0] != sample.num_nodes:
        raise ValueError("the regression example trains on per-vertex targets; this data has "
                         "per-face or per-shape targets")
    info = {"in_channels": 0 if sample.x is None else sample.x.shape[1],
            "out_channels": 1 if sample.y.dim() == 1 else sample.y.shape[1]}
    return train, val, tests, info


def build_data(data: DataConfig, eigenpairs: Optional[int]):
    """``(train, val, tests, info)`` with ``tests`` a dict of named test sets.
    With eigenpairs, the first sample of every split is checked to still have
    the points and geometry its eigenbasis was computed for
    (:func:`~tg_funcattn.transforms.check_eigenbasis`)."""
    if data.kind == SEGMENTATION:
        train, val, test, info = segmentation_data(data, eigenpairs)
        tests = {"test": test}
    else:
        train, val, tests, info = regression_data(data, eigenpairs)
    if eigenpairs is not None:
        for name, dataset in (("train", train), ("val", val), *tests.items()):
            check_eigenbasis(dataset[0], who=f"the {name} split")
    return train, val, tests, info
