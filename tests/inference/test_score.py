"""Closed-set label scoring equals teacher-forced log-likelihoods computed one label at a time."""

from __future__ import annotations

import pytest
import torch

from c2ser.core.labels import EMOTIONS
from c2ser.core.parse import parse_emotion
from c2ser.inference.score import (
    answer_ids,
    answer_sentences,
    candidate_logliks,
    score_labels,
    template_languages,
)
from tests.models.conftest import make_batch, tiny_c2ser  # noqa: F401 (fixture)


def teacher_forced_loglik(model, batch, row: int, target: list[int]) -> float:
    """Sum of token log-probs of ``target`` after row ``row`` alone, from full logits."""
    one = lambda x: x[row : row + 1]  # noqa: E731
    with torch.no_grad():
        out = model(
            one(batch["mel"]), one(batch["mel_mask"]), one(batch["ssl"]),
            [batch["prompt_ids"][row]], [target], return_logits=True,
        )  # fmt: skip
    logp = out.logits[0].float().log_softmax(-1)
    n = logp.shape[0]
    positions = range(n - len(target) - 1, n - 1)  # each target token predicted one step before
    return sum(float(logp[p, t]) for p, t in zip(positions, target, strict=True))


def test_answers_parse_back_to_their_label():
    assert set(template_languages()) == {"en", "zh"}
    for lang in template_languages():
        for label, sentence in zip(EMOTIONS, answer_sentences(lang), strict=True):
            assert parse_emotion(sentence, lang) == label


def test_batched_scores_equal_one_label_at_a_time(tiny_c2ser):  # noqa: F811
    batch = make_batch(lengths=(300, 157, 220), ssl_dim=32)
    languages = ["en", "zh", None]
    results = score_labels(
        tiny_c2ser, batch["mel"], batch["mel_mask"], batch["ssl"], batch["prompt_ids"], languages
    )
    for row, res in enumerate(results):
        assert sum(res.probs.values()) == pytest.approx(1.0, abs=1e-6)
        assert set(res.probs) == set(EMOTIONS)
        ref = {
            e: teacher_forced_loglik(tiny_c2ser, batch, row, list(ids))
            for e, ids in zip(EMOTIONS, answer_ids(res.language), strict=True)
        }
        for e in EMOTIONS:
            assert res.loglik[e] == pytest.approx(ref[e], abs=2e-3)
        probs = torch.tensor(list(ref.values())).softmax(0)
        assert list(res.probs.values()) == pytest.approx(probs.tolist(), abs=1e-4)
    assert results[0].language == "en" and results[1].language == "zh"
    assert results[2].language in ("en", "zh")


def test_unknown_language_picks_the_likelier_answer_set(tiny_c2ser):  # noqa: F811
    batch = make_batch(lengths=(200,), ssl_dim=32)
    args = (tiny_c2ser, batch["mel"], batch["mel_mask"], batch["ssl"], batch["prompt_ids"])
    [auto] = score_labels(*args, [None])
    both = candidate_logliks(*args, [[list(i) for lang in ("en", "zh") for i in answer_ids(lang)]])[
        0
    ].view(2, 7)
    expected = ("en", "zh")[int(both.logsumexp(1).argmax())]
    assert auto.language == expected
    [fixed] = score_labels(*args, [expected])
    assert fixed.probs == pytest.approx(auto.probs, abs=1e-5)
