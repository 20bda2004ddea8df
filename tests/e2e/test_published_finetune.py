"""A published Llama checkpoint (transformers' own files, tests/fixtures/lm/llama_gqa) fine-tuned
with `init.from=<its directory>`: every tensor comes from the checkpoint, a SIGKILLed run resumes
bitwise like an uninterrupted one, and the result is written back in the Hugging Face layout."""

from __future__ import annotations

import json

import numpy as np
from conftest import ROOT
from helpers import (
    complete_steps,
    partial_saves,
    records,
    start_run,
    stop_when,
    tensors,
)
from safetensors.numpy import load_file

import zoo

LLAMA = ROOT / "tests" / "fixtures" / "lm" / "llama_gqa"
# llama_gqa's sizes (config.json), on random sequences over its 128-token vocabulary
FINETUNE = [
    "model=llama",
    "model.d_model=32",
    "model.num_heads=4",
    "model.num_kv_heads=2",
    "model.num_layers=2",
    "model.mlp_dim=80",
    "data=sequence",
    "data.vocab_size=128",
    "data.length=8",
    "data.n_train=256",
    "data.n_val=32",
    f"init.from={LLAMA}",
    "trainer.steps=20",
    "trainer.log_every=5",
    "trainer.eval_every=10",
    "trainer.ckpt_every=10",
    "trainer.ckpt_every_seconds=0",
    "trainer.plots=false",  # loss.png is not what this compares
]


def test_init_from_a_hugging_face_directory_fine_tunes_and_resumes_bitwise_after_sigkill(tmp_path):
    whole, run_dir = tmp_path / "whole", tmp_path / "run"
    zoo.train(FINETUNE, run_dir=whole)
    report = json.loads((whole / "init_report.json").read_text())
    assert len(report["loaded"]) == 12 and not report["missing"] and not report["unexpected"]

    proc = start_run(run_dir, tmp_path / "log", *FINETUNE)
    stop_when(proc, lambda: 10 <= max(complete_steps(run_dir), default=0) < 20)
    assert proc.returncode != 0 and not (run_dir / "model").exists()
    resume = [o for o in FINETUNE if not o.startswith("init.from")] + ["trainer.resume=true"]
    zoo.train(resume, run_dir=run_dir)
    assert partial_saves(run_dir) == []
    assert records(run_dir) == records(whole)
    resumed, uninterrupted = tensors(run_dir / "model"), tensors(whole / "model")
    assert resumed.keys() == uninterrupted.keys()
    for path, value in uninterrupted.items():
        np.testing.assert_array_equal(resumed[path], value, err_msg=path)
    published = load_file(LLAMA / "model.safetensors")
    trained = zoo.save_pretrained(
        zoo.from_pretrained(run_dir / "model"), tmp_path / "hf", format="hf"
    )
    written = load_file(trained / "model.safetensors")
    assert written.keys() == published.keys()  # transformers' names: it loads these files
    moved = [k for k in published if not np.array_equal(written[k], published[k])]
    assert len(moved) == len(published)  # fine-tuning moved every tensor
