"""Audio to emotion: the batched pipeline (Stage 2, score and greedy) vs the official recipe's loop.

    python scripts/bench_pipeline.py --official-max-new-tokens 62   # random tiny bundle, CoT length
    python scripts/bench_pipeline.py --bundle DIR --inputs data/demo/wav   # a real bundle and audio
    python scripts/bench_pipeline.py --device cuda --n 256 --batch-size 32

Both sides label the same audio files with the same model (a bundle: C2SER-LLM + Emotion2Vec-S)
and include decoding the audio:

- **official loop**, the release's recipe: Emotion2Vec-S extraction as a separate step, one file
  at a time in train mode with autograd on (as its ``speech_feature_extraction.py``), each
  utterance's features written to ``.npy``; then, per utterance, the features read back and the
  Stage 1 prompt answered with the settings of its ``infer_runtime.py`` (4 beams "with
  sampling", ``top_p=0``, repetition penalty 1.05, up to 400 new tokens), batch 1;
- **pipeline score**: ``Pipeline(...)(files, stage=2, mode="score")``: length-sorted batches,
  Emotion2Vec-S inside, the 7 Stage 2 answers scored in one pass per batch;
- **pipeline greedy**: the same with ``mode="generate"``, greedy, Stage 2 prompt.

Without ``--bundle`` the model is ``conf/model/c2ser_tiny`` (ssl_dim 64) with its weights
re-drawn at unit scale and a random tiny Emotion2Vec-S. A random LLM never stops, so the official
loop runs to its token limit: give it the length of a real chain of thought,
``--official-max-new-tokens 62`` (the mean answer of the demo's Stage 1 model), to time what the
release's recipe costs; the default, 400, is the release's limit. The table gives the tokens the
official loop generated. We run its generation in eval mode without autograd (the release did
not), which only favours the official side. The result goes to BENCHMARKS.md, section "Pipeline
vs the official recipe (<machine>)".
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def random_bundle(out: Path, seed: int) -> Path:
    """A bundle of the scrambled ``c2ser_tiny`` (64-d Emotion2Vec-S rows) + a random tiny
    Emotion2Vec-S, official utterance features."""
    from bench_infer import tiny_model

    from c2ser.models.bundle import save_bundle
    from c2ser.models.emotion2vec_s import Emotion2VecS, tiny_config

    model = tiny_model(seed, "model.ssl_dim=64").save_pretrained(out / "parts" / "c2ser")
    torch.manual_seed(seed)
    e2vs = Emotion2VecS(tiny_config()).save_pretrained(out / "parts" / "emotion2vec_s")
    source = {"kind": "random weights (benchmark)", "model": "conf/model/c2ser_tiny, ssl_dim 64"}
    return save_bundle(out / "bundle", model, e2vs, source, utterance_mode="official")


def official_loop(pipe, files: list[str], feats: Path, max_new_tokens: int) -> tuple[float, int]:
    """The release's recipe (see the module doc); (wall seconds, tokens generated)."""
    from c2ser.core.prompts import STAGE1_PROMPT
    from c2ser.data.audio import load_audio
    from c2ser.data.mel import log_mel
    from c2ser.inference.generate import DECODING, collate_items

    model, e2vs, device = pipe.model, pipe.emotion2vec, pipe.device
    feats.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    e2vs.train()  # the release extracts in train mode with autograd on
    for i, f in enumerate(files):
        wav = torch.from_numpy(load_audio(f)).to(device)[None]
        rows = e2vs.extract_features(wav, utterance_mode=pipe.utterance_mode)["utt_x"]
        np.save(feats / f"{i}.npy", rows[0].detach().float().cpu().numpy())
    e2vs.eval()
    prompt = pipe.tokenizer.encode(STAGE1_PROMPT, add_special_tokens=False)
    tokens, tok = 0, model.config.ssl_tokens
    for i, f in enumerate(files):
        item = {"mel": log_mel(load_audio(f), n_mels=model.config.n_mels),
                "ssl": torch.from_numpy(np.load(feats / f"{i}.npy"))[:tok]}  # fmt: skip
        torch.manual_seed(i)
        out = model.generate(*collate_items([item], device), [prompt],
                             max_new_tokens=max_new_tokens, **DECODING["official"])  # fmt: skip
        tokens += len(out[0])
    _sync(device)
    return time.perf_counter() - start, tokens


