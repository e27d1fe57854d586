"""Aggregate an EmoBox-style probe sweep (one Hydra multirun) into one table.

Every job of the sweep leaves a ``probe_result.json`` (written by
:class:`c2ser.tasks.probe.ProbeTask`): its lr, hidden size, fold and feature folder, and the
validation and test reports of the epoch selected on validation UA. Everything here is recomputed
from those files alone, so a table can always be checked against (or rebuilt from) the jobs.

For each feature folder and each (lr, hidden size):

- the **mean and standard deviation over folds** of WA, UA and macro-F1, on validation and on
  test. Each fold counts once, whatever its size (EmoBox averages folds the same way). The
  standard deviation is the sample one (``ddof=1``), 0 with a single fold.
- **Best configuration**: the highest mean *validation* UA, among the configurations that have
  the most folds (an unfinished job cannot win by missing a hard fold). Ties go to the higher
  validation WA, then F1, then the smaller hidden size, then the smaller lr. Its *test* numbers
  are the reported result; test scores never take part in the choice.

Outputs (``<run_dir>/report/`` by default): ``probe_report.md``, ``probe_report.csv`` (one row
per configuration, fractions in [0, 1]), ``probe_report.json`` and, for each best configuration,
test confusion matrices per fold plus their sum as PNGs.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from c2ser.core.errors import BadInputError
from c2ser.core.figures import plot_confusion
from c2ser.core.io import atomic_write_text, write_json_atomic

METRICS = ("wa", "ua", "f1")
STAGES = ("val", "test")
RESULT_FILE = "probe_result.json"


def load_jobs(run_dir: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every ``probe_result.json`` under ``run_dir`` (each with its ``dir``), and the job
    folders (those holding a ``config.yaml``) that have none: failed or unfinished jobs."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BadInputError(f"{run_dir}: run directory not found")
    jobs = []
    for path in sorted(run_dir.rglob(RESULT_FILE)):
        try:
            job = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise BadInputError(f"{path}: malformed JSON ({e.msg})") from None
        missing = [k for k in ("lr", "hidden_size", "fold", "val", "test") if job.get(k) is None]
        if missing:
            raise BadInputError(f"{path}: missing {', '.join(missing)}")
        jobs.append({**job, "dir": str(path.parent)})
    if not jobs:
        raise BadInputError(f"{run_dir}: no {RESULT_FILE} found (is this a probe multirun?)")
    unfinished = sorted(
        str(p.parent)
        for p in run_dir.rglob("config.yaml")
        if p.parent.name != ".hydra" and not (p.parent / RESULT_FILE).exists()
    )
    return jobs, unfinished


def _stats(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def aggregate(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (features, lr, hidden_size): folds, and ``<stage>_<metric>_{mean,std}``."""
    groups: dict[tuple, dict[int, dict]] = defaultdict(dict)
    for job in jobs:
        key = (job.get("features", ""), float(job["lr"]), int(job["hidden_size"]))
        fold = int(job["fold"])
        if fold in groups[key]:
            raise BadInputError(
                f"fold {fold} of lr={key[1]:g} hidden={key[2]} appears twice: "
                f"{groups[key][fold]['dir']} and {job['dir']}"
            )
        groups[key][fold] = job
    rows = []
    for (features, lr, hidden), by_fold in sorted(groups.items()):
        row: dict[str, Any] = {
            "features": features,
            "lr": lr,
            "hidden_size": hidden,
            "n_folds": len(by_fold),
            "folds": sorted(by_fold),
        }
        for stage in STAGES:
            for m in METRICS:
                mean, std = _stats([by_fold[f][stage][m] for f in sorted(by_fold)])
                row[f"{stage}_{m}_mean"], row[f"{stage}_{m}_std"] = mean, std
        rows.append(row)
    return rows


