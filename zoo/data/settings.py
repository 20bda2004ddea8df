"""The data group's settings, declared once per dataset (no JAX): `data=<name>` options, each
naming the function that builds it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from zoo.config.fields import REQUIRED, setting
from zoo.config.registry import declare

TASKS = ("auto", "regression", "classification")
SEQUENCE_RULES = ("reverse", "sort")  # zoo/data/sequence.py implements them
MAX_ROWS = 1 << 30


@declare("data", "teacher", builder="zoo.data.teacher:teacher")
@dataclass(frozen=True, kw_only=True)
class TeacherSettings:
    """Synthetic regression: N(0, 1) inputs, targets from a fixed deep_nested teacher + noise."""

    generated: ClassVar[bool] = True  # made from the config: its size is checked from shapes

    in_features: int = setting(
        "${model.in_features}", "input width (the model's by default)", ge=1, le=1 << 20
    )
    n_train: int = setting(2048, "training rows", ge=1, le=MAX_ROWS)
    n_val: int = setting(512, "validation rows", ge=1, le=MAX_ROWS)
    noise: float = setting(0.01, "standard deviation of the Gaussian noise on the targets", ge=0)
    seed: int = setting(1234, "draws the inputs and the noise", ge=0)
    teacher_seed: int = setting(4321, "initialises the teacher network", ge=0)
    teacher_depth: int = setting(1, "the teacher's depth", ge=1, le=64)
    teacher_activation: str = setting(
        "relu",
        "the teacher's activation",
        choices=("relu", "gelu", "silu", "tanh", "sigmoid", "elu", "leaky_relu", "softplus"),
    )


@dataclass(frozen=True, kw_only=True)
class SplitSettings:
    """Shared by datasets without a given validation split."""

    task: str = setting(
        "auto", "auto: integers 0..K-1 (K <= 1000 and <= rows/2) are classes", choices=TASKS
    )
    val_fraction: float = setting(0.2, "share of rows held out for validation", gt=0, lt=1)
    seed: int = setting(0, "draws the validation rows", ge=0)
    standardize: bool = setting(True, "scale inputs by the train rows' mean and std")


@declare("data", "npz", builder="zoo.data.user_files:npz_file")
@dataclass(frozen=True, kw_only=True)
class NpzSettings(SplitSettings):
    """Your arrays: x (rows, features), y; optionally x_val, y_val (numpy.savez)."""

    path: str = setting(REQUIRED, "the .npz file")


@declare("data", "csv", builder="zoo.data.user_files:csv_file")
@dataclass(frozen=True, kw_only=True)
class CsvSettings(SplitSettings):
    """Your table: a CSV with a header row; `target` is y, every other column a feature."""

    path: str = setting(REQUIRED, "the .csv file")
    target: str = setting(REQUIRED, "the column to predict")


@declare("data", "digits", builder="zoo.data.digits:digits")
@dataclass(frozen=True, kw_only=True)
class DigitsSettings(SplitSettings):
    """scikit-learn's bundled 8x8 handwritten digits: 1797 images, 10 classes."""

    task: str = setting("classification", "the digits are classes", choices=TASKS)
    images: bool = setting(False, "8x8x1 NHWC images (for resnet, vit) instead of 64 features")


@declare("data", "sequence", builder="zoo.data.sequence:sequence")
@dataclass(frozen=True, kw_only=True)
class SequenceSettings:
    """Random token sequences; the target at each position is the token the rule puts there."""

    generated: ClassVar[bool] = True  # made from the config: its size is checked from shapes

    rule: str = setting("reverse", "what the model learns to do", choices=SEQUENCE_RULES)
    vocab_size: int = setting(16, "token ids 0..vocab_size-1", ge=2, le=1 << 20)
    length: int = setting(12, "tokens per sequence", ge=1, le=1 << 16)
    n_train: int = setting(8192, "training sequences", ge=1, le=MAX_ROWS)
    n_val: int = setting(1024, "validation sequences", ge=1, le=MAX_ROWS)
    seed: int = setting(1234, "draws the sequences", ge=0)


@declare("data", "text", builder="zoo.data.text:text")
@dataclass(frozen=True, kw_only=True)
class TextSettings:
    """UTF-8 text, tokenized once into a memory-mapped cache; next-token windows (docs/text.md)."""

    path: str | None = setting(
        None, "a text file, a directory or a glob of them; null: Python's pydoc_data topics"
    )
    tokenizer: str = setting(
        "bytes", "bytes (256 symbols), or a tokenizer.json or a directory holding one"
    )
    length: int = setting(128, "tokens per window (the model's max_len follows)", ge=1, le=1 << 20)
    val_fraction: float = setting(
        0.1, "share of the token stream, at its end, held out for validation", gt=0, lt=1
    )
    val_windows: int = setting(
        64, "most consecutive windows of the held-out tokens scored", ge=1, le=1 << 20
    )
    seed: int = setting(0, "draws the windows of each training step", ge=0)
    cache_dir: str | None = setting(
        None, "where token files are kept; null: $XDG_CACHE_HOME/zoo/tokens (~/.cache)"
    )


IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@declare("data", "images", builder="zoo.data.images:images")
@dataclass(frozen=True, kw_only=True)
class ImagesSettings:
    """A folder of images, one subfolder per class (ImageFolder), or train/ and val/ of them."""

    path: str = setting(REQUIRED, "the folder: <class>/<image>, or train/<class>/, val/<class>/")
    image_size: int = setting(
        32, "images are resized and centre-cropped to this square", ge=1, le=4096
    )
    mean: list[float] | None = setting(
        None,
        "per-channel mean of [0, 1] pixels; null: init.from's published checkpoint's, else "
        "ImageNet's",
        min_items=1,
        max_items=4,
    )
    std: list[float] | None = setting(
        None,
        "per-channel std of [0, 1] pixels; null: as data.mean",
        gt=0,
        min_items=1,
        max_items=4,
    )
    augment: bool = setting(
        False,
        "random resized crop and horizontal flip in training, drawn "
        "from (data.seed, step, example)",
    )
    val_fraction: float = setting(0.2, "share held out for validation (without val/)", gt=0, lt=1)
    seed: int = setting(0, "draws the validation split and the augmentation", ge=0)
    cache: bool = setting(True, "keep decoded pixels in a uint8 cache that later runs reuse")
