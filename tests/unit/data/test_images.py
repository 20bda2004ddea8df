"""data=images: a generated folder of class subfolders trains a small resnet far above chance;
augmentation and running statistics resume bitwise; a frozen body with freeze_norm stays
bitwise; files that are not images are skipped and counted; bad folders are one line."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import compose_config
from helpers import complete_steps, records, sigterm_during, tensors, train_in_process
from PIL import Image

import zoo
from zoo.config.validate import validate
from zoo.data.dataset import make_dataset
from zoo.errors import RunStopped

CLASSES = ("horizontal", "vertical", "diagonal")
SIZE = 16


def write_folder(root, per_class=12, seed=0):
    """Stripes of three orientations, random phase, colour and noise: 16x16 PNGs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            wave = (yy, xx, yy + xx)[c] * 0.9 + rng.uniform(0, 2 * np.pi)
            colour = rng.uniform(0.6, 1.0, 3)
            pixels = 127 + 100 * np.sin(wave)[..., None] * colour
            pixels += rng.normal(0, 20, pixels.shape)
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / name / f"{i}.png")
    return root


# the module-scoped fixture is built once, on one worker, not once per xdist worker
pytestmark = [pytest.mark.xdist_group("images"), pytest.mark.slow]  # slow: make test only


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = write_folder(tmp_path_factory.mktemp("images"))
    (root / "vertical" / "notes.txt").write_text("not an image\n")
    (root / "diagonal" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    return root


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))


def run_args(folder, *more):
    # trainer.plots=false: no test here reads loss.png, and drawing one costs a run ~0.5 s
    return [
        "model=resnet", "data=images", f"data.path={folder}", f"data.image_size={SIZE}",
        "model.layers=[1]", "model.widths=[8]", "model.stem_width=8",
        "trainer.batch_size=32", "trainer.log_every=10", "trainer.eval_every=30",
        "optim.lr=1e-2", "trainer.plots=false", *more,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(folder, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run") / "r"
    final = train_in_process(run_dir, *run_args(folder, "trainer.steps=30", "data.augment=true"))
    return run_dir, final


def test_a_folder_of_images_trains_a_resnet_far_above_chance(trained):
    run_dir, final = trained
    assert final["val_accuracy"] >= 0.85  # chance: 1/3
    saved = tensors(run_dir / "model")
    assert saved["stem/norm/var"].shape == (8,) and np.abs(saved["stem/norm/var"] - 1).max() > 0.01


def test_skipped_files_are_named_and_counted_and_the_cache_is_reused(folder, caplog):
    cfg = compose_config("train", run_args(folder))
    validate(cfg)
    with caplog.at_level(logging.INFO, logger="zoo.data.images"):
        data = make_dataset(cfg.data, cfg.model)
    lines = caplog.text
    assert "skipped" in lines and "notes.txt: not an image" in lines and "broken.png" in lines
    assert "2 of 38 files skipped" in lines
    assert data.x_train.shape[1:] == (SIZE, SIZE, 3) and data.num_classes == 3
    assert len(data.x_train) + len(data.x_val) == 36
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="zoo.data.images"):
        again = make_dataset(cfg.data, cfg.model)
    assert "from the cache" in caplog.text
    np.testing.assert_array_equal(again.x_train, data.x_train)


def test_resume_with_augmentation_and_running_statistics_is_bitwise(
    trained, folder, tmp_path, monkeypatch
):
    uninterrupted, _ = trained
    sigterm_during(monkeypatch, 20)
    args = run_args(folder, "trainer.steps=30", "data.augment=true")
    with pytest.raises(RunStopped):
        train_in_process(tmp_path, *args)
    assert complete_steps(tmp_path)[-1] == 20
    monkeypatch.undo()
    train_in_process(tmp_path, *args, "trainer.resume=true")
    assert records(tmp_path) == records(uninterrupted)
    want = tensors(uninterrupted / "model")
    got = tensors(tmp_path / "model")
    assert "stages/0/0/norm1/mean" in got
    for key, value in got.items():
        np.testing.assert_array_equal(value, want[key], err_msg=key)


def test_frozen_body_with_freeze_norm_stays_bitwise(trained, folder, tmp_path):
    source, _ = trained
    args = run_args(
        folder, "trainer.steps=10", f"init.from={source}", "optim.freeze=[stem,stages]",
        "model.freeze_norm=true", "data.augment=true",
    )  # fmt: skip
    train_in_process(tmp_path, *args)
    before, after = tensors(source / "model"), tensors(tmp_path / "model")
    body = [k for k in after if not k.startswith("head/")]
    assert any(k.endswith("/mean") for k in body)
    for key in body:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    assert np.abs(after["head/kernel"] - before["head/kernel"]).max() > 0


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({"a": 2, "b": 0}, "class folder 'b' holds no files"),
        ({"a": 2}, r"only one class folder \(a\); classification needs at least 2"),
        ({}, "no class folders"),
        ({"a": -1, "b": -1}, "none of its 2 files decodes as an image"),
    ],
)
def test_bad_folders_stop_with_one_line(tmp_path, layout, message):
    for name, count in layout.items():
        (tmp_path / name).mkdir()
        for i in range(abs(count)):
            if count < 0:
                (tmp_path / name / f"{i}.jpg").write_bytes(b"\xff\xd8 not a jpeg")
            else:
                Image.new("RGB", (4, 4)).save(tmp_path / name / f"{i}.png")
    cfg = compose_config("train", run_args(tmp_path))
    validate(cfg)
    with pytest.raises(zoo.ZooError, match=message):
        make_dataset(cfg.data, cfg.model)


def test_checkpoints_hold_the_running_statistics_for_inspect_diff_and_init_from(trained):
    run_dir, _ = trained
    step = run_dir / "checkpoints" / "30"
    diff = zoo.diff_weights(step, run_dir)  # the last checkpoint against the saved model/
    assert diff.equal and {"stem/norm/mean", "stem/norm/var"} <= {r.path for r in diff.rows}
    stats = {r.path: r for r in zoo.inspect_weights(step, ["stem/norm"])}
    assert stats["stem/norm/var"].mean > 1.01  # not the initial ones


def test_mean_and_std_come_from_the_published_checkpoint_init_from_names(folder):
    from conftest import ROOT

    from zoo.training.build import published_normalisation

    cfg = compose_config("train", run_args(folder))
    vision = ROOT / "tests" / "fixtures" / "vision"
    timm = published_normalisation(cfg.data, {"from": str(vision / "timm_vit")})
    assert list(timm.mean) == [0.5] * 3 and list(timm.std) == [0.5] * 3  # pretrained_cfg
    hf = published_normalisation(cfg.data, {"from": str(vision / "hf_resnet")})
    assert list(hf.mean) == [0.485, 0.456, 0.406]  # preprocessor_config.json
    assert published_normalisation(cfg.data, {"from": None}).mean is None  # ImageNet's
    given = compose_config("train", run_args(folder, "data.mean=[0.1]", "data.std=[0.2]"))
    assert list(published_normalisation(given.data, {"from": str(vision / "timm_vit")}).mean) == [
        0.1
    ]
