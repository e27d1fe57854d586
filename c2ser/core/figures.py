"""Figures shared by training tasks (the test confusion matrix) and evaluation reports.

matplotlib is imported when a figure is drawn, so importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from c2ser.core.io import atomic_savefig


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
