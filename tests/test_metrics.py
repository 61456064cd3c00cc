import pytest
import torch

from tg_funcattn.datasets import category_part_mask
from tg_funcattn.metrics import (PartSegmentationIoU, accuracy, mean_ious, restrict_to_category,
                                 shape_iou)


def test_shape_iou_by_hand():
    pred = torch.tensor([0, 0, 1, 1, 1])
    target = torch.tensor([0, 1, 1, 1, 1])
    # part 0: |{0}| / |{0, 1}| = 1/2 ; part 1: |{2,3,4}| / |{1,2,3,4}| = 3/4
    assert shape_iou(pred, target, [0, 1]) == pytest.approx((0.5 + 0.75) / 2)
    # a part absent from both prediction and truth counts as 1
    assert shape_iou(pred, target, [0, 1, 2]) == pytest.approx((0.5 + 0.75 + 1.0) / 3)
    # a part predicted but absent from the truth counts as 0
    assert shape_iou(torch.tensor([2, 1]), torch.tensor([1, 1]), [1, 2]) == pytest.approx((0.5 + 0) / 2)


def test_instance_and_class_miou_by_hand():
    mask = torch.zeros(3, 6, dtype=torch.bool)
    mask[0, [0, 1]] = True
    mask[1, [2, 3]] = True
    mask[2, [4, 5]] = True
    metric = PartSegmentationIoU(mask, ["a", "b", "c"])
    # batch of three shapes: two of category a (IoU 1 and 0.5), one of category b (IoU 0.25)
    target = torch.tensor([0, 1, 0, 1, 2, 2, 3, 3])
    pred = torch.tensor([0, 1, 0, 0, 2, 3, 2, 2])
    batch = torch.tensor([0, 0, 1, 1, 2, 2, 2, 2])
    metric.update(pred, target, torch.tensor([0, 0, 1]), batch)
    s0 = 1.0  # shape 0: exact
    s1 = (1 / 2 + 0 / 1) / 2  # shape 1: part 0 hits 1 of 2, part 1 missed
    s2 = (1 / 4 + 0 / 3) / 2  # shape 2: part 2 {4} of {4,5,6,7}; part 3 {} of {5,6,7}
    result = metric.compute()
    assert result["instance_miou"] == pytest.approx((s0 + s1 + s2) / 3)
    assert result["class_miou"] == pytest.approx(((s0 + s1) / 2 + s2) / 2)
    assert result["per_category"] == pytest.approx({"a": (s0 + s1) / 2, "b": s2})
    assert result["num_shapes"] == 3


def test_mean_ious_by_hand():
    # category 0: shapes 1.0 and 0.5; category 3: shape 0.25
    instance, classes, per_category = mean_ious([(0, 1.0), (3, 0.25), (0, 0.5)])
    assert instance == pytest.approx(1.75 / 3)
    assert classes == pytest.approx((0.75 + 0.25) / 2)
    assert per_category == pytest.approx({0: 0.75, 3: 0.25})
    with pytest.raises(ValueError, match="no shapes were added"):
        mean_ious([])


def test_restrict_to_category_takes_argmax_within_the_category():
    mask = category_part_mask()
    logits = torch.zeros(3, 50)
    logits[:, 5] = 10.0  # a Bag part, highest everywhere
    logits[:, 37] = 1.0  # Mug body
    logits[2, 0] = 2.0  # Airplane body
    pred = restrict_to_category(logits, torch.tensor([11, 0]), mask, torch.tensor([0, 0, 1]))
    assert pred.tolist() == [37, 37, 0]


def test_metric_errors():
    metric = PartSegmentationIoU(category_part_mask())
    with pytest.raises(ValueError, match="no shapes were added"):
        metric.compute()
    with pytest.raises(ValueError, match="ground-truth part 40, which is not one of its parts"):
        metric.update(torch.tensor([0, 1]), torch.tensor([0, 40]), torch.tensor([0]))
    with pytest.raises(ValueError, match="'category' has 1 entries but 'batch' refers to 2"):
        metric.update(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([0]), torch.tensor([0, 1]))
    assert accuracy(torch.tensor([1, 2, 3]), torch.tensor([1, 0, 3])) == pytest.approx(2 / 3)
