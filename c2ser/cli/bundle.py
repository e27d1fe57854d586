"""``c2ser bundle``: a trained C2SER-LLM + its Emotion2Vec-S -> one model bundle directory.

The bundle (see c2ser/models/bundle.py) is what ``c2ser predict`` and ``from c2ser import
Pipeline`` load: the C2SER-LLM (with its fine-tuned LLM, or the recorded llm_path), the
Emotion2Vec-S it was trained with, the utterance features it reads (chosen from its ssl_tokens
unless --utterance-mode says), and a README model card with how it was trained and, with
--metrics, an evaluate.py metrics.json, its scores. Converted official checkpoints get their
bundle from ``c2ser convert c2ser-llm ... --emotion2vec E2VS_DIR``.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bundle",
        help="make a model bundle (for c2ser predict / Pipeline) from a trained model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="C2SER-LLM model directory (<train run>/model)")
    p.add_argument(
        "--emotion2vec",
        help="Emotion2Vec-S directory or pretraining run it was trained with "
        "(not needed for use_ssl=false models)",
    )
    p.add_argument("--metrics", help="an evaluate.py metrics.json of this model, for the card")
    p.add_argument(
        "--utterance-mode",
        choices=["official", "extra_tokens", "mean"],
        help="Emotion2Vec-S utterance features the model was trained on "
        "(default: the one giving its ssl_tokens rows)",
    )
    p.add_argument("--out", required=True, help="bundle directory (must not exist or be empty)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from c2ser.models.bundle import evaluation_metrics, save_bundle, trained_source

    metrics = evaluation_metrics(args.metrics) if args.metrics else None
    source = trained_source(args.model) | {"emotion2vec": args.emotion2vec}
    out = save_bundle(args.out, args.model, args.emotion2vec, source, metrics, args.utterance_mode)
    print(f"wrote {out}")
    return 0
