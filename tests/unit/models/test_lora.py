"""LoRA by path: adapters beside the kernels of the linear layers path patterns select, the base
model's output unchanged at the start, only adapters trained, merged back into plain weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import compose_config
from flax import nnx

from zoo import create_model, from_pretrained, save_pretrained
from zoo.errors import ZooError
from zoo.models.lora import add_lora, lora_layers, merge_lora
from zoo.paths import flat_variables
from zoo.training.build import build_run
from zoo.training.loop import run_chunks

ATTENTION = ["blocks/attn/key", "blocks/attn/out", "blocks/attn/query", "blocks/attn/value"]


def small_lm(**kwargs):
    settings = dict(vocab_size=32, d_model=16, num_heads=2, num_layers=2, max_len=8, causal=True)
    return create_model("transformer", rngs=nnx.Rngs(0), **(settings | kwargs))


def test_fresh_adapters_change_nothing_and_merge_into_plain_weights(tmp_path):
    model = small_lm()
    tokens = jax.random.randint(jax.random.key(1), (3, 8), 0, 32)
    before = model(tokens)
    layers = add_lora(model, rank=4, alpha=8.0, rngs=nnx.Rngs(2))  # default: attention
    assert sorted(layers) == ATTENTION
    variables = flat_variables(model)
    assert variables["blocks/attn/query/lora_a"].shape == (2, 16, 4)  # one per stacked block
    assert variables["blocks/attn/query/lora_b"].shape == (2, 4, 16)
    np.testing.assert_array_equal(model(tokens), before)  # B = 0: bit for bit the base model
    for layer in lora_layers(model).values():  # as after training: a real low-rank term
        layer.lora_b[...] = jax.random.normal(jax.random.key(3), layer.lora_b.shape) * 0.1
    adapted = model(tokens)
    assert float(jnp.abs(adapted - before).max()) > 1e-2
    merged = merge_lora(model)
    assert not any("lora" in path for path in flat_variables(merged))
    np.testing.assert_allclose(merged(tokens), adapted, atol=1e-5, rtol=0)
    assert lora_layers(model) and not lora_layers(merged)  # the model keeps its adapters
    np.testing.assert_array_equal(
        from_pretrained(save_pretrained(model, tmp_path))(tokens), merged(tokens)
    )  # fmt: skip  (saved merged, as a plain model)


def test_targets_select_any_linear_layer_by_path_and_one_that_selects_none_is_one_line():
    seed_model = create_model("deep_nested", in_features=3, rngs=nnx.Rngs(0))
    assert add_lora(seed_model, rank=2, targets=["**"], rngs=nnx.Rngs(0)) == [
        "middle/inner"
    ]  # the seed's InnerLinear
    mlp = create_model("mlp", in_features=3, widths=[8, 8], rngs=nnx.Rngs(0))
    assert add_lora(mlp, rank=2, targets=["head", "layers/1"], rngs=nnx.Rngs(0)) == [
        "head",
        "layers/1",
    ]
    with pytest.raises(ZooError, match=r"^model.lora.targets pattern 'blocks/attn/qury' match"):
        add_lora(small_lm(), rank=2, targets=["blocks/attn/qury"], rngs=nnx.Rngs(0))
    with pytest.raises(ZooError, match="the default patterns .* select none of the model's"):
        add_lora(mlp, rank=2, rngs=nnx.Rngs(0))


def test_with_lora_only_adapters_train_and_the_base_stays_bitwise():
    cfg = compose_config(
        "train",
        [
            "experiment=sequence_transformer", "model.d_model=16", "model.num_heads=2",
            "data.n_train=64", "data.n_val=16", "trainer.batch_size=16", "trainer.steps=10",
            "model.lora.rank=2", "model.lora.targets=[blocks/attn/query,blocks/attn/value]",
        ],
    )  # fmt: skip
    run = build_run(cfg)
    start = {p: np.asarray(v) for p, v in flat_variables(run.state.params).items()}
    ((state, record),) = run_chunks(run, run.state, [10])
    after = {p: np.asarray(v) for p, v in flat_variables(state.params).items()}
    adapters = [p for p in after if "/lora_" in p]
    assert sorted(adapters) == [
        f"blocks/attn/{layer}/lora_{ab}" for layer in ("query", "value") for ab in "ab"
    ]
    for path in after:
        if path in adapters:
            assert not np.array_equal(after[path], start[path]), path  # trained
        else:
            np.testing.assert_array_equal(after[path], start[path], err_msg=path)  # frozen
    moments = sum(x.size for x in jax.tree.leaves(state.opt_state) if jnp.ndim(x) > 0)
    assert moments == 2 * sum(after[p].size for p in adapters)  # adam's state: adapters only
    assert np.isfinite(record["val_loss"])
