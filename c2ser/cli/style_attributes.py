"""``c2ser style-attributes``: measure pitch, loudness and speaking rate and bin them.

Adds ``f0_median_hz``, ``loudness_lufs``, ``speech_rate`` and their low/medium/high bins
``pitch``, ``volume``, ``speed`` (corpus mean ± one std, as in the C2SER paper) to every line of a
jsonl manifest. These bins fill the explicit chain-of-thought templates (``c2ser cot-data``).
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "style-attributes",
        help="add speaking-style attributes to a manifest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--manifest", required=True, help="jsonl manifest (needs text for the rate)")
    p.add_argument("--out", help="output manifest (default: rewrite --manifest atomically)")
    p.add_argument("--audio-root", help="directory that relative wav paths are resolved against")
    p.add_argument(
        "--per-language",
        action="store_true",
        help="bin each language against its own mean/std (default: corpus-wide)",
    )
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip (and count) bad lines and unreadable audio instead of stopping",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from c2ser.core.errors import SkipReport
    from c2ser.data.manifest import read_manifest, relativize, write_manifest
    from c2ser.data.style import add_style_attributes

    report = SkipReport()
    utts = read_manifest(args.manifest, args.audio_root, args.skip_bad, report=report)
    done = add_style_attributes(
        utts, skip_bad=args.skip_bad, report=report, per_language=args.per_language
    )
    out = Path(args.out or args.manifest)
    write_manifest(out, relativize(done, args.audio_root or out.resolve().parent))
    for line in report.items:
        print(f"skip: {line}")
    print(f"wrote {len(done)} utterances to {out}; {report.summary()}")
    return 0
