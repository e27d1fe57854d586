"""``c2ser predict PATH... --model BUNDLE``: the emotion of each audio file, with its probability.

PATHs are audio files or folders (searched recursively for audio files). One line per file on
stdout, ``<file>\t<emotion>\t<probability>``, printed as batches finish (a progress bar on
stderr for long inputs); --out also writes every result (.jsonl: the pipeline's dicts with the 7
label probabilities; .csv: one column per label). Any sample rate and channel count is read
(down-mixed, resampled to 16 kHz as the official front end).

--mode score (default) scores the 7 Stage 2 answer sentences ("The speaker's emotion is happy.")
and softmaxes them: always a label, exact probabilities. --mode generate lets the model write
its answer (--decoding) and parses it; such rows have no probabilities (printed as -).

A bad input (missing path, empty folder, empty, corrupt or too short audio) stops the run with
one line naming it (exit 2), before any model work when its header already tells; --skip-bad
counts, reports and skips them instead (exit 0). The bundle comes from
``c2ser convert c2ser-llm ... --emotion2vec`` or ``c2ser bundle``.
"""

from __future__ import annotations

import argparse
from typing import Any

from c2ser.cli._help import print_failures


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="emotion + probability of audio files and folders, with a model bundle",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders")
    p.add_argument("--model", required=True, help="model bundle directory (c2ser bundle/convert)")
    p.add_argument("--out", help="also write all results: results.jsonl or results.csv")
    p.add_argument(
        "--stage",
        type=int,
        choices=[1, 2],
        default=2,
        help="prompt: 2 asks for the emotion directly (the released model), 1 for the CoT",
    )
    p.add_argument(
        "--mode",
        choices=["score", "generate"],
        default="score",
        help="score: probabilities of the 7 answers; generate: free text, parsed",
    )
    p.add_argument(
        "--decoding",
        choices=["greedy", "beam", "official", "sample"],
        default="greedy",
        help="generation preset (--mode generate; see c2ser infer --help)",
    )
    p.add_argument("--max-new-tokens", type=int, default=400, help="answer length limit (generate)")
    p.add_argument(
        "--language",
        choices=["en", "zh"],
        help="language of every file (default: the likelier of the two answer languages)",
    )
    p.add_argument("--batch-size", type=int, default=8, help="files per model batch")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], help="LLM dtype override")
    p.add_argument(
        "--skip-bad", action="store_true", help="skip bad inputs, report them at the end"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from c2ser.inference.pipeline import Pipeline
    from c2ser.inference.predict import check_output, predict_files, top_probability, write_results

    check_output(args.out)
    pipe = Pipeline.from_pretrained(args.model, args.device, args.dtype, args.batch_size)

    def show(rows: list[dict[str, Any]]) -> None:
        for r in rows:
            p = top_probability(r)
            print(f"{r['input']}\t{r['emotion'] or 'unparsed'}\t{'-' if p is None else f'{p:.3f}'}")

    rows, summary = predict_files(
        pipe, args.paths, args.stage, args.mode, args.skip_bad, on_results=show,
        progress=not args.no_progress, language=args.language, decoding=args.decoding,
        max_new_tokens=args.max_new_tokens,
    )  # fmt: skip
    if args.out:
        write_results(args.out, rows)
    print_failures(summary.failed)
    rate = summary.done / summary.seconds if summary.seconds else 0.0
    where = f"{args.out}: " if args.out else ""
    print(f"{where}done {summary.done}, {summary.failed.summary('failed')}; {rate:.2f} files/s")
    return 0  # without --skip-bad a bad input has stopped the run with exit 2 already
