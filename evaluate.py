"""Evaluate a C2SER model on a test set: ``python evaluate.py eval_set=<set> checkpoint=<dir> stage=2``.

Examples::

    python evaluate.py eval_set=emo_emilia eval_set.audio_root=/data/Emo-Emilia checkpoint=DIR stage=2
    python evaluate.py eval_set=demo_test checkpoint=logs/stage2_demo/runs/<run>/model stability.runs=5
    python evaluate.py eval_set=emo_emilia predictions=results.jsonl   # score existing outputs
    python evaluate.py --cfg job                                    # print the composed config

Writes metrics.json, summary.md, unparsed.jsonl, confusion_*.png (and stability.png) into the run
directory; see c2ser/evaluation/evaluate.py.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> float:
    from c2ser.core.errors import BadInputError
    from c2ser.evaluation.evaluate import run_evaluation, summary_markdown

    try:
        metrics = run_evaluation(cfg)
    except BadInputError as e:  # bad data is the user's to fix: a clear message, no traceback
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print(summary_markdown(metrics))
    print(f"outputs in {cfg.paths.output_dir}")
    return metrics["overall"]["ua"]


if __name__ == "__main__":
    main()
