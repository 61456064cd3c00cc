"""Lightning modules for segmentation and regression with :class:`FuncAttnNet`.

Hyper-parameters are plain dicts, lists and numbers (the sections of a
:class:`~.config.RunConfig` as :meth:`~.config.RunConfig.to_dict` gives them),
so checkpoints load with ``weights_only=True``.  Per-shape scores are gathered across processes before
they are averaged (under DDP the distributed sampler may repeat a few shapes
of an uneven validation split; tests run on one device).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from ..metrics import mean_ious, restrict_to_category, shape_iou
from ..nn import FuncAttnNet
from .config import OptimConfig


class _FuncAttnTask(L.LightningModule):
    """Model construction, inputs from a PyG batch, optimiser and schedule."""

    def __init__(self, net: Dict, optim: Dict, chunk_size: Optional[int] = None):
        super().__init__()
        self.model = FuncAttnNet(**net)
        self.optim = OptimConfig.from_dict(optim)
        #: streams the attention over chunks of nodes (a setting of the run, not saved)
        self.chunk_size = chunk_size
        self._scores: Dict[str, List[Tensor]] = {}

    def forward(self, data, return_maps: bool = False):
        model = self.model
        return model(data.x if model.in_channels > 0 else None, data.pos, data.batch,
                     mass=data.mass if "mass" in data else None,
                     basis=data.evecs if model.uses_eigenbasis else None,
                     category=data.category.view(-1) if model.num_categories else None,
                     batch_size=data.num_graphs, return_maps=return_maps,
                     chunk_size=self.chunk_size)

    def check_finite_loss(self, loss: Tensor) -> None:
        """A NaN or infinite training loss ends the run (one host read per
        step): the epochs after it could only write checkpoints and scores
        of a network whose parameters are no longer numbers."""
        if not bool(torch.isfinite(loss)):
            raise FloatingPointError(
                f"the training loss is {float(loss)} at epoch {self.current_epoch} (step "
                f"{self.global_step}): training diverged; lower the learning rate (--lr, now "
                f"{self.optim.lr:g}) or train in a wider precision (--precision, now "
                f"{self.trainer.precision}); no scores were written")

    def configure_optimizers(self):
        """``optimizer`` (AdamW or Adam) under ``schedule``: ``"cosine"``, a
        linear warm-up over 10% of the steps then cosine decay, stepped per
        step; ``"onecycle"``, PyTorch's ``OneCycleLR`` (30% rise, final
        learning rate ``lr / 25000``) stepped once per epoch, as the authors
        train.  The schedules are functions of the trainer's current total, so
        resuming with a larger ``max_epochs`` stretches them instead of failing."""
        optim = self.optim
        make = torch.optim.AdamW if optim.optimizer == "adamw" else torch.optim.Adam
        optimizer = make(self.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
        if optim.schedule == "onecycle":
            schedule = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=optim.lr, total_steps=max(2, int(self.trainer.max_epochs)),
                pct_start=0.3, final_div_factor=1000)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = max(1, total // 10)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # the tasks define _evaluate(data, stage): the per-shape scores of a batch
    def validation_step(self, data, batch_idx):
        self._evaluate(data, "val")

    def test_step(self, data, batch_idx):
        self._evaluate(data, "test")

    def _store(self, stage: str, rows: Tensor) -> None:
        self._scores.setdefault(stage, []).append(rows.detach().float().cpu())

    def _gathered(self, stage: str) -> Tensor:
        rows = torch.cat(self._scores.pop(stage, []) or [torch.zeros(0, 4)])
        gathered = self.all_gather(rows.to(self.device))
        return gathered.reshape(-1, rows.shape[1]).cpu() if gathered.dim() == 3 else rows

    def on_validation_epoch_end(self):
        self._log_scores("val")

    def on_test_epoch_end(self):
        self._log_scores("test")


class SegmentationTask(_FuncAttnTask):
    r"""Per-node classification: part segmentation (mIoU over the parts of
    each shape's category) or plain segmentation (accuracy), scored on the
    nodes the network ran on (for meshes scored on their vertices, run it on
    the vertices, as the RNA test split does).

    Args:
        net (dict): Keyword arguments of :class:`~tg_funcattn.nn.FuncAttnNet`.
        optim (dict): The fields of an :class:`~.config.OptimConfig`
            (optimiser, peak learning rate, weight decay, schedule).
        data (dict): The fields of the :class:`~.config.DataConfig`, kept in
            the checkpoint so evaluation rebuilds the same data.
        part_mask (list, optional): ``[categories][parts]`` booleans for part
            segmentation; ``None`` for plain segmentation.
        category_names (list, optional): Names for per-category results.
        chunk_size (int, optional): Stream the attention over chunks of this
            many nodes (not saved in checkpoints). (default: ``None``)
    """

    def __init__(self, net: Dict, optim: Dict, data: Dict,
                 part_mask: Optional[List[List[bool]]] = None,
                 category_names: Optional[List[str]] = None, chunk_size: Optional[int] = None):
        super().__init__(net, optim, chunk_size)
        self.save_hyperparameters(ignore=["chunk_size"])
        mask = torch.tensor(part_mask, dtype=torch.bool) if part_mask is not None else None
        self.register_buffer("part_mask", mask, persistent=False)

    def training_step(self, data, batch_idx):
        logits = self(data)
        loss = F.cross_entropy(logits, data.y)
        self.check_finite_loss(loss)
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True,
                 batch_size=data.num_graphs, sync_dist=True)
        # the share of training points labelled right (as validation scores them: within
        # the shape's category), averaged over the epoch's points: the training curve
        # beside validation's accuracy
        correct = (self.predict_labels(data, logits.detach()) == data.y).float().mean()
        self.log("train_accuracy", correct, on_step=False, on_epoch=True, batch_size=data.num_nodes,
                 sync_dist=True)
        return loss

    def predict_labels(self, data, logits: Optional[Tensor] = None) -> Tensor:
        logits = self(data) if logits is None else logits
        if self.part_mask is None:
            return logits.argmax(-1)
        return restrict_to_category(logits, data.category.view(-1), self.part_mask, data.batch)

    def _evaluate(self, data, stage: str):
        logits = self(data)
        loss = F.cross_entropy(logits, data.y)
        self.log(f"{stage}_loss", loss, prog_bar=stage == "val", on_epoch=True,
                 batch_size=data.num_graphs, sync_dist=True)
        pred = self.predict_labels(data, logits)
        rows = []  # (category, iou, correct, count) per shape
        for g in range(data.num_graphs):
            nodes = data.batch == g
            p, t = pred[nodes], data.y[nodes]
            if self.part_mask is not None:
                c = int(data.category.view(-1)[g])
                iou = shape_iou(p, t, self.part_mask[c].nonzero().view(-1).tolist())
            else:
                c, iou = 0, float("nan")
            rows.append([c, iou, float((p == t).sum()), float(t.numel())])
        self._store(stage, torch.tensor(rows))

    def _log_scores(self, stage: str) -> None:
        rows = self._gathered(stage)
        if rows.numel() == 0:
            return
        # every process holds the same gathered rows: sync_dist averages equal values
        self.log(f"{stage}_accuracy", rows[:, 2].sum() / rows[:, 3].sum(), prog_bar=True, sync_dist=True)
        if self.part_mask is not None:
            instance, classes, _ = mean_ious(zip(rows[:, 0].long().tolist(), rows[:, 1].tolist()))
            self.log(f"{stage}_instance_miou", instance, prog_bar=True, sync_dist=True)
            self.log(f"{stage}_class_miou", classes, prog_bar=True, sync_dist=True)


class RegressionTask(_FuncAttnTask):
    r"""Per-node regression trained and scored with the relative L2 error per
    shape, :math:`\|\hat y - y\| / \|y\|`, averaged over shapes (the neural
    operator convention).

    Args:
        net, optim, data, chunk_size: As in :class:`SegmentationTask`.
    """

    def __init__(self, net: Dict, optim: Dict, data: Dict, chunk_size: Optional[int] = None):
        super().__init__(net, optim, chunk_size)
        self.save_hyperparameters(ignore=["chunk_size"])

    def _relative_l2(self, data, pred: Tensor) -> Tensor:
        if "y" not in data or data.y.shape[0] != data.num_nodes:
            raise ValueError("RegressionTask needs per-vertex targets 'y' [N, ...]")
        target = data.y.view(data.num_nodes, -1).to(pred.dtype)
        size = data.num_graphs
        error = torch.zeros(size, device=pred.device).index_add(0, data.batch, (pred - target).square().sum(1))
        norm = torch.zeros(size, device=pred.device).index_add(0, data.batch, target.square().sum(1))
        return error.sqrt() / norm.sqrt().clamp_min(1e-12)

    def training_step(self, data, batch_idx):
        loss = self._relative_l2(data, self(data)).mean()
        self.check_finite_loss(loss)
        self.log("train_rel_l2", loss, prog_bar=True, on_step=False, on_epoch=True,
                 batch_size=data.num_graphs, sync_dist=True)
        return loss

    def _evaluate(self, data, stage: str):
        rel = self._relative_l2(data, self(data))
        self._store(stage, torch.stack([torch.zeros_like(rel), rel, rel, torch.ones_like(rel)], 1))

    def _log_scores(self, stage: str) -> None:
        rows = self._gathered(stage)
        if rows.numel():
            self.log(f"{stage}_rel_l2", rows[:, 1].mean(), prog_bar=True, sync_dist=True)
