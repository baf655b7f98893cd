"""Train a digit classifier on MNIST and save it, with everything needed to trust it, in artifacts/.

    python train.py                                   # the default: dense ReLU net, sigmoid output
    python train.py --arch cnn                        # a small convolutional network
    python train.py --output-activation softmax --epochs 5 --out artifacts/softmax
    python train.py --config artifacts/tuning/best_config.json   # tune.py's best settings

Writes model.keras, run.json (config, seed, data checksums, versions, results), history.json and
training_curves.png into --out. Select settings on the validation split; evaluate.py alone touches
the test set. An interrupted run (Ctrl-C, kill, power loss) resumes from its last completed epoch
when the same command is run again; --fresh starts over. --strategy mirrored spreads each batch over
all local GPUs, --strategy multiworker over several machines (TF_CONFIG; README).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import hashlib
import json
import math
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import keras
import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from data import MNIST_SHA256, NUM_CLASSES, DataError, Mnist, load_mnist, normalize_images, split_validation
from model import (
    ARCHS,
    OUTPUT_ACTIVATIONS,
    ModelConfig,
    atomic_path,
    build_model,
    model_config,
    save_model,
    write_json,
)

MODEL_NAME = "model.keras"
BACKUP_NAME = ".backup"  # in --out: the state of an unfinished run, removed when it completes
MIN_FREE_BYTES = 200_000_000  # a model, its backup and the plots, with room to spare
# The one fitting default that depends on --arch: a CNN epoch costs several MLP epochs.
EPOCHS_BY_ARCH = {"mlp": 20, "cnn": 25}
VAL_SPLIT = 0.1  # share of the training images held out for validation
STRATEGIES = ("default", "mirrored", "multiworker")
# The settings a --config file may hold: the model's and the fitting's, as the flags spell them.
CONFIG_SETTINGS = (
    "arch", "hidden", "dropout", "output_activation", "augment", "filters", "kernel_size",
    "epochs", "batch_size", "lr", "seed", "val_split", "limit",
)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def layer_sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(positive_int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated sizes like 512,256, got {text!r}")


def fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    model = parser.add_argument_group("model (defaults depend on --arch; see model.ARCH_DEFAULTS)")
    model.add_argument("--arch", choices=ARCHS, default="mlp")
    model.add_argument("--hidden", type=layer_sizes, help="Dense widths, e.g. 512,256")
    model.add_argument("--dropout", type=fraction, help="dropout after each hidden layer")
    model.add_argument("--output-activation", choices=OUTPUT_ACTIVATIONS, default="sigmoid")
    model.add_argument(
        "--augment", action=argparse.BooleanOptionalAction, help="random shifts/rotations in training"
    )
    model.add_argument("--filters", type=layer_sizes, help="cnn: filters per convolution block, e.g. 32,64")
    model.add_argument("--kernel-size", type=positive_int, help="cnn: convolution kernel size")
    fitting = parser.add_argument_group("fitting")
    fitting.add_argument("--epochs", type=positive_int, help=f"default by --arch: {EPOCHS_BY_ARCH}")
    fitting.add_argument("--batch-size", type=positive_int, default=256)
    fitting.add_argument("--lr", type=float, default=2e-3, help="peak Adam learning rate (cosine decay)")
    fitting.add_argument("--seed", type=non_negative_int, default=0, help="seeds Python, NumPy, TensorFlow and the split")
    fitting.add_argument("--val-split", type=fraction, default=VAL_SPLIT, help="share of train held out")
    fitting.add_argument("--limit", type=positive_int, help="use only the first N training images")
    fitting.add_argument(
        "--strategy", choices=STRATEGIES, default="default",
        help="tf.distribute strategy; --batch-size is then per replica",
    )
    io = parser.add_argument_group("input/output")
    io.add_argument("--config", type=Path, help="JSON of settings, e.g. tune.py's best_config.json; flags override it")
    io.add_argument("--data", type=Path, help="mnist.npz or a folder of IDX files [datasets/mnist.npz]")
    io.add_argument("--out", type=Path, default=Path("artifacts"), help="output folder")
    io.add_argument("--fresh", action="store_true", help="discard an interrupted run's backup in --out")
    args = parser.parse_args(argv)
    if args.config:
        given = sys.argv[1:] if argv is None else list(argv)
        args = parser.parse_args(config_flags(parser, args.config) + given)  # later flags win
    args.epochs = args.epochs or EPOCHS_BY_ARCH[args.arch]
    if args.lr <= 0:
        parser.error(f"argument --lr: must be positive, got {args.lr}")
    return args


def config_flags(parser: argparse.ArgumentParser, path: Path) -> list[str]:
    """The settings in a JSON config file as command-line flags, checked like the flags themselves."""
    try:
        settings = json.loads(path.read_text())
        if not isinstance(settings, dict):
            raise ValueError("it must hold a JSON object of settings")
        return settings_as_flags(settings)
    except (OSError, ValueError) as exc:
        parser.error(f"argument --config: cannot use {path}: {exc}")


def settings_as_flags(settings: dict) -> list[str]:
    """{"hidden": [512, 256], "augment": False, ...} -> ["--hidden", "512,256", "--no-augment", ...]"""
    flags = []
    for name, value in settings.items():
        if name not in CONFIG_SETTINGS:
            raise ValueError(f"{name!r} is not one of the settings {', '.join(CONFIG_SETTINGS)}")
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else f"--no-{flag[2:]}")
        elif isinstance(value, list):
            flags += [flag, ",".join(str(item) for item in value)]
        elif value is not None:
            flags += [flag, str(value)]
    return flags


def check_writable(folder: Path) -> None:
    """Fail before training, not after it, when the output folder cannot take files."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        raise SystemExit(f"error: cannot write to {folder} ({exc.strerror}): choose another --out")
    if free < MIN_FREE_BYTES:
        raise SystemExit(
            f"error: only {free / 1e6:.0f} MB free in {folder}, {MIN_FREE_BYTES / 1e6:.0f} MB needed: "
            "free some space or choose another --out"
        )


