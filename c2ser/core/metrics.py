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

import numpy as np

from c2ser.core.labels import EMOTIONS


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
