"""Bootstrap uncertainty for WA / UA / macro-F1: confidence intervals and a paired test.

Utterances of one speaker are not independent (same voice, same recording conditions), so an
utterance-level bootstrap understates the spread a new set of speakers would show. We resample
**speakers**, in two levels (a cluster bootstrap): draw the speakers with replacement, then the
utterances of each drawn speaker with replacement. The second level keeps the interval honest
when a set has a single speaker (the demo test split has one per language), where resampling
speakers alone would always redraw the same set and give a zero-width interval. When every
utterance is its own "speaker" this is the plain utterance-level bootstrap.

With ``strata`` (the language, when scoring "all"), speakers are drawn within each stratum, so
every resample keeps the set's balance of languages.

Each resample is a vector of per-utterance counts (how often the utterance was drawn); the
scores of all resamples come from one weighted confusion matrix each, computed at once. Random
draws use ``numpy.random.default_rng(seed)`` in a fixed order (strata, then speakers, sorted),
so results are repeatable. Intervals are percentile intervals.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

METRICS = ("wa", "ua", "f1")
N_RESAMPLES = 1000


def resample_counts(
    groups: Sequence[Hashable],
    strata: Sequence[Hashable] | None = None,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> np.ndarray:
    """(n_resamples, n) draw counts of a two-level bootstrap over ``groups`` (speakers).

    A speaker drawn c times has ``c * n_s`` of its utterances drawn (n_s = its utterance count),
    uniformly with replacement: c independent inner resamples of size n_s, summed.
    """
    n = len(groups)
    if n == 0:
        raise ValueError("nothing to resample")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    strata = [None] * n if strata is None else list(strata)
    if len(strata) != n:
        raise ValueError(f"{len(strata)} strata for {n} utterances")
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_resamples, n), dtype=np.int64)
    members: dict[Hashable, dict[Hashable, list[int]]] = {}
    for i, (stratum, group) in enumerate(zip(strata, groups, strict=True)):
        members.setdefault(stratum, {}).setdefault(group, []).append(i)
    for stratum in sorted(members, key=repr):
        speakers = [members[stratum][g] for g in sorted(members[stratum], key=repr)]
        k = len(speakers)
        drawn = rng.multinomial(k, np.full(k, 1 / k), size=n_resamples)  # (B, k)
        for s, idx in enumerate(speakers):
            if len(idx) == 1:
                counts[:, idx[0]] = drawn[:, s]
            else:
                inner = rng.multinomial(drawn[:, s] * len(idx), np.full(len(idx), 1 / len(idx)))
                counts[:, idx] = inner
    return counts


def weighted_scores(
    y_true: Sequence[int], y_pred: Sequence[int], counts: np.ndarray, num_classes: int
) -> dict[str, np.ndarray]:
    """WA / UA / macro-F1 of every resample (rows of ``counts``), each an array of length B.

    Same definitions as :func:`c2ser.core.metrics.scores_from_confusion` (UA over classes
    present in the resample's references; F1 over classes present or predicted; predictions
    outside ``0..num_classes-1`` are wrong).
    """
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape or counts.shape[-1] != t.size:
        raise ValueError("y_true, y_pred and counts disagree on the number of utterances")
    k = num_classes
    p = np.where((p >= 0) & (p < k), p, k)  # invalid predictions: column k
    onehot = np.zeros((t.size, k * (k + 1)))
    onehot[np.arange(t.size), t * (k + 1) + p] = 1.0
    cm = (counts @ onehot).reshape(-1, k, k + 1)
    diag = np.diagonal(cm[:, :, :k], axis1=1, axis2=2)
    support = cm.sum(axis=2)
    predicted = cm[:, :, :k].sum(axis=1)
    total = support.sum(axis=1)
    recall = np.divide(diag, support, out=np.zeros_like(diag), where=support > 0)
    precision = np.divide(diag, predicted, out=np.zeros_like(diag), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(diag), where=denom > 0)
    present, counted = support > 0, (support > 0) | (predicted > 0)
    return {
        "wa": np.divide(diag.sum(axis=1), total, out=np.zeros_like(total), where=total > 0),
        "ua": _masked_mean(recall, present),
        "f1": _masked_mean(f1, counted),
    }


def _masked_mean(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    n = mask.sum(axis=1)
    return np.divide((x * mask).sum(axis=1), n, out=np.zeros(len(x)), where=n > 0)


def _interval(samples: np.ndarray, level: float) -> list[float]:
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(samples, [tail, 100 - tail])
    return [float(lo), float(hi)]


def bootstrap_ci(
    y_true: Sequence[int],
    y_pred: Sequence[int],
    num_classes: int,
    speakers: Sequence[Hashable] | None = None,
    strata: Sequence[Hashable] | None = None,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, list[float]]:
    """``{"wa": [lo, hi], "ua": [...], "f1": [...]}``: percentile intervals (fractions) from a
    speaker-level two-level bootstrap; ``speakers=None`` resamples utterances."""
    groups = range(len(y_true)) if speakers is None else speakers
    counts = resample_counts(list(groups), strata, n_resamples, seed)
    scores = weighted_scores(y_true, y_pred, counts, num_classes)
    return {m: _interval(scores[m], level) for m in METRICS}


def paired_bootstrap(
    y_true: Sequence[int],
    pred_a: Sequence[int],
    pred_b: Sequence[int],
    num_classes: int,
    metric: str = "ua",
    speakers: Sequence[Hashable] | None = None,
    strata: Sequence[Hashable] | None = None,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float | list[float] | str | int]:
    """Is system B better than A on the same utterances? Both are scored on the *same*
    resamples, so the speaker and utterance difficulty they share cancels out.

    Returns ``delta`` (metric of B minus A on the full set), its percentile ``ci`` and a
    two-sided ``p_value`` for "no difference": the share of resampled deltas at least as far
    from the observed delta as the observed delta is from 0 (the bootstrap distribution shifted
    to the null, Efron & Tibshirani 1993, §16), with +1 in numerator and denominator so that it is
    never 0.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    groups = range(len(y_true)) if speakers is None else speakers
    counts = resample_counts(list(groups), strata, n_resamples, seed)
    full = np.ones((1, len(y_true)))
    delta = float(
        weighted_scores(y_true, pred_b, full, num_classes)[metric][0]
        - weighted_scores(y_true, pred_a, full, num_classes)[metric][0]
    )
    deltas = (
        weighted_scores(y_true, pred_b, counts, num_classes)[metric]
        - weighted_scores(y_true, pred_a, counts, num_classes)[metric]
    )
    extreme = np.abs(deltas - delta) >= abs(delta) - 1e-12
    return {
        "metric": metric,
        "delta": delta,
        "ci": _interval(deltas, level),
        "p_value": float((extreme.sum() + 1) / (n_resamples + 1)),
        "n_resamples": n_resamples,
    }
