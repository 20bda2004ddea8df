"""A run says which JAX backend and device it uses, and one asked for a backend that JAX cannot
start (JAX_PLATFORMS=cuda on a machine without NVIDIA GPUs) stops with one line."""

from __future__ import annotations

from conftest import run_script

from zoo import parallel


def test_the_log_names_backend_and_device_kind():
    line = parallel.describe(parallel.make_mesh())
    assert line == "data parallel over 1 cpu device(s) (backend cpu: cpu)"


def test_an_absent_gpu_backend_is_one_line_not_a_fall_back_to_the_cpu(tmp_path):
    result = run_script(
        "train.py", "trainer.steps=1", f"hydra.run.dir={tmp_path}", env={"JAX_PLATFORMS": "cuda"}
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: JAX_PLATFORMS=cuda asks for a backend JAX cannot start (no such device "
        "visible); for NVIDIA GPUs: make install ACCEL=cuda12 (README: GPUs), or unset "
        "JAX_PLATFORMS"
    ]
    assert not (tmp_path / "metrics.jsonl").exists()  # nothing ran on another backend
