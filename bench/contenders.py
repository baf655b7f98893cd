"""The benchmark's contenders, in one registry: ours, as settings over the defaults (what train.py's
flags give), and the peers' recipes, each run on our split and compared with one of ours.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras

from recipe.config import steps_per_epoch

# tuomaso/train_mnist_fast's final recipe (its README and 8_Final notebook): PyTorch's OneCycleLR
# with its defaults, a warm-up over the first 30% of the steps from a 25th of the peak, then a
# cosine to 0. Keras's CosineDecay warms up linearly where OneCycleLR follows a cosine.
ONE_CYCLE_PEAK, ONE_CYCLE_WARMUP, ONE_CYCLE_START = 0.01, 0.3, 1 / 25


def seed_mlp(train_images: int) -> tuple:
    """The user's first network: 128 ReLU units, 10 sigmoid outputs; (model, batch, epochs, optimizer)."""
    model = keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation="sigmoid"),
        ]
    )
    return model, 32, 5, "adam"


def tuomaso_cnn(train_images: int) -> tuple:
    """tuomaso/train_mnist_fast: one epoch, one-cycle Adam; (model, batch, epochs, optimizer)."""
    model = keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Reshape((28, 28, 1)),
            keras.layers.Conv2D(24, 5),
            # Pooling before the ReLU, as the recipe does: the same result, less work.
            keras.layers.MaxPooling2D(2),
            keras.layers.ReLU(),
            keras.layers.Conv2D(32, 3),
            keras.layers.MaxPooling2D(2),
            keras.layers.ReLU(),
            keras.layers.Flatten(),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    batch_size, epochs = 256, 1
    steps = epochs * steps_per_epoch(train_images, batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(
        ONE_CYCLE_PEAK * ONE_CYCLE_START,
        decay_steps=steps - int(ONE_CYCLE_WARMUP * steps),
        warmup_target=ONE_CYCLE_PEAK,
        warmup_steps=int(ONE_CYCLE_WARMUP * steps),
    )
    return model, batch_size, epochs, keras.optimizers.Adam(schedule, beta_1=0.7, beta_2=0.9)


def keras_convnet(train_images: int) -> tuple:
    """keras-io's examples/vision/mnist_convnet.py; (model, batch, epochs, optimizer)."""
    model = keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Reshape((28, 28, 1)),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    return model, 128, 15, "adam"


@dataclass(frozen=True)
class Contender:
    """One contender: ours, as settings over the defaults (what train.py's flags give), or a peer's
    recipe run on our split, with which of ours it is compared with."""

    what: str
    settings: dict | None = None  # ours
    peer: Callable[[int], tuple] | None = None  # a Keras peer: (model, batch, epochs, optimizer)
    compared_with: str | None = None


def our_run(**settings_given: dict) -> Contender:
    """Our contender with these settings, described as the train.py command that trains it."""
    flags = [
        f"--{name.replace('_', '-')} {value}" if value is not False else f"--no-{name.replace('_', '-')}"
        for section in settings_given.values()
        for name, value in section.items()
    ]
    return Contender(" ".join(["train.py", *flags]) if flags else "train.py, its defaults", settings_given)


CNN = {"arch": "cnn"}
CONTENDERS = {  # ours first
    "ours-mlp": our_run(),
    "ours-mlp-softmax": our_run(model={"output_activation": "softmax"}),
    "ours-cnn": our_run(model=CNN),
    "ours-cnn-2-epochs": our_run(model=CNN, training={"epochs": 2}),
    "ours-mlp-5-epochs": our_run(training={"epochs": 5}),
    "ours-mlp-10-epochs": our_run(training={"epochs": 10}),
    "ours-cnn-1-epoch": our_run(model=CNN, training={"epochs": 1}),
    "ours-cnn-5-epochs": our_run(model=CNN, training={"epochs": 5}),
    "ours-cnn-10-epochs": our_run(model=CNN, training={"epochs": 10}),
    # What the short run's front costs: augmentation is what reads real writing (bench/NOTES.md).
    "ours-cnn-2-epochs-no-augment": our_run(model=CNN, training={"epochs": 2, "augment": False}),
    "seed-mlp": Contender(
        "peer: Dense(128, ReLU) -> Dense(10, sigmoid), Adam, batch 32, 5 epochs",
        peer=seed_mlp,
        compared_with="ours-mlp",
    ),
    "sklearn-mlp": Contender("peer: scikit-learn MLPClassifier((128,)), 10 epochs", compared_with="ours-mlp"),
    "keras-convnet": Contender(
        "peer: Keras example mnist_convnet, batch 128, 15 epochs",
        peer=keras_convnet,
        compared_with="ours-cnn",
    ),
    "tuomaso-cnn": Contender(
        "peer: tuomaso/train_mnist_fast, conv 24 5x5 - pool - conv 32 3x3 - pool - dense 256, "
        "Adam (0.7, 0.9) one-cycle to 0.01, batch 256, 1 epoch",
        peer=tuomaso_cnn,
        compared_with="ours-cnn",
    ),
}