def best_rows(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The best configuration per feature folder, by the rule in the module docstring."""
    best = {}
    for features in dict.fromkeys(r["features"] for r in rows):
        cands = [r for r in rows if r["features"] == features]
        most = max(r["n_folds"] for r in cands)
        best[features] = min(
            (r for r in cands if r["n_folds"] == most),
            key=lambda r: (
                -r["val_ua_mean"],
                -r["val_wa_mean"],
                -r["val_f1_mean"],
                r["hidden_size"],
                r["lr"],
            ),
        )
    return best


def _pct(row: dict[str, Any], stage: str, m: str) -> str:
    return f"{100 * row[f'{stage}_{m}_mean']:.2f} ± {100 * row[f'{stage}_{m}_std']:.2f}"


def to_markdown(
    rows: list[dict[str, Any]],
    best: dict[str, dict[str, Any]],
    jobs: list[dict[str, Any]],
    unfinished: list[str],
) -> str:
    """The report as markdown: one table per feature folder, the best configuration and its
    per-fold test scores."""
    out = []
    for features, top in best.items():
        out.append(f"### Probe on `{features}`\n")
        cols = [f"{s} {m.upper()}" for s in STAGES for m in METRICS]
        out.append("| lr | hidden | folds | " + " | ".join(cols) + " |")
        out.append("|---|---|---|" + "---|" * len(cols))
        for r in (r for r in rows if r["features"] == features):
            cells = [_pct(r, s, m) for s in STAGES for m in METRICS]
            mark = " **best**" if r is top else ""
            out.append(
                f"| {r['lr']:g} | {r['hidden_size']}{mark} | {r['n_folds']} | "
                + " | ".join(cells)
                + " |"
            )
        out.append(
            f"\nBest (highest mean validation UA over {top['n_folds']} folds): "
            f"lr={top['lr']:g}, hidden={top['hidden_size']}. Test: WA {_pct(top, 'test', 'wa')}, "
            f"UA {_pct(top, 'test', 'ua')}, F1 {_pct(top, 'test', 'f1')} (%, mean ± std over folds).\n"
        )
        out.append(
            "| fold | selected epoch (0-based) | val UA | test WA | test UA | test F1 | n test |"
        )
        out.append("|---|---|---|---|---|---|---|")
        for job in best_jobs(jobs, top):
            t = job["test"]
            out.append(
                f"| {job['fold']} | {job.get('selected_epoch')} | {100 * job['val']['ua']:.2f} | "
                f"{100 * t['wa']:.2f} | {100 * t['ua']:.2f} | {100 * t['f1']:.2f} | {t.get('n')} |"
            )
        out.append("")
    if unfinished:
        out.append(f"{len(unfinished)} job(s) without {RESULT_FILE} (failed or unfinished):")
        out.extend(f"- {d}" for d in unfinished)
    return "\n".join(out) + "\n"


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({**r, "folds": " ".join(map(str, r["folds"]))})
    return buf.getvalue()


def best_jobs(jobs: list[dict[str, Any]], row: dict[str, Any]) -> list[dict[str, Any]]:
    """The jobs (one per fold, fold order) of one configuration row."""
    return sorted(
        (
            j
            for j in jobs
            if j.get("features", "") == row["features"]
            and float(j["lr"]) == row["lr"]
            and int(j["hidden_size"]) == row["hidden_size"]
        ),
        key=lambda j: int(j["fold"]),
    )


def plot_best_confusions(
    jobs: list[dict[str, Any]], row: dict[str, Any], out_dir: Path, prefix: str
) -> list[Path]:
    """Test confusion PNGs of one configuration: one per fold and the sum over folds."""
    paths, total = [], None
    name = f"lr={row['lr']:g} hidden={row['hidden_size']}"
    for job in best_jobs(jobs, row):
        cm, labels = np.asarray(job["test"]["confusion"]), job["test"]["labels"]
        total = cm if total is None else total + cm
        title = f"{name} fold {job['fold']}: UA {100 * job['test']['ua']:.1f}%"
        paths.append(plot_confusion(cm, labels, out_dir / f"{prefix}fold{job['fold']}.png", title))
    paths.append(
        plot_confusion(total, labels, out_dir / f"{prefix}all_folds.png", f"{name}, all folds")
    )
    return paths


def write_probe_report(run_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Build the report of a sweep; returns ``{"rows", "best", "markdown", "files"}``."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir else run_dir / "report"
    jobs, unfinished = load_jobs(run_dir)
    rows = aggregate(jobs)
    best = best_rows(rows)
    markdown = to_markdown(rows, best, jobs, unfinished)
    files = [
        atomic_write_text(out_dir / "probe_report.md", markdown),
        atomic_write_text(out_dir / "probe_report.csv", to_csv(rows)),
        write_json_atomic(
            out_dir / "probe_report.json", {"rows": rows, "best": best, "unfinished": unfinished}
        ),
    ]
    for i, row in enumerate(best.values()):
        prefix = "best_confusion_" if len(best) == 1 else f"best{i}_confusion_"
        files += plot_best_confusions(jobs, row, out_dir, prefix)
    return {"rows": rows, "best": best, "markdown": markdown, "files": files}
