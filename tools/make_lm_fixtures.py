"""Make the language-model parity fixtures under tests/fixtures/lm/: four tiny, randomly
initialised Hugging Face transformers checkpoints (GPT-2 and Llama, float32) with a tokenizer each,
and the PyTorch reference's logits and greedy continuations for them.

    pip install 'zoo[fixtures]'        # torch, transformers, timm: not needed by the tests
    python tools/make_lm_fixtures.py   # rewrites tests/fixtures/lm/

Each tests/fixtures/lm/<name>/ is what `save_pretrained(dir, safe_serialization=True)` writes
(config.json, generation_config.json, model.safetensors or model.safetensors.index.json and its
shards), plus tokenizer.json (a BPE trained here with `tokenizers` on the text below, exactly
`vocab_size` tokens, special tokens <pad>=0 <eos>=1 <unk>=2) and reference.npz; README.md beside
them says what every array holds. Nothing is downloaded: seeds fix every weight and input.

The reference: the model in eval mode, float32, `attn_implementation="eager"`, called with
`input_ids`, `attention_mask` and explicit `position_ids = max(cumsum(mask) - 1, 0)`: a token's
position counts the real tokens before it, pads take position 0. That is how transformers'
`generate` numbers positions, and it matters for GPT-2's learned positions (a plain forward
without position_ids would number a left-padded row 0..T-1, pads included). Logits at padded
positions are recorded as the reference gives them but mean nothing (a pad query under eager
attention attends uniformly); compare where `attention_mask` is 1.

Two runs on one machine write the same bytes (one thread, deterministic kernels, a fixed zip
date); another CPU or torch build may differ in the last bits of the logits.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from fixture_common import (
    FIXTURES,
    describe_tensors,
    fresh_directory,
    make_deterministic,
    randomize_parameters,
    to_numpy,
    write_npz,
)
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)

LM = FIXTURES / "lm"
PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
NEW_TOKENS = 8
# Weights drawn N(0, 0.3) (norm scales 1 + N(0, 0.3)): logits of order 1, so a wrong GELU form,
# eps or rotary layout moves them by far more than the 1e-4 tolerance.
WEIGHT_STD = 0.3

CORPUS = """\
once upon a time there was a small model that lived in a zoo. every morning the keeper fed it
numbers, and every evening it gave back words. the quick brown fox jumps over the lazy dog.
the cat sat on the mat; the dog ran in the park. a zebra, a yak and a jaguar queued for water!
why do the owls hoot at night? because the moon is bright, and 1, 2, 3 stars are out.
the keeper wrote the weights down in a book, and the book was saved in safe tensors.
"""

# Texts for the forward pass: left-padded, right-padded, full (truncated to the length).
FORWARD_TEXTS = (
    "the cat sat on the mat",
    "why do the owls hoot",
    "once upon a time there was a small model that lived in a zoo. every morning the keeper fed "
    "it numbers, and every evening it gave back words.",
)
# Prompts for generation, left-padded to the longest.
PROMPTS = ("the dog ran", "a zebra, a yak and", "the keeper wrote the weights")


@dataclass(frozen=True)
class Checkpoint:
    """One fixture directory: a model class, its config and the inputs it gets."""

    name: str
    seed: int
    model_class: type
    config: object
    forward_length: int
    save_options: dict = field(default_factory=dict)
    # config changes that must move the logits well past the tolerance (checked)
    sensitive_to: tuple[dict, ...] = ()


def checkpoints() -> list[Checkpoint]:
    """The four fixtures, each covering the settings its family's converter must read."""
    special = {"pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 1}
    return [
        Checkpoint(
            "gpt2_tiny",
            seed=2,
            model_class=GPT2LMHeadModel,
            # tied embeddings (GPT-2's default), odd vocabulary, eps not the default 1e-5
            config=GPT2Config(
                vocab_size=99,
                n_embd=32,
                n_layer=2,
                n_head=4,
                n_positions=64,
                layer_norm_epsilon=1e-3,
                **special,
            ),
            forward_length=16,
            sensitive_to=({"activation_function": "gelu"}, {"layer_norm_epsilon": 1e-5}),
        ),
        Checkpoint(
            "gpt2_sharded",
            seed=3,
            model_class=GPT2LMHeadModel,
            # n_inner set (the MLP width is not 4 * n_embd), saved in shards of at most 40 kB
            config=GPT2Config(
                vocab_size=99, n_embd=32, n_layer=2, n_head=2, n_positions=32, n_inner=48, **special
            ),
            forward_length=16,
            save_options={"max_shard_size": "40kB"},
        ),
        Checkpoint(
            "llama_gqa",
            seed=3,
            model_class=LlamaForCausalLM,
            # grouped-query attention (4 query heads over 2 key/value heads), untied output
            config=LlamaConfig(
                vocab_size=128,
                hidden_size=32,
                intermediate_size=80,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                tie_word_embeddings=False,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                rms_norm_eps=1e-6,
                max_position_embeddings=64,
                **special,
            ),
            forward_length=16,
            sensitive_to=({"rope_parameters": {"rope_type": "default", "rope_theta": 1e5}},),
        ),
        Checkpoint(
            "llama_rope3",
            seed=2,
            model_class=LlamaForCausalLM,
            # llama3 rope scaling, one key/value head for two query heads, tied output, odd
            # vocabulary. head_dim 16 gives 8 frequencies with wavelengths 2*pi*10000^(k/8):
            # 6.3 is under original/high_freq_factor = 8 (kept), 19.9 lies between 8 and
            # original/low_freq_factor = 32 (smoothed), the rest are over 32 (divided by 8).
            # The forward input (40 tokens) is longer than original_max_position_embeddings.
            config=LlamaConfig(
                vocab_size=111,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                num_key_value_heads=1,
                tie_word_embeddings=True,
                rope_parameters={
                    "rope_type": "llama3",
                    "rope_theta": 10000.0,
                    "factor": 8.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 32,
                },
                rms_norm_eps=1e-5,
                max_position_embeddings=128,
                **special,
            ),
            forward_length=40,
            sensitive_to=({"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}},),
        ),
    ]


def train_tokenizer(vocab_size: int) -> Tokenizer:
    """A lowercasing BPE over `CORPUS` with exactly `vocab_size` tokens, specials first."""
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[PAD, EOS, UNK], show_progress=False
    )
    tokenizer.train_from_iterator([CORPUS], trainer=trainer)
    if tokenizer.get_vocab_size() != vocab_size:
        raise RuntimeError(f"the corpus makes {tokenizer.get_vocab_size()}, not {vocab_size}")
    return tokenizer


def pad_rows(rows: list[list[int]], length: int, sides: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Token rows padded with <pad> (id 0) on the given side to `length`, and their masks."""
    ids = np.zeros((len(rows), length), np.int64)
    mask = np.zeros((len(rows), length), np.int64)
    for row, (tokens, side) in enumerate(zip(rows, sides, strict=True)):
        tokens = tokens[:length]
        start = length - len(tokens) if side == "left" else 0
        ids[row, start : start + len(tokens)] = tokens
        mask[row, start : start + len(tokens)] = 1
    return ids, mask


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Positions as `generate` numbers them: real tokens counted from 0, pads at 0."""
    return (mask.cumsum(-1) - 1).clamp(min=0) * mask


@torch.no_grad()
def forward(model: torch.nn.Module, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, ...]:
    """The reference logits for a padded batch, and the positions they were computed at."""
    mask_t = torch.from_numpy(mask)
    position_ids = positions(mask_t)
    logits = model(
        input_ids=torch.from_numpy(ids), attention_mask=mask_t, position_ids=position_ids
    ).logits
    return to_numpy(logits), to_numpy(position_ids)


@torch.no_grad()
def generate(model: torch.nn.Module, prompt_ids: np.ndarray, prompt_mask: np.ndarray) -> dict:
    """Greedy continuations with transformers' cache, the logits of each decoding step, and one
    full forward over each whole generated sequence."""
    out = model.generate(
        input_ids=torch.from_numpy(prompt_ids),
        attention_mask=torch.from_numpy(prompt_mask),
        do_sample=False,
        max_new_tokens=NEW_TOKENS,
        pad_token_id=0,
        output_logits=True,
        return_dict_in_generate=True,
    )
    generated = to_numpy(out.sequences)
    # generate extends the mask with ones for every new token
    new_tokens = generated[:, prompt_ids.shape[1] :]
    generated_mask = np.concatenate([prompt_mask, np.ones_like(new_tokens)], axis=1)
    generated_logits, generated_positions = forward(model, generated, generated_mask)
    step_logits = np.stack([to_numpy(step) for step in out.logits], axis=1)
    return {
        "generated": generated,
        "generated_mask": generated_mask,
        "generated_position_ids": generated_positions,
        "generated_logits": generated_logits,
        "step_logits": step_logits,
    }


def check_generation(reference: dict, special_ids: tuple[int, ...]) -> None:
    """The cached steps agree with the full forward, each new token is its argmax by a margin
    that float32 rounding cannot flip, and the continuations are worth comparing: no special
    token (so <eos> ends no row and no <pad> is generated), 3 or more distinct tokens a row."""
    prompt = reference["prompt_ids"].shape[1]
    full = reference["generated_logits"][:, prompt - 1 : -1]
    gap = np.abs(reference["step_logits"] - full).max()
    if gap > 1e-5:
        raise RuntimeError(f"cached and full-forward logits differ by {gap}")
    new = reference["generated"][:, prompt:]
    if not np.array_equal(new, full.argmax(-1)):
        raise RuntimeError("generate's tokens are not the argmax of the full forward")
    top2 = np.sort(full, axis=-1)[..., -2:]
    if (top2[..., 1] - top2[..., 0]).min() < 1e-3:
        raise RuntimeError("a greedy step wins by under 1e-3: pick another seed")
    if np.isin(new, special_ids).any() or min(len(set(row)) for row in new.tolist()) < 3:
        raise RuntimeError("a continuation holds a special token or repeats itself: another seed")


@torch.no_grad()
def make(spec: Checkpoint) -> None:
    """Write one checkpoint directory with its tokenizer and reference.npz."""
    generator = make_deterministic(spec.seed)
    spec.config._attn_implementation = "eager"
    model = spec.model_class(spec.config).eval()
    if model.config._attn_implementation != "eager":
        raise RuntimeError(f"{spec.name}: attention is {model.config._attn_implementation}")
    randomize_parameters(model, generator, WEIGHT_STD, matrices=True)
    directory = fresh_directory(LM / spec.name)
    model.save_pretrained(directory, safe_serialization=True, **spec.save_options)
    tokenizer = train_tokenizer(spec.config.vocab_size)
    tokenizer.save(str(directory / "tokenizer.json"))

    encode = [tokenizer.encode(text).ids for text in FORWARD_TEXTS]
    input_ids, attention_mask = pad_rows(encode, spec.forward_length, ["left", "right", "full"])
    if attention_mask.sum(1).min() == spec.forward_length or attention_mask[2].min() == 0:
        raise RuntimeError(f"{spec.name}: the first two texts must be short, the last long")
    logits, position_ids = forward(model, input_ids, attention_mask)
    prompts = [tokenizer.encode(text).ids for text in PROMPTS]
    prompt_ids, prompt_mask = pad_rows(prompts, max(map(len, prompts)), ["left"] * 3)
    reference = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "position_ids": position_ids,
        "logits": logits,
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        **generate(model, prompt_ids, prompt_mask),
    }
    check_generation(reference, special_ids=(0, 1, 2))
    write_npz(directory / "reference.npz", reference)

    # What was written reproduces the logits bit for bit when transformers loads it back.
    loaded = AutoModelForCausalLM.from_pretrained(directory, attn_implementation="eager").eval()
    if not np.array_equal(forward(loaded, input_ids, attention_mask)[0], logits):
        raise RuntimeError(f"{spec.name}: the saved checkpoint gives other logits")
    if spec.name == "llama_rope3":
        write_legacy_config(directory, logits, input_ids, attention_mask)
    report(spec, directory, reference)
    for change in spec.sensitive_to:
        check_setting_matters(model, change, logits, input_ids, attention_mask)


def write_legacy_config(
    directory: Path, logits: np.ndarray, input_ids: np.ndarray, attention_mask: np.ndarray
) -> None:
    """Write config.json as transformers 4.x wrote it, as published Llama 3 checkpoints still have
    it (`rope_theta` at the top, the llama3 scaling under `rope_scaling`, `torch_dtype`), and check
    that transformers reads it to the same model."""
    config = json.loads((directory / "config.json").read_text())
    rope = config.pop("rope_parameters")
    config["rope_theta"] = rope.pop("rope_theta")
    config["rope_scaling"] = rope
    config["torch_dtype"] = config.pop("dtype")
    legacy = directory / "legacy_config.json"
    legacy.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    with tempfile.TemporaryDirectory() as copy:
        shutil.copytree(directory, copy, dirs_exist_ok=True)
        shutil.copy(legacy, Path(copy) / "config.json")
        loaded = AutoModelForCausalLM.from_pretrained(copy, attn_implementation="eager").eval()
        if not np.array_equal(forward(loaded, input_ids, attention_mask)[0], logits):
            raise RuntimeError("the 4.x layout of llama_rope3's config gives other logits")


@torch.no_grad()
def check_setting_matters(
    model: torch.nn.Module, change: dict, logits: np.ndarray, ids: np.ndarray, mask: np.ndarray
) -> None:
    """The same weights under a config with `change` give logits over 1e-3 (ten times the parity
    tolerance) away, so a converter that ignored that setting would fail the parity test."""
    config = copy.deepcopy(model.config)
    for key, value in change.items():
        setattr(config, key, value)
    other = type(model)(config).eval()
    other.load_state_dict(model.state_dict())
    gap = np.abs(forward(other, ids, mask)[0] - logits)[mask == 1].max()
    if gap < 1e-3:
        raise RuntimeError(f"{change} moves the logits by only {gap}")
    print(f"   {change} would move the logits by up to {gap:.4f}")


def report(spec: Checkpoint, directory: Path, reference: dict) -> None:
    """Print what was written: files, tensors, arrays, the generated tokens."""
    files = ", ".join(f"{p.name} {p.stat().st_size}" for p in sorted(directory.iterdir()))
    print(f"== {spec.name}: {files}")
    for key, shape in describe_tensors(directory).items():
        print(f"   tensor {key} {shape}")
    for key, array in reference.items():
        print(f"   array {key} {array.dtype} {list(array.shape)}")
    print(f"   logits std {reference['logits'].std():.3f}")
    print(f"   generated {reference['generated'][:, reference['prompt_ids'].shape[1] :].tolist()}")


def main() -> None:
    for spec in checkpoints():
        make(spec)
    config = json.loads((LM / "llama_rope3" / "config.json").read_text())
    print(f"llama_rope3 rope_parameters: {config['rope_parameters']}")


if __name__ == "__main__":
    main()