class EpochHistory(keras.callbacks.Callback):
    """Every epoch's metrics in a JSON file, so the history survives an interruption and resume."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        self.rows: list[dict[str, float]] = []

    def on_train_begin(self, logs=None):
        self.rows = json.loads(self.path.read_text()) if self.path.exists() else []

    def on_epoch_end(self, epoch, logs=None):
        # `epoch` counts from the run's start, resumed or not: rows past it belong to lost work.
        self.rows = self.rows[:epoch] + [{name: float(value) for name, value in logs.items()}]
        write_json(self.path, self.rows)

    def history(self) -> dict[str, list[float]]:
        return {name: [row[name] for row in self.rows] for name in self.rows[0]}


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


def completed_epochs(backup: Path) -> int:
    """Epochs that Keras's BackupAndRestore has saved in `backup` (0 if none)."""
    metadata = backup / "training_metadata.json"
    return json.loads(metadata.read_text())["epoch"] if metadata.exists() else 0


def plot_training_curves(history: dict[str, list[float]], path: Path) -> None:
    """Loss and accuracy per epoch, training vs validation, as a PNG."""
    figure = Figure(figsize=(10, 4), layout="constrained")
    epochs = np.arange(1, len(history["loss"]) + 1)
    for ax, metric in zip(figure.subplots(1, 2), ("loss", "accuracy")):
        ax.plot(epochs, history[metric], marker="o", label="training")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], marker="o", label="validation")
        ax.set(title=metric, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100)


def library_versions() -> dict[str, str]:
    import matplotlib
    import sklearn
    import tensorflow

    return {
        "python": platform.python_version(),
        "tensorflow": tensorflow.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "matplotlib": matplotlib.__version__,
    }


