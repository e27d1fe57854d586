"""The main job end to end on the embedded demo corpus: what ``make demo`` runs.

Every step is an ordinary, printed command, so any of them can be rerun or changed by hand::

    corpus        c2ser demo-corpus --out data/demo
    vocab         c2ser vocab --manifest data/demo/manifest.jsonl --out data/demo/vocab.json
                  (the demo LLM's rows: the token ids of the training text, c2ser.data.vocab)
    baseline      train.py experiment=demo                      (log-mel classifier, reference row)
    emotion2vec   train.py experiment=e2vs_pretrain_demo         (semi-supervised, train split only)
    features      c2ser extract --level utterance --utterance-mode mean   (C2SER's Emotion2Vec-S input)
                  c2ser extract --level frame                  (the probe's input)
    probe         train.py experiment=probe_demo               (Emotion2Vec-S probe, reference row)
    stage1        train.py experiment=stage1_demo              (explicit chain of thought)
    stage2        train.py experiment=stage2_demo task.init_from=<stage 1>/model
    no_ssl        with --ablation: the same two stages with model.use_ssl=false ("w/o Emotion2Vec-S")
    stage3        train.py experiment=stage3_grpo_demo task.init_from=<stage 2>/model
                  (GRPO on the emotion reward), evaluated as Stage 2 (--no-stage3: left out)
    evaluate      evaluate.py eval_set=demo_test ... per C2SER model, with stability runs
    bundle        c2ser bundle --model <stage 2>/model --emotion2vec <e2vs> --out logs/demo/bundle
    report        c2ser report <evaluation runs>
    summary       logs/demo/summary.{md,json} and confusion_<system>.png

Rerunning skips finished steps (a training or evaluation run is finished when its
``metrics.json`` exists) and resumes unfinished ones: training from its ``last.ckpt``, inference
from the utterances already in its ``results.jsonl``, extraction from the files already written.
``--fresh`` starts over. Outputs go to ``--out`` (default ``logs/demo``).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_NEW_TOKENS = {1: 100, 2: 30}  # the demo's answers: median ~45 tokens of CoT, ~5 implicit
# sampled decodings (stability) per stage: (seeds, prompt paraphrases); Stage 1 answers are long,
# so it gets 2 seeds of the official prompt, Stage 2 2 seeds x 2 prompts. Temperature sampling
# without a nucleus, as before the corpus vocabulary, when transformers' top-p sorted all 152k
# rows at every step (0.3 s for 16 rows on 2 cores, most of the decoding time).
STABILITY = {1: (2, 1), 2: (2, 2)}
SAMPLING = ["stability.temperature=0.8", "stability.top_p=1.0"]


def run(cmd: list[str]) -> None:
    print("+", shlex.join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)


def c2ser(*args: str) -> list[str]:
    return [sys.executable, "-m", "c2ser.cli.main", *args]


def step(name: str, done: Path, cmd: list[str], timings: dict[str, float]) -> None:
    """Run ``cmd`` unless ``done`` exists; record its wall time."""
    if done.exists():
        print(f"[{name}] done already ({done}), skipped", flush=True)
        return
    print(f"\n[{name}]", flush=True)
    t0 = time.perf_counter()
    run(cmd)
    timings[name] = round(time.perf_counter() - t0, 1)


def train(experiment: str, run_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "train.py", f"experiment={experiment}", f"hydra.run.dir={run_dir}",
            *overrides]  # fmt: skip


def evaluate(model: Path, stage: int, run_dir: Path, *overrides: str) -> list[str]:
    """evaluate.py on the demo's test speakers, greedy, with answer budgets per stage."""
    budget = MAX_NEW_TOKENS[stage]
    return [sys.executable, "evaluate.py", "eval_set=demo_test", f"checkpoint={model}",
            f"stage={stage}", f"hydra.run.dir={run_dir}", "device=cpu", "batch_size=16",
            f"max_new_tokens={budget}", *overrides]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--corpus", default="data/demo", help="demo corpus folder (built if missing)")
    p.add_argument("--out", default="logs/demo", help="runs, evaluations and the summary")
    p.add_argument(
        "--ablation",
        action="store_true",
        help="also train and evaluate the w/o Emotion2Vec-S model (about 10 more minutes on 2 "
        "CPU cores, which is over the demo's 20-minute budget; `make demo DEMO_ARGS=--ablation`)",
    )
    p.add_argument(
        "--stage3",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train C2SER Stage 3 (GRPO, experiment=stage3_grpo_demo) from the Stage 2 model and "
        "evaluate it as Stage 2 (about 3 minutes on 2 CPU cores; `make demo "
        "DEMO_ARGS=--no-stage3` leaves it out)",
    )
    p.add_argument("--fresh", action="store_true", help="delete --out first (not the corpus)")
    args = p.parse_args(argv)

    corpus, out = (REPO / args.corpus).resolve(), (REPO / args.out).resolve()
    manifest = corpus / "manifest.jsonl"
    if args.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    data = [f"data.manifest={manifest}"]

    step("corpus", manifest, c2ser("demo-corpus", "--out", str(corpus)), timings)
    vocab = corpus / "vocab.json"
    step("vocab", vocab, c2ser("vocab", "--manifest", str(manifest), "--out", str(vocab)), timings)
    step("baseline", out / "baseline" / "metrics.json",
         train("demo", out / "baseline", *data), timings)  # fmt: skip
    e2vs = out / "emotion2vec_s"
    step("emotion2vec", e2vs / "metrics.json",
         train("e2vs_pretrain_demo", e2vs, f"data.labelled={manifest}",
               f"data.unlabelled={manifest}"), timings)  # fmt: skip
    utt_feats, frame_feats = corpus / "features" / "e2vs_utt", corpus / "features" / "e2vs_frame"
    extract = ["extract", "--manifest", str(manifest), "--checkpoint", str(e2vs), "--no-progress"]
    step("features", utt_feats / ".done",
         c2ser(*extract, "--level", "utterance", "--utterance-mode", "mean", "--out",
               str(utt_feats)), timings)  # fmt: skip
    (utt_feats / ".done").touch()
    step("features (frame)", frame_feats / ".done",
         c2ser(*extract, "--level", "frame", "--out", str(frame_feats)), timings)  # fmt: skip
    (frame_feats / ".done").touch()
    step(
        "probe",
        out / "probe" / "metrics.json",
        train("probe_demo", out / "probe", *data, f"data.feat_dir={frame_feats}"),
        timings,
    )

    whisper = REPO / "data" / "models" / "whisper-tiny.en"
    step("whisper", whisper / "model.safetensors",
         c2ser("convert", "whisper-ct2", str(whisper)), timings)  # fmt: skip
    c2ser_data = [*data, f"model.vocab={vocab}"]
    systems = [("C2SER", [f"data.ssl_dir={utt_feats}"], utt_feats)]
    if args.ablation:
        systems.append(("C2SER w/o Emotion2Vec-S", ["model.use_ssl=false"], None))
    evals = []
    for name, overrides, feats in systems:
        tag = "c2ser" if feats else "no_ssl"
        s1, s2 = out / f"{tag}_stage1", out / f"{tag}_stage2"
        step(f"{tag} stage 1", s1 / "metrics.json",
             train("stage1_demo", s1, *c2ser_data, *overrides), timings)  # fmt: skip
        step(f"{tag} stage 2", s2 / "metrics.json",
             train("stage2_demo", s2, *c2ser_data, *overrides, f"task.init_from={s1 / 'model'}"),
             timings)  # fmt: skip
        # (prompt stage, model, system); Stage 3 answers the Stage 2 prompt
        evaluated = [(1, s1 / "model", f"{name} Stage 1"), (2, s2 / "model", f"{name} Stage 2")]
        if args.stage3 and feats:
            s3 = out / f"{tag}_stage3"
            step(f"{tag} stage 3", s3 / "metrics.json",
                 train("stage3_grpo_demo", s3, *c2ser_data, *overrides,
                       f"task.init_from={s2 / 'model'}"), timings)  # fmt: skip
            evaluated.append((2, s3 / "model", f'"{name} Stage 3 (GRPO)"'))  # Hydra-quoted
        for stage, model, system in evaluated:
            ev = out / "eval" / model.parent.name
            runs, prompts = STABILITY[stage]
            extra = [f"eval_set.manifest={manifest}", f"system={system}",
                     f"stability.runs={runs}", f"stability.prompts={prompts}", *SAMPLING]  # fmt: skip
            extra += [f"eval_set.features={feats}"] if feats else []
            step(f"evaluate {model.parent.name.replace('_stage', ' stage ')}", ev / "metrics.json",
                 evaluate(model, stage, ev, *extra), timings)  # fmt: skip
            evals.append(ev)
    # the trained C2SER Stage 2 with its Emotion2Vec-S and demo metrics, for predict / Pipeline
    step("bundle", out / "bundle" / "bundle.json",
         c2ser("bundle", "--model", str(out / "c2ser_stage2" / "model"), "--emotion2vec",
               str(e2vs), "--metrics", str(out / "eval" / "c2ser_stage2" / "metrics.json"),
               "--out", str(out / "bundle")), timings)  # fmt: skip
    # the report and the summary are cheap and cover every evaluation there is: always redone
    run(c2ser("report", *map(str, evals), "--out", str(out / "report.md")))

    from c2ser.evaluation.summary import demo_summary, write_summary

    summary = demo_summary(
        evals,
        classifiers={"log-mel baseline": out / "baseline", "Emotion2Vec-S probe": out / "probe"},
    )
    summary["timings_s"] = timings
    files = write_summary(summary, out)
    print("\n" + (out / "summary.md").read_text(encoding="utf-8"))
    print("wrote", ", ".join(str(f.relative_to(REPO)) for f in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
