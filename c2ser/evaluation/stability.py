"""Stability of an LLM-based SER system: how much its answers move when the same test set is
decoded several times with sampling (the release's own decoding is stochastic, spec §4). The
paper reports a "stability" figure whose definition we do not have (spec §7 lists it as missing);
these are our definitions.

Given N prediction runs over the same utterances (``None`` = unparseable answer):

- **UA per run**, with mean and standard deviation (sample std, ``ddof=1``; 0 for one run):
  the spread a reader should expect between two evaluations of the same model.
- **agreement rate**: the fraction of utterances whose N predictions are all identical.
- **mean pairwise agreement**: per utterance, the fraction of the N(N-1)/2 run pairs that give
  the same answer, averaged over utterances. It degrades gracefully where the agreement rate
  drops to 0 as soon as one run of many differs.
- **flip rate** = 1 - agreement rate: the share of utterances whose label changes in at least
  one run.
- **majority share** histogram: per utterance, how many of the N runs give its most frequent
  answer (N: fully stable; 1: every run different).
- **Fleiss' kappa** over the runs as raters: agreement corrected for the agreement expected by
  chance from how often each label is given (1: perfect, 0: chance level). Unlike the raw
  agreement it does not reward a system that answers one label for everything.
- **invalid rate**: the share of all answers (utterances x runs) that are unparseable or name a
  label outside the 7.

The paper's claim concerns both sampling and the wording of the prompt, so runs may come from
several prompt paraphrases: ``prompts`` (one paraphrase index per run) adds ``by_prompt``
(the figures above within each paraphrase) and ``ua_std_prompts`` (the spread of the
paraphrases' mean UA).

An unparseable answer counts as an answer of its own (two unparseable runs agree, and it is one
more category for kappa); it is wrong for UA, as in the main evaluation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from c2ser.core.io import atomic_savefig
from c2ser.core.labels import EMOTIONS
from c2ser.core.metrics import classification_report


def label_indices(preds: Sequence[str | None], labels: Sequence[str] = EMOTIONS) -> list[int]:
    """Label positions; ``None`` and anything outside ``labels`` become -1 (counted wrong)."""
    index = {lab: i for i, lab in enumerate(labels)}
    return [index.get(p, -1) if p is not None else -1 for p in preds]


def fleiss_kappa(counts: np.ndarray | Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa of an (items, categories) table of how many raters chose each category.

    Every item needs the same number of raters (>= 2). ``None`` where kappa is undefined: one
    rater, or every rating in a single category (expected agreement 1).
    """
    table = np.asarray(counts, dtype=float)
    if table.ndim != 2 or not len(table):
        raise ValueError("counts must be a non-empty (items, categories) table")
    raters = table.sum(axis=1)
    if not np.all(raters == raters[0]):
        raise ValueError("every item needs the same number of ratings")
    n = raters[0]
    if n < 2:
        return None
    p_item = ((table**2).sum(axis=1) - n) / (n * (n - 1))
    p_cat = table.sum(axis=0) / table.sum()
    expected = float((p_cat**2).sum())
    if expected >= 1.0 - 1e-12:
        return None
    return float((p_item.mean() - expected) / (1.0 - expected))


def _rating_table(runs: Sequence[Sequence[str | None]], labels: Sequence[str]) -> np.ndarray:
    """(utterances, labels + 1) counts of the runs' answers; the last column: invalid."""
    idx = np.asarray([label_indices(r, labels) for r in runs])  # (runs, utterances)
    idx = np.where(idx < 0, len(labels), idx)
    table = np.zeros((idx.shape[1], len(labels) + 1), dtype=np.int64)
    for row in idx:
        table[np.arange(idx.shape[1]), row] += 1
    return table


