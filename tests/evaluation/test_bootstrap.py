"""Speaker-level bootstrap: resample structure, intervals and the paired test."""

from __future__ import annotations

import numpy as np
import pytest

from c2ser.core.metrics import confusion_matrix, scores_from_confusion
from c2ser.evaluation.bootstrap import (
    bootstrap_ci,
    paired_bootstrap,
    resample_counts,
    weighted_scores,
)


def test_weighted_scores_match_the_confusion_matrix_scores():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 7, 300)
    y_pred = np.where(rng.random(300) < 0.1, -1, rng.integers(0, 7, 300))  # some invalid
    counts = rng.integers(0, 3, (5, 300))
    batch = weighted_scores(y_true, y_pred, counts, 7)
    for b in range(5):
        rep = np.repeat(np.arange(300), counts[b])
        want = scores_from_confusion(confusion_matrix(y_true[rep], y_pred[rep], 7))
        for m in ("wa", "ua", "f1"):
            assert batch[m][b] == pytest.approx(want[m])


def test_two_level_resampling_keeps_speakers_and_strata_whole():
    # stratum "en": speakers A (3 utterances) and B (1); stratum "zh": one speaker C (4)
    speakers = ["A", "A", "A", "B", "C", "C", "C", "C"]
    strata = ["en"] * 4 + ["zh"] * 4
    counts = resample_counts(speakers, strata, n_resamples=400, seed=1)
    assert counts.shape == (400, 8)
    per_a, per_b = counts[:, :3].sum(axis=1), counts[:, 3]
    assert set(per_a % 3) == {0}  # A is drawn whole: 0, 1 or 2 times its 3 utterances
    assert set(per_a // 3 + per_b) == {2}  # 2 speaker draws in "en", never more
    assert set(per_a // 3) == {0, 1, 2}
    assert set(counts[:, 4:].sum(axis=1)) == {4}  # C, alone in "zh", is drawn once every time
    assert len({tuple(r) for r in counts[:, 4:]}) > 10  # ... and its utterances resampled
    np.testing.assert_array_equal(counts, resample_counts(speakers, strata, 400, seed=1))
    assert not np.array_equal(counts, resample_counts(speakers, strata, 400, seed=2))


def test_single_speaker_sets_get_a_nonzero_interval():
    y_true = np.arange(40) % 4
    y_pred = np.where(np.arange(40) < 30, y_true, (y_true + 1) % 4)  # WA 0.75
    ci = bootstrap_ci(y_true, y_pred, 4, speakers=["S1"] * 40)
    lo, hi = ci["wa"]
    assert lo < 0.75 < hi and hi - lo > 0.1
    assert set(ci) == {"wa", "ua", "f1"}
    assert bootstrap_ci(y_true, y_true, 4, speakers=["S1"] * 40)["ua"] == [1.0, 1.0]


def test_speaker_clusters_widen_the_interval():
    """10 speakers x 10 utterances, each speaker all right or all wrong: utterances are not
    independent, and only the speaker bootstrap shows it (~±0.31 vs ~±0.10 around WA 0.5)."""
    speakers = np.repeat(np.arange(10), 10)
    y_true = np.zeros(100, dtype=int)
    y_pred = np.where(speakers % 2 == 0, 0, 1)
    by_speaker = bootstrap_ci(y_true, y_pred, 2, speakers=speakers.tolist())["wa"]
    by_utterance = bootstrap_ci(y_true, y_pred, 2)["wa"]
    assert by_speaker[1] - by_speaker[0] > 2 * (by_utterance[1] - by_utterance[0])
    assert by_utterance[0] == pytest.approx(0.4, abs=0.04)


def test_paired_test_values():
    y_true = np.arange(100) % 5
    speakers = (np.arange(100) // 10).tolist()
    a = np.where(np.arange(100) < 50, y_true, -1)  # WA/UA 0.5
    same = paired_bootstrap(y_true, a, a, 5, "ua", speakers)
    assert (same["delta"], same["ci"], same["p_value"]) == (0.0, [0.0, 0.0], 1.0)

    better = np.where(np.arange(100) < 90, y_true, -1)  # UA 0.9: 40 more right, 4 speakers
    test = paired_bootstrap(y_true, a, better, 5, "ua", speakers, seed=3)
    assert test["delta"] == pytest.approx(0.4)
    assert 0.05 < test["ci"][0] < 0.4 < test["ci"][1] and test["n_resamples"] == 1000
    assert 1 / 1001 < test["p_value"] < 0.05  # 4 of 10 speakers carry the gain
    by_utt = paired_bootstrap(y_true, a, better, 5, "ua", seed=3)
    assert by_utt["p_value"] == pytest.approx(1 / 1001)  # no resample comes near 0
    worse = paired_bootstrap(y_true, better, a, 5, "ua", speakers, seed=3)
    assert worse["delta"] == pytest.approx(-0.4) and worse["p_value"] == test["p_value"]

    one_more = a.copy()
    one_more[50] = y_true[50]  # a single utterance differs
    close = paired_bootstrap(y_true, a, one_more, 5, "wa", speakers)
    assert close["delta"] == pytest.approx(0.01) and close["p_value"] > 0.3
    assert close["ci"][0] == 0.0  # the resamples that miss utterance 50 tie

    with pytest.raises(ValueError, match="metric must be one of"):
        paired_bootstrap(y_true, a, a, 5, "accuracy")
    with pytest.raises(ValueError, match="n_resamples"):
        resample_counts([1, 2], n_resamples=0)
