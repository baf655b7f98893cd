"""The network: its configuration, one builder for every variant, and saving/loading it safely.

    from model import model_config, build_model
    model = build_model(model_config("mlp"))          # 784 -> 1024 -> 512 -> 10 sigmoid
    model = build_model(model_config("cnn", output_activation="softmax"))

Every variant takes float32 images (n, 28, 28) from data.normalize_images and returns 10 scores.
A saved model travels with a run record (run.json) that holds this config, the training settings,
the data checksums and the library versions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import keras

from data import IMAGE_SIZE, NUM_CLASSES

ARCHS = ("mlp", "cnn")
OUTPUT_ACTIVATIONS = ("sigmoid", "softmax")
RECORD_NAME = "run.json"
LOGITS_LAYER = "logits"


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "mlp"  # mlp | cnn
    hidden: tuple[int, ...] = (1024, 512)  # widths of the Dense ReLU layers (the CNN's head)
    dropout: float = 0.3  # after each hidden layer; 0 turns it off
    # The user's design: 10 independent sigmoid units. Categorical cross-entropy divides them by
    # their sum, so they train as a distribution; softmax is the textbook alternative.
    output_activation: str = "sigmoid"  # sigmoid | softmax
    filters: tuple[int, ...] = (32, 64)  # CNN only: one convolution + pooling block per entry
    kernel_size: int = 3  # CNN only
    # Random shifts and rotations while training (identity at inference): validation accuracy of
    # the default MLP 98.4% -> 98.8% at the same cost (bench/NOTES.md).
    augment: bool = True

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if min(self.hidden + self.filters + (self.kernel_size,), default=1) < 1:
            raise ValueError("layer sizes must be positive")


ARCH_DEFAULTS = {
    "mlp": ModelConfig(),
    "cnn": ModelConfig(arch="cnn", hidden=(128,)),
}


def model_config(arch: str = "mlp", **overrides) -> ModelConfig:
    """The defaults for `arch`, with every override that is not None applied."""
    given = {name: value for name, value in overrides.items() if value is not None}
    return dataclasses.replace(ARCH_DEFAULTS[arch], **given)


def build_model(config: ModelConfig) -> keras.Model:
    """An uncompiled Keras model: float32 (n, 28, 28) in [0, 1] -> (n, 10) class scores."""
    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE), name="image")
    x = keras.layers.Reshape((IMAGE_SIZE, IMAGE_SIZE, 1))(inputs)
    if config.augment:
        x = keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant")(x)
        x = keras.layers.RandomRotation(0.04, fill_mode="constant")(x)
    if config.arch == "cnn":
        # No batch norm: with it, validation accuracy lagged far behind training on 2-core budgets
        # (34% vs 93% after 3 short epochs; bench/NOTES.md).
        for filters in config.filters:
            x = keras.layers.Conv2D(filters, config.kernel_size, padding="same", activation="relu")(x)
            x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    for width in config.hidden:
        x = keras.layers.Dense(width, activation="relu")(x)
        if config.dropout:
            x = keras.layers.Dropout(config.dropout)(x)
    logits = keras.layers.Dense(NUM_CLASSES, name=LOGITS_LAYER)(x)
    outputs = keras.layers.Activation(config.output_activation, name="digit")(logits)
    return keras.Model(inputs, outputs, name=f"mnist_{config.arch}_{config.output_activation}")


def probability_model(model: keras.Model) -> keras.Model:
    """`model` ending in softmax over its logits: (n, 28, 28) -> (n, 10) rows that sum to 1.

    Keras computes categorical cross-entropy from the logits that a sigmoid or softmax output
    caches, so a sigmoid network trains exactly as if its output were softmax and softmax(logits)
    is the distribution it learned. Its 10 sigmoid outputs themselves are independent, need not
    sum to 1, and sit near 1.0 for every plausible digit.
    """
    logits = model.get_layer(LOGITS_LAYER).output
    return keras.Model(model.inputs, keras.layers.Softmax()(logits), name=f"{model.name}_probabilities")


class ModelError(Exception):
    """A saved model that is missing, unreadable or not a digit classifier; says how to fix it."""


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix) and move it onto `path` on success.

    A crash or kill mid-write leaves the previous file whole; readers never see half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.partial{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_json(path: str | Path, value: dict | list) -> None:
    """Write `value` as indented JSON, atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(value, indent=2) + "\n")


def save_model(model: keras.Model, path: str | Path, record: dict) -> None:
    """Save `model` to `path` (.keras) and `record` as run.json beside it, each atomically."""
    with atomic_path(path) as temporary:
        model.save(temporary)
    write_json(Path(path).with_name(RECORD_NAME), record)


def load_trained_model(path: str | Path) -> keras.Model:
    """Load a model saved by train.py, refusing anything that is not a 28x28 -> 10 classifier."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"no trained model at {path}: run `python train.py` first")
    try:
        # safe_mode refuses lambdas and other code stored in the file: a model never runs code.
        model = keras.models.load_model(path, safe_mode=True)
    except (OSError, ValueError, TypeError, KeyError, zipfile.BadZipFile) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(
            f"cannot load {path} ({reason}): retrain it with `python train.py`"
        ) from None
    shapes_fit = tuple(model.input_shape[1:]) == (IMAGE_SIZE, IMAGE_SIZE) and tuple(
        model.output_shape[1:]
    ) == (NUM_CLASSES,)
    if not shapes_fit or LOGITS_LAYER not in {layer.name for layer in model.layers}:
        raise ModelError(
            f"{path} maps {model.input_shape} to {model.output_shape} and is not a digit "
            "classifier made by train.py: retrain it with `python train.py`"
        )
    return model
