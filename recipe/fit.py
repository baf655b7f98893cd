"""Fitting a network: compile, the input pipeline and `fit`, for the settings of a TrainConfig.

    from recipe.config import TrainConfig, training_split
    from recipe.fit import train
    x_fit, y_fit, x_val, y_val = training_split(mnist, train_config)
    network, history = train(model_config, train_config, (x_fit, y_fit), (x_val, y_val))

Owns compile (categorical cross-entropy, or CTC for the line model; Adam on a cosine decay), the
input pipeline (the digits, or lines composed from them, recipe/lines.py), the training-only
augmentation, and `fit` with its callbacks (recipe/callbacks.py). train.py, tune.py and bench/ all
train through here. Takes configs and arrays, returns the network
and its history, raises exceptions; printing results is the caller's job.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from data import (
    IMAGE_SIZE,
    LINE_HEIGHT,
)
from model import ModelConfig, build_model
from recipe import lines
from recipe.augmentation import augmentation_layers, with_continental_marks
from recipe.callbacks import (
    CheckedBackupAndRestore,
    EpochHistory,
    RunProgress,
    completed_epochs,
    progress_mode,
)
from recipe.config import TrainConfig, TrainingError, steps_per_epoch
from recipe.devices import training_precision
from recipe.not_digits import not_digits

LOSS = "categorical_crossentropy"


def training_model(
    model_config: ModelConfig, augment: bool, precision: str = "float32", pose: float = 1.0
) -> keras.Model:
    """The network inside a training-only wrapper that augments its input when `augment`.

    Augmentation is part of training, never of the saved network: a saved network applies no
    random transforms, so every export of it gives the same answer twice. The network computes in
    `precision`; the augmentation always in float32.
    """
    if model_config.arch == "line":  # lines are varied as they are composed (recipe/lines.py)
        inputs = keras.Input(shape=(LINE_HEIGHT, None), name="line")
        network = build_model(model_config, "mixed_bfloat16" if precision == "bfloat16" else "float32")
        return keras.Model(inputs, network(inputs), name=f"{network.name}_training")
    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE), name="image")
    x = inputs
    if augment:
        x = keras.layers.Reshape((IMAGE_SIZE, IMAGE_SIZE, 1))(x)
        for layer in augmentation_layers(pose=pose):
            x = layer(x)
        x = keras.layers.Reshape((IMAGE_SIZE, IMAGE_SIZE))(x)
    network = build_model(model_config, "mixed_bfloat16" if precision == "bfloat16" else "float32")
    return keras.Model(inputs, network(x), name=f"{network.name}_training")


def network_of(model: keras.Model, model_config: ModelConfig) -> keras.Model:
    """The float32 inference network inside a model made by `training_model`: a copy with the same
    weights where it trained in bfloat16 (whose weights are float32 already), so saving, exports
    and predictions never depend on the training's arithmetic."""
    network = model.layers[-1]
    if all(layer.dtype_policy.name == "float32" for layer in network.layers):
        return network
    copy = build_model(model_config)
    copy.set_weights(network.get_weights())
    return copy


def build_for_training(
    model_config: ModelConfig,
    config: TrainConfig,
    train_images: int,
    strategy: tf.distribute.Strategy | None = None,
) -> keras.Model:
    """The seeded, compiled training model: Adam from `lr` on a cosine decay over all the steps.

    With a `strategy`, the model lives in its scope and `batch_size` is per replica.
    """
    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(config.seed)
    line = model_config.arch == "line"
    examples = examples_per_epoch(line, train_images, config)
    steps = config.epochs * steps_per_epoch(examples, config.batch_size * strategy.num_replicas_in_sync)
    with strategy.scope():
        model = training_model(model_config, config.augment, training_precision(config), config.pose)
        optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(config.lr, steps))
        if line:
            model.compile(optimizer=optimizer, loss=lines.ctc_loss, metrics=[lines.LineAccuracy()])
        else:
            model.compile(optimizer=optimizer, loss=LOSS, metrics=[DigitAccuracy()])
    return model


