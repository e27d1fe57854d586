"""``c2ser cot-data``: add chain-of-thought targets to a manifest.

Every utterance needs ``text``, ``emotion`` and the style bins ``speed``, ``pitch``, ``volume``
(``low|medium|high``, written by ``c2ser style-attributes``). The output manifest gets two new
fields: ``cot_target`` (the explicit Stage 1 answer: style -> quoted transcript -> emotion with a
reason, from the language's templates) and ``implicit_target`` (the short Stage 2 answer).

``--rewrite-llm DIR`` polishes each explicit target with a local instruction-tuned causal LM (the
paper used GLM-4-9B-Chat); a rewrite that drops the transcript or the gold emotion is discarded
in favour of the template text. The rewrite is resumable: finished batches are kept in
``<out>.rewrite.partial.jsonl`` and skipped when the same command runs again.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cot-data",
        help="add explicit/implicit chain-of-thought targets to a manifest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--manifest", required=True, help="jsonl manifest with text, emotion, style")
    p.add_argument("--out", required=True, help="output jsonl manifest")
    p.add_argument("--audio-root", help="directory that relative wav paths are resolved against")
    p.add_argument("--seed", type=int, default=0, help="seed of the phrasing choice (default 0)")
    p.add_argument("--templates", help="directory with <lang>.yaml templates (default: packaged)")
    p.add_argument("--skip-bad", action="store_true", help="skip (and count) unusable entries")
    p.add_argument("--rewrite-llm", metavar="DIR", help="local causal LM that rewrites the drafts")
    p.add_argument("--batch-size", type=int, default=8, help="rewrite batch size")
    p.add_argument("--max-new-tokens", type=int, default=256, help="rewrite length limit")
    p.add_argument("--device", help="rewrite device (default: cuda when available)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from c2ser.data.cot_manifest import make_cot_manifest

    counts = make_cot_manifest(
        args.manifest,
        args.out,
        args.seed,
        args.audio_root,
        args.templates,
        args.skip_bad,
        args.rewrite_llm,
        args.batch_size,
        args.max_new_tokens,
        args.device,
    )
    extra = f", {counts['rewritten']} rewritten by the LLM" if args.rewrite_llm else ""
    print(f"{args.out}: {counts['written']} utterances, skipped {counts['skipped']}{extra}")
    return 0
