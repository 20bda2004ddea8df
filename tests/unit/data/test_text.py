"""data=text: tokenized once into a cached token file, windows drawn by (seed, step) from the
memory map, a fixed validation tail, perplexity, resume, and one line for each bad input."""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, compose_config
from omegaconf import OmegaConf

from zoo.app.evaluation import evaluate_run
from zoo.data import tokens
from zoo.data.dataset import make_dataset
from zoo.data.text import find_sources
from zoo.errors import ZooError
from zoo.training.run import train

GPT2_TOKENIZER = ROOT / "tests" / "fixtures" / "lm" / "gpt2_tiny"
# A text a tiny model learns in a few dozen steps: a few sentences, over and over.
SENTENCES = [
    "the quick brown fox jumps over the lazy dog.",
    "a stitch in time saves nine.",
    "all that glitters is not gold.",
]
TEXT = "\n".join(SENTENCES[i % 3] for i in range(400)) + "\n"


def text_config(path: Path, cache: Path, *overrides: str):
    return compose_config(
        "train",
        [
            "model=transformer",
            "data=text",
            f"data.path={path}",
            f"data.cache_dir={cache}",
            "data.length=16",
            "data.val_windows=8",
            "model.d_model=16",
            "model.num_heads=2",
            "model.num_layers=1",
            "trainer.batch_size=8",
            "optim.lr=0.01",
            *overrides,
        ],
    )


def data_config(path, cache, **values):
    return OmegaConf.create(
        {
            "name": "text",
            "path": str(path) if path is not None else None,
            "tokenizer": "bytes",
            "length": 16,
            "val_fraction": 0.1,
            "val_windows": 8,
            "seed": 0,
            "cache_dir": str(cache),
        }
        | values
    )


# the module-scoped fixture is built once, on one worker, not once per xdist worker
pytestmark = [pytest.mark.xdist_group("text"), pytest.mark.slow]  # slow: make test only


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "sentences.txt"
    path.write_text(TEXT)
    return path


