"""EmoBox-style probe demo: log-mel vs Emotion2Vec-S features on the demo corpus, on CPU.

For each feature set this extracts features with ``c2ser extract`` (resumable), runs the whole
lr x hidden x fold grid as one Hydra multirun (``experiment=probe hparams_search=emobox_grid``)
with few epochs, and prints ``c2ser probe-report`` for it, then one line comparing the best
configurations' test UA::

    python scripts/probe_demo.py                         # demo corpus, 20 epochs, both feature sets
    python scripts/probe_demo.py --epochs 100 --e2v-args "--level frame --checkpoint DIR"

The Emotion2Vec-S features come from whatever ``--e2v-args`` selects. No pretrained checkpoint
ships with the project, so the default is a randomly initialised tiny model, which is not expected
to beat log-mel statistics; pass ``--checkpoint`` (a converted official checkpoint, or a run of
``experiment=e2vs_pretrain_demo``) for a meaningful comparison. Each report header names the options.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(cmd: list[str]) -> None:
    print("+", shlex.join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)


def c2ser(*args: str) -> list[str]:
    return [sys.executable, "-m", "c2ser.cli.main", *args]


def probe_grid(name: str, feat_dir: Path, manifest: Path, sweep_dir: Path, epochs: int) -> None:
    run(
        [
            sys.executable,
            str(REPO / "train.py"),
            "-m",
            "experiment=probe",
            "hparams_search=emobox_grid",
            f"data.feat_dir={feat_dir}",
            f"data.manifest={manifest}",
            f"trainer.max_epochs={epochs}",
            f"hydra.sweep.dir={sweep_dir}",
            f"tags=[probe,demo,{name}]",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--corpus", default="data/demo", help="demo corpus folder (built if missing)")
    p.add_argument("--out", default="data/demo/probe", help="features and sweeps go here")
    p.add_argument("--epochs", type=int, default=20, help="epochs per job (EmoBox: 100)")
    p.add_argument("--logmel-args", default="--extractor logmel", help="c2ser extract options")
    p.add_argument(
        "--e2v-args",
        default="--level frame --random-init --model tiny",
        help="c2ser extract options for Emotion2Vec-S (e.g. --level frame --checkpoint DIR)",
    )
    args = p.parse_args(argv)
    corpus, out = REPO / args.corpus, REPO / args.out
    manifest = corpus / "manifest.jsonl"
    if not manifest.exists():
        run(c2ser("demo-corpus", "--out", str(corpus)))

    from c2ser.evaluation.probe_report import write_probe_report

    best = {}
    for name, extract_args in (("logmel", args.logmel_args), ("emotion2vec_s", args.e2v_args)):
        feat_dir, sweep = out / "features" / name, out / "sweeps" / name
        start = time.perf_counter()
        run(
            c2ser(
                "extract",
                "--manifest",
                str(manifest),
                "--out",
                str(feat_dir),
                *shlex.split(extract_args),
            )
        )
        probe_grid(name, feat_dir, manifest, sweep, args.epochs)
        report = write_probe_report(sweep)
        print(f"\n## {name} ({extract_args}; {time.perf_counter() - start:.0f} s)\n")
        print(report["markdown"])
        (best[name],) = report["best"].values()
    print("Best configuration per feature set (test, mean ± std over folds):")
    for name, row in best.items():
        print(
            f"  {name:14s} lr={row['lr']:g} hidden={row['hidden_size']}: "
            f"UA {100 * row['test_ua_mean']:.2f} ± {100 * row['test_ua_std']:.2f}, "
            f"WA {100 * row['test_wa_mean']:.2f}, F1 {100 * row['test_f1_mean']:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
