"""How a network is fitted (`TrainConfig`), its bounds, and the training split.

    from recipe.config import TrainConfig, training_split
    x_fit, y_fit, x_val, y_val = training_split(mnist, TrainConfig(epochs=5))

Each field is a flag of train.py (recipe/settings.py makes the flags); a value out of bounds is a
ValueError saying what is allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from data import (
    EXPECTED_SHAPES,
    NUM_CLASSES,
    Mnist,
    normalize_images,
    split_validation,
)
from model import shown

STRATEGIES = ("default", "mirrored", "multiworker")
PRECISIONS = ("auto", "float32", "bfloat16")
TRAIN_IMAGES = EXPECTED_SHAPES["x_train"][0]  # MNIST's 60,000
# Upper bounds of the settings, so that none can ask for more time or memory than a run can have.
BOUNDS = {"epochs": 10_000, "batch_size": TRAIN_IMAGES, "limit": TRAIN_IMAGES}
MAX_SEED = 2**32 - 1  # NumPy's and TensorFlow's seeds are 32-bit
MAX_LR = 10.0  # Adam's useful rates are below 0.1
MAX_POSE = 2.0  # twice the ranges: rotation by 28 degrees, shifts of a fifth of the image
MAX_NOT_DIGITS = 1.0  # as many as the digits: more would teach "not a digit" more than the digits


@dataclass(frozen=True)
class TrainConfig:
    """How a network is fitted. Each field is a flag of train.py; its metadata holds the help."""

    epochs: int = field(default=25, metadata={"help": "passes over the training split"})
    batch_size: int = field(default=256, metadata={"help": "images per step (per replica)"})
    lr: float = field(default=2e-3, metadata={"help": "peak Adam learning rate, decayed to 0 on a cosine"})
    # What real writing varies in (recipe/augmentation.py): people do not write like MNIST's writers, and
    # a dense network has no built-in tolerance of position at all (bench/NOTES.md).
    augment: bool = field(
        default=True,
        metadata={
            "help": "random pose (shift, rotation, shear, size) and pen width of the training "
            "images, and flags on 1s and crossbars on 7s"
        },
    )
    # MNIST's own poses span less than people's: a narrower pose can read MNIST better, and what it
    # costs on real writing is measured in bench/NOTES.md.
    pose: float = field(
        default=1.0,
        metadata={
            "help": "with augmentation, the random pose's ranges as a multiple of recipe/augmentation.py's "
            "(rotation 14 degrees, shear 0.3, size 12%, shift 10%)"
        },
    )
    # Outlier exposure (recipe/not_digits.py): without it a letter or a scribble is read as surely as a digit.
    not_digits: float = field(
        default=0.2,
        metadata={
            "help": "images that are not a digit (letters, symbols, scribbles, pieces and pairs of "
            "digits), as a share of the training digits, taught to read as no digit; 0 turns it off"
        },
    )
    # bfloat16 halves the bytes each multiply reads; the weights, the logits and the saved network
    # stay float32. The CNN's default (recipe/settings.py): it trains 1.4x faster, as accurately.
    precision: str = field(
        default="float32",
        metadata={
            "choices": PRECISIONS,
            "help": "the arithmetic of training: auto is bfloat16 when the CPU trains (no GPU) and "
            "has bfloat16 instructions (AVX512_BF16 or AMX_BF16), else float32; the saved network "
            "is float32 either way",
        },
    )
    seed: int = field(default=0, metadata={"help": "seeds Python, NumPy, TensorFlow and the split"})
    val_split: float = field(default=0.1, metadata={"help": "share of the training images held out"})
    limit: int | None = field(default=None, metadata={"help": "use only the first N training images"})

    def __post_init__(self) -> None:
        for name, most in BOUNDS.items():
            value = getattr(self, name)
            if value is not None and not 1 <= value <= most:
                raise ValueError(f"{name} must be an integer from 1 to {most:,}, got {shown(value)}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be from 0 to {MAX_SEED:,}, got {shown(self.seed)}")
        if not (math.isfinite(self.lr) and 0 < self.lr <= MAX_LR):
            raise ValueError(f"lr must be a number above 0 and at most {MAX_LR:g}, got {shown(self.lr)}")
        if not 0 <= self.pose <= MAX_POSE:  # NaN fails this too
            raise ValueError(f"pose must be from 0 to {MAX_POSE:g}, got {shown(self.pose)}")
        if not 0 <= self.not_digits <= MAX_NOT_DIGITS:  # NaN fails this too
            raise ValueError(f"not_digits must be from 0 to {MAX_NOT_DIGITS:g}, got {shown(self.not_digits)}")
        if not 0 <= self.val_split < 1:  # NaN fails this too
            raise ValueError(f"val_split must be in [0, 1), got {self.val_split}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


class TrainingError(Exception):
    """Training that cannot start or could not finish; the message says what to do."""


def training_split(mnist: Mnist, config: TrainConfig) -> tuple[np.ndarray, ...]:
    """x_fit, y_fit, x_val, y_val: the first `limit` training images, normalized, labels one-hot,
    split by `seed`."""
    x = normalize_images(mnist.x_train[: config.limit])
    y = np.eye(NUM_CLASSES, dtype=np.float32)[mnist.y_train[: config.limit]]
    return split_validation(x, y, config.val_split, config.seed)


def validation_digits(mnist: Mnist, config: TrainConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The digits train.py holds out for validation with `config` (None: the defaults, seed 0's),
    as MNIST stores them: uint8 images and their labels. The benchmarks develop on these."""
    config = config or TrainConfig()
    x, y = mnist.x_train[: config.limit], mnist.y_train[: config.limit]
    _, _, x_val, y_val = split_validation(x, y, config.val_split, config.seed)
    return x_val, y_val


def steps_per_epoch(train_images: int, batch_size: int) -> int:
    """Batches in one pass over the training images, the last one partial."""
    return math.ceil(train_images / batch_size)
