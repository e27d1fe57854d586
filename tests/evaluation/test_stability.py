"""Stability maths on hand-made prediction runs."""

import math

import pytest

from c2ser.evaluation.stability import label_indices, plot_stability, stability_report

REFS = ["happy", "sad", "angry", "happy"]
RUNS = [
    ["happy", "sad", "angry", "happy"],  # UA 1
    ["happy", "sad", None, "sad"],  # happy 1/2, sad 1, angry 0 -> UA 1/2
    ["happy", "angry", "angry", "happy"],  # happy 1, sad 0, angry 1 -> UA 2/3
]


def test_stability_report_values():
    rep = stability_report(RUNS, REFS)
    assert rep["ua_per_run"] == pytest.approx([1.0, 0.5, 2 / 3])
    mean = (1 + 0.5 + 2 / 3) / 3
    std = math.sqrt(sum((x - mean) ** 2 for x in (1, 0.5, 2 / 3)) / 2)
    assert rep["ua_mean"] == pytest.approx(mean)
    assert rep["ua_std"] == pytest.approx(std)
    # only the first utterance gets the same answer from all 3 runs
    assert rep["agreement"] == pytest.approx(1 / 4)
    # pairs agreeing: 3/3, 1/3, 1/3 (None vs angry differ), 1/3
    assert rep["pairwise_agreement"] == pytest.approx((1 + 1 / 3 + 1 / 3 + 1 / 3) / 4)
    assert rep["majority_share_hist"] == {"1": 0, "2": 3, "3": 1}
    assert (rep["runs"], rep["n"]) == (3, 4)


def test_unparsed_answers_agree_with_each_other_and_are_wrong():
    rep = stability_report([[None, "sad"], [None, "sad"]], ["happy", "sad"])
    assert rep["agreement"] == 1.0 and rep["pairwise_agreement"] == 1.0
    assert rep["ua_per_run"] == [0.5, 0.5] and rep["ua_std"] == 0.0


def test_single_run_and_bad_shapes():
    one = stability_report([REFS], REFS)
    assert (one["ua_std"], one["agreement"], one["pairwise_agreement"]) == (0.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="4 predictions"):
        stability_report([REFS, REFS[:3]], REFS)
    with pytest.raises(ValueError, match="no prediction runs"):
        stability_report([], REFS)
    assert label_indices(["angry", None, "bored"]) == [0, -1, -1]


def test_plot_stability_writes_png(tmp_path):
    path = plot_stability(stability_report(RUNS, REFS), tmp_path / "s" / "stability.png", "t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
