"""Train any c2ser model: ``python train.py experiment=<name> [overrides]``.

Examples::

    python train.py experiment=demo                      # baseline SER on the demo corpus
    python train.py experiment=demo trainer.fast_dev_run=true
    python train.py experiment=demo run_name=my_run ckpt_path=auto   # resumable run
    python train.py --cfg job                            # print the composed config
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from c2ser.tasks.runner import optimized_metric, train

    return optimized_metric(cfg, train(cfg))


if __name__ == "__main__":
    main()
