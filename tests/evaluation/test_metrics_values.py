"""WA / UA / macro-F1 on fixed predictions, checked against hand-computed values."""

import pytest

from c2ser.core.metrics import classification_report

LABELS = ("a", "b", "c", "d")


def test_hand_computed_scores_with_absent_class_and_invalid_prediction():
    # refs:  a a a b b c ; preds: a a b b <invalid> d  (d is never a reference)
    rep = classification_report([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, -1, 3], LABELS)
    assert rep["wa"] == pytest.approx(3 / 6)
    # recall a 2/3, b 1/2, c 0; d absent from the references -> not averaged
    assert rep["ua"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    # F1: a 0.8 (P 1, R 2/3), b 0.5, c 0 (true, never predicted), d 0 (predicted, never true)
    assert rep["f1"] == pytest.approx((0.8 + 0.5 + 0 + 0) / 4)
    assert (rep["n"], rep["invalid"]) == (6, 1)
    assert rep["per_class_recall"] == pytest.approx({"a": 2 / 3, "b": 0.5, "c": 0.0})
    assert rep["confusion"][1] == [0, 1, 0, 0, 1]  # last column: invalid predictions


def test_perfect_and_all_invalid():
    assert classification_report([0, 1, 2], [0, 1, 2], LABELS)["ua"] == 1.0
    rep = classification_report([0, 1, 2], [-1, -1, -1], LABELS)
    assert (rep["wa"], rep["ua"], rep["f1"], rep["invalid"]) == (0.0, 0.0, 0.0, 3)
