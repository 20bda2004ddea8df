"""LoRA by path: adapters beside the kernels of the linear layers path patterns select, the base
model's output unchanged at the start, only adapters trained, merged back into plain weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT, compose_config
from flax import nnx

from zoo import create_model, from_pretrained, save_pretrained
from zoo.errors import ZooError
from zoo.models.lora import add_lora, lora_layers, merge_lora
from zoo.paths import flat_variables
from zoo.training.build import build_run
from zoo.training.loop import run_chunks

# make test runs these; make test-fast (the edit loop) leaves them out: each compiles, trains or
# loads a checkpoint for seconds
pytestmark = pytest.mark.slow

ATTENTION = ["blocks/attn/key", "blocks/attn/out", "blocks/attn/query", "blocks/attn/value"]


@nnx.jit
def forward(model, tokens):
    """The model's output in one jitted program (per model structure), not op by op."""
    return model(tokens)


def small_lm(**kwargs):
    settings = dict(vocab_size=32, d_model=16, num_heads=2, num_layers=2, max_len=8, causal=True)
    return create_model("transformer", rngs=nnx.Rngs(0), **(settings | kwargs))


def test_fresh_adapters_change_nothing_and_merge_into_plain_weights():
    model = small_lm()
    tokens = jax.random.randint(jax.random.key(1), (3, 8), 0, 32)
    before = forward(model, tokens)
    layers = add_lora(model, rank=4, alpha=8.0, rngs=nnx.Rngs(2))  # default: attention
    assert sorted(layers) == ATTENTION
    variables = flat_variables(model)
    assert variables["blocks/attn/query/lora_a"].shape == (2, 16, 4)  # one per stacked block
    assert variables["blocks/attn/query/lora_b"].shape == (2, 4, 16)
    # B = 0: bit for bit the base model
    np.testing.assert_array_equal(forward(model, tokens), before)
    for layer in lora_layers(model).values():  # as after training: a real low-rank term
        layer.lora_b[...] = jax.random.normal(jax.random.key(3), layer.lora_b.shape) * 0.1
    adapted = forward(model, tokens)
    assert float(jnp.abs(adapted - before).max()) > 1e-2
    merged = merge_lora(model)
    assert not any("lora" in path for path in flat_variables(merged))
    np.testing.assert_allclose(forward(merged, tokens), adapted, atol=1e-5, rtol=0)
    assert lora_layers(model) and not lora_layers(merged)  # the model keeps its adapters


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


def test_lora_fine_tuning_of_a_published_gpt2_keeps_its_tensors_and_merges_back(tmp_path):
    """init.from a Hugging Face GPT-2 directory with adapters on its attention: every published
    tensor stays bit for bit, the adapters train, the merged model computes the adapted one's
    logits (1e-5) and, written in the published layout, reads back with them."""
    published = ROOT / "tests" / "fixtures" / "lm" / "gpt2_tiny"
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"line {i}: the quick brown fox" for i in range(600)))
    cfg = compose_config(
        "train",
        [
            "model=gpt2", f"init.from={published}", "data=text", f"data.path={corpus}",
            f"data.tokenizer={published}", f"data.cache_dir={tmp_path}", "data.length=64",
            "data.val_windows=4", "model.d_model=32", "model.num_heads=4", "model.num_layers=2",
            "model.mlp_dim=128", "model.eps=1e-3", "model.lora.rank=4",
            "trainer.batch_size=4", "trainer.steps=5", "optim.lr=0.01",
        ],
    )  # fmt: skip
    run = build_run(cfg)
    base = {p: np.asarray(v) for p, v in flat_variables(from_pretrained(published)).items()}
    ((state, _),) = run_chunks(run, run.state, [5])
    after = {p: np.asarray(v) for p, v in flat_variables(state.params).items()}
    assert sorted(p for p in after if p not in base) == [
        f"blocks/attn/{layer}/lora_{ab}" for layer in ("out", "qkv") for ab in "ab"
    ]
    for path, tensor in base.items():
        np.testing.assert_array_equal(after[path], tensor, err_msg=path)
    assert all(np.abs(after[f"blocks/attn/{x}/lora_b"]).max() > 0 for x in ("out", "qkv"))
    moments = sum(x.size for x in jax.tree.leaves(state.opt_state) if jnp.ndim(x) > 0)
    assert moments == 2 * sum(after[p].size for p in after if p not in base)  # adam: adapters'
    nnx.update(run.model, state.params)
    tokens = jnp.asarray(run.data.x_val[:2])
    adapted = forward(run.model, tokens)
    merged = merge_lora(run.model)
    np.testing.assert_allclose(forward(merged, tokens), adapted, atol=1e-5, rtol=0)
    written = save_pretrained(run.model, tmp_path / "hf", format="hf")  # merged on the way
    assert {p.name for p in written.iterdir()} >= {"config.json", "model.safetensors"}
    np.testing.assert_allclose(
        forward(from_pretrained(written), tokens), adapted, atol=1e-5, rtol=0
    )
