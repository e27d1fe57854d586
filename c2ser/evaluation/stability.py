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
- **majority share** histogram: per utterance, how many of the N runs give its most frequent
  answer (N: fully stable; 1: every run different).

An unparseable answer counts as an answer of its own (two unparseable runs agree); it is wrong
for UA, as in the main evaluation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from c2ser.evaluation.metrics import EMOTIONS, classification_report
from c2ser.utils.io import atomic_savefig


def label_indices(preds: Sequence[str | None], labels: Sequence[str] = EMOTIONS) -> list[int]:
    """Label positions; ``None`` and anything outside ``labels`` become -1 (counted wrong)."""
    index = {lab: i for i, lab in enumerate(labels)}
    return [index.get(p, -1) if p is not None else -1 for p in preds]


def stability_report(
    runs: Sequence[Sequence[str | None]],
    references: Sequence[str],
    labels: Sequence[str] = EMOTIONS,
) -> dict:
    """Scores per run and agreement across runs (see module doc); JSON-ready."""
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
    return {
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
