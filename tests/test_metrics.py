"""benchmark.metrics against hand-computed confusion matrices."""

import numpy as np
import pytest
import torch

from benchmark.metrics import confusion_metric, scores_from_confusion


def test_two_classes_by_hand():
    m = np.array([[3, 1], [2, 4]])  # rows: reference, columns: prediction
    s = scores_from_confusion(m)
    assert s["oa"] == pytest.approx(7 / 10)
    np.testing.assert_allclose(s["recall"], [3 / 4, 4 / 6])
    np.testing.assert_allclose(s["precision"], [3 / 5, 4 / 5])
    np.testing.assert_allclose(s["iou"], [3 / 6, 4 / 7])
    np.testing.assert_allclose(s["f1"], [6 / 9, 8 / 11])
    assert s["aa"] == pytest.approx((3 / 4 + 4 / 6) / 2)
    assert s["miou"] == pytest.approx((3 / 6 + 4 / 7) / 2) and s["mf1"] == pytest.approx((6 / 9 + 8 / 11) / 2)


def test_a_class_absent_from_the_split_counts_zero_in_the_macro_means():
    # class 2 never occurs and is never predicted: its IoU, F1 and recall are 0/0 → 0
    m = np.array([[5, 0, 0], [1, 4, 0], [0, 0, 0]])
    s = scores_from_confusion(m)
    np.testing.assert_allclose(s["iou"], [5 / 6, 4 / 5, 0])
    assert s["miou"] == pytest.approx((5 / 6 + 4 / 5 + 0) / 3), "mean over all K classes"
    assert s["aa"] == pytest.approx((1 + 4 / 5 + 0) / 3)
    assert s["mf1"] == pytest.approx((10 / 11 + 8 / 9 + 0) / 3)
    assert s["oa"] == pytest.approx(9 / 10)


def test_predicted_but_absent_class():
    m = np.array([[2, 2], [0, 0]])  # class 1 predicted twice, never present
    s = scores_from_confusion(m)
    np.testing.assert_allclose(s["precision"], [1, 0])
    np.testing.assert_allclose(s["iou"], [0.5, 0])
    with pytest.raises(ValueError, match="square"):
        scores_from_confusion(np.zeros((2, 3)))


def test_accumulator_ignores_255_and_sums_over_batches():
    metric = confusion_metric(3)
    metric.update(torch.tensor([[0, 1], [2, 2]]), torch.tensor([[0, 1], [255, 2]]))
    metric.update(torch.tensor([[1, 1]]), torch.tensor([[0, 255]]))
    np.testing.assert_array_equal(metric.compute().numpy(), [[1, 1, 0], [0, 1, 0], [0, 0, 1]])
