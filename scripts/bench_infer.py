"""Batched vs one-at-a-time greedy C2SER-LLM generation: identical outputs, throughput, ratio.

    python scripts/bench_infer.py                                   # tiny random model, CPU
    python scripts/bench_infer.py --checkpoint DIR --device cuda --batch-size 32 --n 256

Inputs are synthetic (random log-mel of 1-8 s and random Emotion2Vec-S rows, seeded), so only
speed is measured. Utterances are sorted by length and generated with left padding and a KV
cache (``C2SER.generate``), exactly as ``c2ser infer`` does; the one-at-a-time run feeds each
unpadded utterance alone. Every greedy output must be identical between the two runs.

Without ``--checkpoint`` the model is ``conf/model/c2ser_tiny`` with its weights re-drawn at unit
scale: a freshly initialised Qwen2 emits one token forever, which would make the equality check
vacuous. The result table goes into BENCHMARKS.md, section "Batched inference (C2SER-LLM)" on a
CPU, "Batched inference (C2SER-LLM, <device name>)" on a GPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def tiny_model(seed: int, *overrides: str):
    """``conf/model/c2ser_tiny`` (+ Hydra ``overrides``) with its weights re-drawn at unit scale."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        model = instantiate(compose("train", overrides=["model=c2ser_tiny", *overrides]).model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embed_positions" not in name:
                std = p.shape[-1] ** -0.5 if p.dim() > 1 else 0.1
                p.copy_(torch.randn(p.shape, generator=g) * std + ("norm" in name and p.dim() == 1))
    return model


def run(model, items, batch_size: int, gen: dict, device) -> tuple[list[list[int]], float]:
    from c2ser.inference.generate import collate_items

    out: list[list[int]] = []
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(0, len(items), batch_size):
        chunk = items[i : i + batch_size]
        out += model.generate(*collate_items(chunk, device), [it["prompt"] for it in chunk], **gen)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--checkpoint", help="model directory (default: random c2ser_tiny)")
    ap.add_argument("--n", type=int, default=48, help="utterances")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-record", action="store_true", help="do not update BENCHMARKS.md")
    args = ap.parse_args(argv)
    cli_args = argv if argv is not None else sys.argv[1:]

    from benchmarks import benchmark_provenance, machine_name, record_benchmark

    from c2ser.core.prompts import STAGE1_PROMPT
    from c2ser.data.tokenizer import load_tokenizer
    from c2ser.models.c2ser_llm import C2SER

    device = torch.device(args.device)
    model = C2SER.from_pretrained(args.checkpoint) if args.checkpoint else tiny_model(args.seed)
    model = model.to(device).eval()
    cfg = model.config
    prompt = load_tokenizer().encode(STAGE1_PROMPT, add_special_tokens=False)
    g = torch.Generator().manual_seed(args.seed)
    lengths = torch.randint(100, 800, (args.n,), generator=g).sort(descending=True).values
    items = [
        {"mel": torch.randn(int(n), cfg.n_mels, generator=g), "prompt": prompt,
         "ssl": torch.randn(cfg.ssl_tokens, cfg.ssl_dim, generator=g) if cfg.use_ssl else None}
        for n in lengths
    ]  # fmt: skip
    gen = dict(max_new_tokens=args.max_new_tokens, num_beams=1, do_sample=False)
    load_before = os.getloadavg()[0]
    run(model, items[: args.batch_size], args.batch_size, gen, device)  # warm-up
    batched, t_batch = run(model, items, args.batch_size, gen, device)
    single, t_single = run(model, items, 1, gen, device)
    same = sum(a == b for a, b in zip(batched, single))
    if same != len(items):
        print(f"error: {len(items) - same} of {len(items)} greedy outputs differ", file=sys.stderr)
        return 1
    tokens = sum(map(len, batched))
    rows = [
        ("one at a time", 1, t_single),
        ("batched (sorted, left-padded)", args.batch_size, t_batch),
    ]
    table = "\n".join(
        f"| {name} | {bs} | {len(items) / t:.2f} | {tokens / t:.1f} | {t:.2f} |"
        for name, bs, t in rows
    )
    model_name = args.checkpoint or "c2ser_tiny (random, re-drawn weights)"
    md = f"""
Greedy generation, {len(items)} synthetic utterances of 1-8 s, {args.max_new_tokens} new tokens
at most ({tokens} generated), model {model_name}; identical outputs in both modes ({same}/{len(items)}).

| mode | batch | utterances/s | tokens/s | wall s |
|---|---|---|---|---|
{table}

**Batched / one-at-a-time: {t_single / t_batch:.2f}x.**

{benchmark_provenance(["python", "scripts/bench_infer.py", *cli_args], args.device, load_before)}
"""
    print(md)
    if not args.no_record:
        # the CPU figures keep their section; another device gets its own beside them
        section = "Batched inference (C2SER-LLM)"
        if device.type != "cpu":
            section = f"Batched inference (C2SER-LLM, {machine_name(args.device)})"
        print(f"recorded in {record_benchmark(section, md)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
