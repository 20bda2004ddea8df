"""sweep.png from a sweep's job folders."""

from __future__ import annotations

import json

import pytest
from helpers import RECORDS
from matplotlib.image import imread

from zoo.app.sweep_plot import plot_sweep
from zoo.errors import ZooError


def test_sweep_picture_from_job_folders(tmp_path):
    for job, lr in enumerate([0.1, 0.01]):
        folder = tmp_path / str(job)
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "overrides.yaml").write_text(f"- optim.lr={lr}\n")
        lines = [json.dumps({**r, "val_loss": r.get("val_loss", 1) * (job + 1)}) for r in RECORDS]
        (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    image = imread(plot_sweep(tmp_path))
    assert image.ndim == 3 and (tmp_path / "sweep.png").exists()
    with pytest.raises(ZooError, match="no job folders"):
        plot_sweep(tmp_path / "0")
