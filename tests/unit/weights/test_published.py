"""Published language-model checkpoints (Hugging Face GPT-2 and Llama directories written by
transformers, tests/fixtures/lm): logits against transformers' own within 1e-4, both config.json
layouts, sharded files, greedy generation with the KV cache token for token, cached logits
against a full forward, and the round trip zoo -> Hugging Face layout -> zoo bit for bit."""

from __future__ import annotations

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT
from flax import nnx
from safetensors.numpy import load_file

import zoo

LM = ROOT / "tests" / "fixtures" / "lm"
FIXTURES = ["gpt2_tiny", "gpt2_sharded", "llama_gqa", "llama_rope3"]


# the module-scoped fixture is built once, on one worker, not once per xdist worker
pytestmark = [pytest.mark.xdist_group("published"), pytest.mark.slow]  # slow: make test only


@pytest.fixture(scope="module")
def loaded():
    """Each fixture's model (loaded once), its load report and reference arrays."""
    result = {}
    for name in FIXTURES:
        model, report = zoo.from_pretrained(LM / name, output_loading_info=True)
        result[name] = (model, report, dict(np.load(LM / name / "reference.npz")))
    return result


@pytest.fixture(scope="module")
def generated(loaded):
    """Per fixture: greedy tokens and per-step logits from zoo.generate (KV cache), and the
    logits of one uncached forward over the prompts and transformers' continuations."""
    result = {}
    for name, (model, _, ref) in loaded.items():
        prompts = [
            list(r[m == 1]) for r, m in zip(ref["prompt_ids"], ref["prompt_mask"], strict=True)
        ]
        tokens, steps = zoo.generate(model, prompts, max_new_tokens=8, output_logits=True)
        full = logits_of(
            model, ref["generated"], ref["generated_mask"], ref["generated_position_ids"]
        )
        result[name] = (np.asarray(tokens), steps, full)
    return result


