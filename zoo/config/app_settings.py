"""The apps' own settings: the top level of `zoo-train` and `zoo-eval`, and the sections that are
one fixed schema rather than a group (`trainer`, `init`).

Free of JAX, as the whole of zoo.config.
"""

from __future__ import annotations

from dataclasses import dataclass

from zoo.config.fields import setting
from zoo.config.parallel_settings import ParallelSettings
from zoo.config.registry import declare
from zoo.config.types import SettingError

EVAL_MODES = ("compare", "summary", "inspect", "diff", "export_hf")


@declare("app", "trainer")
@dataclass(frozen=True)
class TrainerSettings:
    """How long and how a run trains, checkpoints and spreads over devices."""

    steps: int = setting(2000, "optimizer updates", ge=0)
    batch_size: int = setting(256, "examples per update", ge=1, le=1 << 24)
    eval_every: int = setting(500, "steps between validations", ge=1)
    log_every: int = setting(100, "steps fused into one dispatch between log points", ge=1)
    fuse_steps: bool | None = setting(
        None,
        "run log_every steps in one lax.scan dispatch; null: yes, except a model with "
        "convolutions on the CPU (XLA runs those slower inside a loop): a dispatch a step",
    )
    ckpt_every: int | None = setting(
        None, "steps between checkpoints; null: 500, gated by ckpt_every_seconds", ge=1
    )
    ckpt_every_seconds: float | None = setting(
        None,
        "a multiple of ckpt_every saves only this long after the last save; null: 300 s when "
        "ckpt_every is null, no wait when it is set",
        ge=0,
    )
    keep_checkpoints: int = setting(3, "newest checkpoints kept", ge=1, le=1000)
    resume: bool = setting(False, "continue the run in this directory from its latest checkpoint")
    ckpt_dir: str | None = setting(
        None, "null: <run dir>/checkpoints; several processes need one they share"
    )
    devices: str = setting("auto", "data parallel over auto (all) or this many local devices")
    distributed: bool | None = setting(
        None, "join a multi-host run; null: when srun/mpirun launched several tasks"
    )
    coordinator_address: str | None = setting(None, "process 0's host:port (outside SLURM/MPI)")
    num_processes: int | None = setting(None, "processes in the run (outside SLURM/MPI)", ge=1)
    process_id: int | None = setting(None, "this process's index (outside SLURM/MPI)", ge=0)
    # training recipes (zoo/training/steps.py, loop.py, monitor.py)
    accumulate: int = setting(1, "batches of batch_size averaged into each update", ge=1, le=4096)
    ema: float | None = setting(
        None, "decay of a moving average of the weights, validated and saved; null: off", gt=0, lt=1
    )
    monitor: str = setting("val_loss", "the logged metric that picks the best model (best/)")
    monitor_mode: str = setting(
        "min", "whether the best monitor value is the min or max", choices=("min", "max")
    )
    patience: int | None = setting(
        None, "stop after this many evaluations without a better monitor value; null: never", ge=1
    )
    checkpoints: bool = setting(True, "save checkpoints; false: none, so no resume (debug=fast)")
    plots: bool = setting(True, "draw loss.png at the end of the run")
    profile_chunks: int = setting(
        0,
        "trace this many dispatches after the first with jax.profiler into <run dir>/profile/",
        ge=0,
        le=1000,
    )

    def __post_init__(self) -> None:
        if self.resume and not self.checkpoints:
            raise SettingError(
                "trainer.resume=true needs checkpoints: drop trainer.checkpoints=false"
            )
        devices = self.devices
        if devices != "auto" and not (devices.isdigit() and 1 <= int(devices) <= 1 << 16):
            raise SettingError(
                f"trainer.devices={devices!r} is invalid: must be auto or an integer >= 1"
            )
        if self.accumulate * self.batch_size > 1 << 24:
            raise SettingError(
                f"trainer.accumulate * trainer.batch_size = {self.accumulate * self.batch_size} "
                f"examples per update is more than {1 << 24}"
            )
        address = self.coordinator_address
        if address is not None and not address.rpartition(":")[2].isdigit():
            raise SettingError(
                f"trainer.coordinator_address={address!r} is invalid: must be null or host:port"
            )


