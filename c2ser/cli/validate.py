"""``c2ser validate``: check a manifest and its audio before a long run.

Reads every line (jsonl or wav.scp) and every audio header. Bad entries (file:line or id, and
why) are listed grouped by reason, a count and the first few of each. Emotions must be one of
the 7 labels unless --labels names others (--labels with no value: any). Exit code 0 when
everything is usable, 2 otherwise, so it can gate a job script.
"""

from __future__ import annotations

import argparse
import sys

from c2ser.cli._help import print_failures
from c2ser.core.labels import EMOTIONS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="check a manifest and its audio files",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--manifest", required=True, help="jsonl manifest or Kaldi wav.scp")
    p.add_argument("--audio-root", help="directory that relative wav paths are resolved against")
    p.add_argument(
        "--labels",
        nargs="*",
        default=list(EMOTIONS),
        help="allowed emotion labels; give the option alone to allow any",
    )
    p.add_argument(
        "--max-seconds", type=float, default=None, help="report audio longer than this many seconds"
    )
    p.add_argument(
        "--decode",
        action="store_true",
        help="fully decode every file (slower; catches truncated data, not only headers)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from c2ser.data.validation import validate_manifest

    labels = args.labels or None  # `--labels` alone: any label
    usable, report = validate_manifest(
        args.manifest, args.audio_root, labels, args.max_seconds, decode=args.decode
    )
    print_failures(report, verb="bad", file=sys.stdout)
    print(f"{args.manifest}: {len(usable)} usable, {report.summary()}")
    return 0 if not report else 2
