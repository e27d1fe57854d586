"""``c2ser distill-targets``: the Stage 1 model's own explicit CoT as Stage 2 training targets.

Runs the Stage 1 model (batched, ``c2ser infer``'s engine, Stage 1 prompt) over the manifest and
stores each answer as ``cot_target`` for ``python train.py experiment=stage2_demo``: the
teacher-generated variant of self-distillation. The raw answers are kept in
``<out>.teacher.jsonl``; that file also makes the command resumable (finished ids are skipped).

Gold-emotion check: an answer whose parsed emotion differs from the label is replaced by the
template CoT (``--on-mismatch template``, default; needs the style attributes), kept as is
(``keep``) or dropped with its utterance (``drop``). Each row records ``cot_source``.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distill-targets",
        help="write a Stage 1 model's explicit answers as cot_target (Stage 2 data)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="Stage 1 model dir (<run>/model)")
    p.add_argument("--manifest", required=True, help="jsonl manifest (text, emotion, style)")
    p.add_argument("--out", required=True, help="output jsonl manifest")
    p.add_argument("--features", help="directory of Emotion2Vec-S <id>.npy utterance features")
    p.add_argument("--audio-root", help="directory that relative wav paths are resolved against")
    p.add_argument(
        "--on-mismatch",
        choices=["template", "keep", "drop"],
        default="template",
        help="teacher answer whose emotion disagrees with the label (default: template)",
    )
    p.add_argument("--batch-size", type=int, default=8, help="utterances per generation batch")
    p.add_argument(
        "--decoding",
        choices=["greedy", "beam", "official"],
        default="greedy",
        help="teacher decoding",
    )
    p.add_argument("--max-new-tokens", type=int, default=200, help="teacher answer length limit")
    p.add_argument("--seed", type=int, default=0, help="decoding seed and template phrasing seed")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], help="LLM dtype override")
    p.add_argument(
        "--skip-bad", action="store_true", help="skip bad utterances, report them at the end"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from c2ser.inference.distill_targets import make_distill_manifest

    overrides = {"llm_dtype": args.dtype} if args.dtype else {}
    counts = make_distill_manifest(
        args.checkpoint,
        args.manifest,
        args.out,
        args.features,
        args.audio_root,
        args.on_mismatch,
        args.batch_size,
        args.decoding,
        args.max_new_tokens,
        args.seed,
        args.device,
        skip_bad=args.skip_bad,
        **overrides,
    )
    by = ", ".join(f"{n} {k}" for k, n in counts.items() if k != "skipped")
    print(f"{args.out}: {by or 'nothing written'}; skipped {counts['skipped']}")
    return 0
