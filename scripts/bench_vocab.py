"""What a corpus vocabulary (``model.vocab``) saves: a demo Stage 1 training step with the random
LLM's 151,936 Qwen2 rows against one row per token of the demo's training text.

    python scripts/bench_vocab.py                 # CPU, the demo model's shape
    python scripts/bench_vocab.py --device cuda

Both models are ``conf/model/c2ser_demo`` in shape (Whisper-tiny-shaped encoder, random here, so
no converted weights are needed; pool downsampler; 2-block connector; Qwen2 of width 64 and 2
layers trained whole, with LoRA), built with the same seed. The step is the Stage 1 one: forward,
backward over every trained group, AdamW (the ``cot_sft`` optimiser settings). Batches are
synthetic: ``--batch`` utterances of 2-4 s, the Stage 1 prompt, and chain-of-thought targets of
``--target-tokens`` ids drawn from the corpus vocabulary (the vocabulary of ``--manifest`` when
it exists, else of the packaged prompts and templates). The median over ``--steps`` timed steps,
after ``--warmup``; the ratio is against the full vocabulary in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def time_steps(model, batches, warmup: int, device: torch.device) -> list[float]:
    """Seconds per optimiser step over ``batches`` (the first ``warmup`` not counted)."""
    from c2ser.tasks.cot_sft import OFFICIAL_OPTIMIZER

    params = [p for p in model.parameters() if p.requires_grad]
    opt = OFFICIAL_OPTIMIZER(params, lr=1e-3)
    model.downsampler.set_statistics(torch.zeros(model.config.encoder_dim).to(device),
                                     torch.ones(model.config.encoder_dim).to(device))  # fmt: skip
    times = []
    for i, b in enumerate(batches):
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        loss = model(b["mel"], b["mel_mask"], b["ssl"], b["prompt_ids"], b["target_ids"]).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=False)
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--manifest", default=str(REPO / "data" / "demo" / "manifest.jsonl"))
    ap.add_argument("--batch", type=int, default=4, help="utterances per batch (stage1_demo: 4)")
    ap.add_argument("--target-tokens", type=int, default=48, help="CoT target length")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-record", action="store_true", help="do not update BENCHMARKS.md")
    args = ap.parse_args(argv)
    cli_args = argv if argv is not None else sys.argv[1:]

    from benchmarks import benchmark_provenance, machine_name, record_benchmark

    from c2ser.core.prompts import STAGE1_PROMPT
    from c2ser.core.tokens import EOD_ID
    from c2ser.data.tokenizer import load_tokenizer
    from c2ser.data.vocab import corpus_texts, corpus_vocab, manifest_vocab
    from c2ser.models.c2ser_llm import C2SER, PRESETS

    tok = load_tokenizer()
    if Path(args.manifest).is_file():
        vocab, source = manifest_vocab(args.manifest, tokenizer=tok)[0], args.manifest
    else:
        vocab, source = corpus_vocab(corpus_texts([]), tok), "the packaged prompts and templates"
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    prompt = tok.encode(STAGE1_PROMPT, add_special_tokens=False)
    batches = []
    for _ in range(args.warmup + args.steps):
        frames = torch.randint(200, 400, (args.batch,), generator=g)
        mel = torch.randn(args.batch, int(frames.max()), 80, generator=g)
        mask = torch.arange(mel.shape[1])[None] >= frames[:, None]
        picks = torch.randint(0, len(vocab), (args.batch, args.target_tokens - 1), generator=g)
        batches.append({
            "mel": mel.to(device), "mel_mask": mask.to(device),
            "ssl": torch.randn(args.batch, 1, 64, generator=g).to(device),
            "prompt_ids": [prompt] * args.batch,
            "target_ids": [[vocab[i] for i in row] + [EOD_ID] for row in picks.tolist()],
        })  # fmt: skip
    shape = dict(
        preset="tiny", encoder_dim=384, encoder_layers=4, encoder_heads=6, encoder_ffn=1536,
        downsampler="pool", connector_layers=2, connector_heads=4, connector_ffn=1536,
        dropout=0.0, ssl_dim=64, ssl_tokens=1, llm_dtype="float32",
        llm_config={"initializer_range": 0.125},
        trainable=["connector", "projection", "speech_embeddings", "lora", "llm"],
    )  # fmt: skip
    load_before = os.getloadavg()[0]
    rows = []
    for name, extra in (("151,936 Qwen2 rows", {}), (f"{len(vocab):,} + 1 rows", {"vocab": vocab})):
        torch.manual_seed(0)
        model = C2SER(**shape, **extra).to(device).train()
        rows.append((name, statistics.median(time_steps(model, batches, args.warmup, device))))
        del model
    full, trimmed = rows[0][1], rows[1][1]
    table = "\n".join(f"| {name} | {t:.3f} | {full / t:.2f}x |" for name, t in rows)
    md = f"""
One Stage 1 training step (forward, backward, AdamW) of the `c2ser_demo`-shaped model (random
weights), {args.batch} synthetic utterances of 2-4 s, the Stage 1 prompt, {args.target_tokens}-token
targets; the corpus vocabulary of {source}. Median of {args.steps} steps after {args.warmup}.
The LLM's input embeddings are {PRESETS["tiny"]["llm_config"]["vocab_size"]:,} x 64 or
{len(vocab) + 1:,} x 64 (tied head).

| LLM vocabulary | s / step | speed-up |
|---|---|---|
{table}

**Corpus vocabulary / full vocabulary: {full / trimmed:.2f}x faster.**

{benchmark_provenance(["python", "scripts/bench_vocab.py", *cli_args], args.device, load_before)}
"""
    print(md)
    if not args.no_record:
        section = f"Demo training step: corpus vocabulary ({machine_name(args.device)})"
        print(f"recorded in {record_benchmark(section, md)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