def config_from_args(args: argparse.Namespace) -> ModelConfig:
    return model_config(
        args.arch,
        hidden=args.hidden,
        dropout=args.dropout,
        output_activation=args.output_activation,
        augment=args.augment,
        filters=args.filters,
        kernel_size=args.kernel_size,
    )


def steps_per_epoch(train_images: int, batch_size: int) -> int:
    """Batches in one pass over the training images, the last one partial."""
    return math.ceil(train_images / batch_size)


def compile_for_training(model: keras.Model, lr: float, total_steps: int) -> None:
    """The loss, optimizer and metric every training run uses: Adam from `lr` on a cosine decay."""
    model.compile(optimizer=cosine_adam(lr, total_steps), loss="categorical_crossentropy", metrics=["accuracy"])


def cosine_adam(lr: float, total_steps: int) -> keras.optimizers.Optimizer:
    return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, total_steps))


def training_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> tf.data.Dataset:
    """Endless shuffled batches of (x, y), reshuffled on every pass.

    One endless iterator for the whole fit, not Keras's one per epoch: on 2 cores re-creating the
    input pipeline cost up to 2 s of a 3-5 s MLP epoch (bench/NOTES.md).
    """
    options = tf.data.Options()
    # Across workers, each takes its share of every batch: arrays in memory have no files to split.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    # No autotuning thread: destroying the iterator at the end of fit waited on it for up to a
    # minute in about half of the runs (bench/NOTES.md); two batches ahead is all this needs.
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


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy --strategy names; create it before TensorFlow does anything else."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise SystemExit(
                "error: --strategy multiworker needs TF_CONFIG naming the workers and this one's "
                "index: see the README's scale-out section"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def task_name(strategy: tf.distribute.Strategy) -> str:
    """'worker 1' in a multi-worker cluster, '' elsewhere."""
    resolver = strategy.cluster_resolver
    return f"{resolver.task_type} {resolver.task_id}" if resolver and resolver.task_type else ""


def weights_sha256(model: keras.Model) -> str:
    """A fingerprint of the trained weights: equal on every worker of a synchronous run."""
    return hashlib.sha256(b"".join(weight.tobytes() for weight in model.get_weights())).hexdigest()