def stability_report(
    runs: Sequence[Sequence[str | None]],
    references: Sequence[str],
    labels: Sequence[str] = EMOTIONS,
    prompts: Sequence[int] | None = None,
) -> dict:
    """Scores per run and agreement across runs (see module doc); JSON-ready. ``prompts``: the
    paraphrase index of each run, for the per-paraphrase breakdown."""
    if not runs:
        raise ValueError("no prediction runs")
    n = len(references)
    if any(len(r) != n for r in runs):
        raise ValueError(f"every run must have {n} predictions (one per reference)")
    y_true = label_indices(references, labels)
    reports = [classification_report(y_true, label_indices(r, labels), labels) for r in runs]
    ua = np.array([r["ua"] for r in reports])
    per_utt = list(zip(*runs)) if n else []
    majority = [Counter(answers).most_common(1)[0][1] for answers in per_utt]
    k = len(runs)
    pairs = k * (k - 1) / 2
    pairwise = [
        sum(c * (c - 1) / 2 for c in Counter(answers).values()) / pairs if pairs else 1.0
        for answers in per_utt
    ]
    invalid = [p < 0 for r in runs for p in label_indices(r, labels)]
    report = {
        "runs": k,
        "n": n,
        "ua_per_run": ua.tolist(),
        "wa_per_run": [r["wa"] for r in reports],
        "f1_per_run": [r["f1"] for r in reports],
        "ua_mean": float(ua.mean()),
        "ua_std": float(ua.std(ddof=1)) if k > 1 else 0.0,
        "agreement": float(np.mean([m == k for m in majority])) if n else 0.0,
        "pairwise_agreement": float(np.mean(pairwise)) if n else 0.0,
        "majority_share_hist": {str(s): majority.count(s) for s in range(1, k + 1)},
        "fleiss_kappa": fleiss_kappa(_rating_table(runs, labels)) if n else None,
        "invalid_rate": float(np.mean(invalid)) if invalid else 0.0,
    }
    report["flip_rate"] = 1.0 - report["agreement"] if n else 0.0
    if prompts is not None:
        report.update(_by_prompt(runs, references, labels, prompts))
    return report


def _by_prompt(
    runs: Sequence[Sequence[str | None]],
    references: Sequence[str],
    labels: Sequence[str],
    prompts: Sequence[int],
) -> dict:
    if len(prompts) != len(runs):
        raise ValueError(f"{len(prompts)} prompt indices for {len(runs)} runs")
    keys = ("ua_mean", "ua_std", "agreement", "flip_rate", "fleiss_kappa", "invalid_rate")
    by_prompt = []
    for p in sorted(set(prompts)):
        rep = stability_report([r for r, q in zip(runs, prompts) if q == p], references, labels)
        by_prompt.append({"prompt": p, "runs": rep["runs"], **{key: rep[key] for key in keys}})
    means = np.array([b["ua_mean"] for b in by_prompt])
    return {
        "prompts": len(by_prompt),
        "by_prompt": by_prompt,
        "ua_std_prompts": float(means.std(ddof=1)) if len(means) > 1 else 0.0,
    }


def plot_stability(report: dict, path: str | Path, title: str = "") -> Path:
    """Two panels: UA per run (with the mean ± std band) and the majority-share histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ua = 100 * np.asarray(report["ua_per_run"])
    mean, std = 100 * report["ua_mean"], 100 * report["ua_std"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    runs = np.arange(1, len(ua) + 1)
    left.plot(runs, ua, "o-", color="tab:blue")
    left.axhline(mean, color="gray", lw=1)
    left.axhspan(mean - std, mean + std, color="gray", alpha=0.2)
    left.set(xlabel="run", ylabel="UA (%)", xticks=runs, title=f"UA {mean:.2f} ± {std:.2f}")
    hist = report["majority_share_hist"]
    right.bar([int(s) for s in hist], list(hist.values()), color="tab:orange")
    right.set(
        xlabel=f"runs giving the majority answer (of {report['runs']})",
        ylabel="utterances",
        xticks=[int(s) for s in hist],
        title=f"all agree {100 * report['agreement']:.1f}%, "
        f"pairwise {100 * report['pairwise_agreement']:.1f}%",
    )
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return atomic_savefig(fig, path)
