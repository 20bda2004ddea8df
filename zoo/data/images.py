"""data=images: a folder of images, one subfolder per class (torchvision's ImageFolder), or
`train/` and `val/` folders of such subfolders.

Each file is checked before it is decoded: its size, then its width and height from its header
(Pillow reads headers lazily), against limits; one that does not decode is named in one warning
line and skipped, and the run says how many were skipped. Images are decoded with Pillow in
threads (Pillow releases the GIL while decoding and resizing), resized (shorter side) and
centre-cropped to `data.image_size`, into uint8 pixels that a cache keyed by the files (path,
size, modification time) and the size keeps for later runs (memory-mapped). Training batches
are normalised by `data.mean`/`data.std`; with `data.augment` each is randomly resized-cropped and
flipped on the device, drawn from `(data.seed, step, example)`, so a resumed run draws the same.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zoo.data.arrays import split_off_val
from zoo.data.dataset import Dataset
from zoo.data.settings import IMAGENET_MEAN, IMAGENET_STD
from zoo.errors import ZooError
from zoo.memory import require_memory

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 256 << 20  # one image file
MAX_PIXELS = 1 << 28  # width x height of one image, checked from its header before decoding
MAX_FILES = 10_000_000
MAX_CLASSES = 100_000
CACHE_VERSION = 1
SCALE = (0.25, 1.0)  # random resized crop: share of the image's area
RATIO = (3 / 4, 4 / 3)  # and aspect ratio, as torchvision's (log-uniform)


def _visible(entries: list[Path]) -> list[Path]:
    return sorted(e for e in entries if not e.name.startswith("."))


def class_folders(root: Path, source: str) -> list[Path]:
    """The class subfolders of `root`, sorted by name (labels 0..K-1 in that order)."""
    if not root.is_dir():
        raise ZooError(f"{source}: {'not a directory' if root.exists() else 'no such directory'}")
    folders = [e for e in _visible(list(root.iterdir())) if e.is_dir()]
    if not folders:
        raise ZooError(f"{source}: no class folders (one subfolder of images per class)")
    if len(folders) > MAX_CLASSES:
        raise ZooError(f"{source}: {len(folders)} class folders; at most {MAX_CLASSES}")
    if len(folders) < 2:
        raise ZooError(
            f"{source}: only one class folder ({folders[0].name}); classification needs at least 2"
        )
    return folders


def list_files(folders: list[Path], source: str) -> tuple[list[Path], list[int]]:
    """Every visible file below each class folder, with its label; an empty folder is an error."""
    files, labels = [], []
    for label, folder in enumerate(folders):
        found = [e for e in _visible(list(folder.rglob("*"))) if e.is_file()]
        if not found:
            raise ZooError(f"{source}: class folder {folder.name!r} holds no files")
        files += found
        labels += [label] * len(found)
        if len(files) > MAX_FILES:
            raise ZooError(f"{source}: over {MAX_FILES} files")
    return files, labels


def decode(path: Path, size: int) -> np.ndarray | str:
    """`path` as `size x size x 3` uint8 pixels (shorter side resized, centre-cropped), or why
    it is not an image: its file size and its header's width and height checked first."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        nbytes = path.stat().st_size
        if nbytes > MAX_FILE_BYTES:
            return f"{nbytes} bytes, over the {MAX_FILE_BYTES} an image may have"
        with Image.open(path) as image:  # reads the header only
            width, height = image.size
            if width * height > MAX_PIXELS or width < 1 or height < 1:
                return f"{width}x{height} pixels (at most {MAX_PIXELS} are decoded)"
            image = image.convert("RGB")  # decodes
            fitted = ImageOps.fit(image, (size, size), Image.Resampling.BICUBIC)
            return np.asarray(fitted, dtype=np.uint8)
    except UnidentifiedImageError:
        return "not an image Pillow can read"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        return f"does not decode ({str(err).splitlines()[0] if str(err) else type(err).__name__})"


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "zoo" / "images"


