"""One C2SER Stage 1 training step: time, tokens/s, MFU and peak memory, with and without ZeRO-2.

    python scripts/bench_stage1_step.py --device cpu --preset tiny          # a check, any machine
    python scripts/bench_stage1_step.py --device cuda --preset 7b           # paper shape, one GPU
    python scripts/bench_stage1_step.py --device cuda --preset 7b --strategy zero2 --steps 20

What runs is the Stage 1 training path itself: :class:`~c2ser.tasks.cot_sft.CotSFTTask` (the
official AdamW and WarmupLR) on a :class:`~c2ser.models.c2ser_llm.C2SER` under a Lightning
``Trainer`` with ``precision=bf16-mixed`` (``--precision``), the trainer's gradient clipping
(5.0, conf/trainer/default.yaml) and one optimiser step per batch, either with the plain strategy
(``none``: one device, torch AdamW) or with DeepSpeed ZeRO stage 2
(:class:`~c2ser.tasks.strategies.PortableDeepSpeedStrategy`, what ``strategy=deepspeed_zero2``
builds). On one device ZeRO-2 shards nothing; the row shows what its engine (bf16 module, fp32
master weights of the trained parameters, gradient buckets) costs or saves. ``--strategy both``
runs each in its own process, so that one run's memory cannot count in the other's peak.

Presets (``--preset``): the model is built **random** from a config, as no weights are needed to
time a step, directly on the device:

* ``7b``: ``conf/model/c2ser_7b`` (Whisper-medium-shaped encoder 1024 x 24 layers, 3-conv
  downsampler, 4-block connector, LoRA r 8 on q/k/v/o/gate/down, official trained groups) with a
  Qwen2-7B-shaped LLM (hidden 3584, 28 layers, 28 q / 4 kv heads, FFN 18944, vocab 152064,
  untied head; bf16, frozen). About 8.0 B parameters (0.37 B trained): 15.2 GB of bf16 LLM
  weights plus the fp32 speech side with its gradients and AdamW states (about 6 GB), so a step
  should need about 30 GB (estimated; the table records the measured peak): it fits an 80 GB
  H100 or a 139 GB H200 comfortably, not a 24 GB card;
* ``0.5b``: the same speech side with a Qwen2-0.5B-shaped LLM (hidden 896, 24 layers, 14 / 2
  heads, FFN 4864, tied embeddings), the size issue 15 item 8 names;
* ``tiny``: ``PRESETS["tiny"]`` (encoder 64 x 2, a Qwen2 of hidden 64 x 2 layers): checks the
  script on a CPU in seconds; its figures mean nothing.

The batch is the official dynamic batch at its frame budget (``max_frames`` 3900 mel frames,
``conf/data/sft_demo.yaml``): 4 utterances of 9.75 s for the 7b and 0.5b presets, random log-mel
and Emotion2Vec-S rows (10 x 768), the Stage 1 prompt and a 150-token chain-of-thought target;
each row packs [prompt][BOS][10 ssl + speech][EOS][target] (about 330 LLM tokens).

Measured: the wall time of each optimiser step (forward, backward, clipping, AdamW; CUDA
synchronised before and after), after ``--warmup`` steps; the median over ``--steps``. Tokens/s
counts the LLM tokens of the packed rows (speech and prompt included, no padding); target
tokens/s only the trained answer tokens. MFU is model FLOPs per second over the device's dense
bf16 peak (H100/H200 SXM 989 TFLOP/s, H100 PCIe 756, A100 312; ``--peak-tflops`` for others),
with model FLOPs counted as in PaLM's MFU: 6 per trained parameter per token (forward, input and
weight gradients), 4 per frozen parameter per token (no weight gradient), 12 x layers x width x
length per token for attention scores, and the LM head only where a target is predicted (the
model applies it nowhere else). Peak memory is ``torch.cuda.max_memory_allocated`` (and
reserved) over the timed steps; on a CPU the process's peak RSS.

Each run's row goes to ``--results`` (JSON, one row per machine, preset and strategy) and the
rows of this machine to BENCHMARKS.md, section "C2SER Stage 1 training step (<machine>)"
(``--benchmarks-file`` another file, ``--no-record`` none).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
STRATEGIES = ("none", "zero2")
STRATEGY_NAMES = {"none": "plain (one device, torch AdamW)", "zero2": "DeepSpeed ZeRO-2"}

# Qwen2 shapes (their config.json), built random
QWEN2_7B = dict(
    model_type="qwen2", vocab_size=152_064, hidden_size=3584, intermediate_size=18_944,
    num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
    max_position_embeddings=32_768, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
    tie_word_embeddings=False, bos_token_id=151_643, eos_token_id=151_643,
)  # fmt: skip
QWEN2_0_5B = dict(
    QWEN2_7B, vocab_size=151_936, hidden_size=896, intermediate_size=4864,
    num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True,
)  # fmt: skip
# preset -> (C2SER preset, LLM config or None for the preset's own, batch, seconds, target tokens,
# warm-up steps, timed steps)
PRESETS = {
    "7b": ("7b", QWEN2_7B, 4, 9.75, 150, 3, 10),
    "0.5b": ("7b", QWEN2_0_5B, 4, 9.75, 150, 3, 10),
    "tiny": ("tiny", None, 2, 2.0, 16, 1, 3),
}
# dense bf16 peak TFLOP/s by device name (first match wins)
PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("H800", 989.0),
               ("A100", 312.0), ("L40S", 362.0))  # fmt: skip


def build_model(preset: str, device: torch.device):
    """The random C2SER of ``preset`` (see the module doc), created on ``device``."""
    from c2ser.models.c2ser_llm import C2SER, preset_config

    base, llm, *_ = PRESETS[preset]
    overrides = {"llm_config": llm} if llm is not None else {}
    cfg = preset_config(base, llm_dtype="bfloat16", **overrides)
    torch.manual_seed(0)
    with torch.device(device):  # no 15 GB detour through host memory for the 7b
        return C2SER(cfg)


def make_batch(model, n: int, seconds: float, target_tokens: int) -> dict:
    """``n`` utterances of ``seconds`` (random log-mel and Emotion2Vec-S rows), the Stage 1
    prompt and random ``target_tokens``-token targets ending with end-of-text."""
    from c2ser.core.prompts import STAGE1_PROMPT
    from c2ser.core.tokens import EOD_ID
    from c2ser.data.tokenizer import load_tokenizer

    cfg = model.config
    g = torch.Generator().manual_seed(0)
    frames = int(seconds * 100)
    prompt = load_tokenizer().encode(STAGE1_PROMPT, add_special_tokens=False)
    vocab = min(model.base_llm().get_input_embeddings().num_embeddings, EOD_ID)
    return {
        "mel": torch.randn(n, frames, cfg.n_mels, generator=g),
        "mel_mask": torch.zeros(n, frames, dtype=torch.bool),
        "ssl": torch.randn(n, cfg.ssl_tokens, cfg.ssl_dim, generator=g),
        "prompt_ids": [list(prompt) for _ in range(n)],
        "target_ids": [
            [*torch.randint(0, vocab, (target_tokens - 1,), generator=g).tolist(), EOD_ID]
            for _ in range(n)
        ],
        "id": [f"u{i}" for i in range(n)],
        "emotion": ["neutral"] * n,
        "language": ["en"] * n,
    }


def shapes(model, batch: dict, device: torch.device) -> dict:
    """Token counts of one batch: encoder frames, connector steps, packed LLM rows, targets."""
    cfg = model.config
    n, frames = batch["mel_mask"].shape
    mask = batch["mel_mask"].to(device)
    with torch.no_grad():
        x, pad = model.encoder(batch["mel"].to(device), mask)
        _, speech = model.downsampler(x, (~pad).sum(1))
    enc = int((~pad).sum(1)[0])
    conn = [cfg.ssl_tokens * cfg.use_ssl + int(s) for s in speech]
    rows = [
        len(p) + 2 + c + len(t) for p, c, t in zip(batch["prompt_ids"], conn, batch["target_ids"])
    ]
    return {
        "utterances": n,
        "mel_frames": frames,
        "encoder_frames": enc,
        "connector_steps": conn,
        "llm_rows": rows,
        "llm_tokens": sum(rows),
        "target_tokens": sum(len(t) for t in batch["target_ids"]),
    }


def step_flops(model, s: dict) -> float:
    """Model FLOPs of one training step (the PaLM convention; see the module doc)."""
    cfg = model.config
    llm_cfg = model.base_llm().config
    trained, frozen = 0.0, 0.0
    # the speech side: encoder (+ downsampler) per encoder frame, connector & projection per step
    enc = sum(p.numel() for n, p in model.encoder.named_parameters() if "embed_positions" not in n)
    enc += sum(p.numel() for p in model.downsampler.parameters())
    conn = sum(p.numel() for p in model.connector.parameters())
    conn += sum(p.numel() for p in model.projection.parameters())
    conn += sum(p.numel() for p in (model.ssl_proj or torch.nn.Module()).parameters())
    n = s["utterances"]
    flops = 6 * enc * n * s["encoder_frames"] + 6 * conn * sum(s["connector_steps"])
    flops += 12 * cfg.encoder_layers * cfg.encoder_dim * n * s["encoder_frames"] ** 2
    flops += 12 * cfg.connector_layers * cfg.encoder_dim * sum(c * c for c in s["connector_steps"])
    # the LLM: its layers over every packed token (LoRA trained, the rest frozen)
    for name, p in model.llm.named_parameters():
        if "embed_tokens" in name or "lm_head" in name:
            continue
        if "lora_" in name or p.requires_grad:
            trained += p.numel()
        else:
            frozen += p.numel()
    flops += (6 * trained + 4 * frozen) * s["llm_tokens"]
    layers, width = llm_cfg.num_hidden_layers, llm_cfg.hidden_size
    flops += 12 * layers * width * sum(r * r for r in s["llm_rows"])
    flops += 4 * width * llm_cfg.vocab_size * s["target_tokens"]  # frozen head, targets only
    return float(flops)


def peak_tflops(device: torch.device, given: float | None) -> float | None:
    if given is not None:
        return given
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for key, v in PEAK_TFLOPS if key in name), None)


def run_one(args: argparse.Namespace) -> dict:
    """Build, warm up and time one strategy; the result row."""
    import pytorch_lightning as pl

    from c2ser.tasks.cot_sft import CotSFTTask
    from c2ser.tasks.strategies import PortableDeepSpeedStrategy

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch sees no CUDA device")
    _, _, n, seconds, target, warmup, steps = PRESETS[args.preset]
    n, seconds, target = args.batch or n, args.seconds or seconds, args.target_tokens or target
    warmup, steps = args.warmup if args.warmup is not None else warmup, args.steps or steps

    t0 = time.perf_counter()
    model = build_model(args.preset, device)
    batch = make_batch(model, n, seconds, target)
    s = shapes(model, batch, device)
    flops = step_flops(model, s)
    built = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    times: list[float] = []

    class StepTimer(pl.Callback):
        def on_train_batch_start(self, trainer, module, b, batch_idx):
            if cuda:
                torch.cuda.synchronize(device)
                if batch_idx == warmup:
                    torch.cuda.reset_peak_memory_stats(device)
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, b, batch_idx):
            if cuda:
                torch.cuda.synchronize(device)
            if batch_idx >= warmup:
                times.append(time.perf_counter() - self.t0)

    task = CotSFTTask(model, val_generate=0)
    strategy = (
        PortableDeepSpeedStrategy(stage=2, logging_batch_size_per_gpu=1)
        if args.strategy == "zero2"
        else "auto"
    )
    trainer = pl.Trainer(
        accelerator="gpu" if cuda else "cpu", devices=1, strategy=strategy,
        precision=args.precision, max_steps=warmup + steps, gradient_clip_val=5.0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
        callbacks=[StepTimer()], default_root_dir=args.work_dir,
    )  # fmt: skip
    loader = torch.utils.data.DataLoader([batch] * (warmup + steps), batch_size=None)
    t1 = time.perf_counter()
    trainer.fit(task, train_dataloaders=loader)
    fit_s = time.perf_counter() - t1
    if len(times) != steps:
        raise SystemExit(f"error: timed {len(times)} steps, expected {steps}")
    step = statistics.median(times)
    peak = peak_tflops(device, args.peak_tflops)
    row = {
        "machine": machine(device),
        "device": str(device),
        "preset": args.preset,
        "strategy": args.strategy,
        "precision": args.precision,
        "params": params,
        "trainable": trainable,
        "batch": {"utterances": n, "seconds": seconds, "target_tokens": target},
        "shapes": {k: s[k] for k in ("llm_tokens", "target_tokens", "encoder_frames")},
        "warmup": warmup,
        "steps": steps,
        "step_s": step,
        "step_s_min": min(times),
        "step_s_max": max(times),
        "tokens_per_s": s["llm_tokens"] / step,
        "target_tokens_per_s": s["target_tokens"] / step,
        "audio_s_per_s": n * seconds / step,
        "tflops_per_step": flops / 1e12,
        "mfu": flops / step / (peak * 1e12) if peak else None,
        "peak_tflops": peak,
        "build_s": built,
        "fit_s": fit_s,
        "date": date.today().isoformat(),
        "torch": torch.__version__,
    }
    if cuda:
        row["peak_alloc_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        row["peak_reserved_gib"] = torch.cuda.max_memory_reserved(device) / 2**30
        row["device_gib"] = torch.cuda.get_device_properties(device).total_memory / 2**30
    else:
        row["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return row


def machine(device: torch.device) -> str:
    sys.path.insert(0, str(REPO / "scripts"))
    from benchmarks import machine_name

    return machine_name(str(device))


def save_row(path: Path, row: dict) -> None:
    """Put ``row`` into the results file, replacing that of the same machine/preset/strategy."""
    rows = json.loads(path.read_text()) if path.is_file() else []
    key = ("machine", "preset", "strategy")
    rows = [r for r in rows if tuple(r[k] for k in key) != tuple(row[k] for k in key)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([*rows, row], indent=2) + "\n")


def _count(n: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:g}"


def markdown(rows: list[dict], command: list[str], load_before: float) -> str:
    sys.path.insert(0, str(REPO / "scripts"))
    from benchmarks import benchmark_provenance

    table = [
        "| preset | strategy | params (trained) | batch | LLM tokens | step s (min-max) | "
        "tokens/s | target tokens/s | TFLOP/step | MFU | peak memory GiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["preset"], r["strategy"])):
        b = r["batch"]
        mem = (
            f"{r['peak_alloc_gib']:.1f} alloc / {r['peak_reserved_gib']:.1f} reserved "
            f"of {r['device_gib']:.0f}"
            if "peak_alloc_gib" in r
            else f"{r['peak_rss_gib']:.2f} (process RSS)"
        )
        mfu = "—" if r["mfu"] is None else f"{100 * r['mfu']:.1f} %"
        table.append(
            f"| {r['preset']} | {STRATEGY_NAMES[r['strategy']]} | {_count(r['params'])} "
            f"({_count(r['trainable'])}) | {b['utterances']} x {b['seconds']:g} s, "
            f"{b['target_tokens']}-token targets | {r['shapes']['llm_tokens']} | "
            f"{r['step_s']:.3f} ({r['step_s_min']:.3f}-{r['step_s_max']:.3f}) | "
            f"{r['tokens_per_s']:.0f} | {r['target_tokens_per_s']:.0f} | "
            f"{r['tflops_per_step']:.3g} | {mfu} | {mem} |"
        )
    first = rows[0]
    peak = first.get("peak_tflops")
    lines = [
        "C2SER Stage 1 training step (`CotSFTTask`, Lightning, "
        f"`precision={first['precision']}`, one optimiser step per batch, gradient clipping 5.0) "
        "on a random model of the preset's shape (`scripts/bench_stage1_step.py`: 7b = "
        "c2ser_7b speech side + Qwen2-7B-shaped LLM, bf16, frozen, LoRA r 8). Median of the "
        "timed steps after warm-up; tokens/s counts the packed LLM rows (prompt, speech, "
        "target). MFU: PaLM-convention model FLOPs over "
        + (f"a {peak:g} TFLOP/s bf16 peak." if peak else "a peak (none known for this device)."),
        "",
        *table,
        "",
    ]
    by = {(r["preset"], r["strategy"]): r for r in rows}
    for preset in sorted({r["preset"] for r in rows}):
        if (preset, "none") in by and (preset, "zero2") in by:
            a, z = by[preset, "none"], by[preset, "zero2"]
            lines.append(
                f"- **{preset}: ZeRO-2 / plain step time {z['step_s'] / a['step_s']:.2f}x**"
                + (
                    f", peak memory {z['peak_alloc_gib']:.1f} vs {a['peak_alloc_gib']:.1f} GiB."
                    if "peak_alloc_gib" in a and "peak_alloc_gib" in z
                    else "."
                )
            )
    lines += ["", benchmark_provenance(command, first["device"], load_before)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    ap.add_argument("--strategy", choices=[*STRATEGIES, "both"], default="both")
    ap.add_argument("--precision", default="bf16-mixed", help="Lightning trainer precision")
    ap.add_argument("--batch", type=int, help="utterances per batch (default: the preset's)")
    ap.add_argument("--seconds", type=float, help="seconds per utterance (default: the preset's)")
    ap.add_argument("--target-tokens", type=int, help="answer tokens (default: the preset's)")
    ap.add_argument("--warmup", type=int, help="untimed steps first (default: the preset's)")
    ap.add_argument("--steps", type=int, help="timed steps (default: the preset's)")
    ap.add_argument("--peak-tflops", type=float, help="device bf16 peak for MFU (default: known)")
    ap.add_argument(
        "--results",
        default=str(REPO / "logs" / "bench" / "stage1_step.json"),
        help="JSON file of result rows (updated)",
    )
    ap.add_argument(
        "--benchmarks-file", help="markdown file to record in (default: BENCHMARKS.md here)"
    )
    ap.add_argument("--work-dir", default=None, help="Lightning root dir (default: a temp dir)")
    ap.add_argument("--no-record", action="store_true", help="do not edit a benchmarks file")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # of --strategy both
    args = ap.parse_args(argv)
    cli = argv if argv is not None else sys.argv[1:]
    results = Path(args.results)
    load_before = os.getloadavg()[0]

    if args.strategy == "both":
        for strategy in STRATEGIES:  # a fresh process each: clean memory peaks, no leftovers
            child = [sys.executable, __file__, *cli, "--strategy", strategy, "--child"]
            print(f"$ {shlex.join(child)}", flush=True)
            subprocess.run(child, check=True)
    else:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            args.work_dir = args.work_dir or tmp
            row = run_one(args)
        save_row(results, row)
        print(json.dumps(row, indent=2), flush=True)
        if args.child:
            return 0

    rows = json.loads(results.read_text())
    this = machine(torch.device(args.device))
    rows = [r for r in rows if r["machine"] == this]
    md = markdown(rows, ["python", "scripts/bench_stage1_step.py", *cli], load_before)
    print(md)
    print(f"results: {results}")
    if not args.no_record:
        sys.path.insert(0, str(REPO / "scripts"))
        from benchmarks import BENCHMARKS_FILE, record_benchmark

        section = f"C2SER Stage 1 training step ({this})"
        where = record_benchmark(section, md, args.benchmarks_file or BENCHMARKS_FILE)
        print(f"recorded in {where}, section '{section}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