def timed(pipe, files: list[str], **kw) -> float:
    start = time.perf_counter()
    pipe(files, stage=2, **kw)
    _sync(pipe.device)
    return time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--bundle", help="model bundle (default: a random tiny one)")
    ap.add_argument("--inputs", nargs="+", help="audio files/folders (default: synthetic audio)")
    ap.add_argument("--n", type=int, default=24, help="utterances (synthetic, or the first n)")
    ap.add_argument("--min-seconds", type=float, default=1.0)
    ap.add_argument("--max-seconds", type=float, default=8.0)
    ap.add_argument("--batch-size", type=int, default=16, help="pipeline batch size")
    ap.add_argument("--max-new-tokens", type=int, default=32, help="pipeline greedy answer limit")
    ap.add_argument("--official-max-new-tokens", type=int, default=400, help="the release's limit")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--no-record", action="store_true", help="print only, do not edit BENCHMARKS.md"
    )
    args = ap.parse_args(argv)

    from bench_extract import synth_corpus
    from benchmarks import benchmark_provenance, machine_name, record_benchmark

    from c2ser import Pipeline
    from c2ser.data.audio import audio_seconds
    from c2ser.inference.predict import find_audio

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle = args.bundle or random_bundle(tmp, args.seed)
        if args.inputs:
            files = find_audio(args.inputs, lambda where, why: print(f"{where}: {why}"))
            files = files[: args.n]
        else:
            scp, _ = synth_corpus(
                tmp / "wav", args.n, args.min_seconds, args.max_seconds, args.seed
            )
            files = [line.split(" ", 1)[1].strip() for line in scp.read_text().splitlines()]
        audio_s = sum(map(audio_seconds, files))
        pipe = Pipeline.from_pretrained(bundle, args.device, batch_size=args.batch_size)
        greedy = dict(mode="generate", decoding="greedy", max_new_tokens=args.max_new_tokens)
        timed(pipe, files[:2])  # warm-up
        timed(pipe, files[:2], **greedy)
        official_loop(pipe, files[:1], tmp / "warm", args.official_max_new_tokens)
        t_official, tokens = official_loop(pipe, files, tmp / "feats", args.official_max_new_tokens)
        rows = [
            ("official loop (extract per file, then Stage 1, 4-beam official decoding)", 1,
             t_official),
            ("pipeline, Stage 2, score (7 answers, one pass)", args.batch_size,
             timed(pipe, files)),
            (f"pipeline, Stage 2, greedy (<= {args.max_new_tokens} tokens)", args.batch_size,
             timed(pipe, files, **greedy)),
        ]  # fmt: skip

    n = len(files)
    table = ["| mode | batch | utterances/s | real-time factor | wall s | speed-up vs official |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for name, bs, wall in rows:
        table.append(f"| {name} | {bs} | {n / wall:.2f} | {wall / audio_s:.4f} | {wall:.1f} | "
                     f"{t_official / wall:.1f}x |")  # fmt: skip
    model = args.bundle or "c2ser_tiny (random, re-drawn weights) + tiny random Emotion2Vec-S"
    inputs = " ".join(args.inputs) if args.inputs else (
        f"synthetic utterances of {args.min_seconds:g}-{args.max_seconds:g} s")  # fmt: skip
    md = "\n".join([
        f"Model bundle {model}; {n} {inputs} ({audio_s:.0f} s of audio), the same files for "
        "every mode, audio decoding included. The official loop generated "
        f"{tokens / n:.0f} tokens per utterance on average (limit "
        f"{args.official_max_new_tokens}).",
        "",
        *table,
        "",
        f"**Pipeline score / official loop: {t_official / rows[1][2]:.1f}x; greedy: "
        f"{t_official / rows[2][2]:.1f}x.**",
        "",
        benchmark_provenance(
            ["python", "scripts/bench_pipeline.py", *(argv if argv is not None else sys.argv[1:])],
            args.device, load_before,
        ),
    ])  # fmt: skip
    print(md)
    if not args.no_record:
        section = f"Pipeline vs the official recipe ({machine_name(args.device)})"
        print(f"\nrecorded in {record_benchmark(section, md)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