def examples_per_epoch(line: bool, train_images: int, config: TrainConfig) -> int:
    """What an epoch over `train_images` digits trains on: lines holding about as many digits, or
    the digits and the images that are not digits added to them."""
    if line:
        return lines.lines_per_epoch(train_images)
    return train_images + not_digit_count(train_images, config)


def is_line_model(model: keras.Model) -> bool:
    """Whether `model` reads lines: a sequence of frames out, not one row of scores an image."""
    return len(model.output_shape) == 3


def line_data(
    model: keras.Model,
    config: TrainConfig,
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    validation: tuple[np.ndarray, np.ndarray] | None,
    first_epoch: int,
) -> tuple[tf.data.Dataset, int, tf.data.Dataset | None]:
    """A line model's training batches from epoch `first_epoch` on, its steps per epoch and its
    validation lines (`validation_lines`), composed from the normalized, one-hot digits of each
    split."""
    batch_size = config.batch_size * model.distribute_strategy.num_replicas_in_sync
    steps = steps_per_epoch(lines.lines_per_epoch(len(x_fit)), batch_size)
    composer = line_composer(x_fit, y_fit, config.seed, config)
    batches = lines.endless_batches(composer, batch_size, config.seed, first_epoch * steps)
    if validation is None:
        return batches, steps, None
    return batches, steps, lines.as_dataset(validation_lines(config, *validation))


def line_composer(x: np.ndarray, y: np.ndarray, seed: int, config: TrainConfig) -> lines.LineComposer:
    """Lines of normalized digits `x`, one-hot `y`. The images that are not digits (`not_digits`)
    become that share of a line's marks; `augment` off, and `pose`, make lines plainer or more varied."""
    digits = np.rint(x * 255).astype(np.uint8)  # normalize_images undone, exactly
    mark_share = config.not_digits / (1 + config.not_digits)
    variation = config.pose if config.augment else 0.0
    return lines.LineComposer.of(digits, y.argmax(axis=1), seed, mark_share, variation)


def validation_lines(config: TrainConfig, x_val: np.ndarray, y_val: np.ndarray) -> list[tuple]:
    """The validation lines, in batches: composed once from the validation digits (normalized,
    one-hot), as many digits as they hold, the same for a seed. Calibration reads these too."""
    composer = line_composer(x_val, y_val, config.seed + 1, config)
    return lines.fixed_batches(composer, lines.lines_per_epoch(len(x_val)), config.batch_size, config.seed)


def training_images(
    x_fit: np.ndarray, y_fit: np.ndarray, config: TrainConfig
) -> tuple[np.ndarray, np.ndarray]:
    """The images a fit trains on and their targets: with augmentation, a share of the 1s flagged
    and 7s crossed; then `not_digits` of their number in images that are not a digit."""
    rng = np.random.default_rng(config.seed)
    x = with_continental_marks(x_fit, y_fit, rng) if config.augment else x_fit
    count = not_digit_count(len(x_fit), config)
    if not count:
        return x, y_fit
    x_not, y_not = not_digits(x_fit, y_fit, count, rng)
    return np.concatenate([x, x_not]), np.concatenate([y_fit, y_not])


def not_digit_count(train_images: int, config: TrainConfig) -> int:
    """How many images that are not a digit a fit on `train_images` digits adds."""
    return round(config.not_digits * train_images)


def digits_read_right(y, scores) -> tuple:
    """Per image (backend tensors of 0.0 or 1.0): whether it is a digit read right, and whether it
    is a digit at all. One that is not a digit (a uniform target) has no right answer."""
    digit = ops.cast(ops.max(y, axis=-1) > 0.5, "float32")
    right = ops.cast(ops.argmax(y, axis=-1) == ops.argmax(scores, axis=-1), "float32")
    return right * digit, digit


