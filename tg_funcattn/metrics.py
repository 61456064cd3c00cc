r"""Segmentation metrics with the standard part-segmentation protocol.

For every shape, the IoU of each part *of its category* is computed; a part
absent from both the prediction and the ground truth counts as IoU 1.  The
shape's IoU is the mean over its category's parts.

* **instance mIoU**: the mean of the shape IoUs over all shapes;
* **class mIoU**: the mean over categories of the mean shape IoU within the
  category.

Predictions are usually restricted to the parts of the shape's category
first (:func:`restrict_to_category`), as in PointNet++ and later work.
"""
from __future__ import annotations

from typing import Dict, Iterable, Optional, Sequence, Tuple

import torch
from torch import Tensor


def restrict_to_category(logits: Tensor, category: Tensor, part_mask: Tensor,
                         batch: Optional[Tensor] = None) -> Tensor:
    """``argmax`` of ``logits [N, P]`` over the parts of each node's category.

    Args:
        logits: Per-node scores ``[N, P]``.
        category: Category of every graph ``[B]``.
        part_mask: ``[num_categories, P]`` boolean, which parts each category has.
        batch: Graph of every node ``[N]`` (``None``: one graph).
    """
    node_category = category.view(-1)[batch] if batch is not None else category.view(-1).expand(logits.shape[0])
    allowed = part_mask.to(logits.device)[node_category]
    return logits.masked_fill(~allowed, float("-inf")).argmax(-1)


def shape_iou(pred: Tensor, target: Tensor, parts: Sequence[int]) -> float:
    """Mean IoU over ``parts`` of one shape (absent from both: IoU 1)."""
    ious = []
    for part in parts:
        p, t = pred == part, target == part
        union = int((p | t).sum())
        ious.append(1.0 if union == 0 else int((p & t).sum()) / union)
    return sum(ious) / len(ious)


def mean_ious(shapes: Iterable[Tuple[int, float]]) -> Tuple[float, float, Dict[int, float]]:
    """``(instance mIoU, class mIoU, {category: mIoU})`` of ``(category, shape
    IoU)`` pairs."""
    shapes = list(shapes)
    if not shapes:
        raise ValueError("no shapes were added")
    per_category: Dict[int, list] = {}
    for category, iou in shapes:
        per_category.setdefault(category, []).append(iou)
    class_iou = {c: sum(v) / len(v) for c, v in per_category.items()}
    return (sum(i for _, i in shapes) / len(shapes), sum(class_iou.values()) / len(class_iou),
            class_iou)


class PartSegmentationIoU:
    """Accumulates shape IoUs over batches; :meth:`compute` gives instance and
    class mIoU (in ``[0, 1]``) and the mIoU of every category seen.

    Args:
        part_mask: ``[num_categories, num_parts]`` boolean, which parts each
            category has (e.g. :func:`~tg_funcattn.datasets.category_part_mask`).
        category_names (list, optional): Names for the per-category results.
    """

    def __init__(self, part_mask: Tensor, category_names: Optional[Sequence[str]] = None):
        self.part_mask = part_mask.bool().cpu()
        self.names = list(category_names) if category_names is not None else \
            [str(i) for i in range(part_mask.shape[0])]
        self.reset()

    def reset(self):
        self.ious = []  # (category, iou)

    def update(self, pred: Tensor, target: Tensor, category: Tensor,
               batch: Optional[Tensor] = None) -> None:
        """Adds the shapes of a batch: ``pred``/``target`` ``[N]`` part ids,
        ``category`` ``[B]``, ``batch`` ``[N]``."""
        pred, target, category = pred.cpu(), target.cpu(), category.view(-1).cpu()
        if pred.shape != target.shape:
            raise ValueError(f"'pred' {tuple(pred.shape)} and 'target' {tuple(target.shape)} differ")
        if batch is None:
            batch = torch.zeros_like(target)
        batch = batch.cpu()
        if int(batch.max()) + 1 > category.numel():
            raise ValueError(f"'category' has {category.numel()} entries but 'batch' refers to "
                             f"{int(batch.max()) + 1} graphs")
        for g in range(category.numel()):
            nodes = batch == g
            c = int(category[g])
            parts = self.part_mask[c].nonzero().view(-1).tolist()
            bad = ~self.part_mask[c][target[nodes]]
            if bool(bad.any()):
                raise ValueError(f"graph {g} (category {self.names[c]}) has ground-truth part "
                                 f"{int(target[nodes][bad][0])}, which is not one of its parts {parts}")
            self.ious.append((c, shape_iou(pred[nodes], target[nodes], parts)))

    def compute(self) -> Dict[str, object]:
        instance, classes, per_category = mean_ious(self.ious)
        return {"instance_miou": instance, "class_miou": classes,
                "per_category": {self.names[c]: v for c, v in per_category.items()},
                "num_shapes": len(self.ious)}


def accuracy(pred: Tensor, target: Tensor) -> float:
    """Fraction of equal entries."""
    if pred.shape != target.shape:
        raise ValueError(f"'pred' {tuple(pred.shape)} and 'target' {tuple(target.shape)} differ")
    return float((pred == target).float().mean())
