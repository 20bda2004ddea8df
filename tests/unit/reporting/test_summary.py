"""The model summary: parameters by state path, shape, dtype, count and total."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

import zoo
from zoo.reporting.summary import model_summary, param_rows


def test_rows_follow_the_state_pytree_paths_and_sizes():
    model = zoo.create_model(
        "deep_nested", in_features=5, hidden=6, depth=3, out_features=2, rngs=nnx.Rngs(0)
    )
    state = nnx.state(model, nnx.Param)
    rows = param_rows(state)
    for path, shape, dtype, count in rows:
        leaf = state
        for key in path.split("/"):
            leaf = leaf[key]
        assert (shape, dtype, count) == (leaf.shape, str(leaf.dtype), leaf[...].size)
    assert {r[0] for r in rows} == {
        "middle/inner/kernel",
        "middle/inner/bias",
        "blocks/inner/kernel",
        "blocks/inner/bias",
        "head/kernel",
        "head/bias",
    }
    total = sum(x.size for x in nnx.to_flat_state(state).leaves)
    assert model_summary(model).splitlines()[-1].split() == ["total", f"{total:,}"]


def test_summary_of_an_abstract_model_needs_no_arrays():
    abstract = nnx.eval_shape(
        lambda: zoo.create_model("deep_nested", in_features=3, hidden=4, rngs=nnx.Rngs(0))
    )
    concrete = zoo.create_model("deep_nested", in_features=3, hidden=4, rngs=nnx.Rngs(0))
    assert model_summary(abstract) == model_summary(concrete)
    assert param_rows(nnx.state(abstract))[0][2] == str(jnp.zeros(()).dtype)
