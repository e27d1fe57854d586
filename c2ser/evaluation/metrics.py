"""SER metrics as the literature uses them, computed from one confusion matrix.

- **WA** (weighted accuracy) = plain accuracy over all utterances.
- **UA** (unweighted accuracy) = mean recall over the classes *present in the references*
  (= balanced accuracy). Classes absent from a fold do not count as 0.
- **macro-F1** = mean F1 over the classes present in the references *or* the predictions
  (a class predicted but never true has F1 0 and counts; a class neither true nor predicted
  is left out).

Predictions outside ``labels`` (e.g. unparseable LLM answers, index -1) are wrong: they count in
the denominators but never on the diagonal. Note that EmoBox's ``scoring_metric.py`` swaps the
names WA/UA; we follow ``EmoBox/EmoEval.py`` and the papers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from c2ser.utils.io import atomic_savefig

EMOTIONS: tuple[str, ...] = (
    "angry",
    "happy",
    "neutral",
    "sad",
    "surprised",
    "fearful",
    "disgusted",
)


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """(K, K+1) counts: rows are references, the last column counts invalid predictions (< 0)."""
    cm = np.zeros((num_classes, num_classes + 1), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        if not 0 <= t < num_classes:
            raise ValueError(f"reference label index {t} outside 0..{num_classes - 1}")
        cm[t, p if 0 <= p < num_classes else num_classes] += 1
    return cm


def scores_from_confusion(cm: np.ndarray) -> dict[str, float]:
    """WA, UA and macro-F1 (fractions in [0, 1]) from a (K, K) or (K, K+1) confusion matrix."""
    k = cm.shape[0]
    diag = np.diag(cm[:, :k]).astype(float)
    support = cm.sum(axis=1).astype(float)
    predicted = cm[:, :k].sum(axis=0).astype(float)
    total = support.sum()
    present = support > 0
    recall = np.divide(diag, support, out=np.zeros(k), where=present)
    precision = np.divide(diag, predicted, out=np.zeros(k), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)
    counted = present | (predicted > 0)
    return {
        "wa": float(diag.sum() / total) if total else 0.0,
        "ua": float(recall[present].mean()) if present.any() else 0.0,
        "f1": float(f1[counted].mean()) if counted.any() else 0.0,
    }


def classification_report(
    y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str] = EMOTIONS
) -> dict:
    """Scores + per-class recall/F1 + the confusion matrix (as nested lists, JSON-ready)."""
    cm = confusion_matrix(y_true, y_pred, len(labels))
    k = len(labels)
    support = cm.sum(axis=1)
    recall = np.divide(np.diag(cm[:, :k]), support, out=np.zeros(k), where=support > 0)
    return {
        **scores_from_confusion(cm),
        "n": int(support.sum()),
        "invalid": int(cm[:, k].sum()),
        "labels": list(labels),
        "per_class_recall": {lab: float(r) for lab, r, s in zip(labels, recall, support) if s},
        "confusion": cm.tolist(),
    }


def plot_confusion(
    cm: np.ndarray | list, labels: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    """Row-normalised confusion matrix as a PNG (counts annotated); invalid predictions, if any,
    get their own column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    cols = list(labels) + (["invalid"] if cm.shape[1] > len(labels) and cm[:, -1].any() else [])
    cm = cm[:, : len(cols)]
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(cols), 1.0 + 0.7 * len(labels)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                color="white" if norm[i, j] > 0.5 else "black",
                fontsize=8,
            )
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return atomic_savefig(fig, path)
