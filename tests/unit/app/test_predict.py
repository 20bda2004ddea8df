"""zoo-predict on a trained digits run: the rows out are the model's own outputs on the run's
preprocessing, in order, in every output format; the accuracy on a labelled file is eval.py's;
and the source and column checks are one line with nothing written."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from flax import nnx
from omegaconf import OmegaConf

import zoo
from zoo.app.evaluation import evaluate_run, run_config
from zoo.app.predict import bucket, predict
from zoo.data.arrays import split_off_val
from zoo.data.dataset import make_dataset
from zoo.data.digits import load_digits
from zoo.errors import ZooError

# make test runs these; make test-fast (the edit loop) leaves them out: each compiles, trains or
# loads a checkpoint for seconds
pytestmark = pytest.mark.slow

COLUMNS = [f"px{i}" for i in range(64)]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A digits run directory as train.py leaves it (config.yaml, model/; the weights are a fresh
    MLP's: what is checked holds for any weights), and its validation rows as a labelled CSV and
    .npz."""
    d = tmp_path_factory.mktemp("predict")
    cfg = zoo.compose(["model=mlp", "data=digits", "model.widths=[16]"])
    (d / "run").mkdir()
    (d / "run" / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    model = zoo.create_model("mlp", rngs=nnx.Rngs(3), in_features=64, widths=[16], out_features=10)
    zoo.save_pretrained(model, d / "run" / "model")
    x, y = load_digits()
    arrays = {"x": x, "y": y}
    split_off_val(arrays, 0.2, 0)  # the run's split: data.val_fraction=0.2, data.seed=0
    with open(d / "val.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow([*COLUMNS, "label"])
        rows = zip(arrays["x_val"], arrays["y_val"], strict=True)
        writer.writerows([*map(int, row), int(label)] for row, label in rows)
    np.savez(d / "val.npz", x=arrays["x_val"], y=arrays["y_val"])
    return d


def settings(**values):
    base = {"source": None, "input": None, "output": None, "batch_size": 64, "top_k": 1}
    base |= {"overwrite": False, "task": "auto", "target": None}
    return OmegaConf.create(base | values)


@pytest.fixture(scope="module")
def expected(run):
    """The saved model's logits on the run's own standardized validation rows."""
    cfg = run_config(run / "run")
    data = make_dataset(cfg.data, cfg.model)
    model = zoo.from_pretrained(run / "run" / "model")
    return np.asarray(model(data.x_val))


def read_csv(path):
    with open(path) as file:
        rows = list(csv.reader(file))
    return rows[0], np.array(rows[1:], dtype=np.float64)


def test_predicted_classes_are_the_models_argmax_and_the_accuracy_is_evals(run, expected, capsys):
    out = run / "out.csv"
    summary = predict(
        settings(
            source=str(run / "run"),
            input=str(run / "val.csv"),
            output=str(out),
            target="label",
            top_k=3,
        )
    )
    printed = capsys.readouterr().out
    header, table = read_csv(out)
    assert header[:3] == ["row", "class", "probability"]
    assert header[3:] == [f"top_classes_{k}" for k in range(3)] + [
        f"top_probabilities_{k}" for k in range(3)
    ]
    assert len(table) == len(expected) == 359
    np.testing.assert_array_equal(table[:, 0], np.arange(359))  # in input order
    np.testing.assert_array_equal(table[:, 1], expected.argmax(-1))
    probs = np.exp(expected - expected.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    top = np.argsort(-expected, axis=-1, kind="stable")[:, :3]
    np.testing.assert_array_equal(table[:, 3:6], top)
    np.testing.assert_allclose(table[:, 6:9], np.take_along_axis(probs, top, -1), rtol=1e-5)
    evaluated = evaluate_run(run / "run")
    assert summary["accuracy"] == pytest.approx(evaluated["val_accuracy"], abs=1e-7)
    assert f"accuracy = {evaluated['val_accuracy']:.6g}" in printed


def test_every_output_format_holds_the_same_rows_and_a_short_last_batch_changes_nothing(run):
    base = {"source": str(run / "run"), "input": str(run / "val.npz")}
    predict(settings(**base, output=str(run / "all.npz"), batch_size=512, top_k=2))
    predict(settings(**base, output=str(run / "b7.jsonl"), batch_size=7, top_k=2))
    whole = np.load(run / "all.npz")
    assert sorted(whole.files) == [
        "class",
        "probability",
        "row",
        "top_classes",
        "top_probabilities",
    ]
    assert whole["top_classes"].shape == (359, 2)
    lines = [json.loads(line) for line in (run / "b7.jsonl").read_text().splitlines()]
    assert [r["row"] for r in lines] == list(range(359))
    np.testing.assert_array_equal([r["class"] for r in lines], whole["class"])
    np.testing.assert_array_equal([r["top_classes"] for r in lines], whole["top_classes"])
    # batches of 7 and of 512 are two compiled programs: equal to float32 rounding, not bitwise
    np.testing.assert_allclose([r["probability"] for r in lines], whole["probability"], rtol=1e-5)


def test_a_short_file_runs_in_a_power_of_two_bucket_and_a_last_batch_in_the_full_one():
    assert [bucket(n, 1024) for n in (1, 2, 3, 359, 1024, 5000)] == [1, 2, 4, 512, 1024, 1024]
    assert bucket(300, 300) == 300 and bucket(299, 300) == 300
    assert bucket(3, 1024, first=False) == 1024  # after full batches: their program, padded


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"source": "missing"}, "source=missing: no such directory"),
        ({"input": None}, "input is required"),
        ({"input": "nope.csv"}, "input=nope.csv: no such file"),
        ({"output": "out.txt"}, "unknown extension '.txt'"),
        ({"output": "no/dir/out.csv"}, "its directory no/dir does not exist"),
        ({"top_k": 11}, "top_k=11 is more than the model's 10 classes"),
        ({"target": "price"}, "no column target='price'"),
    ],
)
def test_a_bad_setting_is_one_line_and_writes_nothing(run, monkeypatch, change, message):
    monkeypatch.chdir(run)
    cfg = {"source": "run", "input": "val.csv", "output": "bad_out.csv", "target": "label"}
    with pytest.raises(ZooError, match=message.replace("(", r"\(").replace(")", r"\)")):
        predict(settings(**cfg | change))
    assert not (run / "bad_out.csv").exists() and not list(run.glob(".bad_out*"))


