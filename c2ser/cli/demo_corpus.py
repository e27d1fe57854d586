"""``c2ser demo-corpus``: synthesise the embedded bilingual emotional speech corpus.

espeak-ng (from the pip package ``espeakng-loader``) speaks a few hundred everyday English and
Mandarin sentences with emotion-specific prosody (pitch, range, rate, loudness, pauses, voice
quality) and per-speaker variation, for the 7 Emo-Emilia emotions. Most utterances of every
emotion use emotion-neutral sentences, so the emotion has to be heard, not read.

Output: OUT/wav/<lang>/<id>.wav (16 kHz mono) and OUT/manifest.jsonl (Emo-Emilia schema + language,
speaker, split, fold, duration and the speaking-style attributes speed/pitch/volume). Splits are
speaker-independent: per language the last speaker is test, the one before val, the rest train;
fold = the speaker's number. Deterministic from --seed; rerunning resumes (only missing or stale
wavs are synthesised).

example:
  c2ser demo-corpus --out data/demo                 # 2 x 7 x 40 = 560 utterances, about 30 s
  c2ser demo-corpus --out data/demo_big --size 200  # 2800 utterances
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo-corpus",
        help="synthesise the bilingual demo corpus (espeak-ng)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="data/demo", help="output directory (default: data/demo)")
    p.add_argument(
        "--size",
        type=int,
        default=40,
        help="utterances per emotion and language (default 40: 2 x 7 x 40 = 560)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for texts, speakers and prosody")
    p.add_argument(
        "--languages", nargs="+", default=["en", "zh"], choices=["en", "zh"], help="(default: both)"
    )
    p.add_argument(
        "--speakers",
        type=int,
        default=4,
        help="speakers per language, 3 to 6 (default 4; last = test, second-last = val)",
    )
    p.add_argument("--workers", type=int, default=None, help="processes (default: up to 2)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from c2ser.data.demo.corpus import build_demo_corpus, summarize
    from c2ser.data.manifest import read_manifest

    manifest = build_demo_corpus(
        args.out,
        size=args.size,
        seed=args.seed,
        languages=tuple(args.languages),
        num_speakers=args.speakers,
        workers=args.workers,
    )
    print(summarize(read_manifest(manifest)))
    print(f"manifest: {manifest}")
    return 0
