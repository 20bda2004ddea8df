"""What both fixture makers share: one thread, fixed seeds, parameters randomised so that every
tensor matters, and an `.npz` writer whose bytes depend on the arrays alone.

Imported by tools/make_lm_fixtures.py and tools/make_vision_fixtures.py (run as scripts, so
tools/ is on sys.path); needs the `fixtures` extra (torch).
"""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import torch

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"

# A fixed date in every zip entry: np.savez stamps the current time, so two runs would differ.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def make_deterministic(seed: int) -> torch.Generator:
    """One thread and deterministic kernels, so that two runs on one machine give the same bytes.

    Args:
        seed: seeds torch's global generator and the returned one.

    Returns:
        A CPU generator seeded with `seed`, for the data a fixture draws.
    """
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def randomize_parameters(
    model: torch.nn.Module, generator: torch.Generator, std: float, *, matrices: bool
) -> None:
    """Move parameters off the constants libraries initialise them to, so a converter that drops,
    swaps or transposes one of them changes the logits well beyond the parity tolerance.

    A 1-D `...weight` (a norm's scale) becomes 1 + N(0, std), a 1-D `...bias` N(0, std), and
    with `matrices` every tensor of 2 or more dimensions N(0, std) (tiny default inits, such as
    std 0.02 over a width of 32, give logits so small that 1e-4 would hide a wrong GELU).

    Args:
        model: the module to change in place.
        generator: the source of the draws.
        std: standard deviation of the draws.
        matrices: whether to redraw the tensors of 2 or more dimensions too.
    """
    for name, parameter in model.named_parameters():
        noise = torch.randn(parameter.shape, generator=generator) * std
        if parameter.ndim == 1 and name.endswith("weight"):
            parameter.copy_(1.0 + noise)
        elif parameter.ndim == 1 or matrices:
            parameter.copy_(noise)


def fresh_directory(path: Path) -> Path:
    """Empty `path` (a fixture directory this script owns) and return it."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write `arrays` as an `.npz` that `np.load(path, allow_pickle=False)` reads, with the same
    bytes for the same arrays (np.savez stamps the time into the zip).

    Args:
        path: the file to write.
        arrays: name -> numeric array; a name may hold `/` (`features/layer1`).
    """
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            if array.dtype == object:
                raise TypeError(f"{name}: object arrays need pickle")
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            entry = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, buffer.getvalue())


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A detached CPU copy as numpy, float tensors as float32 and integer ones as int64."""
    array = tensor.detach().cpu().numpy()
    return array.astype(np.float32 if array.dtype.kind == "f" else np.int64)


def describe_tensors(directory: Path) -> dict[str, list[int]]:
    """Every tensor name in a checkpoint directory's safetensors files, with its shape."""
    from safetensors import safe_open

    shapes = {}
    for file in sorted(directory.glob("*.safetensors")):
        with safe_open(file, "np") as tensors:
            for key in tensors.keys():  # noqa: SIM118 (safe_open is not a mapping)
                shapes[key] = list(tensors.get_slice(key).get_shape())
    return dict(sorted(shapes.items()))
