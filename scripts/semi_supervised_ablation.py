"""Does Emotion2Vec-S's semi-supervised category loss help? A small CPU ablation on the demo corpus.

    python scripts/semi_supervised_ablation.py                     # tiny model, 2 seeds, minutes
    python scripts/semi_supervised_ablation.py --epochs 30 --seeds 0 1 2 --cat-weights 1 100

For each seed, three encoders of the same size (``--model``, default ``emotion2vec_s_tiny``):

- ``random``: randomly initialised, not trained;
- ``ssl``: ``python train.py experiment=e2vs_pretrain_demo task.cat_weight=0`` (data2vec 2.0 frame
  loss + utterance loss: plain emotion2vec pretraining);
- ``semi<w>``: the same run with the category loss, ``task.cat_weight=w`` for each
  ``--cat-weights`` value (the paper uses 100).

With ``--continue-epochs N`` the comparison follows the paper's recipe instead (Emotion2Vec-S
continues from emotion2vec): the ``ssl`` model is trained N more epochs without (``ssl+ssl``) and
with (``ssl+semi<w>``) the category loss, so both arms get the same compute.

Pretraining sees the train split only: its audio (as unlabelled speech) and, for ``semi``, its
labels. Features of every utterance come from ``c2ser extract`` (frame level), are mean-pooled,
standardised, and probed with multinomial logistic regression (L2 chosen on the val split); the
table reports test UA / WA / macro-F1 (mean ± std over seeds). Log-mel statistics are a
reference row. Everything is resumable: finished runs and features are reused.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)


def run(cmd: list[str]) -> None:
    print("+", shlex.join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)


def c2ser(*args: str) -> list[str]:
    return [sys.executable, "-m", "c2ser.cli.main", *args]


def random_model(model: str, seed: int, out: Path) -> Path:
    """A randomly initialised encoder of the ``model`` config, saved for ``c2ser extract``."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    if not (out / "config.json").exists():
        with initialize_config_dir(str(REPO / "conf" / "model"), version_base="1.3"):
            cfg = compose(model)
        torch.manual_seed(seed)
        instantiate(cfg).save_pretrained(out)
    return out


def pretrain(args, manifest: Path, name: str, seed: int, out: Path, *overrides: str) -> Path:
    if not (out / "emotion2vec_s" / "config.json").exists():
        run([sys.executable, str(REPO / "train.py"), "experiment=e2vs_pretrain_demo",
             f"model={args.model}", f"seed={seed}", f"trainer.max_epochs={args.epochs}",
             f"data.labelled={manifest}", f"data.unlabelled={manifest}", f"hydra.run.dir={out}",
             "ckpt_path=null", f"tags=[ablation,{name}]", *overrides, *args.override])  # fmt: skip
    return out / "emotion2vec_s"


def pooled(feat_dir: Path, ids: list[str]) -> np.ndarray:
    """Mean-pooled features of ``ids``; every probe must see the same utterances, so an id that
    `c2ser extract` failed on (its summary says why) stops the script instead of being dropped."""
    missing = [i for i in ids if not (feat_dir / f"{i}.npy").is_file()]
    if missing:
        raise SystemExit(
            f"{feat_dir}: no features for {len(missing)} utterances, e.g. {missing[:5]}"
        )
    return np.stack([np.load(feat_dir / f"{i}.npy").mean(0) for i in ids])


