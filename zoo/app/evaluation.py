"""Evaluation: a configured model beside the seed's reference, or a train run's saved model."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from zoo.config.validate import validate
from zoo.data.dataset import abstract_dataset, make_dataset
from zoo.errors import ZooError
from zoo.models.deep_nested.modeling import deep_nested_forward
from zoo.reporting.metrics_log import read_metrics
from zoo.training.build import build_model, fit_to_data, model_kwargs
from zoo.training.steps import loss_and_metrics
from zoo.untrusted import load_yaml

SEED_ARCHITECTURE = {"depth": 1, "activation": "relu", "out_features": None}


def model_input(cfg: DictConfig, in_features: int) -> jax.Array:
    """The configured input `x`, or a standard normal draw from `input_seed`."""
    if cfg.x is None:
        return jax.random.normal(jax.random.key(cfg.input_seed), (in_features,))
    if len(cfg.x) != in_features:
        raise ZooError(f"x has {len(cfg.x)} values but model.in_features={in_features}")
    return jnp.asarray(list(cfg.x), dtype=jnp.float32)


def compare_with_reference(cfg: DictConfig) -> bool:
    """Print the configured model's output next to `deep_nested_forward`; True if they agree."""
    name, kwargs = model_kwargs(cfg.model)
    if "in_features" not in kwargs:
        raise ZooError(
            f"model {name!r} takes no feature vector x to compare with the seed's reference; "
            "evaluate a trained one with run_dir=<train run directory>"
        )
    x = model_input(cfg, kwargs["in_features"])  # a refusal before the model is built
    model = build_model(name, kwargs, cfg.seed)
    out = model(x)
    print(f"x      = {x.tolist()}")
    print(f"model  = {out.tolist()}")
    seed_like = name == "deep_nested" and all(
        kwargs.get(k) == v for k, v in SEED_ARCHITECTURE.items()
    )
    if not seed_like:
        print(
            "reference: not comparable (deep_nested_forward is the deep_nested model with "
            "depth=1, activation=relu, out_features=null)"
        )
        return True
    ref = deep_nested_forward(float(cfg.seed), x, float(kwargs["hidden"]))
    diff = float(jnp.max(jnp.abs(out - ref)))
    print(
        f"seed   = {ref.tolist()}  (deep_nested_forward(seed={cfg.seed}, x, "
        f"hidden={kwargs['hidden']}))"
    )
    agree = diff == 0.0
    print(f"max_abs_diff = {diff:.3g}: {'match' if agree else 'MISMATCH'}")
    return agree


def evaluate_run(run_dir: str | Path, data_cfg: DictConfig | None = None) -> dict[str, float]:
    """Load a train run's `model/` and report its validation metrics on the run's own data, or
    on `data_cfg` (the eval command line's `data=...`); with `data_cfg`, `run_dir` may also be a
    pretrained model directory (`save_pretrained`'s, or a published one the zoo reads)."""
    from zoo.weights.pretrained import from_pretrained

    run_dir = Path(run_dir)
    is_run = data_cfg is None or any(
        (run_dir / name).exists() for name in ("config.yaml", ".hydra")
    )
    if is_run:
        cfg = run_config(run_dir, data_from_launch=True)
        model = from_pretrained(run_dir / "model")
        model_cfg = cfg.model
    else:
        if not run_dir.is_dir():
            raise ZooError(f"run_dir={str(run_dir)!r} is not a directory")
        model = from_pretrained(run_dir)
        model_cfg = OmegaConf.create({})
    model.eval()
    data = make_dataset(cfg.data if data_cfg is None else data_cfg, model_cfg)
    check_model_takes(model, data)
    graphdef, state = nnx.split(model)
    loss, metrics = _score(graphdef, data.task, state, data.x_val, data.y_val)
    result = {"val_loss": float(loss)} | {f"val_{k}": float(v) for k, v in metrics.items()}
    logged = last_logged(run_dir / "metrics.jsonl") if is_run and data_cfg is None else {}
    for key, value in result.items():
        note = f"  (logged at the end of training: {logged[key]:.6g})" if key in logged else ""
        print(f"{key} = {value:.6g}{note}")
    return result


@partial(jax.jit, static_argnums=(0, 1))
def _score(graphdef: Any, task: str, state: Any, x: jax.Array, y: jax.Array) -> Any:
    """The loss and metrics of the model `graphdef` with `state` on `(x, y)`, as one program."""
    return loss_and_metrics(task, nnx.merge(graphdef, state)(x), y)


def check_model_takes(model: Any, data: Any) -> None:
    """A ZooError when token data does not fit a saved model: windows longer than its positions
    or token ids beyond its vocabulary (a model trained on the data fits it by construction)."""
    from zoo.models.registry import model_spec

    if data.vocab_size is None or getattr(model, "zoo_spec", None) is None:
        return
    _, kwargs = model_spec(model)
    length = int(data.x_val.shape[-1])
    for key in ("max_len", "max_positions"):
        if isinstance(kwargs.get(key), int) and length > kwargs[key]:
            raise ZooError(
                f"data.length={length} is beyond the model's {kwargs[key]} positions "
                f"(model.{key}={kwargs[key]}); give data.length<={kwargs[key]}"
            )
    vocab = kwargs.get("vocab_size")
    if isinstance(vocab, int) and data.vocab_size > vocab:
        raise ZooError(
            f"the data's tokenizer has {data.vocab_size} token ids but the model's vocabulary "
            f"{vocab} (model.vocab_size): evaluate with the tokenizer it was trained with"
        )


