"""``c2ser probe-report RUN_DIR``: one table from every job of a probe sweep.

Reads each job's ``probe_result.json`` under RUN_DIR (a ``python train.py -m experiment=probe
hparams_search=emobox_grid ...`` multirun directory), prints the markdown table (mean ± std over
folds of WA/UA/macro-F1 on validation and test per lr x hidden size, and the configuration with the
best mean validation UA with its test scores), and writes it as markdown, CSV and JSON, with the
best configuration's test confusion matrices as PNGs, to RUN_DIR/report (or --out).
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe-report",
        help="aggregate an EmoBox-style probe sweep into one table",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", help="multirun directory of the probe sweep")
    p.add_argument("--out", help="output folder (default: RUN_DIR/report)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from c2ser.evaluation.probe_report import write_probe_report

    report = write_probe_report(args.run_dir, args.out)
    print(report["markdown"])
    print(f"wrote {len(report['files'])} files to {report['files'][0].parent}")
    return 0
