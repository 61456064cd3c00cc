"""The pictures of a trained run: predictions, bases, functional maps and
training curves, written by ``tg-funcattn train`` and ``tg-funcattn visualize``."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, List

import torch
from torch_geometric.data import Batch

from .._optional import available
from ..datasets.shapenet import SHAPENET_PARTS
from ..datasets.shapes import CATEGORY_PARTS
from ..viz import (plot_functional_maps, plot_training_curves, render_fields, render_segmentation,
                   rendering_available, show_segmentation)
from .config import SEGMENTATION
from .logs import metrics_files


def part_names(dataset: str, num_classes: int) -> Dict[int, str]:
    """Label id -> legend name for the segmentation data set ``dataset``:
    ``Mug handle`` for the ShapeNet part ids that the synthetic shapes name
    (:data:`~tg_funcattn.datasets.shapes.CATEGORY_PARTS`), ``Chair part 12``
    for the other ShapeNet ids, ``class <id>`` for RNA's ``num_classes``."""
    if dataset not in ("synthetic", "shapenet"):
        return {c: f"class {c}" for c in range(num_classes)}
    names = {}
    for category, ids in SHAPENET_PARTS.items():
        named = {i: part for part, i in CATEGORY_PARTS.get(category, {}).items()}
        names.update({i: f"{category} {named.get(i, f'part {i}')}" for i in ids})
    return names


def write_run_pictures(task, kind: str, tests: Dict, out: Path, num: int,
                       show: bool = False) -> List[Path]:
    """PNGs in ``out`` of the first ``num`` shapes of the first test set in
    ``tests`` as the Lightning module ``task`` (of the ``kind``
    ``"segmentation"`` or ``"regression"``) predicts them, its bases and
    functional maps, and the training curves of every run into ``out``; with
    ``show=True`` also in a window.  A machine without the rendering libraries
    gets a warning and only the matplotlib pictures."""
    written = []
    curves = metrics_files(out)
    if curves and available("matplotlib"):
        written.append(plot_training_curves(curves, out / "curves.png"))
    ok, reason = rendering_available() if available("open3d") else \
        (False, "open3d is not installed (pip install 'tg-funcattn[viz]')")
    dataset = next(iter(tests.values()))
    if kind == SEGMENTATION:
        legend = part_names(task.hparams["data"]["dataset"], task.hparams["net"]["out_channels"])
    task.eval()
    with torch.no_grad():
        for i in range(min(num, len(dataset))):
            data = Batch.from_data_list([dataset[i]])
            logits, maps = task(data, return_maps=True)
            bases, fmaps = maps[0]
            if i == 0 and available("matplotlib"):
                written.append(plot_functional_maps(
                    fmaps[0], out / "functional_maps.png", title="functional maps C, block 1"))
            if not ok:
                continue
            face = data.face if "face" in data else None
            if kind == SEGMENTATION:
                pred = task.predict_labels(data, logits)
                pos, target = data.pos, data.y
                if show:
                    show_segmentation(pos, pred, target, face)
                categories = task.hparams.get("category_names")
                title = f"test shape {i}" + (f" ({categories[int(data.category.view(-1)[0])]})"
                                             if categories and "category" in data else "")
                written.append(render_segmentation(pos, pred, target, out / f"prediction_{i}.png",
                                                   face, title=title, part_names=legend))
            else:
                target = data.y.view(data.num_nodes, -1)[:, 0]
                fields = torch.stack([target, logits[:, 0], (logits[:, 0] - target).abs()], 1)
                written.append(render_fields(data.pos, fields, out / f"prediction_{i}.png", face,
                                             ["target", "prediction", "|error|"], f"test shape {i}"))
            if i == 0:
                k = min(4, bases.shape[-1])
                written.append(render_fields(
                    data.pos, bases[:, 0, :k], out / "bases.png", face,
                    [f"basis {j}" for j in range(k)], "block 1, head 1"))
    if not ok:
        warnings.warn(f"3D pictures skipped: {reason}", stacklevel=2)
    return written
