"""``c2ser infer``: C2SER-LLM generation over a manifest -> results.jsonl.

Batched (left padding, KV cache) in eval mode; resumable (ids already in --out are skipped, and
--out.run.json records the model and settings that produced them: resuming with others is
refused); rows come out in manifest order. A bad utterance (missing or unreadable audio, missing
features, too long) stops the run with one line; --skip-bad counts, reports and skips them
instead. Each row holds the raw text, the parsed emotion, the reference emotion/language and the
timing.

Decodings: greedy and beam are deterministic; ``official`` is the release's 4-beam "sampling"
with top_p=0, which in fact gives the same output for every seed (see
c2ser/inference/generate.py); ``sample`` is nucleus sampling (--temperature, --top-p;
repeatable with --seed); ``score`` generates nothing: it scores the 7 Stage 2 answer
sentences in the utterance's language and answers with the likeliest, so every answer parses,
and each row gets ``scores`` (label -> probability). ``--paraphrase N`` asks with one of
our rewordings of the stage's prompt (0: the official prompt).

--checkpoint takes a C2SER-LLM model directory or a model bundle (`c2ser bundle`, `c2ser
convert c2ser-llm --emotion2vec`): a bundle answers with its C2SER-LLM and, without --features,
its Emotion2Vec-S computes the utterance features from the audio (no `c2ser extract` step).
"""

from __future__ import annotations

import argparse

from c2ser.cli._help import print_failures


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "infer",
        help="generate C2SER-LLM descriptions/emotions for a manifest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        help="model directory (save_pretrained/convert) or model bundle (c2ser bundle)",
    )
    p.add_argument("--manifest", required=True, help="jsonl manifest or Kaldi wav.scp")
    p.add_argument(
        "--stage",
        type=int,
        choices=[1, 2],
        default=2,
        help="1 explicit chain of thought, 2 implicit answer (the released model; as evaluate.py)",
    )
    p.add_argument("--out", required=True, help="results.jsonl (appended to; reruns resume)")
    p.add_argument(
        "--features",
        help="directory of Emotion2Vec-S <id>.npy utterance features (a bundle without it: "
        "computed by the bundle's Emotion2Vec-S)",
    )
    p.add_argument("--batch-size", type=int, default=8, help="utterances per generation batch")
    p.add_argument(
        "--decoding",
        choices=["greedy", "beam", "official", "sample", "score"],
        default="greedy",
        help="see above",
    )
    p.add_argument("--temperature", type=float, help="sampling temperature (sampling decodings)")
    p.add_argument("--top-p", type=float, help="nucleus top_p (sampling decodings)")
    p.add_argument("--paraphrase", type=int, default=0, help="prompt paraphrase (0: official)")
    p.add_argument("--max-new-tokens", type=int, default=400, help="answer length limit")
    p.add_argument("--seed", type=int, default=0, help="seed of every batch (sampling decodings)")
    p.add_argument("--audio-root", help="directory that relative wav paths are resolved against")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], help="LLM dtype override")
    p.add_argument(
        "--skip-bad", action="store_true", help="skip bad utterances, report them at the end"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from c2ser.core.parse import parse_emotion
    from c2ser.inference.generate import run_inference

    overrides = {"llm_dtype": args.dtype} if args.dtype else {}
    summary = run_inference(
        args.checkpoint,
        args.manifest,
        args.out,
        stage=args.stage,
        features=args.features,
        batch_size=args.batch_size,
        decoding=args.decoding,
        seed=args.seed,
        audio_root=args.audio_root,
        device=args.device,
        max_new_tokens=args.max_new_tokens,
        parse=parse_emotion,
        prompt=args.paraphrase,
        temperature=args.temperature,
        top_p=args.top_p,
        skip_bad=args.skip_bad,
        progress=not args.no_progress,
        **overrides,
    )
    print_failures(summary.failed)
    print(f"{args.out}: {summary.line('already in results')}; {summary.tokens} tokens")
    return 0  # without --skip-bad a failure has stopped the run with exit 2 already
