"""A user's .npz and .csv files: splits, standardization, the task guessed or checked, and one
line for each bad file or label."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import compose_config
from helpers import X, Y

from zoo.data import dataset as data_module
from zoo.data.dataset import make_dataset
from zoo.data.user_files import read_csv, read_npz
from zoo.errors import ZooError
from zoo.training.run import train


def npz_data(tmp_path: Path, y: np.ndarray, *overrides: str):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(len(y), 3)), y=y)
    cfg = compose_config("train", ["data=npz", f"data.path={tmp_path / 'd.npz'}", *overrides])
    return data_module.make_dataset(cfg.data, cfg.model)


def test_integer_targets_are_classes_only_when_they_look_like_classes(tmp_path, caplog):
    rng = np.random.default_rng(1)
    labels = npz_data(tmp_path, rng.integers(0, 4, 200))
    assert (labels.task, labels.num_classes) == ("classification", 4)
    caplog.set_level("INFO")
    prices = npz_data(tmp_path, rng.integers(100_000, 500_000, 200))
    assert (prices.task, prices.out_features) == ("regression", 1)
    assert "y holds integers but not class labels 0..K-1 with K <= 100 (its largest value, " in (
        caplog.text
    )
    negative = npz_data(tmp_path, np.array([-1, 0, 1, 0] * 10))
    assert negative.task == "regression"


def test_labels_that_cannot_be_classes_are_one_line_before_any_allocation(tmp_path):
    y = np.zeros(100, dtype=np.int64)
    y[:50], y[7] = 1, 10**7
    with pytest.raises(
        ZooError,
        match=r"d.npz: data.task=classification, but the targets cannot be class labels: its "
        r"largest value, 10000000, would make 10,000,001 classes \(labels are 0..K-1, K at most "
        r"the number of rows, 100\)$",
    ):
        npz_data(tmp_path, y, "data.task=classification")


def test_a_huge_csv_label_is_not_called_negative_and_a_bom_csv_reads(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("a,y\n1,0\n2,1\n3,99999999999999999999\n4,1\n")
    cfg = compose_config(
        "train", ["data=csv", f"data.path={path}", "data.target=y", "data.task=classification"]
    )
    with pytest.raises(ZooError, match="its largest value, 100000000000000000000, would make"):
        data_module.make_dataset(cfg.data, cfg.model)
    excel = tmp_path / "excel.csv"
    excel.write_bytes("\ufeffprice,rooms\n1.5,2\n2.5,3\n".encode())
    arrays = read_csv(excel, "price")
    assert arrays["y"].tolist() == [1.5, 2.5] and arrays["x"].tolist() == [[2.0], [3.0]]


def bad_npz(tmp_path: Path, case: str) -> Path:
    path = tmp_path / "bad.npz"
    x = np.ones((10, 3))
    if case == "zip cut short":
        np.savez(path, x=x, y=np.zeros(10))
        path.write_bytes(path.read_bytes()[:300])
    elif case == "member cut short":
        with zipfile.ZipFile(path, "w") as archive:
            with archive.open("x.npy", "w") as member:
                np.save(member, x)
            with archive.open("y.npy", "w") as member:
                np.lib.format.write_array_header_1_0(
                    member, {"descr": "<f8", "fortran_order": False, "shape": (10,)}
                )
                member.write(np.zeros(4).tobytes())  # 4 of the 10 values
    elif case == "not a .npy":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("x.npy", b"")
            archive.writestr("y.txt", b"1,2,3")
    elif case == "float32 overflow":
        np.savez(path, x=np.where(np.eye(10, 3) > 0, 1e300, 0.0), y=np.zeros(10))
    elif case == "nan":
        np.savez(path, x=x, y=np.array([0.0, np.nan] * 5))
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("zip cut short", "a damaged or cut short .npz file (its zip directory is missing)"),
        ("member cut short", "y is cut short: its header says float64 (10,) (80 bytes) but it "),
        ("not a .npy", "member 'y.txt' is not a .npy array (write the file with numpy.savez)"),
        ("float32 overflow", "x holds 1e+300 at index (0, 0), beyond float32's range"),
        ("nan", "y holds NaN or infinite values (first at index (1,))"),
    ],
)
def test_bad_npz_files_are_named_for_what_they_are(tmp_path, case, message):
    path = bad_npz(tmp_path, case)
    with pytest.raises(ZooError) as err:
        read_npz(path)
    assert str(err.value).startswith(f"{path}: {message}")


def dataset(*overrides: str):
    cfg = compose_config("train", list(overrides))
    return make_dataset(cfg.data, cfg.model)


def write_csv(path, header, rows):
    path.write_text("\n".join([",".join(header), *(",".join(map(str, r)) for r in rows)]) + "\n")
    return path


def test_npz_regression_split_is_deterministic_and_standardized(regression_npz):
    data = dataset("data=npz", f"data.path={regression_npz}")
    assert data.task == "regression"
    assert (data.in_features, data.out_features) == (3, 1)
    assert (len(data.x_train), len(data.x_val)) == (240, 60)
    np.testing.assert_allclose(np.asarray(data.x_train).mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(data.x_train).std(0), 1, atol=1e-4)
    again = dataset("data=npz", f"data.path={regression_npz}")
    np.testing.assert_array_equal(np.asarray(again.y_val), np.asarray(data.y_val))
    other = dataset("data=npz", f"data.path={regression_npz}", "data.seed=1")
    assert not np.array_equal(np.asarray(other.y_val), np.asarray(data.y_val))


def test_npz_given_validation_arrays_are_used_as_they_are(tmp_path):
    rng = np.random.default_rng(1)
    x, x_val = rng.normal(size=(50, 2)), rng.normal(size=(7, 2))
    np.savez(tmp_path / "d.npz", x=x, y=x[:, :1], x_val=x_val, y_val=x_val[:, :1])
    data = dataset("data=npz", f"data.path={tmp_path / 'd.npz'}", "data.standardize=false")
    np.testing.assert_allclose(np.asarray(data.x_val), x_val, rtol=1e-6)
    assert len(data.x_train) == 50


def test_npz_integer_labels_train_a_classifier_without_shape_overrides(tmp_path, caplog):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 5))
    y = (x[:, 0] > 0).astype(np.int64) + 2 * (x[:, 1] > 0)  # 4 classes, linearly separable
    np.savez(tmp_path / "cls.npz", x=x, y=y)
    # trainer.plots=false: loss.png is not checked here, and drawing it costs ~0.5 s
    overrides = ["data=npz", f"data.path={tmp_path / 'cls.npz'}", "trainer.steps=300"]
    cfg = compose_config("train", [*overrides, "trainer.plots=false"])
    with caplog.at_level("INFO"):
        record = train(cfg, tmp_path)
    assert "model.in_features=5 follows the data" in caplog.text
    assert "model.out_features=4 follows the data" in caplog.text
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert json.dumps(config).count('"in_features": 5') == 1
    assert record["val_accuracy"] >= 0.9


def test_csv_regression_trains_and_loss_falls(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 2))
    rows = [(a, b, 3 * a - b + 0.5) for a, b in x]
    path = write_csv(tmp_path / "t.csv", ["a", "b", "price"], rows)
    overrides = ["data=csv", f"data.path={path}", "data.target=price", "trainer.steps=300"]
    cfg = compose_config("train", [*overrides, "trainer.plots=false"])  # no loss.png: ~0.5 s
    train(cfg, tmp_path)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["val_loss"] < 0.1 * records[0]["train_loss"]
    assert "val_accuracy" not in records[-1]


def test_csv_task_follows_how_the_target_is_written(tmp_path):
    rows = [(i % 7, (i * 3) % 5, i % 3) for i in range(30)]
    path = write_csv(tmp_path / "c.csv", ["u", "label", "v"], rows)
    data = dataset("data=csv", f"data.path={path}", "data.target=label")
    assert (data.task, data.num_classes, data.in_features) == ("classification", 5, 2)
    forced = dataset("data=csv", f"data.path={path}", "data.target=label", "data.task=regression")
    assert (forced.task, forced.out_features) == ("regression", 1)
    floats = write_csv(tmp_path / "f.csv", ["u", "y"], [(i, i / 2) for i in range(10)])
    assert dataset("data=csv", f"data.path={floats}", "data.target=y").task == "regression"


def npz_with(tmp_path, **arrays):
    np.savez(tmp_path / "bad.npz", **arrays)
    return tmp_path / "bad.npz"


BAD_NPZ = {
    "missing y": (dict(x=X), "missing array 'y'"),
    "x_val without y_val": (dict(x=X, y=Y, x_val=X), "has x_val but no y_val"),
    "row mismatch": (dict(x=X, y=np.zeros(9)), "x has 10 rows but y has 9"),
    "x one-dimensional": (dict(x=Y, y=Y), "must be 2-D (rows, features)"),
    "x three-dimensional": (dict(x=np.zeros((10, 2, 2)), y=Y), "must be 2-D"),
    "y three-dimensional": (dict(x=X, y=np.zeros((10, 1, 1))), "must be 1-D (rows,) or 2-D"),
    "strings": (dict(x=np.array([["a"]] * 10), y=Y), "x holds <U1 values; it must be numeric"),
    "nan": (dict(x=np.where(np.eye(10, 3) > 0, np.nan, 0), y=Y), "x holds NaN or infinite"),
    "inf target": (dict(x=X, y=np.full(10, np.inf)), "y holds NaN or infinite"),
    "feature mismatch": (
        dict(x=X, y=Y, x_val=np.zeros((4, 2)), y_val=np.zeros(4)),
        "x has shape (10, 3) but x_val (4, 2)",
    ),
    "no rows": (dict(x=np.zeros((0, 3)), y=np.zeros(0)), "x has no rows"),
}


@pytest.mark.parametrize("case", BAD_NPZ)
def test_bad_npz_gets_a_clear_error(tmp_path, case):
    arrays, message = BAD_NPZ[case]
    path = npz_with(tmp_path, **arrays)
    with pytest.raises(ZooError, match="bad.npz") as err:
        read_npz(path)
    assert message in str(err.value)


def test_unreadable_npz_files(tmp_path):
    with pytest.raises(ZooError, match="no such file"):
        read_npz(tmp_path / "absent.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(ZooError, match="empty.npz: the file is empty"):
        read_npz(tmp_path / "empty.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ZooError, match="text.npz: not an .npz file"):
        read_npz(tmp_path / "text.npz")
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object), y=Y)
    with pytest.raises(ZooError, match="obj.npz: x holds an object array"):
        read_npz(tmp_path / "obj.npz")  # object arrays need pickle: never loaded


BAD_CSV = {
    "missing column": ("a,b\n1,2\n", "no column 'y' (columns: a, b)"),
    "non-numeric": ("a,y\n1,2\nx,3\n", "line 3, column 'a': 'x' is not a number"),
    "empty cell": ("a,y\n1,\n", "line 2, column 'y': '' is not a number"),
    "nan": ("a,y\n1,2\nnan,3\n", "line 3, column 'a': 'nan' is not finite"),
    "ragged row": ("a,y\n1,2\n1,2,3\n", "line 3 has 3 fields, the header 2"),
    "header only": ("a,y\n", "a header but no data rows"),
    "blank": ("\n\n", "the file is empty"),
    "target only": ("y\n1\n2\n", "no feature columns"),
    "line after a blank line": ("a,y\n\n1,2\nx,3\n", "line 4, column 'a': 'x' is not a number"),
    "duplicate target": ("y,a,y\n1,2,3\n0,5,6\n", "column 'y' appears twice in the header"),
    "duplicate feature": (
        "a,y,a\n1,2,3\n",
        "column 'a' appears twice in the header (columns 1 and 3)",
    ),
    "digit separator": ("a,y\n1_000,1\n", "line 2, column 'a': '1_000' is not a plain number"),
    "Arabic-Indic digits": ("a,y\n1,\u0661\u0662\n", "column 'y': '\u0661\u0662' is not a plain"),
    "full-width digits": ("a,y\n\uff11,1\n", "'\uff11' is not a plain number"),
    "mathematical digits": ("a,y\n\U0001d7d9,1\n", "is not a plain number"),
    "no-break space": ("a,y\n\u00a01,1\n", "'\\xa01' is not a plain number"),
    "hexadecimal": ("a,y\n0x10,1\n", "'0x10' is not a number"),
    "infinity": ("a,y\n-Infinity,1\n", "'-Infinity' is not finite"),
    "beyond float64": ("a,y\n1e999,1\n", "'1e999' is not finite"),
}


@pytest.mark.parametrize("case", BAD_CSV)
def test_bad_csv_gets_a_clear_error(tmp_path, case):
    text, message = BAD_CSV[case]
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ZooError, match="bad.csv") as err:
        read_csv(path, "y")
    assert message in str(err.value)


def test_csv_takes_the_plain_number_forms_every_reader_agrees_on(tmp_path):
    cells = [" 1.5", "-.5", "5.", "+7", "1e3", "2.5E-1\t", "-0"]
    path = write_csv(tmp_path / "n.csv", ["a", "y"], [(c, i % 2) for i, c in enumerate(cells)])
    arrays = read_csv(path, "y")
    np.testing.assert_array_equal(arrays["x"][:, 0], [1.5, -0.5, 5.0, 7.0, 1000.0, 0.25, 0.0])
    assert arrays["y"].dtype == np.int64


def test_validation_labels_beyond_the_training_classes_are_refused(tmp_path):
    rng = np.random.default_rng(4)
    x, x_val = rng.normal(size=(40, 3)), rng.normal(size=(10, 3))
    y, y_val = np.arange(40) % 3, np.arange(10) % 7  # classes 0..2; validation 0..6
    np.savez(tmp_path / "v.npz", x=x, y=y, x_val=x_val, y_val=y_val)
    cfg = compose_config("train", ["data=npz", f"data.path={tmp_path / 'v.npz'}"])
    message = r"v.npz: y_val holds labels up to 6 \(4 of 10 rows\), but y's classes are 0..2"
    for task in ("auto", "classification"):
        cfg.data.task = task
        with pytest.raises(ZooError, match=message):
            make_dataset(cfg.data, cfg.model)
    cfg.data.task = "regression"
    assert make_dataset(cfg.data, cfg.model).task == "regression"
    np.savez(tmp_path / "v.npz", x=x, y=y, x_val=x_val, y_val=y_val % 3)
    cfg.data.task = "auto"
    assert make_dataset(cfg.data, cfg.model).num_classes == 3


@pytest.mark.parametrize(
    "labels, message",
    [([0, 1, -1, 1], "y holds a negative value"), ([3, 3, 3, 3], "a single class")],
)
def test_bad_labels_for_classification(tmp_path, labels, message):
    np.savez(tmp_path / "l.npz", x=np.zeros((4, 2)), y=np.array(labels))
    with pytest.raises(ZooError, match=message):
        dataset("data=npz", f"data.path={tmp_path / 'l.npz'}", "data.task=classification")
