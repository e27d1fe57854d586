"""Stability maths on hand-made prediction runs."""

import math

import pytest

from c2ser.evaluation.stability import (
    fleiss_kappa,
    label_indices,
    plot_stability,
    stability_report,
)

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
    assert rep["flip_rate"] == pytest.approx(3 / 4)
    assert rep["invalid_rate"] == pytest.approx(1 / 12)
    # categories happy/sad/angry/invalid; P_i = 1, 1/3, 1/3, 1/3 -> P = 1/2;
    # p_j = 5/12, 3/12, 3/12, 1/12 -> Pe = 44/144; kappa = (1/2 - 11/36) / (25/36) = 7/25
    assert rep["fleiss_kappa"] == pytest.approx(7 / 25)
    assert "by_prompt" not in rep


def test_fleiss_kappa_wikipedia_example():
    """https://en.wikipedia.org/wiki/Fleiss%27_kappa#Worked_example: 14 raters, 10 subjects,
    5 categories; P = 0.378, Pe = 0.213, kappa = 0.210."""
    table = [
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ]  # fmt: skip
    assert fleiss_kappa(table) == pytest.approx(0.2099, abs=5e-4)
    assert fleiss_kappa([[3, 0], [0, 3]]) == 1.0
    assert fleiss_kappa([[3, 0], [3, 0]]) is None  # one category only: chance agreement is 1
    assert fleiss_kappa([[1, 0], [0, 1]]) is None  # one rater
    with pytest.raises(ValueError, match="same number of ratings"):
        fleiss_kappa([[2, 1], [1, 1]])


def test_breakdown_by_prompt():
    # prompt 0: runs 0 and 1; prompt 1: run 2 alone
    rep = stability_report(RUNS, REFS, prompts=[0, 0, 1])
    assert rep["prompts"] == 2 and [b["prompt"] for b in rep["by_prompt"]] == [0, 1]
    p0, p1 = rep["by_prompt"]
    assert (p0["runs"], p0["ua_mean"], p0["flip_rate"]) == (2, pytest.approx(0.75), 0.5)
    assert (p1["runs"], p1["ua_std"], p1["flip_rate"], p1["fleiss_kappa"]) == (1, 0.0, 0.0, None)
    assert p0["invalid_rate"] == pytest.approx(1 / 8)
    assert rep["ua_std_prompts"] == pytest.approx(math.sqrt(2) * abs(0.75 - 2 / 3) / 2)
    with pytest.raises(ValueError, match="2 prompt indices for 3 runs"):
        stability_report(RUNS, REFS, prompts=[0, 1])


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
