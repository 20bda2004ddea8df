"""Per-device bytes and compiled peak memory of the transformer's training step under each
`parallel` preset and `model.remat` policy, on 8 simulated CPU devices; prints one JSON list.

Run by bench.py in a subprocess: XLA's host device count must be set before JAX starts.
"""

from __future__ import annotations

import json
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"

import jax  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from zoo.config.store import register_configs  # noqa: E402
from zoo.training import sharding  # noqa: E402
from zoo.training.build import build_run  # noqa: E402

MODEL = ["model.d_model=128", "model.num_heads=8", "model.num_layers=4", "trainer.batch_size=64"]
LENGTH = 10  # fused steps in the compiled program


def measure(configs: str, preset: str, remat: str) -> dict:
    overrides = ["experiment=sequence_transformer", *MODEL, f"parallel={preset}"]
    with initialize_config_dir(config_dir=configs, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*overrides, f"model.remat={remat}"])
    run = build_run(cfg)
    state, data = run.state, run.data
    arrays = jax.tree.leaves((state.params, state.opt_state))
    held = sharding.per_device_bytes(arrays, [a.sharding for a in arrays])
    lowered = run.train_chunk.lower(state, data.x_train, data.y_train, length=LENGTH)
    stats = lowered.compile().memory_analysis()
    peak = (
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        - stats.alias_size_in_bytes
        + stats.temp_size_in_bytes
    )
    return {"preset": preset, "remat": remat, "per_device": held, "peak": peak}


if __name__ == "__main__":
    register_configs()
    rows = [
        measure(sys.argv[1], preset, remat)
        for preset in ("dp", "fsdp", "tp", "fsdp_tp")
        for remat in ("none", "full", "dots")
    ]
    print(json.dumps(rows))
