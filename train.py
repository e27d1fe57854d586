"""Train any c2ser model: ``python train.py experiment=<name> [overrides]``.

Examples::

    python train.py experiment=demo                      # baseline SER on the demo corpus
    python train.py experiment=demo trainer.fast_dev_run=true
    python train.py experiment=demo run_name=my_run      # rerun the same command to resume
    python train.py --cfg job                            # print the composed config
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from c2ser.core.errors import BadInputError
    from c2ser.tasks.runner import optimized_metric, train

    try:
        return optimized_metric(cfg, train(cfg))
    except BadInputError as e:  # bad data is the user's to fix: one clear line, no traceback
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
