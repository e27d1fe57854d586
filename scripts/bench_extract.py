"""Emotion2Vec-S feature extraction: batched ``c2ser extract`` vs the official one-at-a-time loop.

    python scripts/bench_extract.py                       # base size, 24 utterances of 3-25 s, CPU
    python scripts/bench_extract.py --device cuda --n 64 --batch-frames 20000

Every mode runs in this one process on the same synthetic wavs (seeded harmonic tones with noise
and pauses; content does not change the cost) and the same randomly initialised weights, and
includes decoding and writing the ``.npy`` files:

- **official loop**: one file at a time, model in train mode with autograd on, as the released
  ``speech_feature_extraction.py`` runs it (dropout on, no ``no_grad``);
- **one at a time (eval)**: ``--batch-frames 1``: eval mode + ``inference_mode``, no padding;
- **batched**: ``c2ser extract``'s path: length-sorted padded batches of ``--batch-frames``;
  fp32 and bf16. bf16 runs on CUDA and on CPUs that compute it natively (AVX512-BF16 or AMX);
  elsewhere it is emulated and several times slower than fp32, so ``--bf16 auto`` leaves it out.

The fp32 batched outputs are checked against the one-at-a-time ones (max abs diff). Results go to
BENCHMARKS.md, section "Emotion2Vec-S extraction (<machine>)": one section per machine, since
the ratios depend on the hardware (bf16 units, core count).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]


def synth_corpus(root: Path, n: int, lo: float, hi: float, seed: int) -> tuple[Path, list[float]]:
    """``n`` wavs with lengths spread over [lo, hi] s (shuffled); returns (wav.scp, seconds)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lengths = rng.permutation(np.linspace(lo, hi, n))
    lines = []
    for i, sec in enumerate(lengths):
        t = np.arange(int(sec * 16000)) / 16000
        f0 = 120 + 80 * rng.random() + 20 * np.sin(2 * np.pi * 0.5 * t)
        x = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / 16000) / k for k in range(1, 6))
        x *= (np.sin(2 * np.pi * 0.7 * t) > -0.6) * 0.2  # syllable-like pauses
        path = root / f"utt{i:03d}.wav"
        sf.write(path, (x + 0.005 * rng.standard_normal(len(t))).astype(np.float32), 16000)
        lines.append(f"utt{i:03d} {path}\n")
    (root / "wav.scp").write_text("".join(lines))
    return root / "wav.scp", [int(s * 16000) / 16000 for s in lengths]


def forward_gflop(size: str, seconds: list[float]) -> float:
    """What the eval forward passes over the corpus cost, in GFLOP: FlopCounterMode over the
    model on the meta device (shapes only, nothing computed). It shows how close a mode runs to
    the hardware's arithmetic limit, which no batching can pass."""
    from torch.utils.flop_counter import FlopCounterMode

    from c2ser.models.emotion2vec_s import Emotion2VecS, preset_config

    with torch.device("meta"):
        model = Emotion2VecS(preset_config(size)).eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        for s in seconds:
            wav = torch.empty(1, round(s * 16000), device="meta")
            model.extract_features(wav, return_layers=False)
    return counter.get_total_flops() / 1e9


def official_loop(model, scp: Path, out: Path, device: str) -> float:
    """The released script's way: per file, train mode, autograd on, fp32."""
    from c2ser.data.audio import load_audio
    from c2ser.data.manifest import read_manifest

    out.mkdir(parents=True, exist_ok=True)
    model.train()
    start = time.perf_counter()
    for u in read_manifest(scp):
        wav = torch.from_numpy(load_audio(u.wav)).to(device)[None]
        x = model.extract_features(wav)["x"]
        np.save(out / f"{u.id}.npy", x[0].detach().float().cpu().numpy())
    _sync(device)
    return time.perf_counter() - start


