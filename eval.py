"""Evaluate: python eval.py [seed=7 model.hidden=5 ...] | python eval.py run_dir=<train run dir>

python eval.py mode=summary [model.depth=4 ...]: the model's parameter table, without training.
"""

import sys

import hydra
from omegaconf import DictConfig

from zoo.cli import report_user_errors, run_hydra_app
from zoo.config import register_configs, validate

register_configs()


@hydra.main(config_path="configs", config_name="eval", version_base="1.3")
@report_user_errors
def main(cfg: DictConfig) -> None:
    validate(cfg)
    from zoo.evaluation import compare_with_reference, evaluate_run, print_summary

    if cfg.mode == "summary":
        print_summary(cfg)
    elif cfg.run_dir is not None:
        evaluate_run(cfg.run_dir)
    elif not compare_with_reference(cfg):
        sys.exit(1)


if __name__ == "__main__":
    run_hydra_app(main)
