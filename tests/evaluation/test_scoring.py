"""score_predictions on labelled rows (a classifier's outputs) and the paired comparison."""

from __future__ import annotations

import pytest

from c2ser.core.errors import BadInputError
from c2ser.core.labels import EMOTIONS
from c2ser.evaluation.scoring import compare_predictions, score_predictions


def _rows(right: int, speaker: bool = True) -> list[dict]:
    """One speaker per language, 14 utterances each (2 per emotion); the first ``right`` of
    each language correct, the next 2 unanswered, the rest wrong."""
    rows = []
    for lang in ("en", "zh"):
        for i in range(14):
            ref = EMOTIONS[i % 7]
            pred = ref if i < right else None if i < right + 2 else EMOTIONS[(i + 1) % 7]
            row = {"index": f"{lang}_{i}", "emotion": ref, "language": lang, "pred_emotion": pred}
            rows.append({**row, "speaker": f"{lang}_S1"} if speaker else row)
    return rows


def test_score_predictions_sets_parse_rate_and_intervals():
    s = score_predictions(_rows(7))
    assert set(s["languages"]) == {"en", "zh"}
    for rep in (s["overall"], s["languages"]["en"]):
        assert rep["wa"] == pytest.approx(0.5) and rep["parse_rate"] == pytest.approx(12 / 14)
        assert set(rep["ci"]) == {"wa", "ua", "f1"}
        lo, hi = rep["ci"]["wa"]
        assert lo < 0.5 < hi and hi - lo > 0.1  # one speaker per language, still an interval
    assert s["bootstrap"]["unit"] == "speaker" and s["bootstrap"]["resamples"] == 1000
    assert score_predictions(_rows(7)) == s  # seeded


def test_missing_speakers_fall_back_to_utterances_and_say_so():
    rows = _rows(7, speaker=False)
    assert score_predictions(rows)["bootstrap"]["unit"] == "utterance"
    by_map = score_predictions(rows, speakers={r["index"]: "S" for r in rows[:14]})
    assert by_map["bootstrap"]["unit"] == "mixed"
    assert "ci" not in score_predictions(rows, n_resamples=0)["overall"]
    with pytest.raises(BadInputError, match="reference emotion 'bored'"):
        score_predictions([{"index": "x", "emotion": "bored", "pred_emotion": "happy"}])


def test_compare_predictions_on_common_utterances():
    ref, better = _rows(5), _rows(12)
    kept = better[:14] + better[20:]  # zh_0..zh_5 not scored by the second system
    test = compare_predictions(ref, kept)
    assert test["n"] == 22 and test["metric"] == "ua"
    ua = lambda rows: score_predictions(rows, n_resamples=0)["overall"]["ua"]  # noqa: E731
    assert test["delta"] == pytest.approx(ua(kept) - ua(ref[:14] + ref[20:]))
    assert test["delta"] > 0.3 and test["p_value"] < 0.05
    assert compare_predictions(ref, [{"index": "other", "emotion": "sad"}]) is None
    with pytest.raises(BadInputError, match="reference emotions differ"):
        compare_predictions(ref, [{**ref[0], "emotion": "sad"}])
