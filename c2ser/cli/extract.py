"""``c2ser extract``: Emotion2Vec-S (or log-mel) features, one ``<id>.npy`` per utterance.

Frame level writes (T, 768) at 50 Hz, utterance level (10, 768), as the official extractor; rerun
the same command to resume. See :mod:`c2ser.inference.extract` for batching, chunking of long
audio and what counts as a finished output.
"""

from __future__ import annotations

import argparse

from c2ser.cli._help import print_failures


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "extract",
        help="extract Emotion2Vec-S or log-mel features (<id>.npy per utterance)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--manifest", required=True, help="Emo-Emilia-style .jsonl or Kaldi wav.scp")
    p.add_argument("--out", required=True, help="output directory for <id>.npy")
    p.add_argument(
        "--level",
        choices=["frame", "utterance"],
        default="frame",
        help="frame: (T, D) at 50 Hz; utterance: the rows C2SER reads (see --utterance-mode)",
    )
    p.add_argument(
        "--extractor",
        choices=["emotion2vec-s", "logmel"],
        default="emotion2vec-s",
        help="logmel: (T, 80) whisper-style log-mel frames, the probe baseline",
    )
    p.add_argument(
        "--checkpoint",
        help="converted Emotion2Vec-S directory (c2ser convert emotion2vec-s) or pretraining run",
    )
    p.add_argument(
        "--random-init",
        action="store_true",
        help="no checkpoint: random weights (tests and benchmarks only)",
    )
    p.add_argument(
        "--model",
        choices=["base", "tiny"],
        default="base",
        help="model size for --random-init (base: the released size)",
    )
    p.add_argument(
        "--utterance-mode",
        choices=["official", "extra_tokens", "mean"],
        default="official",
        help="official: first 10 frames, as the released C2SER-LLM was trained on; "
        "extra_tokens: the 10 utterance tokens; mean: (1, D) frame mean",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument(
        "--dtype", choices=["float32", "bfloat16"], default="float32", help="model dtype"
    )
    p.add_argument(
        "--batch-frames",
        type=_positive_int,
        default=6000,
        help="padded output frames per batch (50 per second of audio for Emotion2Vec-S, 100 "
        "for log-mel); 1 = one utterance at a time",
    )
    p.add_argument(
        "--max-padding",
        type=_fraction,
        help="largest fraction of padded frames in a batch (default 0.1: padding is lost "
        "compute; on a GPU with a sparse length mix, 1 lets batches fill up)",
    )
    p.add_argument(
        "--max-seconds",
        type=float,
        default=60.0,
        help="longer audio is processed in chunks of this length (full frame count kept); "
        "0 disables chunking",
    )
    p.add_argument("--audio-root", help="resolve relative wav paths against this folder")
    p.add_argument(
        "--skip-bad", action="store_true", help="skip bad entries, report them at the end"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1], got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from c2ser.inference.extract import extract_manifest, make_extractor

    extractor = make_extractor(
        args.extractor,
        args.level,
        args.utterance_mode,
        args.checkpoint,
        args.random_init,
        args.model,
        args.device,
        args.dtype,
        args.max_seconds or None,
    )
    summary = extract_manifest(
        args.manifest,
        args.out,
        extractor,
        batch_frames=args.batch_frames,
        max_padding=args.max_padding,
        skip_bad=args.skip_bad,
        audio_root=args.audio_root,
        progress=not args.no_progress,
    )
    print_failures(summary.failed)
    print(f"{args.out}: {summary.line('already extracted')}")
    return 0