def test_bytes_are_tokenized_once_and_the_cache_is_reused_until_the_text_changes(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("héllo\nworld\n" * 3)
    tokenizer = tokens.Tokenizer("bytes")
    first = tokens.tokenize([tokens.Source(str(path), path=path)], tokenizer, tmp_path / "cache")
    assert first.dtype == np.uint16 and first.vocab_size == 256
    np.testing.assert_array_equal(first.tokens(), np.frombuffer(path.read_bytes(), np.uint8))
    written = first.path.stat().st_mtime_ns
    again = tokens.tokenize([tokens.Source(str(path), path=path)], tokenizer, tmp_path / "cache")
    assert again == first and first.path.stat().st_mtime_ns == written  # reused, not rewritten
    path.write_text("héllo\nworld\n" * 4)  # new contents: a new key, a new file
    changed = tokens.tokenize([tokens.Source(str(path), path=path)], tokenizer, tmp_path / "cache")
    assert changed.path != first.path and changed.count == 4 * len("héllo\nworld\n".encode())


def test_a_text_run_writes_its_tokenizer_json_for_generation(whole_run):
    """The byte tokenizer as a tokenizer.json (for zoo-generate and transformers): the ids of a
    text are its UTF-8 bytes, and they decode back to it."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(whole_run[0] / "tokenizer.json"))
    text = "naïve café, 10 €\n\tdone"
    assert tokenizer.encode(text).ids == list(text.encode())
    assert tokenizer.decode(list(text.encode())) == text
    assert tokenizer.get_vocab_size() == 256


def test_a_cut_short_or_foreign_token_file_is_rebuilt_not_trusted(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("some text\n" * 50)
    source, tokenizer = [tokens.Source(str(path), path=path)], tokens.Tokenizer("bytes")
    good = tokens.tokenize(source, tokenizer, tmp_path)
    whole = good.path.read_bytes()
    good.path.write_bytes(whole[:-3])  # cut short: its size no longer matches its header
    assert tokens.read_header(good.path) is None
    rebuilt = tokens.tokenize(source, tokenizer, tmp_path)
    assert rebuilt.path.read_bytes() == whole
    good.path.write_bytes(whole[:8] + bytes(32) + whole[40:])  # another key in its header
    tokens.tokenize(source, tokenizer, tmp_path)
    assert good.path.read_bytes() == whole
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_a_tokenizer_json_tokenizes_as_the_tokenizers_library_does(tmp_path):
    """Each piece of text (cut at line ends, so that encode_batch runs them on every core) is
    encoded as the library encodes it; a text shorter than the pieces is one piece."""
    from tokenizers import Tokenizer

    reference = Tokenizer.from_file(str(GPT2_TOKENIZER / "tokenizer.json"))
    tokenizer = tokens.Tokenizer(str(GPT2_TOKENIZER))  # the directory holding tokenizer.json
    assert tokenizer.vocab_size == reference.get_vocab_size(with_added_tokens=True) == 99
    for lines in (1, 300):
        path = tmp_path / f"{lines}.txt"
        text = "\n".join(f"line {i}: {SENTENCES[i % 3]}" for i in range(lines)) + "\n"
        path.write_text(text)
        made = tokens.tokenize([tokens.Source(str(path), path=path)], tokenizer, tmp_path / "c")
        pieces = tokens.split_lines(text, tokens.PIECES)
        assert len(pieces) == 1 if lines == 1 else len(pieces) > tokens.PIECES // 2
        expected = [i for p in pieces for i in reference.encode(p, add_special_tokens=False).ids]
        np.testing.assert_array_equal(made.tokens(), expected)
        assert made.dtype == np.uint16
        assert tokenizer.decode(made.tokens()[:12]) == reference.decode(expected[:12])


def test_windows_depend_on_seed_and_step_alone_and_stay_in_the_training_split(corpus, tmp_path):
    data = make_dataset(data_config(corpus, tmp_path), OmegaConf.create({}))
    stream = data.stream
    count = len(TEXT.encode())
    n_val = round(count * 0.1)
    assert stream.end == count - n_val and data.model_inputs() == {"vocab_size": 256, "max_len": 16}
    chunk = stream.windows(3, 7, (2, 8))  # steps 3..6, 2 micro-batches of 8
    assert chunk.shape == (4, 2, 8, 17)
    np.testing.assert_array_equal(chunk[2], stream.windows(5, 6, (2, 8))[0])  # any chunking
    starts = np.stack([stream.starts(step, (2, 8)) for step in range(3, 7)])
    assert starts.max() + 16 < stream.end  # the last target of a window is a training token
    raw = np.frombuffer(TEXT.encode(), np.uint8)
    np.testing.assert_array_equal(chunk[0, 0, 0], raw[starts[0, 0, 0] : starts[0, 0, 0] + 17])
    other = make_dataset(data_config(corpus, tmp_path, seed=1), OmegaConf.create({})).stream
    assert not np.array_equal(other.windows(3, 7, (2, 8)), chunk)
    # validation: consecutive windows of the held-out tail, targets shifted by one
    x_val, y_val = np.asarray(data.x_val), np.asarray(data.y_val)
    assert x_val.shape == (8, 16)
    np.testing.assert_array_equal(x_val.reshape(-1), raw[stream.end : stream.end + 128])
    np.testing.assert_array_equal(y_val.reshape(-1), raw[stream.end + 1 : stream.end + 129])


def test_without_a_path_the_corpus_is_pythons_documentation_topics():
    from pydoc_data.topics import topics

    (source,) = find_sources(None)
    assert source.size > 400_000 and topics["assert"].encode() in source.text


@pytest.mark.parametrize(
    ("make", "setting", "message"),
    [
        (lambda d: d.joinpath("e.txt").write_text("") and None, "e.txt", "the file is empty"),
        (lambda d: d.joinpath("sub").mkdir(), "sub", "the directory holds no text files"),
        (lambda d: None, "no*.txt", "the pattern matches no files"),
        (lambda d: None, "missing.txt", "no such file or directory"),
        (
            lambda d: d.joinpath("latin1.txt").write_bytes(b"caf\xe9\n"),
            "latin1.txt",
            r"latin1.txt: not UTF-8 text \(byte 3 is e9\)",
        ),
        (
            lambda d: d.joinpath("short.txt").write_text("tiny\n"),
            "short.txt",
            "5 tokens are too few for data.length=16",
        ),
    ],
)
def test_a_bad_text_path_is_one_line(tmp_path, make, setting, message):
    make(tmp_path)
    with pytest.raises(ZooError, match=message):
        make_dataset(data_config(tmp_path / setting, tmp_path / "cache"), OmegaConf.create({}))
    assert not list((tmp_path / "cache").glob(".*"))  # no temporary file left behind


def test_a_tokenizer_directory_without_tokenizer_json_is_one_line(corpus, tmp_path):
    cfg = data_config(corpus, tmp_path, tokenizer=str(tmp_path))
    with pytest.raises(ZooError, match="the directory holds no tokenizer.json"):
        make_dataset(cfg, OmegaConf.create({}))


RUN = [
    "trainer.steps=40", "trainer.log_every=10", "trainer.eval_every=20", "trainer.ckpt_every=20",
    "trainer.plots=false",
]  # fmt: skip


@pytest.fixture(scope="module")
def whole_run(corpus, tmp_path_factory) -> tuple[Path, dict]:
    """A tiny causal transformer trained 40 steps on the corpus, checkpoints at 20 and 40."""
    run_dir = tmp_path_factory.mktemp("whole")
    return run_dir, train(text_config(corpus, run_dir.parent / "cache", *RUN), run_dir)


def test_a_causal_transformer_learns_the_text_and_resumes_bitwise(
    corpus, whole_run, tmp_path, caplog
):
    """A run resumed from its checkpoint at step 20 (as after a SIGKILL past it) reads the same
    windows and ends bit for bit where the uninterrupted run did."""
    whole, result = whole_run
    assert result["val_perplexity"] == pytest.approx(math.exp(result["val_loss"]), rel=1e-5)
    assert result["val_perplexity"] < 8  # from 256 byte symbols: it learned the sentences
    killed = tmp_path / "killed"
    shutil.copytree(whole, killed, ignore=shutil.ignore_patterns("40", "model", "best"))
    with caplog.at_level(logging.INFO, logger="zoo.checkpoint.resume"):
        train(text_config(corpus, whole.parent / "cache", *RUN, "trainer.resume=true"), killed)
    assert "resuming from the checkpoint at step 20" in caplog.text
    assert (killed / "metrics.jsonl").read_text() == (whole / "metrics.jsonl").read_text()
    assert (killed / "model" / "model.safetensors").read_bytes() == (
        whole / "model" / "model.safetensors"
    ).read_bytes()


def test_eval_scores_a_run_or_its_model_on_another_text(whole_run, tmp_path, capsys):
    whole, result = whole_run
    own = evaluate_run(whole)
    assert own == {k: pytest.approx(result[k], rel=1e-6) for k in own}
    assert set(own) == {"val_loss", "val_accuracy", "val_perplexity"}
    other = tmp_path / "other.txt"
    other.write_text("".join(sorted(TEXT)))  # the same symbols in another order: harder
    data = data_config(other, whole.parent / "cache")
    scored = evaluate_run(whole / "model", data)  # a pretrained directory, on a text
    assert scored["val_perplexity"] > own["val_perplexity"]
    too_long = data_config(other, whole.parent / "cache", length=17)
    with pytest.raises(ZooError, match=r"^data.length=17 is beyond the model's 16 positions"):
        evaluate_run(whole / "model", too_long)
