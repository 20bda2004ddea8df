"""The Transformer: state layout, numerics against independent references, dropout, training."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT
from flax import nnx
from helpers import D, H, V, ref_cross_entropy, small, tokens

import zoo
from zoo.models.layers import scan_blocks
from zoo.models.transformer.modeling import Attention, Block, Transformer
from zoo.training import parallel
from zoo.training.build import build_model
from zoo.training.state import TrainState
from zoo.training.steps import make_steps

ATOL = 2e-5


def params_dict(module: nnx.Module) -> dict:
    return nnx.to_pure_dict(nnx.state(module, nnx.Param))


# The references are numpy in float64: independent of JAX, and nothing to compile.


def as_numpy(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def ref_layer_norm(x, scale, bias, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def ref_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def ref_gelu(z):  # jax.nn.gelu's default, the tanh approximation
    return 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3)))


def ref_attention(p, x, num_heads, causal):
    p, x = as_numpy(p), np.asarray(x, np.float64)
    batch, length, d = x.shape
    dh = d // num_heads

    def heads(name):  # (batch, heads, length, dh)
        y = x @ p[name]["kernel"] + p[name]["bias"]
        return y.reshape(batch, length, num_heads, dh).transpose(0, 2, 1, 3)

    q, k, v = heads("query"), heads("key"), heads("value")
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh)
    if causal:
        scores = np.where(np.tril(np.ones((length, length), bool)), scores, -np.inf)
    o = ref_softmax(scores) @ v
    o = o.transpose(0, 2, 1, 3).reshape(batch, length, d)
    return o @ p["out"]["kernel"] + p["out"]["bias"]


def ref_transformer(p, toks, num_heads, causal):
    """One block: embed + positions, pre-norm attention and gelu MLP with residuals, norm, head."""
    p, toks = as_numpy(p), np.asarray(toks)
    b = jax.tree.map(lambda a: a[0], p["blocks"])
    h = p["embed"]["embedding"][toks] + p["positions"]["embedding"][: toks.shape[-1]]
    a = ref_layer_norm(h, b["attn_norm"]["scale"], b["attn_norm"]["bias"])
    h = h + ref_attention(b["attn"], a, num_heads, causal)
    m = ref_layer_norm(h, b["mlp_norm"]["scale"], b["mlp_norm"]["bias"])
    up, down = b["mlp"]["layers"][0], b["mlp"]["head"]
    h = h + ref_gelu(m @ up["kernel"] + up["bias"]) @ down["kernel"] + down["bias"]
    h = ref_layer_norm(h, p["norm"]["scale"], p["norm"]["bias"])
    return h @ p["head"]["kernel"] + p["head"]["bias"]


def test_state_paths_read_like_the_architecture_with_a_leading_layer_axis():
    model = zoo.create_model(
        "transformer", vocab_size=V, d_model=D, num_heads=H, num_layers=3, rngs=nnx.Rngs(0)
    )
    shapes = {
        "/".join(map(str, path)): v[...].shape
        for path, v in nnx.to_flat_state(nnx.state(model, nnx.Param))
    }
    for proj in ("query", "key", "value", "out"):
        assert shapes[f"blocks/attn/{proj}/kernel"] == (3, D, D)
        assert shapes[f"blocks/attn/{proj}/bias"] == (3, D)
    assert shapes["blocks/mlp/layers/0/kernel"] == (3, D, 4 * D)
    assert shapes["blocks/mlp/head/kernel"] == (3, 4 * D, D)
    assert shapes["blocks/attn_norm/scale"] == (3, D)
    assert shapes["embed/embedding"] == (V, D)
    assert shapes["positions/embedding"] == (64, D)
    assert shapes["head/kernel"] == (D, V)
    assert len(shapes) == 22  # 8 attn + 4 norms + 4 mlp in blocks; 6 outside
    assert "transformer" in zoo.list_models() and zoo.list_models("*former") == ["transformer"]


def test_stacked_layers_are_initialised_independently():
    model = small()
    kernel = model.blocks.attn.query.kernel[...]
    assert not np.allclose(kernel[0], kernel[1]) and not np.allclose(kernel[1], kernel[2])


@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_jax_dot_product_attention(causal):
    attn = Attention(D, H, causal=causal, rngs=nnx.Rngs(1))
    x = jax.random.normal(jax.random.key(2), (2, 6, D))
    p = params_dict(attn)

    def proj(name):  # jax.nn.dot_product_attention wants (batch, length, heads, head_dim)
        return (x @ p[name]["kernel"] + p[name]["bias"]).reshape(2, 6, H, D // H)

    mixed = jax.nn.dot_product_attention(
        proj("query"), proj("key"), proj("value"), is_causal=causal
    )
    expected = mixed.reshape(2, 6, D) @ p["out"]["kernel"] + p["out"]["bias"]
    out = attn(x)
    np.testing.assert_allclose(out, expected, atol=ATOL)
    np.testing.assert_allclose(out, ref_attention(p, x, H, causal), atol=ATOL)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_flax_multi_head_attention_with_copied_weights(causal):
    d, h = D, H
    attn = Attention(d, h, causal=causal, rngs=nnx.Rngs(3))
    mha = nnx.MultiHeadAttention(
        h, d, qkv_features=d, out_features=d, decode=False, rngs=nnx.Rngs(4)
    )
    for name in ("query", "key", "value"):
        getattr(mha, name).kernel[...] = getattr(attn, name).kernel[...].reshape(d, h, d // h)
        getattr(mha, name).bias[...] = getattr(attn, name).bias[...].reshape(h, d // h)
    mha.out.kernel[...] = attn.out.kernel[...].reshape(h, d // h, d)
    mha.out.bias[...] = attn.out.bias[...]
    x = jax.random.normal(jax.random.key(5), (2, 6, d))
    mask = nnx.make_causal_mask(jnp.ones((2, 6))) if causal else None
    np.testing.assert_allclose(attn(x), mha(x, mask=mask), atol=ATOL)


@pytest.mark.slow  # the model op by op at two new lengths: make test runs it, test-fast does not
@pytest.mark.parametrize("causal", [False, True])
def test_one_block_transformer_matches_a_plain_numpy_reference(causal):
    model = small(num_layers=1, seed=6, mlp_ratio=2, max_len=8, causal=causal)
    toks = tokens((2, 8))
    out = model(toks)
    assert out.shape == (2, 8, V)
    np.testing.assert_allclose(out, ref_transformer(params_dict(model), toks, H, causal), atol=ATOL)
    # a shorter sequence uses the first positions only
    np.testing.assert_allclose(
        model(toks[:, :6]), ref_transformer(params_dict(model), toks[:, :6], H, causal), atol=ATOL
    )


def test_causal_mask_hides_the_future():
    model = small(causal=True)
    a, b = tokens((2, 6), seed=1), tokens((2, 6), seed=2)
    out_a, out_mixed = model(a), model(a.at[:, 4:].set(b[:, 4:]))
    np.testing.assert_allclose(out_a[:, :4], out_mixed[:, :4], atol=ATOL)
    assert not np.allclose(out_a[:, 4:], out_mixed[:, 4:], atol=1e-3)


def test_scanned_stack_matches_an_unrolled_loop_over_the_same_weights():
    model = small(seed=7)
    h = jax.random.normal(jax.random.key(8), (2, 6, D))
    stacked = nnx.state(model.blocks)
    unrolled = h
    for i in range(3):
        block = Block(D, H, rngs=nnx.Rngs(99))  # other weights, overwritten by layer i's
        nnx.update(block, jax.tree.map(lambda a, i=i: a[i], stacked))
        unrolled = block(unrolled)
    np.testing.assert_allclose(scan_blocks(model.blocks, h), unrolled, atol=ATOL)
    assert not np.allclose(unrolled, h, atol=1e-2)


def test_bad_arguments_fail_at_construction():
    with pytest.raises(ValueError, match="divisible"):
        Transformer(V, d_model=30, num_heads=4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="num_layers"):
        Transformer(V, num_layers=0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="dropout"):
        Transformer(V, dropout=1.0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="exceeds max_len=4"):
        small(max_len=4)(tokens((2, 6)))


def dropout_pair():
    """A transformer with dropout and one without, holding the same parameters."""
    noisy, clean = small(dropout=0.3), small(seed=1)
    nnx.update(clean, nnx.state(noisy, nnx.Param))
    return noisy, clean


def test_dropout_streams_are_stacked_per_layer_and_advance_under_the_scan():
    noisy, clean = dropout_pair()
    keys = jax.random.key_data(noisy.blocks.dropout.rngs.key[...])
    assert keys.shape[0] == 3 and len({tuple(np.ravel(k)) for k in keys}) == 3
    x = tokens((2, 6))
    first, second = noisy(x), noisy(x)  # train mode by default
    assert not np.allclose(first, second)
    assert not np.allclose(first, clean(x))
    # two dropout calls per block per forward pass, counted in every layer's own stream
    np.testing.assert_array_equal(noisy.blocks.dropout.rngs.count[...], [4, 4, 4])


def test_eval_mode_turns_dropout_off():
    noisy, clean = dropout_pair()
    noisy.eval()
    x = tokens((2, 6))
    np.testing.assert_allclose(noisy(x), clean(x), atol=1e-6)
    np.testing.assert_array_equal(noisy.blocks.dropout.rngs.count[...], [0, 0, 0])


@pytest.mark.slow  # compiles many programs: make test runs it, make test-fast leaves it out
def test_training_step_carries_the_dropout_state_and_eval_graphdef_is_deterministic():
    import optax

    noisy, clean = dropout_pair()
    noisy.train()
    graphdef, params, rest = nnx.split(noisy, nnx.Param, ...)
    noisy.eval()
    eval_graphdef = nnx.graphdef(noisy)
    tx = optax.adam(1e-3)
    mesh = parallel.make_mesh(1)
    # the (2, 6) tokens of the other tests: clean's forward below is one they compiled already
    train_chunk, evaluate = make_steps(graphdef, eval_graphdef, tx, "classification", 2, mesh)
    x, y = tokens((2, 6)), tokens((2, 6), seed=1)
    state = TrainState(params, rest, tx.init(params), jnp.asarray(0), jax.random.key(0))
    state = train_chunk(state, x, y, length=3)[0]
    count = nnx.to_flat_state(state.rest)  # only the dropout streams are non-Param state
    counts = {"/".join(map(str, p)): v[...] for p, v in count if p[-1] == "count"}
    np.testing.assert_array_equal(counts["blocks/dropout/rngs/count"], [6, 6, 6])

    first = evaluate(state.params, state.rest, x, y)
    again = evaluate(state.params, state.rest, x, y)
    assert float(first["val_loss"]) == float(again["val_loss"])
    nnx.update(clean, state.params)
    clean_loss = ref_cross_entropy(clean(x), y)
    np.testing.assert_allclose(float(first["val_loss"]), clean_loss, rtol=1e-5)


def load_baseline():
    import importlib.util

    path = ROOT / "benchmarks" / "transformer_baseline.py"
    spec = importlib.util.spec_from_file_location("transformer_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("causal", [False, True])
def test_benchmark_baseline_forward_equals_the_model(causal):
    baseline = load_baseline()
    model = small(causal=causal)
    x = tokens((2, 6))
    params = baseline.transformer_params(model)
    out = jax.jit(partial(baseline.forward, num_heads=H, causal=causal))(params, x)
    np.testing.assert_allclose(out, model(x), atol=ATOL)


@pytest.mark.slow  # compiles many programs: make test runs it, make test-fast leaves it out
def test_built_in_one_program_or_op_by_op_the_weights_are_equal():
    # nnx.Embed's default initialiser would differ in the last bit inside one program
    # (zoo.models.layers.embed_init keeps the draw apart); dropout's RNG state must match as well.
    settings = {"vocab_size": 11, "d_model": 24, "num_heads": 3, "max_len": 10, "dropout": 0.1}
    # every seed shows both faults (each differs in the embeddings' last bits); two seeds show
    # the seed is passed through, not only that seed 0's numbers are right
    for seed in (0, 1):
        eager = nnx.state(zoo.create_model("transformer", rngs=nnx.Rngs(seed), **settings))
        built = nnx.state(build_model("transformer", settings, seed))
        pairs = zip(nnx.to_flat_state(eager), nnx.to_flat_state(built), strict=True)
        for (path, a), (_, b) in pairs:
            a, b = a[...], b[...]
            if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
                a, b = jax.random.key_data(a), jax.random.key_data(b)
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=f"{seed} {path}")
