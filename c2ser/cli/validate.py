"""``c2ser validate``: check a manifest and its audio before a long run.

Reads every line (jsonl or wav.scp) and every audio header, and prints one line per bad entry
(file:line or id, and why). Exit code 0 when everything is usable, 2 otherwise, so it can gate a
job script.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="check a manifest and its audio files",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--manifest", required=True, help="jsonl manifest or Kaldi wav.scp")
    p.add_argument("--audio-root", help="directory that relative wav paths are resolved against")
    p.add_argument("--labels", nargs="*", help="allowed emotion labels (default: any)")
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

    usable, report = validate_manifest(
        args.manifest, args.audio_root, args.labels, args.max_seconds, decode=args.decode
    )
    for line in report.items:
        print(f"bad: {line}")
    print(f"{args.manifest}: {len(usable)} usable, {report.summary()}")
    return 0 if not report else 2