def run_config(run_dir: Path, data_from_launch: bool = False) -> DictConfig:
    """The config a train run saved in its directory (`config.yaml`, written by the zoo; older
    runs have only Hydra's `.hydra/config.yaml`), read as a hostile file (`zoo.untrusted`: no
    YAML aliases, nesting and size bounded) and checked like a new one. `data_from_launch`: a
    relative `data.path` made relative to where training was started, to read the run's data."""
    from zoo.training.run import RUN_CONFIG

    if not run_dir.is_dir():
        raise ZooError(f"run_dir={str(run_dir)!r} is not a directory")
    paths = [run_dir / RUN_CONFIG, run_dir / ".hydra" / "config.yaml"]
    path = next((p for p in paths if p.exists()), paths[0])
    cfg = load_yaml(path, missing="no such file (not a train run directory?)")
    if not isinstance(cfg, DictConfig) or not all(
        isinstance(cfg.get(key), DictConfig) for key in ("model", "data")
    ):
        raise ZooError(f"{path}: not a train run's config (a mapping with model, data)")
    validate(cfg, "train")
    data_path = OmegaConf.select(cfg, "data.path")
    relative = data_path and not Path(data_path).is_absolute()
    if data_from_launch and relative and (launch := launch_dir(run_dir)):
        cfg.data.path = str(launch / data_path)
    return cfg


def launch_dir(run_dir: Path) -> Path | None:
    """The directory a run was started from, as Hydra recorded it, if it did."""
    try:
        return Path(load_yaml(run_dir / ".hydra" / "hydra.yaml").hydra.runtime.cwd)
    except (ZooError, OmegaConfBaseException, AttributeError, TypeError):
        return None


def print_summary(cfg: DictConfig) -> None:
    """Print the parameter table of `cfg.run_dir`'s saved model, or else of the model train.py
    would build from `cfg` (widths fitted to its data), built abstractly: no arrays, no training."""
    from flax import nnx

    from zoo.reporting.summary import model_summary

    if cfg.run_dir is not None:
        from zoo.weights.pretrained import from_pretrained

        model = from_pretrained(Path(cfg.run_dir) / "model")
        print(f"model from {Path(cfg.run_dir) / 'model'}")
    else:
        name, kwargs = model_kwargs(cfg.model)
        kwargs = fit_to_data(name, kwargs, abstract_dataset(cfg.data, cfg.model))  # shapes only
        model = nnx.eval_shape(lambda: build_model(name, kwargs, cfg.seed))
        print(f"model {name} {kwargs}")
    print(model_summary(model))


def last_logged(path: Path) -> dict[str, Any]:
    """The last record of a metrics.jsonl with a finite val_loss, or {} if there is none."""
    evaluated = [
        r
        for r in read_metrics(path)
        if isinstance(r.get("val_loss"), float) and math.isfinite(r["val_loss"])
    ]
    return evaluated[-1] if evaluated else {}


def print_weights(cfg: DictConfig) -> bool:
    """`mode=inspect`: per-path statistics of `source`'s saved weights, printed as the tensors
    are read; `mode=diff`: how `a` differs from `b`, path by path, and a last line saying whether
    they do. Both read the tensors from the files; nothing is trained. False when `a` and `b`
    differ (in a value, NaN included, a dtype, a shape or a path)."""
    from zoo.weights.inspection import diff_weights, format_diff, inspection_lines

    paths = list(cfg.paths) or None
    if cfg.mode == "inspect":
        if cfg.source is None:
            raise ZooError(
                "mode=inspect needs source=<a run, checkpoint step or pretrained directory>"
            )
        lines = inspection_lines(cfg.source, paths)
        header = next(lines)  # the source and the patterns are checked before it
        print(f"weights of {cfg.source}\n{header}")
        for line in lines:
            print(line)
        return True
    missing = [key for key in ("a", "b") if cfg[key] is None]
    if missing:
        raise ZooError(
            f"mode=diff needs a=<source> and b=<source> (runs, checkpoint steps or pretrained "
            f"directories); {' and '.join(missing)} not given"
        )
    diff = diff_weights(cfg.a, cfg.b, paths)
    print(f"a = {cfg.a}\nb = {cfg.b}\n{format_diff(diff)}")
    return diff.equal


def export_hf(cfg: DictConfig) -> Path:
    """`mode=export_hf`: write the model of `run_dir` (a train run, or any pretrained or
    published directory) to `out` in the Hugging Face layout (config.json + model.safetensors),
    which transformers loads."""
    from zoo.weights.pretrained import from_pretrained, save_pretrained

    if cfg.run_dir is None or cfg.out is None:
        raise ZooError("mode=export_hf needs run_dir=<train run or pretrained dir> and out=<dir>")
    run_dir = Path(cfg.run_dir)
    model_dir = run_dir / "model" if (run_dir / "model").is_dir() else run_dir
    out = save_pretrained(from_pretrained(model_dir), cfg.out, format="hf")
    print(f"wrote {out} (Hugging Face layout)")
    return out