def _cache_key(files: list[Path], size: int) -> str:
    digest = hashlib.sha256(f"v{CACHE_VERSION} {size}".encode())
    for file in files:
        stat = file.stat()
        digest.update(f"\n{file.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


def decode_all(files: list[Path], size: int, cache: bool) -> tuple[np.ndarray, list[int]]:
    """Pixels `(n, size, size, 3)` uint8 of the files that decode, and the indices of those that
    do not (each named in a warning); from the cache when it holds these files at this size."""
    key = _cache_key(files, size) if cache else None
    where = _cache_dir() / key if key else None
    if where is not None and (where / "pixels.npy").is_file():
        try:
            skipped = json.loads((where / "skipped.json").read_text())
            pixels = np.load(where / "pixels.npy", mmap_mode="r", allow_pickle=False)
            if pixels.shape == (len(files) - len(skipped), size, size, 3):
                log.info("images: %d decoded images from the cache %s", len(pixels), where)
                return pixels, skipped
        except (OSError, ValueError):
            pass  # a damaged cache: decode again
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        decoded = list(pool.map(lambda f: decode(f, size), files))
    skipped = [i for i, d in enumerate(decoded) if isinstance(d, str)]
    for i in skipped:
        log.warning("images: skipped %s: %s", files[i], decoded[i])
    kept = [d for d in decoded if not isinstance(d, str)]
    pixels = np.stack(kept) if kept else np.zeros((0, size, size, 3), np.uint8)
    if where is not None and kept:
        try:
            staging = where.with_name(f"{where.name}.partial-{os.getpid()}")
            staging.mkdir(parents=True, exist_ok=True)
            np.save(staging / "pixels.npy", pixels)
            (staging / "skipped.json").write_text(json.dumps(skipped))
            staging.rename(where)
        except OSError as err:  # a cache that cannot be written only costs time
            log.info("images: not cached (%s)", err)
    return pixels, skipped


def _read_split(root: Path, size: int, cache: bool, source: str, classes: list[str] | None):
    folders = class_folders(root, source)
    names = [f.name for f in folders]
    if classes is not None and names != classes:
        raise ZooError(f"{source}: class folders {names} differ from train/'s {classes}")
    files, labels = list_files(folders, source)
    per_image = size * size * 3
    require_memory(
        len(files) * per_image * 5, f"data=images ({len(files)} images of {size}x{size})"
    )
    pixels, skipped = decode_all(files, size, cache)
    labels = np.delete(np.asarray(labels, np.int32), skipped)
    if not len(pixels):
        raise ZooError(f"{source}: none of its {len(files)} files decodes as an image")
    for label, name in enumerate(names):
        if not (labels == label).any():
            raise ZooError(f"{source}: no file of class folder {name!r} decodes as an image")
    if skipped:
        log.warning("images: %d of %d files skipped (not images)", len(skipped), len(files))
    return np.asarray(pixels), labels, names


def normaliser(mean: list[float], std: list[float], channels: int, source: str):
    if len(mean) not in (1, channels) or len(std) not in (1, channels):
        raise ZooError(
            f"{source}: data.mean and data.std need 1 or {channels} values (got {len(mean)} "
            f"and {len(std)})"
        )
    m, s = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    return lambda u8: ((u8.astype(np.float32) / 255.0 - m) / s).astype(np.float32)


def images(cfg: Any, model_cfg: Any) -> Dataset:
    """The Dataset of the image folder `cfg.path` (see the module's docstring)."""
    root = Path(cfg.path)
    source = f"data.path={root}"
    size = int(cfg.image_size)
    if (root / "train").is_dir() and (root / "val").is_dir():
        x, y, names = _read_split(root / "train", size, cfg.cache, f"{source}/train", None)
        x_val, y_val, _ = _read_split(root / "val", size, cfg.cache, f"{source}/val", names)
    else:
        x, y, names = _read_split(root, size, cfg.cache, source, None)
        arrays = {"x": x, "y": y}
        split_off_val(arrays, cfg.val_fraction, cfg.seed)
        x, y, x_val, y_val = (arrays[k] for k in ("x", "y", "x_val", "y_val"))
    log.info(
        "images: %d train, %d validation images of %d classes (%s), %dx%d",
        len(x),
        len(x_val),
        len(names),
        ", ".join(names[:5]) + (", ..." if len(names) > 5 else ""),
        size,
        size,
    )
    mean = list(cfg.mean) if cfg.mean is not None else IMAGENET_MEAN
    std = list(cfg.std) if cfg.std is not None else IMAGENET_STD
    normalise = normaliser(mean, std, 3, source)
    augment = (
        functools.partial(random_resized_crop_flip, seed=int(cfg.seed)) if cfg.augment else None
    )
    return Dataset(
        *map(jnp.asarray, (normalise(x), y, normalise(x_val), y_val)),
        task="classification",
        num_classes=len(names),
        augment=augment,
    )


def random_resized_crop_flip(
    images: jax.Array, step: jax.Array, examples: jax.Array, *, seed: int
) -> jax.Array:
    """Each image of the batch `(n, H, W, C)` cropped to a random box (area share in SCALE,
    aspect ratio log-uniform in RATIO), resized back to H x W (bilinear) and flipped left-right
    with probability 1/2; example `i`'s draw comes from `(seed, step, examples[i])` alone."""
    size = images.shape[1:3]
    key = jax.random.fold_in(jax.random.key(seed), step)

    def one(image: jax.Array, example: jax.Array) -> jax.Array:
        k_area, k_ratio, k_y, k_x, k_flip = jax.random.split(jax.random.fold_in(key, example), 5)
        area = jax.random.uniform(k_area, (), minval=SCALE[0], maxval=SCALE[1])
        log_ratio = jax.random.uniform(
            k_ratio, (), minval=np.log(RATIO[0]), maxval=np.log(RATIO[1])
        )
        ratio = jnp.exp(log_ratio)
        h = jnp.clip(jnp.sqrt(area / ratio), 0.1, 1.0) * size[0]
        w = jnp.clip(jnp.sqrt(area * ratio), 0.1, 1.0) * size[1]
        top = jax.random.uniform(k_y, ()) * (size[0] - h)
        left = jax.random.uniform(k_x, ()) * (size[1] - w)
        scale = jnp.stack([size[0] / h, size[1] / w])
        out = jax.image.scale_and_translate(
            image,
            (*size, image.shape[-1]),
            (0, 1),
            scale,
            -jnp.stack([top, left]) * scale,
            method="linear",
            antialias=False,
        )
        return jnp.where(jax.random.bernoulli(k_flip), out[:, ::-1], out)

    return jax.vmap(one)(images, examples).astype(images.dtype)