def ours(scp: Path, out: Path, args, dtype: str, batch_frames: int) -> float:
    from c2ser.inference.extract import extract_manifest, make_extractor

    ex = make_extractor(random_init=True, size=args.size, device=args.device, dtype=dtype)
    start = time.perf_counter()
    extract_manifest(scp, out, ex, batch_frames=batch_frames, progress=False)
    _sync(args.device)
    return time.perf_counter() - start


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def max_diff(a: Path, b: Path) -> float:
    return max(float(np.abs(np.load(p) - np.load(b / p.name)).max()) for p in a.glob("*.npy"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size", choices=["base", "tiny"], default="base")
    ap.add_argument("--n", type=int, default=24, help="utterances")
    ap.add_argument("--min-seconds", type=float, default=3.0)
    ap.add_argument("--max-seconds", type=float, default=25.0)
    ap.add_argument("--batch-frames", type=int, default=6000)
    ap.add_argument(
        "--bf16",
        choices=["auto", "yes", "no"],
        default="auto",
        help="time the bf16 modes (auto: on CUDA or a CPU with native bf16)",
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--no-record", action="store_true", help="print only, do not edit BENCHMARKS.md"
    )
    args = ap.parse_args(argv)

    from benchmarks import benchmark_provenance, machine_name, record_benchmark

    from c2ser.inference.emotion2vec_s import load_emotion2vec_s
    from c2ser.inference.hardware import cpu_has_native_bf16

    native_bf16 = args.device.startswith("cuda") or cpu_has_native_bf16()
    bf16 = args.bf16 == "yes" or (args.bf16 == "auto" and native_bf16)

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        scp, seconds = synth_corpus(
            tmp / "wav", args.n, args.min_seconds, args.max_seconds, args.seed
        )
        audio_s, gflop = sum(seconds), forward_gflop(args.size, seconds)
        warm = tmp / "warm.scp"
        warm.write_text(scp.read_text().splitlines()[0] + "\n")
        model = load_emotion2vec_s(None, True, args.size, args.device)
        official_loop(model, warm, tmp / "warm-official", args.device)
        rows = [("official loop (train mode, autograd, fp32)", 1,
                 official_loop(model, scp, tmp / "official", args.device))]  # fmt: skip
        del model
        modes = [
            ("one at a time (eval, fp32)", "float32", 1),
            (f"batched ({args.batch_frames} frames, fp32)", "float32", args.batch_frames),
        ]
        if bf16:
            modes += [("one at a time (eval, bf16)", "bfloat16", 1),
                      (f"batched ({args.batch_frames} frames, bf16)", "bfloat16", args.batch_frames)]  # fmt: skip
        for name, dtype, frames in modes:
            ours(warm, tmp / f"warm-{dtype}-{frames}", args, dtype, frames)
            rows.append((name, frames, ours(scp, tmp / f"{dtype}-{frames}", args, dtype, frames)))
        diff = max_diff(tmp / f"float32-{args.batch_frames}", tmp / "float32-1")

    base = rows[0][2]
    table = ["| mode | batch frames | utterances/s | real-time factor | GFLOP/s | wall s | speed-up vs official |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, frames, wall in rows:
        table.append(f"| {name} | {frames} | {args.n / wall:.2f} | {wall / audio_s:.4f} | "
                     f"{gflop / wall:.0f} | {wall:.1f} | {base / wall:.2f}x |")  # fmt: skip
    best = max(rows[1:], key=lambda r: base / r[2])
    fp32_batched = rows[2]
    md = "\n".join([
        f"Emotion2Vec-S {args.size} (random weights), {args.n} synthetic utterances of "
        f"{args.min_seconds:g}-{args.max_seconds:g} s ({audio_s:.0f} s of audio), frame level, "
        "decoding and .npy writing included.",
        "",
        *table,
        "",
        f"**Batched fp32 / official loop: {base / fp32_batched[2]:.2f}x; best ({best[0]}): "
        f"{base / best[2]:.2f}x.** Batched fp32 vs one-at-a-time fp32: max abs diff {diff:.2e}.",
        "",
        f"The eval forward passes cost {gflop:.4g} GFLOP ({gflop / audio_s:.3g} per second of "
        "audio; `torch.utils.flop_counter` on the meta device). GFLOP/s is that cost over each "
        f"mode's wall time; 10x over the official loop needs {10 * gflop / base:.0f} GFLOP/s.",
        "",
        *([] if bf16 else [
            "bf16 not timed: this CPU has no native bf16 (AVX512-BF16 or AMX), so PyTorch "
            "emulates it, several times slower than fp32 (time it anyway with `--bf16 yes`).",
            "",
        ]),
        benchmark_provenance(
            ["python", "scripts/bench_extract.py", *sys.argv[1:]], args.device, load_before
        ),
    ])  # fmt: skip
    print(md)
    if not args.no_record:
        section = f"Emotion2Vec-S extraction ({machine_name(args.device)})"
        print(f"\nrecorded in {record_benchmark(section, md)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
