"""Devices: the log names backend and device kind; bad device settings and cluster detection."""

from __future__ import annotations

import pytest

from zoo.config.validate import validate
from zoo.errors import ZooError
from zoo.training import parallel


def test_the_log_names_backend_and_device_kind():
    line = parallel.describe(parallel.make_mesh())
    assert line == "data parallel over 1 cpu device(s) (backend cpu: cpu)"


def test_more_devices_than_the_process_has_is_refused():
    available = len(parallel.make_mesh("auto").devices)
    with pytest.raises(ZooError, match=rf"trainer.devices={available + 1} but this process sees"):
        parallel.make_mesh(available + 1)
    assert parallel.make_mesh(1).size == 1


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.devices=0", "trainer.devices='0' is invalid: must be auto or an integer >= 1"),
        ("trainer.devices=many", "trainer.devices='many' is invalid"),
        (
            "trainer.num_processes=0",
            "trainer.num_processes=0 is invalid: must be null or an integer >= 1",
        ),
        (
            "trainer.process_id=-1",
            "trainer.process_id=-1 is invalid: must be null or an integer >= 0",
        ),
        ("trainer.coordinator_address=host", "trainer.coordinator_address='host' is invalid"),
    ],
)
def test_bad_parallel_settings_are_refused(train_cfg, override, message):
    with pytest.raises(ZooError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(train_cfg(override))


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, None),
        ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1", "SLURM_STEP_NODELIST": "n1"}, None),
        ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4", "SLURM_STEP_NODELIST": "n[1-2]"}, "SLURM"),
        (
            {"OMPI_MCA_orte_hnp_uri": "1.0;tcp://10.0.0.1:1", "OMPI_COMM_WORLD_SIZE": "2"},
            "Open MPI",
        ),
    ],
)
def test_cluster_launch_is_detected_from_the_environment(monkeypatch, env, expected):
    for key in ("SLURM_STEP_NODELIST", "SLURM_NTASKS", "OMPI_MCA_orte_hnp_uri"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert parallel.cluster_env() == expected