def logits_of(model, ids, mask, positions):
    """The model's logits, in one jitted program."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def run(state, ids, mask, positions):
        return nnx.merge(graphdef, state)(ids, mask=mask, positions=positions)

    return np.asarray(run(state, ids, mask, positions))


def reference_logits(model, ref):
    return logits_of(model, ref["input_ids"], ref["attention_mask"], ref["position_ids"])


@pytest.mark.parametrize("name", FIXTURES)
def test_logits_match_transformers_within_1e_4(loaded, generated, name):
    model, report, ref = loaded[name]
    assert report.ok and not report.unexpected
    assert zoo.model_spec(model)[0] == name.split("_")[0]
    real = ref["generated_mask"] == 1  # pad positions' logits mean nothing
    assert np.abs(generated[name][2] - ref["generated_logits"])[real].max() <= 1e-4


def test_llama3_rope_scaling_matches_past_the_original_context(loaded):
    model, _, ref = loaded["llama_rope3"]  # 40 tokens, over original_max_position_embeddings=32
    real = ref["attention_mask"] == 1  # rows left-padded, right-padded and full
    assert np.abs(reference_logits(model, ref) - ref["logits"])[real].max() <= 1e-4


@pytest.mark.parametrize("name", FIXTURES)
def test_greedy_generation_equals_transformers_and_cached_logits_equal_a_full_forward(
    generated, loaded, name
):
    tokens, steps, full = generated[name]
    ref = loaded[name][2]
    prompt = ref["prompt_ids"].shape[1]
    np.testing.assert_array_equal(tokens, ref["generated"][:, prompt:])
    # step t's cached logits against the uncached forward's at the position that predicted it
    assert np.abs(steps - full[:, prompt - 1 : prompt + 7]).max() <= 1e-5
    assert np.abs(steps - ref["step_logits"]).max() <= 1e-4


def test_settings_come_from_config_json(loaded):
    gpt2 = zoo.model_spec(loaded["gpt2_tiny"][0])[1]
    assert (gpt2["eps"], gpt2["vocab_size"], gpt2["mlp_dim"], gpt2["max_len"]) == (
        1e-3,
        99,
        None,
        64,
    )
    assert zoo.model_spec(loaded["gpt2_sharded"][0])[1]["mlp_dim"] == 48
    gqa = zoo.model_spec(loaded["llama_gqa"][0])[1]
    assert (gqa["num_heads"], gqa["num_kv_heads"], gqa["tie_embeddings"]) == (4, 2, False)
    assert gqa["rope_scaling"] == {} and gqa["rope_theta"] == 10000.0
    rope3 = zoo.model_spec(loaded["llama_rope3"][0])[1]
    assert rope3["tie_embeddings"] and rope3["num_kv_heads"] == 1
    assert rope3["rope_scaling"] == {
        "rope_type": "llama3",
        "factor": 8.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 32,
    }
    assert loaded["llama_rope3"][0].head is None and loaded["llama_gqa"][0].head is not None


def test_the_transformers_4_config_layout_gives_the_same_logits_bit_for_bit(loaded, tmp_path):
    copy = tmp_path / "legacy"
    shutil.copytree(LM / "llama_rope3", copy)
    shutil.copy(copy / "legacy_config.json", copy / "config.json")
    model, _, ref = loaded["llama_rope3"]
    legacy = zoo.from_pretrained(copy)
    assert zoo.model_spec(legacy) == zoo.model_spec(model)
    np.testing.assert_array_equal(reference_logits(legacy, ref), reference_logits(model, ref))


@pytest.mark.parametrize("name", ["gpt2_sharded", "llama_gqa", "llama_rope3"])
def test_written_back_in_the_hf_layout_the_files_and_the_model_round_trip_bitwise(
    loaded, name, tmp_path
):
    model = loaded[name][0]
    out = zoo.save_pretrained(model, tmp_path / name, format="hf")
    written = load_file(out / "model.safetensors")
    if name == "gpt2_sharded":
        original = {}
        for shard in sorted((LM / name).glob("model-*.safetensors")):
            original |= load_file(shard)
    else:
        original = load_file(LM / name / "model.safetensors")
    assert written.keys() == original.keys()  # transformers' names, no lm_head when tied
    for key, value in original.items():
        np.testing.assert_array_equal(written[key], value, err_msg=key)
    config = json.loads((out / "config.json").read_text())
    reference = json.loads((LM / name / "config.json").read_text())
    keys = ("model_type", "vocab_size", "tie_word_embeddings", "architectures")
    assert {k: config[k] for k in keys} == {k: reference.get(k, True) for k in keys}
    again = zoo.from_pretrained(out)
    assert zoo.model_spec(again) == zoo.model_spec(model)
    a, b = nnx.to_flat_state(nnx.state(model)), nnx.to_flat_state(nnx.state(again))
    for (path, x), (_, y) in zip(a, b, strict=True):
        np.testing.assert_array_equal(np.asarray(x[...]), np.asarray(y[...]), err_msg=str(path))


def test_a_bfloat16_load_keeps_bfloat16_parameters(loaded):
    model = zoo.from_pretrained(LM / "llama_gqa", dtype="bfloat16")
    kernel = model.blocks.attn.query.kernel[...]
    assert kernel.dtype == jnp.bfloat16 and kernel.shape == (2, 32, 32)
    reference = loaded["llama_gqa"][0].blocks.attn.query.kernel[...]
    np.testing.assert_array_equal(kernel, reference.astype(jnp.bfloat16))


def test_zoo_generate_prints_transformers_greedy_continuations_from_a_prompts_file(
    loaded, tmp_path, capsys
):
    from tokenizers import Tokenizer

    from zoo.app.generate import main

    ref = loaded["gpt2_tiny"][2]
    tokenizer = Tokenizer.from_file(str(LM / "gpt2_tiny" / "tokenizer.json"))
    rows = [
        list(map(int, r[m == 1]))
        for r, m in zip(ref["prompt_ids"], ref["prompt_mask"], strict=True)
    ]
    (tmp_path / "prompts.txt").write_text("".join(tokenizer.decode(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    args = [f"source={LM / 'gpt2_tiny'}", f"prompts_file={tmp_path / 'prompts.txt'}"]
    main([*args, f"out={out}", "max_new_tokens=8"])
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt_ids"] for r in records] == rows
    prompt = ref["prompt_ids"].shape[1]
    assert [r["ids"] for r in records] == ref["generated"][:, prompt:].tolist()
    assert (
        records[0]["completion"]
        == tokenizer.decode(ref["generated"][0, prompt:].tolist())[-len(records[0]["completion"]) :]
    )
    main([f"source={LM / 'gpt2_tiny'}", f"prompt={tokenizer.decode(rows[1])}", "max_new_tokens=8"])
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert printed == records[1]["prompt"] + records[1]["completion"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["max_new_tokns=3"], "unknown setting 'max_new_tokns'; did you mean 'max_new_tokens'?"),
        (["top_p=1.5"], "top_p=1.5 is invalid"),
        (["prompt=hi"], "give source="),
        ([f"source={LM / 'gpt2_tiny'}"], "give prompt=<text> or prompts_file="),
        ([f"source={LM}/none", "prompt=hi"], "none: no such directory"),
        ([f"source={LM / 'gpt2_tiny'}", "prompt=hi", f"tokenizer={LM}"], "no tokenizer.json"),
    ],
)
def test_zoo_generate_refuses_bad_settings_in_one_line(args, message, capsys):
    from zoo.app.generate import main

    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_sampling_is_reproducible_from_its_seed_and_eos_ends_a_row(loaded, generated):
    model, _, ref = loaded["gpt2_tiny"]
    prompts = [list(r[m == 1]) for r, m in zip(ref["prompt_ids"], ref["prompt_mask"], strict=True)]

    def sample(seed, **options):
        return zoo.generate(model, prompts, max_new_tokens=8, seed=seed, **options)

    first = sample(3, temperature=1.0, top_p=0.9)
    assert first == sample(3, temperature=1.0, top_p=0.9)
    assert first != sample(4, temperature=1.0, top_p=0.9)
    greedy = generated["gpt2_tiny"][0].tolist()
    assert sample(5, temperature=1.0, top_k=1) == greedy  # one candidate: the greedy token
    first_new = next(k for k in range(1, 8) if greedy[0][k] not in greedy[0][:k])
    ended = zoo.generate(model, prompts, max_new_tokens=8, eos_id=greedy[0][first_new])
    assert ended[0] == greedy[0][: first_new + 1]  # the row stops after its eos, kept
    with pytest.raises(zoo.ZooError, match=r"prompt 1 must be a non-empty list of token ids"):
        zoo.generate(model, [[1], [99]], max_new_tokens=2)
    with pytest.raises(zoo.ZooError, match="exceeds the model's 64 learned positions"):
        zoo.generate(model, prompts, max_new_tokens=60)
