"""``c2ser report RUN_DIR... --out tables.md``: the paper's tables from evaluate.py runs.

Reads each run's metrics.json and .hydra/config.yaml, names the system (Stage 1 explicit / Stage 2
implicit) and its ablation (w/o Emotion2Vec-S, w/o Whisper, w/o CoT) from the evaluated model,
and writes, per dataset, the main table (UA with its 95% bootstrap interval, macro-F1, WA, per
language, stability, Stage 1 chain-of-thought scores and, for two or more runs, a paired
bootstrap test of UA against the first full system) and the Stage 2 ablation table, with the
paper's reported numbers beside ours (--paper; values not checked against the PDF are marked
with a dagger). Markdown to --out, CSV beside it (.csv).
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_PAPER = Path(__file__).resolve().parents[2] / "conf" / "paper" / "c2ser_reported.yaml"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="paper-style tables (main + ablations) from evaluate.py runs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dirs", nargs="+", help="evaluate.py run directories")
    p.add_argument("--out", default="tables.md", help="markdown output (CSV: same name, .csv)")
    p.add_argument(
        "--paper",
        default=str(DEFAULT_PAPER) if DEFAULT_PAPER.is_file() else None,
        help="reported numbers yaml (default: conf/paper/c2ser_reported.yaml of the checkout)",
    )
    p.add_argument("--no-paper", action="store_true", help="leave the paper's columns out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from c2ser.evaluation.tables import write_tables

    report = write_tables(args.run_dirs, args.out, None if args.no_paper else args.paper)
    print(report["markdown"])
    print(f"wrote {', '.join(map(str, report['files']))} ({len(report['runs'])} runs)")
    return 0
