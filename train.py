"""Train a zoo model: python train.py model=deep_nested [key=value ...]"""

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from zoo.cli import report_user_errors, run_hydra_app
from zoo.config import register_configs, validate

register_configs()


@hydra.main(config_path="configs", config_name="train", version_base="1.3")
@report_user_errors
def main(cfg: DictConfig) -> float:
    validate(cfg)
    from zoo.training import train

    metrics = train(cfg, HydraConfig.get().runtime.output_dir)
    return metrics.get("val_loss", metrics.get("train_loss", float("nan")))


if __name__ == "__main__":
    run_hydra_app(main)