def logistic_probe(x: dict, y: dict, classes: int) -> dict:
    """Multinomial logistic regression on standardised features; L2 picked by val UA."""
    from c2ser.core.metrics import classification_report

    mu, sd = x["train"].mean(0), x["train"].std(0) + 1e-6
    t = {k: torch.tensor((v - mu) / sd, dtype=torch.float32) for k, v in x.items()}
    labels = list(range(classes))
    best = None
    for l2 in L2_GRID:
        torch.manual_seed(0)
        lin = torch.nn.Linear(t["train"].shape[1], classes)
        opt = torch.optim.LBFGS(lin.parameters(), max_iter=300, line_search_fn="strong_wolfe")
        target = torch.tensor(y["train"])

        def closure(lin=lin, opt=opt, target=target, l2=l2):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(lin(t["train"]), target)
            loss = loss + l2 * lin.weight.square().sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            pred = {k: lin(v).argmax(-1).tolist() for k, v in t.items()}
        val = classification_report(y["val"], pred["val"], labels)["ua"]
        if best is None or val > best[0]:
            best = (val, l2, classification_report(y["test"], pred["test"], labels))
    val_ua, l2, test = best
    return {"val_ua": val_ua, "l2": l2, "ua": test["ua"], "wa": test["wa"], "f1": test["f1"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--corpus", default="data/demo", help="demo corpus folder (built if missing)")
    p.add_argument("--out", default="data/ablation/e2vs_semi", help="runs, features, results")
    p.add_argument("--model", default="emotion2vec_s_tiny", help="conf/model entry")
    p.add_argument("--epochs", type=int, default=15, help="pretraining epochs per run")
    p.add_argument("--cat-weights", type=float, nargs="+", default=[1.0, 10.0, 100.0],
                   help="category loss weights of the semi-supervised runs")  # fmt: skip
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument(
        "--continue-epochs",
        type=int,
        default=0,
        help="0: semi runs train from scratch; N: every run continues the ssl model for N "
        "epochs, with (ssl+semi<w>) and without (ssl+ssl) the category loss",
    )
    p.add_argument("--continue-lr", type=float, default=5e-4, help="lr of the continued runs")
    p.add_argument("override", nargs="*", help="extra Hydra overrides for the pretraining runs")
    args = p.parse_args(argv)

    from c2ser.core.io import atomic_write_text, write_json_atomic
    from c2ser.data.manifest import read_manifest

    corpus, out = REPO / args.corpus, REPO / args.out
    manifest = corpus / "manifest.jsonl"
    if not manifest.exists():
        run(c2ser("demo-corpus", "--out", str(corpus)))
    utts = read_manifest(manifest)
    classes = sorted({u.emotion for u in utts})
    split_ids = {s: [u.id for u in utts if u.split == s] for s in ("train", "val", "test")}
    y = {s: [classes.index(u.emotion) for u in utts if u.split == s] for s in split_ids}
    print({s: len(v) for s, v in split_ids.items()}, "utterances;", len(classes), "classes")

    def features(name: str, extract_args: list[str]) -> dict:
        feat_dir = out / "features" / name
        run(c2ser("extract", "--manifest", str(manifest), "--out", str(feat_dir), "--no-progress",
                  *extract_args))  # fmt: skip
        return {s: pooled(feat_dir, ids) for s, ids in split_ids.items()}

    results: dict[str, list[dict]] = {"logmel": [logistic_probe(features("logmel", ["--extractor", "logmel"]), y, len(classes))]}  # fmt: skip
    for seed in args.seeds:
        runs = out / "runs"
        ssl = pretrain(args, manifest, "ssl", seed, runs / f"ssl-s{seed}", "task.cat_weight=0")
        models = {"random": random_model(args.model, seed, runs / f"random-s{seed}"), "ssl": ssl}
        stage2 = []
        if args.continue_epochs:  # Emotion2Vec-S's recipe: continue from the SSL model
            stage2 = [f"task.init_from={ssl}", f"trainer.max_epochs={args.continue_epochs}",
                      f"task.lr={args.continue_lr}"]  # fmt: skip
        for w in [0.0, *args.cat_weights] if stage2 else args.cat_weights:
            name = f"ssl+semi{w:g}" if stage2 and w else "ssl+ssl" if stage2 else f"semi{w:g}"
            run_dir = runs / f"{name}-s{seed}"
            models[name] = pretrain(args, manifest, name, seed, run_dir, f"task.cat_weight={w}",
                                    *stage2)  # fmt: skip
        for name, model_dir in models.items():
            feats = features(f"{name}-s{seed}", ["--checkpoint", str(model_dir)])
            results.setdefault(name, []).append(logistic_probe(feats, y, len(classes)))

    lines = [
        "| features | test UA | test WA | test macro-F1 | val UA | runs |",
        "|---|---|---|---|---|---|",
    ]
    summary = {}
    for name, rs in results.items():
        stats = {k: (100 * np.mean([r[k] for r in rs]), 100 * np.std([r[k] for r in rs]))
                 for k in ("ua", "wa", "f1", "val_ua")}  # fmt: skip
        summary[name] = {"runs": rs, **{k: v[0] for k, v in stats.items()}}
        cells = " | ".join(f"{m:.1f} ± {s:.1f}" for m, s in stats.values())
        lines.append(f"| {name} | {cells} | {len(rs)} |")
    table = "\n".join(lines)
    print(f"\n{table}")
    command = shlex.join(["python", "scripts/semi_supervised_ablation.py", *sys.argv[1:]])
    atomic_write_text(out / "ablation.md", f"`{command}`\n\n{table}\n")
    write_json_atomic(out / "ablation.json", summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
