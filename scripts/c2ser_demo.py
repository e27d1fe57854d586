"""C2SER demo chain on the synthesised demo corpus: Stage 1 -> Stage 2 -> ``c2ser infer``.

Every step is a printed, ordinary command (rerun the script to resume: training resumes from the
runs' last checkpoints, inference skips finished utterances)::

    python scripts/c2ser_demo.py                        # c2ser_tiny, template CoT targets
    python scripts/c2ser_demo.py --model c2ser_demo     # real Whisper tiny.en speech encoder
    python scripts/c2ser_demo.py --teacher              # Stage 2 on Stage 1's own CoT answers
    python scripts/c2ser_demo.py -- trainer.max_epochs=5   # extra Hydra overrides (both stages)

Steps: (0) build the demo corpus if absent; (1) Emotion2Vec-S utterance features with
``c2ser extract`` (a tiny random Emotion2Vec-S unless ``--extract-args '--checkpoint DIR'``;
``--no-ssl`` trains the 'w/o Emotion2Vec-S' model instead); (2) Stage 1,
``train.py experiment=cot_explicit``; (3, ``--teacher``) ``c2ser distill-targets``; (4) Stage 2,
``train.py experiment=cot_implicit task.init_from=<stage 1>/model``; (5) ``c2ser infer`` of both
models on the test split (greedy; at most 150 / 40 new tokens for Stage 1 / 2). The summary gives per stage the parse rate, accuracy and median answer
length, and for Stage 1 how well the quoted transcript in the chain of thought matches the text.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
QUOTED = re.compile(r"[\"“]([^\"”]*)[\"”]")


def run(cmd: list[str]) -> None:
    print("+", shlex.join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)


def c2ser(*args: str) -> list[str]:
    return [sys.executable, "-m", "c2ser.cli.main", *args]


def train(experiment: str, run_dir: Path, overrides: list[str]) -> Path:
    run([sys.executable, "train.py", f"experiment={experiment}", f"hydra.run.dir={run_dir}",
         *overrides])  # fmt: skip
    return run_dir / "model"


def split_manifest(manifest: Path, out: Path, splits: tuple[str, ...] = ("test",)) -> Path:
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
    base = manifest.resolve().parent
    keep = [{**r, "wav": str(base / r["wav"])} for r in rows if r.get("split") in splits]
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in keep), "utf-8")
    return out


def transcript_match(answer: str, text: str) -> float:
    """Similarity (0..1, difflib ratio, punctuation- and case-insensitive) of the first quoted
    span of an explicit answer to the reference transcript; 0 when nothing is quoted."""
    m = QUOTED.search(answer)
    norm = lambda s: re.sub(r"[\W_]+", "", s.lower())  # noqa: E731
    return difflib.SequenceMatcher(None, norm(m.group(1)), norm(text)).ratio() if m else 0.0


def summarise(results: Path, texts: dict[str, str], stage: int) -> dict[str, float]:
    rows = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()]
    n = max(len(rows), 1)
    out = {
        "n": len(rows),
        "parse_rate": sum(r["pred_emotion"] is not None for r in rows) / n,
        "accuracy": sum(r["pred_emotion"] == r["emotion"] for r in rows) / n,
        "median_tokens": statistics.median(r["n_tokens"] for r in rows) if rows else 0,
    }
    if stage == 1:
        out["transcript_match"] = (
            sum(transcript_match(r["text"], texts[r["index"]]) for r in rows) / n
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="c2ser_tiny", help="model config (c2ser_tiny, c2ser_demo)")
    p.add_argument("--corpus", default="data/demo", help="demo corpus folder (built if missing)")
    p.add_argument("--out", default="logs/c2ser_demo", help="runs, features and results")
    p.add_argument("--teacher", action="store_true", help="Stage 2 on Stage 1's own answers")
    p.add_argument("--no-ssl", action="store_true", help="no Emotion2Vec-S (model.use_ssl=false)")
    p.add_argument(
        "--extract-args",
        default="--random-init --model tiny",
        help="`c2ser extract` options choosing the Emotion2Vec-S model (default: a tiny random "
        "one, 64-wide, whose features carry no emotion; '--checkpoint DIR' for a real one)",
    )
    p.add_argument("overrides", nargs="*", help="Hydra overrides for both stages (after --)")
    args = p.parse_args(argv)

    corpus, out = (REPO / args.corpus).resolve(), (REPO / args.out).resolve()
    manifest = corpus / "manifest.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    if not manifest.exists():
        from c2ser.data.demo import build_demo_corpus

        build_demo_corpus(corpus, size=40, seed=0)
    common = [f"model={args.model}", f"data.manifest={manifest}", *args.overrides]
    feats = out / "ssl"
    if args.no_ssl:
        common.append("model.use_ssl=false")
    else:
        run(c2ser("extract", "--manifest", str(manifest), "--out", str(feats), "--level",
                  "utterance", *shlex.split(args.extract_args)))  # fmt: skip
        common.append(f"data.ssl_dir={feats}")
        dim = np.load(next(feats.glob("*.npy"))).shape[1]
        common += [] if dim == 768 else [f"model.ssl_dim={dim}"]
    if args.model == "c2ser_demo" and not (REPO / "data/models/whisper-tiny.en").exists():
        run(c2ser("convert", "whisper-ct2", "data/models/whisper-tiny.en"))

    stage1 = train("cot_explicit", out / "stage1", common)
    stage2_data = []
    if args.teacher:
        teacher = out / "manifest_teacher.jsonl"
        cmd = ["distill-targets", "--checkpoint", str(stage1), "--manifest", str(manifest),
               "--out", str(teacher)]  # fmt: skip
        run(c2ser(*cmd, *([] if args.no_ssl else ["--features", str(feats)])))
        stage2_data = [f"data.manifest={teacher}"]
    stage2 = train("cot_implicit", out / "stage2", [*common, *stage2_data,
                                                    f"task.init_from={stage1}"])  # fmt: skip

    test = split_manifest(manifest, out / "test.jsonl")
    texts = {json.loads(x)["index"]: json.loads(x).get("text", "") for x in test.open()}
    summary = {}
    for stage, model, budget in ((1, stage1, 150), (2, stage2, 40)):
        results = out / f"results_stage{stage}.jsonl"
        cmd = ["infer", "--checkpoint", str(model), "--manifest", str(test), "--stage", str(stage),
               "--out", str(results), "--device", "cpu", "--batch-size", "16",
               "--max-new-tokens", str(budget)]  # fmt: skip
        run(c2ser(*cmd, *([] if args.no_ssl else ["--features", str(feats)])))
        summary[f"stage{stage}"] = summarise(results, texts, stage)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for name, s in summary.items():
        print(name, ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in s.items()))  # fmt: skip
    print(f"summary: {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