def test_an_existing_output_is_kept_without_overwrite_and_a_bad_row_leaves_it_whole(run):
    out = run / "kept.csv"
    out.write_text("mine\n")
    cfg = settings(
        source=str(run / "run"), input=str(run / "val.csv"), output=str(out), target="label"
    )
    with pytest.raises(ZooError, match="exists; set overwrite=true"):
        predict(cfg)
    bad = run / "bad_row.csv"
    text = (run / "val.csv").read_text().splitlines()
    text[200] = text[200].replace(",", ",x", 1)
    bad.write_text("\n".join(text) + "\n")
    with pytest.raises(
        ZooError, match=r"bad_row.csv: line 201, column 'px1': 'x0' is not a number"
    ):
        predict(settings(**{**cfg, "input": str(bad), "overwrite": True}))
    assert out.read_text() == "mine\n" and not list(run.glob(".kept.csv*"))


def test_columns_other_than_the_models_are_named(run):
    narrow = run / "narrow.csv"
    narrow.write_text(",".join(COLUMNS[:10]) + "\n" + ",".join(["1"] * 10) + "\n")
    cfg = settings(source=str(run / "run"), input=str(narrow), output=str(run / "n.csv"))
    with pytest.raises(ZooError, match="10 feature columns, but the model takes 64 features$"):
        predict(cfg)
    with pytest.raises(
        ZooError, match="65 feature columns, .* 64 features .* name the label column with target="
    ):
        predict(settings(**{**cfg, "input": str(run / "val.csv")}))


def test_an_unknown_key_is_named_with_the_predict_apps_own_keys():
    with pytest.raises(ZooError, match="unknown key sorce; did you mean source"):
        zoo.compose(["sorce=runs/x"], app="predict")
    with pytest.raises(ZooError, match="unknown key formt; did you mean format"):
        zoo.compose(["formt=onnx"], app="export")


def test_a_token_model_predicts_a_class_per_position(tmp_path):
    model = zoo.create_model(  # as tests/unit/app/test_export.py's: one compiled init
        "transformer", rngs=nnx.Rngs(1), vocab_size=11, d_model=16, num_heads=2, max_len=12
    )
    zoo.save_pretrained(model, tmp_path / "tokens")
    x = np.random.default_rng(0).integers(0, 11, size=(9, 6))
    np.savez(tmp_path / "rows.npz", x=x, y=x[:, ::-1])
    cfg = settings(source=str(tmp_path / "tokens"), input=str(tmp_path / "rows.npz"))
    summary = predict(settings(**{**cfg, "output": str(tmp_path / "out.npz"), "batch_size": 4}))
    out = np.load(tmp_path / "out.npz")
    logits = np.asarray(model(x.astype(np.int32)))
    np.testing.assert_array_equal(out["class"], logits.argmax(-1))  # (9, 6): one per position
    assert summary["accuracy"] == (logits.argmax(-1) == x[:, ::-1]).mean()
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.full((2, 3), 11))
    with pytest.raises(ZooError, match=r"row 0: token 11 at position 0 is not an integer in 0..10"):
        predict(settings(**{**cfg, "input": str(bad), "output": str(tmp_path / "o.csv")}))
