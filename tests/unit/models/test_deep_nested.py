"""The seed's model: numbers against the verbatim oracle, state paths, depth, head, activations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import seed_reference as ref
from flax import nnx

import zoo
from zoo.models.deep_nested.modeling import OuterModule
from zoo.models.layers import ACTIVATIONS
from zoo.training.build import build_model

SEEDS = (0, 1, 7, 42, 123, 2**31 - 1)
SIZES = ((1, 1), (4, 8), (3, 17), (16, 5), (64, 32))  # (in_features, hidden)
CASES = [(seed, n_in, hidden) for seed in SEEDS for n_in, hidden in SIZES]


def state_paths(model):
    return {tuple(map(str, path)) for path, _ in nnx.to_flat_state(nnx.state(model))}


@pytest.mark.parametrize(("seed", "n_in", "hidden"), CASES)
def test_forward_matches_seed_reference_exactly(seed, n_in, hidden):
    x = jax.random.normal(jax.random.key(seed % 1000 + n_in), (n_in,)) * 2.0
    got = zoo.deep_nested_forward(float(seed), x, float(hidden))
    want = ref.deep_nested_forward(float(seed), x, float(hidden))
    assert got.shape == (hidden,)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


@pytest.mark.slow  # compiles many programs: make test runs it, make test-fast leaves it out
def test_the_model_train_builds_in_one_program_has_the_seeds_parameters():
    # build_model initialises inside one jitted program; without zoo.models.layers.kept_apart XLA
    # folds the draw's scaling into the next multiply and the kernel differs in the last bit
    # wherever that scale, 1/sqrt(in_features), is inexact (of SIZES: in_features=3). Each case
    # is one program to compile: every seed and every size once, in_features=3 twice.
    for seed, (n_in, hidden) in zip(SEEDS, [*SIZES, (3, 17)], strict=True):
        ours = build_model("deep_nested", {"in_features": n_in, "hidden": hidden}, seed)
        seeds = ref.OuterModule(in_features=n_in, hidden=hidden, rngs=nnx.Rngs(seed))
        for name in ("kernel", "bias"):
            np.testing.assert_array_equal(
                np.asarray(getattr(ours.middle.inner, name)[...]),
                np.asarray(getattr(seeds.middle.inner, name)[...]),
                err_msg=f"seed={seed} in_features={n_in} hidden={hidden} {name}",
            )


# The other tests' models are 4 -> 8 wide, where the assertions allow: eager programs are
# compiled once per shape, so those they share are compiled once.


@pytest.mark.parametrize("batch_shape", [(5,), (2, 3)])
def test_forward_batched_gives_each_rows_result(batch_shape):
    x = jax.random.normal(jax.random.key(3), (*batch_shape, 4))
    got = zoo.deep_nested_forward(11.0, x, 8.0)
    assert got.shape == (*batch_shape, 8)
    rows = x.reshape(-1, 4)
    for row, out in zip(rows, got.reshape(-1, 8), strict=True):
        np.testing.assert_allclose(
            out, ref.deep_nested_forward(11.0, row, 8.0), rtol=1e-6, atol=1e-6
        )


def test_default_state_has_exactly_the_seed_paths():
    model = OuterModule(4, 8, rngs=nnx.Rngs(0))
    _, state = nnx.split(model)
    assert state_paths(model) == {("middle", "inner", "kernel"), ("middle", "inner", "bias")}
    assert state["middle"]["inner"]["kernel"].shape == (4, 8)
    oracle = ref.OuterModule(4, 8, rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(
        state["middle"]["inner"]["kernel"][...], oracle.middle.inner.kernel[...]
    )


@pytest.mark.parametrize(("depth", "out_features"), [(2, None), (4, 3), (1, 5), (6, 1)])
def test_depth_keeps_first_block_and_counts_params(depth, out_features):
    n_in, hidden = 4, 8
    model = OuterModule(n_in, hidden, depth=depth, out_features=out_features, rngs=nnx.Rngs(3))
    oracle = ref.OuterModule(n_in, hidden, rngs=nnx.Rngs(3))
    np.testing.assert_array_equal(model.middle.inner.kernel[...], oracle.middle.inner.kernel[...])
    expected = n_in * hidden + hidden + (depth - 1) * (hidden * hidden + hidden)
    if out_features:
        expected += hidden * out_features + out_features
    params = nnx.state(model, nnx.Param)
    assert sum(p.size for p in jax.tree.leaves(params)) == expected
    if depth > 1:
        assert model.blocks.inner.kernel.shape == (depth - 1, hidden, hidden)
        assert ("blocks", "inner", "kernel") in state_paths(model)
    else:
        assert model.blocks is None
    out = model(jnp.ones((2, n_in)))
    assert out.shape == (2, out_features or hidden)


def test_scanned_blocks_equal_an_unrolled_loop():
    model = OuterModule(4, 8, depth=4, activation="tanh", out_features=3, rngs=nnx.Rngs(9))
    x = jax.random.normal(jax.random.key(0), (4, 4))
    k, b = model.middle.inner.kernel[...], model.middle.inner.bias[...]
    h = np.tanh(np.asarray(x) @ np.asarray(k) + np.asarray(b))
    for i in range(3):
        h = np.tanh(
            h @ np.asarray(model.blocks.inner.kernel[i]) + np.asarray(model.blocks.inner.bias[i])
        )
    h = h @ np.asarray(model.head.kernel[...]) + np.asarray(model.head.bias[...])
    np.testing.assert_allclose(np.asarray(model(x)), h, rtol=1e-5, atol=1e-5)


def test_blocks_after_the_first_are_distinct():
    model = OuterModule(4, 4, depth=3, rngs=nnx.Rngs(0))
    kernels = model.blocks.inner.kernel[...]
    assert not np.allclose(kernels[0], kernels[1])
    assert not np.allclose(kernels[0], model.middle.inner.kernel[...])


# Written independently of zoo.layers, with numpy.
NUMPY_ACTIVATIONS = {
    "relu": lambda z: np.maximum(z, 0),
    "gelu": lambda z: 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3))),
    "silu": lambda z: z / (1 + np.exp(-z)),
    "tanh": np.tanh,
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "elu": lambda z: np.where(z > 0, z, np.expm1(z)),
    "leaky_relu": lambda z: np.where(z >= 0, z, 0.01 * z),
    "softplus": lambda z: np.log1p(np.exp(z)),
    "identity": lambda z: z,
}


def test_every_activation_is_covered():
    assert set(ACTIVATIONS) == set(NUMPY_ACTIVATIONS)


@pytest.mark.parametrize("name", sorted(NUMPY_ACTIVATIONS))
def test_activation_by_name(name):
    model = OuterModule(4, 8, activation=name, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (10, 4)) * 3
    z = np.asarray(x) @ np.asarray(model.middle.inner.kernel[...])
    np.testing.assert_allclose(
        np.asarray(model(x)), NUMPY_ACTIVATIONS[name](z), rtol=1e-5, atol=1e-5
    )


def test_unknown_activation_names_value_and_lists_valid_ones():
    with pytest.raises(ValueError, match=r"'swish2'.*relu, gelu, silu"):
        OuterModule(4, 8, activation="swish2", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="jax.nn.relu"):
        OuterModule(4, 8, activation="jax.nn.relu", rngs=nnx.Rngs(0))


@pytest.mark.parametrize("kwargs", [{"depth": 0}, {"hidden": 0}, {"out_features": 0}])
def test_bad_sizes_raise_value_error(kwargs):
    args = {"in_features": 4, "hidden": 8} | kwargs
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        OuterModule(**args, rngs=nnx.Rngs(0))