class DigitAccuracy(keras.metrics.Metric):
    """Accuracy over the digits of the images seen: one that is not a digit has no right answer."""

    def __init__(self, name: str = "accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.right = self.add_variable(shape=(), initializer="zeros", name="right")
        self.digits = self.add_variable(shape=(), initializer="zeros", name="digits")

    def update_state(self, y_true, y_pred, sample_weight=None):
        right, digit = digits_read_right(y_true, y_pred)
        self.right.assign_add(ops.sum(right))
        self.digits.assign_add(ops.sum(digit))

    def result(self):
        return ops.divide_no_nan(self.right, self.digits)


def training_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> tf.data.Dataset:
    """Endless shuffled batches of (x, y), reshuffled on every pass.

    One endless iterator for the whole fit, not Keras's one per epoch: re-creating the input
    pipeline every epoch is a stall as long as a good part of an MLP epoch (bench/NOTES.md).
    """
    options = tf.data.Options()
    # Across workers, each takes its share of every batch: arrays in memory have no files to split.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    # No autotuning thread: destroying the iterator at the end of fit can wait on it at length
    # (bench/NOTES.md); two batches ahead is all this pipeline needs.
    options.autotune.enabled = False
    return (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(batch_size)
        .prefetch(2)
        .with_options(options)
    )


def fit(
    model: keras.Model,
    config: TrainConfig,
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    validation: tuple[np.ndarray, np.ndarray] | None,
    callbacks: list[keras.callbacks.Callback] = (),
    backup: Path | None = None,
    epochs: int | None = None,
    initial_epoch: int = 0,
    verbose: int | str | None = None,
) -> dict[str, list[float]]:
    """Fit a model from `build_for_training` on normalized images and one-hot labels.

    Runs to `epochs` (default: the config's; a tuner may stop sooner or start at `initial_epoch`).
    With `backup`, every epoch's weights, optimizer state and metrics are saved there, a fit that
    finds them resumes after the last saved epoch, and they are removed when the fit completes.
    Returns the metrics per epoch, the resumed run's included.
    """
    batch_size = config.batch_size * model.distribute_strategy.num_replicas_in_sync
    verbose = progress_mode() if verbose is None else verbose
    epochs = epochs or config.epochs
    if is_line_model(model):
        done = completed_epochs(backup) if backup is not None else initial_epoch
        batches, steps, validation = line_data(model, config, x_fit, y_fit, validation, done)
    else:
        x_fit, y_fit = training_images(x_fit, y_fit, config)
        batches = training_batches(x_fit, y_fit, batch_size, config.seed)
        steps = steps_per_epoch(len(x_fit), batch_size)
    # Raising at the first NaN loss, before the epoch's end would back up the NaN weights.
    callbacks = [keras.callbacks.TerminateOnNaN(raise_error=True), *callbacks]
    if verbose:
        callbacks.append(RunProgress(epochs))
    if backup is not None:
        epoch_history = EpochHistory(backup / "history.json")
        # double_checkpoint keeps the previous epoch's files while the next are being written.
        restore = CheckedBackupAndRestore(str(backup), double_checkpoint=True)
        callbacks = [epoch_history, restore, *callbacks]  # history first: restore deletes the folder
    try:
        history = model.fit(
            batches,
            steps_per_epoch=steps,
            shuffle=False,  # training_batches shuffles
            epochs=epochs,
            initial_epoch=initial_epoch,
            validation_data=validation,
            callbacks=callbacks,
            verbose=verbose,
        ).history
    except RuntimeError as exc:
        if "NaN or Inf loss" not in str(exc):  # TerminateOnNaN's
            raise
        raise TrainingError(
            f"training diverged: the loss became NaN or infinite, and this run saved nothing. "
            f"Rerun with a lower --lr (this run's: {config.lr:g}) and --fresh"
        ) from None
    return epoch_history.history() if backup is not None else history


def train(
    model_config: ModelConfig,
    train_config: TrainConfig,
    train_data: tuple[np.ndarray, np.ndarray],
    validation_data: tuple[np.ndarray, np.ndarray] | None,
    callbacks: list[keras.callbacks.Callback] = (),
    backup: Path | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> tuple[keras.Model, dict[str, list[float]]]:
    """Build and fit the network the configs describe; returns it (inference only) and its history.
    recipe.multiworker.train takes the same arguments."""
    model = build_for_training(model_config, train_config, len(train_data[0]), strategy)
    history = fit(model, train_config, *train_data, validation_data, callbacks, backup)
    return network_of(model, model_config), history
