"""A zoo export runs where only JAX is installed: the README's lines ("Predictions and export"),
run as written in a virtual environment holding jax, jaxlib, their dependencies and flatbuffers
and nothing else (no zoo, no flax), give the model's outputs within 1e-6 from one artifact at
batch sizes 1, 7 and 64 (the seed's model and a transformer at one), the run's standardization
applied as export.json says.

The environment links those packages from this one's site-packages instead of installing them:
the same files, no network, built in a moment."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
from conftest import ROOT
from flax import nnx
from omegaconf import OmegaConf

import zoo
from zoo.app.export import export

JAX_ONLY = ("jax", "jaxlib", "numpy", "ml_dtypes", "opt_einsum", "scipy", "flatbuffers")


def readme_lines() -> str:
    section = (ROOT / "README.md").read_text().split("## Predictions and export")[1]
    (code,) = re.findall(r"```python\n(# run_export.py.*?)```", section, flags=re.S)
    return code


def jax_only_venv(directory: Path) -> Path:
    """A venv whose site-packages links JAX_ONLY's packages (and their metadata and bundled
    libraries) from this environment's."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(directory)], check=True)
    (site,) = (directory / "lib").glob("python*/site-packages")
    ours = Path(jax.__file__).parents[1]
    names = re.compile(rf"({'|'.join(JAX_ONLY)})(-[^/]*\.dist-info|\.libs)?")
    for entry in ours.iterdir():
        if names.fullmatch(entry.name):
            (site / entry.name).symlink_to(entry)
    return directory / "bin" / "python"


def test_the_readme_lines_run_an_export_in_a_venv_with_only_jax(tmp_path):
    python = jax_only_venv(tmp_path / "venv")
    # a run with standardized data (its mean and std travel in export.json)
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(200, 4))
    np.savez(tmp_path / "rows.npz", x=x, y=x @ [1.0, -1.0, 0.5, 2.0])
    cfg = zoo.compose(["model=mlp", "data=npz", f"data.path={tmp_path / 'rows.npz'}"])
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    models = {"run": zoo.create_model("mlp", rngs=nnx.Rngs(0), in_features=4, widths=[8])}
    zoo.save_pretrained(models["run"], tmp_path / "run" / "model")
    models["seed"] = zoo.create_model("deep_nested", rngs=nnx.Rngs(0))  # the seed's model
    models["transformer"] = zoo.create_model(
        "transformer", rngs=nnx.Rngs(0), vocab_size=11, d_model=16, num_heads=2, max_len=12
    )
    for name in ("seed", "transformer"):
        zoo.save_pretrained(models[name], tmp_path / name)
    for name in models:
        source = tmp_path / ("run/model" if name == "run" else name)
        settings = {"source": str(source), "out": str(tmp_path / f"{name}.export")}
        export(
            OmegaConf.create(
                settings | {"format": "stablehlo", "platforms": ["cpu"], "overwrite": False}
            )
        )

    rng = np.random.default_rng(1)
    raw = rng.normal(3.0, 2.0, size=(64, 4))
    raw = {
        "run": rng.normal(3.0, 2.0, size=(64, 4)),
        "seed": rng.normal(size=(64, 4)),
        "transformer": rng.integers(0, 11, size=(64, 12)),
    }
    # three batch sizes from the run's artifact; the others' at every size: tests/unit/app
    jobs = {f"run_{n}": ("run", raw["run"][:n]) for n in (1, 7, 64)}
    jobs |= {f"{name}_7": (name, raw[name][:7]) for name in ("seed", "transformer")}
    for job, (_, rows) in jobs.items():
        np.save(tmp_path / f"{job}.npy", rows)
    runs = [
        (str(tmp_path / f"{name}.export"), str(tmp_path / f"{job}.npy"), str(tmp_path / job))
        for job, (name, _) in jobs.items()
    ]
    driver = textwrap.dedent(
        f"""
        import sys
        for module in ("zoo", "flax"):
            try:
                __import__(module)
                raise SystemExit(module + " is importable")
            except ModuleNotFoundError:
                pass
        code = {readme_lines()!r}
        for export_dir, rows, outputs in {runs!r}:
            sys.argv = ["run_export.py", export_dir, rows, outputs + ".out.npy"]
            exec(code, {{}})
        """
    )
    result = subprocess.run(
        [str(python), "-c", driver], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # the zoo's own preparation of the rows (data.standardize; checked bit for bit against the
    # run's dataset in tests/unit/app/test_export.py), then the model itself
    exported = zoo.load_exported(tmp_path / "run.export")
    for job, (name, rows) in jobs.items():
        got = np.load(tmp_path / f"{job}.out.npy")
        x = exported.preprocess(rows) if name == "run" else rows
        x = x.astype(np.int32) if name == "transformer" else x.astype(np.float32)
        want = np.asarray(models[name](x))
        assert got.shape == want.shape, job
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=0, err_msg=job)
