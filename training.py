"""The training recipe: its settings (`TrainConfig`) beside the functions that fit a network.

    from training import TrainConfig, training_split, train
    x_fit, y_fit, x_val, y_val = training_split(mnist, config)
    network, history = train(model_config, config, (x_fit, y_fit), (x_val, y_val))

Owns compile (categorical cross-entropy, or CTC for the line model; Adam on a cosine decay), the
input pipeline (the digits, or lines composed from them, lines.py), the training-only
augmentation, the callbacks (epoch history, stop on a signal, backup and resume) and `fit`.
train.py, tune.py and bench/ all train through here. Takes configs and arrays, returns the network
and its history, raises exceptions; printing results is the caller's job.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import ops

import lines
from augmentation import augmentation_layers, with_continental_marks
from data import (
    EXPECTED_SHAPES,
    IMAGE_SIZE,
    LINE_HEIGHT,
    NUM_CLASSES,
    Mnist,
    normalize_images,
    split_validation,
)
from model import ModelConfig, build_model, shown
from not_digits import not_digits
from outputs import read_json, write_json
from trained import reason

LOSS = "categorical_crossentropy"
STRATEGIES = ("default", "mirrored", "multiworker")
PRECISIONS = ("auto", "float32", "bfloat16")
TRAIN_IMAGES = EXPECTED_SHAPES["x_train"][0]  # MNIST's 60,000
# Upper bounds of the settings, so that none can ask for more time or memory than a run can have.
BOUNDS = {"epochs": 10_000, "batch_size": TRAIN_IMAGES, "limit": TRAIN_IMAGES}
MAX_SEED = 2**32 - 1  # NumPy's and TensorFlow's seeds are 32-bit
MAX_LR = 10.0  # Adam's useful rates are below 0.1
MAX_POSE = 2.0  # twice the ranges: rotation by 28 degrees, shifts of a fifth of the image
MAX_NOT_DIGITS = 1.0  # as many as the digits: more would teach "not a digit" more than the digits
# The CPU flags of bfloat16 arithmetic (Linux's names). Without them oneDNN emulates bfloat16,
# slower than float32.
BFLOAT16_FLAGS = {"avx512_bf16", "amx_bf16"}


@dataclass(frozen=True)
class TrainConfig:
    """How a network is fitted. Each field is a flag of train.py; its metadata holds the help."""

    epochs: int = field(default=25, metadata={"help": "passes over the training split"})
    batch_size: int = field(default=256, metadata={"help": "images per step (per replica)"})
    lr: float = field(default=2e-3, metadata={"help": "peak Adam learning rate, decayed to 0 on a cosine"})
    # What real writing varies in (augmentation.py): people do not write like MNIST's writers, and
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
            "help": "with augmentation, the random pose's ranges as a multiple of augmentation.py's "
            "(rotation 14 degrees, shear 0.3, size 12%, shift 10%)"
        },
    )
    # Outlier exposure (not_digits.py): without it a letter or a scribble is read as surely as a digit.
    not_digits: float = field(
        default=0.2,
        metadata={
            "help": "images that are not a digit (letters, symbols, scribbles, pieces and pairs of "
            "digits), as a share of the training digits, taught to read as no digit; 0 turns it off"
        },
    )
    # bfloat16 halves the bytes each multiply reads; the weights, the logits and the saved network
    # stay float32. The CNN's default (settings.py): it trains 1.4x faster, as accurately.
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


def steps_per_epoch(train_images: int, batch_size: int) -> int:
    """Batches in one pass over the training images, the last one partial."""
    return math.ceil(train_images / batch_size)


@functools.cache  # asked for by every model built (tune.py builds one per trial)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux names them (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    return frozenset(
        flag for line in text.splitlines() if line.startswith("flags") for flag in line.split()[2:]
    )


def training_precision(
    config: TrainConfig, flags: frozenset[str] | None = None, gpus: int | None = None
) -> str:
    """ "float32" or "bfloat16": what `config.precision` means on this machine. "auto" is bfloat16
    only on a CPU-only machine whose CPU has the bfloat16 instructions (`flags`)."""
    if config.precision != "auto":
        return config.precision
    gpus = len(tf.config.list_physical_devices("GPU")) if gpus is None else gpus
    flags = cpu_flags() if flags is None else flags
    return "bfloat16" if not gpus and flags & BFLOAT16_FLAGS else "float32"


def training_model(
    model_config: ModelConfig, augment: bool, precision: str = "float32", pose: float = 1.0
) -> keras.Model:
    """The network inside a training-only wrapper that augments its input when `augment`.

    Augmentation is part of training, never of the saved network: a saved network applies no
    random transforms, so every export of it gives the same answer twice. The network computes in
    `precision`; the augmentation always in float32.
    """
    if model_config.arch == "line":  # lines are varied as they are composed (lines.py)
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


def progress_mode() -> int:
    """Keras's verbosity: its progress bar on a terminal, one line per epoch in logs and CI."""
    return 1 if sys.stdout.isatty() else 2