def fit(
    args: argparse.Namespace,
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    validation: tuple[np.ndarray, np.ndarray] | None,
    callbacks: list[keras.callbacks.Callback] = (),
    backup: Path | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> tuple[keras.Model, dict[str, list[float]]]:
    """Build the model `args` describe and fit it on normalized images and one-hot labels.

    With `backup`, every epoch's weights, optimizer state and metrics are saved there, a fit that
    finds them resumes after the last saved epoch, and they are removed when the fit completes.
    With a `strategy`, the model lives in its scope and --batch-size is per replica.
    """
    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(args.seed)
    batch_size = args.batch_size * strategy.num_replicas_in_sync
    steps = steps_per_epoch(len(x_fit), batch_size)
    with strategy.scope():
        model = build_model(config_from_args(args))
        compile_for_training(model, args.lr, args.epochs * steps)
    callbacks = list(callbacks)
    if backup is not None:
        epoch_history = EpochHistory(backup / "history.json")
        # double_checkpoint keeps the previous epoch's files while the next are being written.
        restore = keras.callbacks.BackupAndRestore(str(backup), double_checkpoint=True)
        callbacks = [epoch_history, restore, *callbacks]  # history first: restore deletes the folder
    history = model.fit(
        training_batches(x_fit, y_fit, batch_size, args.seed),
        steps_per_epoch=steps,
        shuffle=False,  # training_batches shuffles
        epochs=args.epochs,
        validation_data=validation,
        callbacks=callbacks,
        verbose=progress_mode(),
    ).history
    return model, epoch_history.history() if backup is not None else history


def fit_multiworker(
    args: argparse.Namespace,
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    validation: tuple[np.ndarray, np.ndarray] | None,
    strategy: tf.distribute.MultiWorkerMirroredStrategy,
    stopper: StopOnSignal,
) -> tuple[keras.Model, dict[str, list[float]]]:
    """`fit` for several workers, as tf.distribute's custom training loop.

    Keras 3.15's Model.fit fails under MultiWorkerMirroredStrategy: it reduces per-replica input
    batches and scalar logs along an axis they lack. Same model, loss, optimizer and input
    pipeline; each step's gradients are summed across workers by the optimizer, and every worker
    ends with the same weights. No backup: an interrupted multi-worker run starts over.
    """
    keras.utils.set_random_seed(args.seed)
    batch_size = args.batch_size * strategy.num_replicas_in_sync
    steps = steps_per_epoch(len(x_fit), batch_size)
    with strategy.scope():
        model = build_model(config_from_args(args))
        optimizer = cosine_adam(args.lr, args.epochs * steps)
        optimizer.build(model.trainable_variables)

    def loss_and_correct(x, y, training):
        # Sums over the batch; the scores keep the logits that the loss is computed from.
        scores = model(x, training=training)
        losses = keras.losses.categorical_crossentropy(y, scores)
        correct = tf.cast(tf.argmax(scores, axis=-1) == tf.argmax(y, axis=-1), tf.float32)
        return losses, tf.reduce_sum(correct)

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            losses, correct = loss_and_correct(x, y, training=True)
            loss = tf.nn.compute_average_loss(losses, global_batch_size=batch_size)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return tf.reduce_sum(losses), correct

    @tf.function
    def train_step(batches):
        sums = strategy.run(replica_step, args=next(batches))
        return [strategy.reduce("SUM", value, axis=None) for value in sums]

    @tf.function
    def validation_sums(x, y):
        losses, correct = loss_and_correct(x, y, training=False)
        return tf.reduce_sum(losses), correct

    batches = iter(strategy.experimental_distribute_dataset(training_batches(x_fit, y_fit, batch_size, args.seed)))
    metrics = ["loss", "accuracy"] + (["val_loss", "val_accuracy"] if validation else [])
    history = {name: [] for name in metrics}
    for epoch in range(args.epochs):
        print(f"Epoch {epoch + 1}/{args.epochs}")
        progress = keras.utils.Progbar(steps, verbose=progress_mode(), stateful_metrics=metrics)
        loss_sum = correct = 0.0
        for step in range(1, steps + 1):
            step_loss, step_correct = train_step(batches)
            loss_sum, correct = loss_sum + float(step_loss), correct + float(step_correct)
            if stopper.requested:
                raise KeyboardInterrupt
            logs = {"loss": loss_sum / (step * batch_size), "accuracy": correct / (step * batch_size)}
            if step == steps and validation:
                batches_of_validation = tf.data.Dataset.from_tensor_slices(validation).batch(1000)
                sums = np.sum([validation_sums(x, y) for x, y in batches_of_validation], axis=0)
                logs.update(val_loss=sums[0] / len(validation[0]), val_accuracy=sums[1] / len(validation[0]))
            progress.update(step, list(logs.items()))
        for name in metrics:
            history[name].append(float(logs[name]))
    return model, history


def training_split(args: argparse.Namespace, mnist: Mnist) -> tuple[np.ndarray, ...]:
    """x_fit, y_fit, x_val, y_val from the first --limit training images, split by --seed."""
    x = normalize_images(mnist.x_train[: args.limit])
    y = keras.utils.to_categorical(mnist.y_train[: args.limit], NUM_CLASSES)
    return split_validation(x, y, args.val_split, args.seed)


def keep_settings(saved: Path, settings: dict, out: Path) -> None:
    """Record `settings` in `saved`, refusing to continue unfinished work of other settings in `out`."""
    settings = json.loads(json.dumps(settings))  # tuples as JSON gives them back
    if saved.exists() and json.loads(saved.read_text()) != settings:
        raise SystemExit(
            f"error: {out} holds work done with other settings: rerun that command to "
            "resume or reuse it, add --fresh to discard it, or choose another --out"
        )
    write_json(saved, settings)


def resume_or_start(args: argparse.Namespace, backup: Path, settings: dict) -> int:
    """Epochs an interrupted run of the same settings left in `backup` (0 to start afresh)."""
    if args.fresh:
        shutil.rmtree(backup, ignore_errors=True)
    keep_settings(backup / "settings.json", settings, args.out)
    done = completed_epochs(backup)
    if done:
        print(f"resuming after epoch {done} of {args.epochs} from {backup} (--fresh starts over)")
    return done


def load_training_data(args: argparse.Namespace) -> Mnist:
    """MNIST from --data, or a one-line exit naming the problem."""
    try:
        mnist = load_mnist(args.data)
    except DataError as exc:
        raise SystemExit(f"error: {exc}")
    if args.limit and args.limit > len(mnist.x_train):
        raise SystemExit(f"error: --limit {args.limit} exceeds the {len(mnist.x_train)} training images")
    return mnist


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
        for stop, handler in zip(stop_signals, previous_handlers):
            signal.signal(stop, handler)


def main(argv: list[str] | None = None) -> tuple[keras.Model, dict]:
    args = parse_args(argv)
    check_writable(args.out)
    mnist = load_training_data(args)
    strategy = distribution_strategy(args.strategy)
    multiworker = args.strategy == "multiworker"
    is_chief = strategy.extended.should_checkpoint  # the one process that saves

    settings = {
        "model": dataclasses.asdict(config_from_args(args)),
        "training": {
            name: getattr(args, name)
            for name in ("epochs", "batch_size", "lr", "seed", "val_split", "limit", "strategy")
        },
    }
    settings["training"]["replicas"] = strategy.num_replicas_in_sync
    backup = args.out / BACKUP_NAME
    resumed_from = 0 if multiworker else resume_or_start(args, backup, settings)
    x_fit, y_fit, x_val, y_val = training_split(args, mnist)
    validation = (x_val, y_val) if len(x_val) else None
    started = time.perf_counter()
    try:
        with stop_on_signals() as stopper:
            if multiworker:
                model, history = fit_multiworker(args, x_fit, y_fit, validation, strategy, stopper)
            else:
                model, history = fit(args, x_fit, y_fit, validation, [stopper], backup, strategy)
    except KeyboardInterrupt:
        saved = "nothing saved: a multi-worker run starts over" if multiworker else (
            f"{completed_epochs(backup)} of {args.epochs} epochs saved in {backup}: run the same command "
            "again to resume, or add --fresh to start over"
        )
        print(f"\ninterrupted with {saved}", file=sys.stderr)
        raise SystemExit(130)
    wall_seconds = time.perf_counter() - started

    record = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **settings,
        "data": {"source": mnist.source, "sha256": MNIST_SHA256, "train_images": len(x_fit),
                 "validation_images": len(x_val)},
        "versions": library_versions(),
        "epochs_run": len(history["loss"]),
        "resumed_from_epoch": resumed_from,
        "wall_seconds": round(wall_seconds, 1),  # this session's, when resumed
        "final": {name: values[-1] for name, values in history.items()},
        "weights_sha256": weights_sha256(model),
    }
    final = record["final"]
    summary = f"val accuracy {final['val_accuracy']:.4f}" if validation else f"train accuracy {final['accuracy']:.4f}"
    worker = f" on {task_name(strategy)} of {strategy.num_replicas_in_sync} replicas" if multiworker else ""
    print(f"trained {args.arch}{worker} in {wall_seconds:.1f}s, {summary}; weights sha256 {record['weights_sha256'][:16]}")
    if is_chief:
        save_model(model, args.out / MODEL_NAME, record)
        write_json(args.out / "history.json", history)
        plot_training_curves(history, args.out / "training_curves.png")
        print(f"saved {args.out / MODEL_NAME}")
    return model, record


if __name__ == "__main__":
    main()
