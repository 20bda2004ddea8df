"""zoo.train from Python with a config composed by Hydra (its own `hydra` node ignored)."""

from __future__ import annotations

import pytest
from conftest import compose_config

from zoo.config.validate import validate
from zoo.errors import ZooError


def test_a_config_composed_with_hydras_own_node_is_trained_and_the_node_ignored(tmp_path):
    """As lightning-hydra-template's tests compose (`return_hydra_config=True`, to set
    HydraConfig): zoo.config.validate and zoo.train leave the `hydra` node alone."""
    from conftest import CONFIGS
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import zoo

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", ["debug=fast", "seed=3"], return_hydra_config=True)
    assert "hydra" in cfg and cfg.hydra.job.name == "train"
    validate(cfg)
    last = zoo.train(cfg, run_dir=tmp_path)
    assert last["step"] == 4
    saved = OmegaConf.load(tmp_path / "config.yaml")
    assert "hydra" not in saved and saved.seed == 3  # the run's config only
    assert "hydra" in cfg  # the caller's config is left as it was
    with pytest.raises(ZooError, match="unknown key hydras"):  # a look-alike is still unknown
        validate(compose_config("train", ["+hydras=1"]))