@declare("app", "init")
@dataclass(frozen=True)
class InitSettings:
    """Where a run's weights start from (weights only: step 0, a fresh optimizer), by state path
    (zoo.load_weights). The field `from_` is the setting `init.from`."""

    from_: str | None = setting(
        None, "a run, checkpoint step or pretrained directory to start from; null: fresh weights"
    )
    strict: bool = setting(True, "stop on any path missing, unexpected or of another shape")
    rename: dict[str, str] | list[tuple[str, str]] | None = setting(
        None, "regex -> replacement on the source's paths, in order: {a:b} or [[regex,repl]]"
    )
    include: list[str] = setting([], "path patterns that take part; empty: all")
    exclude: list[str] = setting([], "path patterns that stay as initialised")

    def __post_init__(self) -> None:
        if self.from_ is None and (self.rename or self.include or self.exclude):
            raise SettingError(
                "init.rename, init.include and init.exclude need init.from=<a run, checkpoint "
                "step or pretrained directory>"
            )


@declare("app", "train")
@dataclass(frozen=True)
class TrainSettings:
    """python train.py: the top level of the train config."""

    seed: int = setting(0, "initialises the model and draws the batches", ge=0)


@declare("app", "eval")
@dataclass(frozen=True)
class EvalSettings:
    """python eval.py: the top level of the eval config."""

    seed: int = setting(0, "initialises the model", ge=0)
    x: list[float] | None = setting(None, "the input; null: a normal draw from input_seed")
    input_seed: int = setting(0, "draws the input when x is null", ge=0)
    run_dir: str | None = setting(None, "a train run's directory: evaluate its model")
    mode: str = setting(
        "compare",
        "compare with the seed's function; summary; inspect source's weights; diff a and b",
        choices=EVAL_MODES,
    )
    source: str | None = setting(None, "mode=inspect: a run, checkpoint step or pretrained dir")
    a: str | None = setting(None, "mode=diff: the first run, checkpoint step or pretrained dir")
    b: str | None = setting(None, "mode=diff: the second, compared with a")
    paths: list[str] = setting([], "mode=inspect, diff: path patterns to show; empty: all")
    out: str | None = setting(None, "mode=export_hf: the directory to write (Hugging Face layout)")


PREDICT_TASKS = ("auto", "classification", "regression")
EXPORT_FORMATS = ("stablehlo", "onnx")
EXPORT_PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


@declare("app", "predict")
@dataclass(frozen=True)
class PredictSettings:
    """python predict.py: a trained model's predictions on a file (zoo/app/predict.py)."""

    source: str | None = setting(None, "a train run directory or a pretrained directory")
    input: str | None = setting(None, "the rows to predict: a .csv or .npz of the model's inputs")
    output: str | None = setting(None, "where to write: .csv, .jsonl, .npz (.parquet: pyarrow)")
    batch_size: int = setting(
        1024, "rows per compiled call (the last batch padded)", ge=1, le=1 << 20
    )
    top_k: int = setting(1, "classification: the k most probable classes per row", ge=1, le=1000)
    overwrite: bool = setting(False, "replace an existing output file")
    task: str = setting(
        "auto",
        "auto: the run's task (classes for token models, raw values otherwise without a run)",
        choices=PREDICT_TASKS,
    )
    target: str | None = setting(
        None, "the input's label column (csv) or array (npz), scored; null: the run's, or y"
    )


@declare("app", "export")
@dataclass(frozen=True)
class ExportSettings:
    """python export.py: a trained model as a file that runs without the zoo (zoo/app/export.py)."""

    source: str | None = setting(None, "a train run directory or a pretrained directory")
    out: str | None = setting(
        None, "the directory to write (model.stablehlo or model.onnx, export.json)"
    )
    format: str = setting(
        "stablehlo", "jax.export StableHLO, or ONNX (jax2onnx)", choices=EXPORT_FORMATS
    )
    platforms: list[str] = setting(
        ["cpu", "cuda"], "stablehlo: the platforms the artifact runs on", min_items=1, max_items=4
    )
    overwrite: bool = setting(False, "replace an existing export directory")


# The top level of each app: its own settings, then these sections (each a group or a schema).
APP_SECTIONS: dict[str, tuple[str, ...]] = {
    "train": ("model", "data", "optim", "trainer", "logger", "init", "parallel"),
    "eval": ("model", "data"),
    "predict": (),
    "export": (),
}
# sections that are one fixed schema, not a group
NESTED = {"trainer": TrainerSettings, "init": InitSettings, "parallel": ParallelSettings}
