"""Pretrained files saved in one process load in another with equal outputs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from helpers import small, tokens

from zoo.weights.pretrained import from_pretrained, save_pretrained

LOAD_AND_RUN = """
import sys, numpy as np, jax
import zoo
model = zoo.from_pretrained(sys.argv[1])
x = jax.random.randint(jax.random.key(0), (2, 6), 0, 10)
np.save(sys.argv[2], np.asarray(model(x)))
"""


def test_saved_transformer_loads_in_another_process_with_equal_outputs(tmp_path):
    model = small(num_layers=2, seed=3, max_len=8, dropout=0.2, causal=True)
    save_pretrained(model, tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["model"] == "transformer" and config["kwargs"]["causal"] is True
    model.eval()
    x = tokens((2, 6))
    want = np.asarray(model(x))  # first: the child finds these ops in the compilation cache
    subprocess.run(
        [sys.executable, "-c", LOAD_AND_RUN, str(tmp_path / "model"), str(tmp_path / "out.npy")],
        check=True,
        timeout=120,
    )
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), want)
    loaded = from_pretrained(tmp_path / "model")  # in eval mode: dropout off
    np.testing.assert_array_equal(loaded(x), loaded(x))
