"""The training loop: from a state, one fused dispatch of jitted steps to each log point, with the
record logged there; a loss or parameters gone non-finite stop it with one line."""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import jax

from zoo.errors import Diverged
from zoo.training.state import Run, TrainState, weights


def log_points(steps: int, *everies: int) -> list[int]:
    """Sorted steps where the loop stops to log, evaluate or save: multiples of each and the end."""
    points = {steps} if steps else set()
    for every in everies:
        points.update(range(every, steps + 1, every))
    return sorted(points)


def evaluates_at(run: Run, point: int) -> bool:
    """Whether the record at log point `point` holds validation metrics."""
    return point % run.eval_every == 0 or point == run.steps


def logged_metrics(run: Run) -> set[str]:
    """The names of the metrics a run's records hold (found without computing them)."""
    _, _, x_val, y_val = run.data.arrays()
    shapes = jax.eval_shape(run.evaluate, weights(run.state), run.state.rest, x_val, y_val)
    return {"train_loss", "lr", *shapes}


def stop_if_not_finite(record: dict[str, float], first_bad_step: int, params_finite: bool) -> None:
    """Raise Diverged (a ZooError) naming the step where training diverged, if it did."""
    bad = [k for k, v in record.items() if not math.isfinite(v)]
    if not bad and params_finite:
        return
    what = "train_loss" if "train_loss" in bad else (bad or ["the parameters"])[0]
    step = first_bad_step if what == "train_loss" else record["step"]
    raise Diverged(
        f"{what} became non-finite at step {step}: likely causes are a learning rate too high "
        "(optim.lr) or non-finite or badly scaled data; the latest checkpoint is the last good one"
    )


def run_chunks(
    run: Run, state: TrainState, points: list[int]
) -> Iterator[tuple[TrainState, dict[str, float]]]:
    """From `state`, advance to each step in `points`, one fused dispatch each; yield the new
    state and the record logged there: the mean train loss since the last point, the learning
    rate of the last step, and validation metrics (of the EMA, with one) when due. Raises
    ZooError, before yielding, when a loss or the parameters became non-finite. `state` is
    donated: use only the states handed back."""
    x, y, x_val, y_val = run.data.arrays()
    done = int(state.step)
    stream = run.data.stream  # windows read on the host, each chunk's while the last one runs
    shape = (run.batch_size,) if run.accumulate == 1 else (run.accumulate, run.batch_size)
    with ThreadPoolExecutor(1, thread_name_prefix="zoo-windows") as reader:
        ranges = zip([done, *points], points, strict=False)
        pending = reader.submit(stream.windows, *next(ranges), shape) if stream and points else None
        for point in points:
            if pending is not None:
                x, y = pending.result(), None
            state, *health = run.train_chunk(state, x, y, length=point - done)
            if pending is not None:
                following = next(ranges, None)
                pending = following and reader.submit(stream.windows, *following, shape)
            train_loss, finite_steps, params_finite, lr = jax.device_get(health)  # one host sync
            record = {"step": point, "train_loss": float(train_loss), "lr": float(lr)}
            if evaluates_at(run, point):
                metrics = run.evaluate(weights(state), state.rest, x_val, y_val)
                record |= {k: float(v) for k, v in metrics.items()}
            finite_steps = min(done + int(finite_steps) + 1, point)
            stop_if_not_finite(record, finite_steps, bool(params_finite))
            done = point
            yield state, record