class EpochHistory(keras.callbacks.Callback):
    """Every epoch's metrics in a JSON file, so the history survives an interruption and resume."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        self.rows: list[dict[str, float]] = []

    def on_train_begin(self, logs=None):
        self.rows = read_json(self.path) if self.path.exists() else []

    def on_epoch_end(self, epoch, logs=None):
        # `epoch` counts from the run's start, resumed or not: rows past it belong to lost work.
        self.rows = self.rows[:epoch] + [{name: float(value) for name, value in logs.items()}]
        write_json(self.path, self.rows)

    def history(self) -> dict[str, list[float]]:
        return {name: [row[name] for row in self.rows] for name in self.rows[0]}


class RunProgress(keras.callbacks.Callback):
    """Before each epoch after the first, how long the whole run has left, in a line: Keras's own
    progress counts down one epoch only. Estimated from the epochs run since the first, which
    also pays for tracing the steps."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs
        self.ends: list[float] = []  # when each epoch of this fit ended, from its start

    def on_train_begin(self, logs=None):
        self.started, self.ends = time.perf_counter(), []

    def on_epoch_end(self, epoch, logs=None):
        self.ends.append(time.perf_counter() - self.started)

    def on_epoch_begin(self, epoch, logs=None):
        ends = self.ends  # `epoch` counts the run's epochs done, a resumed run's included
        if ends:
            each = (ends[-1] - ends[0]) / (len(ends) - 1) if len(ends) > 1 else ends[0]
            print(
                f"{epoch} of {self.epochs} epochs done, about {duration((self.epochs - epoch) * each)} left"
            )


def duration(seconds: float) -> str:
    """Seconds as a person reads them: "45 s", "3 min 5 s"."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


class StopOnSignal(keras.callbacks.Callback):
    """Turns Ctrl-C or a kill into a KeyboardInterrupt at the next batch end.

    Python raises KeyboardInterrupt wherever the signal lands, and inside TensorFlow's iterator
    clean-up it can be printed and swallowed, leaving training running. Raising it from a callback
    stops `fit` reliably; a second signal stops at once.
    """

    def __init__(self):
        super().__init__()
        self.requested = False

    def request_stop(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def on_train_batch_end(self, batch, logs=None):
        if self.requested:
            raise KeyboardInterrupt

    on_test_batch_end = on_train_batch_end


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopOnSignal]:
    """While inside, Ctrl-C or SIGTERM stops training at the next batch end, even where the shell
    started us with SIGINT ignored; the caller's handlers come back afterwards."""
    stopper = StopOnSignal()
    stop_signals = (signal.SIGINT, signal.SIGTERM)
    previous_handlers = [signal.signal(stop, stopper.request_stop) for stop in stop_signals]
    try:
        yield stopper
    finally:
        for stop, handler in zip(stop_signals, previous_handlers, strict=True):
            signal.signal(stop, handler)


BACKUP_FILES = ("latest.weights.h5", "training_metadata.json")  # BackupAndRestore's, in its folder
PREVIOUS = ".bkp"  # the suffix of its copies of the epoch before (double_checkpoint)


def completed_epochs(backup: Path) -> int:
    """Epochs that Keras's BackupAndRestore has saved in `backup`: the last backup's, or the one
    before if the last cannot be read (0 if none)."""
    for suffix in ("", PREVIOUS):
        try:
            return int(read_json(backup / (BACKUP_FILES[1] + suffix))["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return 0


class CheckedBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras's BackupAndRestore, restoring from damaged backups too: a last backup that cannot be
    loaded (an empty file, a disk that filled up mid-write) gives way to the epoch before's; if that
    fails as well, a TrainingError says to start over. Keras itself falls back on OSError only."""

    def on_train_begin(self, logs=None):
        backup = Path(self.backup_dir)
        previous = [backup / (name + PREVIOUS) for name in BACKUP_FILES]
        while True:
            try:
                return super().on_train_begin(logs)
            except Exception as exc:  # whatever damaged files raise: JSON, HDF5 or variable errors
                cause = reason(exc)
            if not all(path.exists() for path in previous):
                raise TrainingError(
                    f"the backup in {backup} cannot be restored ({cause}): add --fresh to start over"
                )
            for path, name in zip(previous, BACKUP_FILES, strict=True):
                os.replace(path, backup / name)  # the copies are gone: a second failure ends it
            print(f"the last backup in {backup} is damaged ({cause}); resuming from the one before")


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
    config: TrainConfig,
    training: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray] | None,
    callbacks: list[keras.callbacks.Callback] = (),
    backup: Path | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> tuple[keras.Model, dict[str, list[float]]]:
    """Build and fit the network the configs describe; returns it (inference only) and its history."""
    model = build_for_training(model_config, config, len(training[0]), strategy)
    history = fit(model, config, *training, validation, callbacks, backup)
    return network_of(model, model_config), history


def devices(config: TrainConfig) -> dict:
    """What training runs on: the GPUs TensorFlow sees, by name, or else the CPU and its threads;
    and in which arithmetic (`training_precision`)."""
    gpus = [
        tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
        for gpu in tf.config.list_physical_devices("GPU")
    ]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "gpus": gpus,
        "cpu_threads": tf.config.threading.get_intra_op_parallelism_threads() or cores,
        "precision": training_precision(config, gpus=len(gpus)),
    }


def described_devices(found: dict) -> str:
    """`devices()` in words: "1 GPU: NVIDIA H100 80GB, float32" or "the CPU, 2 threads, bfloat16"."""
    gpus = found["gpus"]
    if gpus:
        return f"{len(gpus)} GPU{'s' if len(gpus) > 1 else ''}: {', '.join(gpus)}, {found['precision']}"
    return f"the CPU, {found['cpu_threads']} threads, {found['precision']}"


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy of that name; create it before TensorFlow does anything else."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()
