"""Train a digit classifier on MNIST and save it, with everything needed to trust it, in artifacts/.

    python train.py                                   # the default: dense ReLU net, sigmoid output
    python train.py --arch cnn                        # a small convolutional network
    python train.py --arch line --out artifacts/line  # reads a whole number's line (CTC)
    python train.py --output-activation softmax --epochs 5 --out artifacts/softmax
    python train.py --config artifacts/tuning/best_config.json   # tune.py's best settings
    python train.py --config artifacts/run.json --out artifacts/again   # the same run again

Writes model.keras, run.json (settings, data checksums, versions, results), history.json and
training_curves.png into --out. Select settings on the validation split; evaluate.py alone touches
the test set. An interrupted run (Ctrl-C, kill, power loss) resumes from its last completed epoch
when the same command is run again; --fresh starts over. --strategy mirrored spreads each batch over
all local GPUs, --strategy multiworker over several machines (TF_CONFIG; docs/tuning.md).
"""

from __future__ import annotations

from quiet_tensorflow import import_tensorflow_quietly

import_tensorflow_quietly()

import argparse
import contextlib
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

import multiworker
import outputs
import settings
from ctc import decoded_line, line_confidence
from data import MNIST_SHA256, DataError, load_mnist
from model import probability_model, weights_sha256
from not_digits import least_loss
from settings import Settings
from trained import calibrate, calibrate_confidences
from training import (
    STRATEGIES,
    TrainingError,
    completed_epochs,
    described_devices,
    devices,
    distribution_strategy,
    stop_on_signals,
    train,
    training_split,
    validation_lines,
)

BACKUP_NAME = ".backup"  # in --out: the state of an unfinished run, removed when it completes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=outputs.HelpFormatter
    )
    settings.add_flags(parser)
    run = parser.add_argument_group("run")
    run.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="default",
        help="tf.distribute strategy; --batch-size is per replica",
    )
    run.add_argument(
        "--config",
        type=Path,
        help="JSON settings: a run.json or tune.py's best_config.json; flags win [none]",
    )
    run.add_argument("--data", type=Path, help="mnist.npz or a folder of IDX files [datasets/mnist.npz]")
    run.add_argument("--out", type=Path, default=Path("artifacts"), help="output folder")
    run.add_argument("--fresh", action="store_true", help="discard an interrupted run's backup in --out")
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The flags, with `settings`: the file's and the flags' settings over the --arch defaults."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from_file = settings.read_file(args.config) if args.config else {}
        args.settings = settings.resolve(settings.merged(from_file, settings.given_flags(args)))
    except ValueError as exc:
        parser.error(str(exc))
    if args.strategy == "multiworker" and "TF_CONFIG" not in os.environ:
        parser.error(
            "--strategy multiworker needs TF_CONFIG naming the workers and this one's index (docs/tuning.md)"
        )
    return args


# Under the training curves: why the two losses differ, and what the dashed line is.
CURVES_CAPTION = (
    "Training loss sits above validation loss: the training images are distorted (augmentation) and "
    "read with dropout on; validation reads clean digits."
)
FLOOR_CAPTION = (
    "\nA share of the training images are not digits, trained towards no digit (a uniform target: "
    "ln 10 = 2.3 at best each); dashed, the least training loss they allow."
)


def plot_training_curves(history: dict[str, list[float]], path: Path, floor: float = 0.0) -> None:
    """Loss and accuracy per epoch, training vs validation, as a PNG. The training loss cannot go
    below `floor` (the images that are not digits keep it up), shown as a line."""
    figure = Figure(figsize=(10, 4.6), layout="constrained")
    epochs = np.arange(1, len(history["loss"]) + 1)
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    if floor:
        loss_axes.axhline(floor, color="grey", linestyle="--", label="least training loss possible")
    for ax, metric in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
        ax.plot(epochs, history[metric], marker="o", label="training")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], marker="o", label="validation")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    loss_axes.set(title="loss", xlabel="epoch", ylabel="categorical cross-entropy")
    accuracy_axes.set(title="accuracy on digits", xlabel="epoch", ylabel="share of digits read right")
    figure.supxlabel(CURVES_CAPTION + (FLOOR_CAPTION if floor else ""), fontsize=8.5, color="#444")
    outputs.save_figure(figure, path)


def resume_or_start(settings: Settings, out: Path, fresh: bool, lock: dict) -> int:
    """Epochs an interrupted run of the same settings left in `out`'s backup (0 to start afresh)."""
    backup = out / BACKUP_NAME
    if fresh:
        shutil.rmtree(backup, ignore_errors=True)
    outputs.keep_settings(backup / "settings.json", lock, out)
    done = completed_epochs(backup)
    if done:
        print(
            f"resuming after epoch {done} of {settings.training.epochs} from {backup} (--fresh starts over)"
        )
    return done


def train_and_save(
    settings: Settings,
    out: Path,
    data: Path | None = None,
    strategy: str = "default",
    fresh: bool = False,
) -> tuple[keras.Model, dict]:
    """Train on MNIST (`data`: datasets/mnist.npz by default) as `settings` say, resuming an
    interrupted run of the same settings in `out` unless `fresh`; save the network, its record
    (run.json) and its curves into `out`. Returns the network and its record.

    Raises OutputError, DataError or TrainingError with a message for the user, and
    KeyboardInterrupt when stopped by Ctrl-C or SIGTERM (the epochs done stay in `out`'s backup).
    """
    outputs.check_writable(out)
    mnist = load_mnist(data)
    split = training_split(mnist, settings.training)
    distribution = distribution_strategy(strategy)  # before TensorFlow does anything else
    with contextlib.ExitStack() as held:
        if distribution.extended.should_checkpoint:  # the one process of a cluster that writes `out`
            held.enter_context(outputs.folder_lock(out))
        run = TrainingRun(settings, out, strategy, distribution)
        network, history, resumed_from = run.fit(split, fresh)
        calibration = calibrated(network, split, settings)
        record = run.record(mnist, split, network, history, resumed_from, calibration)
        report(run, record)
        if distribution.extended.should_checkpoint:  # the one process of a cluster that saves
            outputs.save_model(network, out, record)
            outputs.write_json(out / "history.json", history)
            # A line's marks have labels of their own: nothing keeps a line model's loss up.
            line = settings.model.arch == "line"
            floor = 0.0 if line else least_loss(settings.training.not_digits)
            plot_training_curves(history, out / "training_curves.png", floor)
            print(f"saved {out / outputs.MODEL_NAME}")
    return network, record


@dataclass
class TrainingRun:
    """One run of `train_and_save`: its settings, its folder and how it is spread over devices."""

    settings: Settings
    out: Path
    strategy: str
    distribution: tf.distribute.Strategy
    hardware: dict = field(init=False)  # devices(): what it trains on, in which arithmetic
    wall_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.hardware = devices(self.settings.training)

    @property
    def multiworker(self) -> bool:
        return self.strategy == "multiworker"

    def fit(self, split: tuple, fresh: bool) -> tuple[keras.Model, dict, int]:
        """The trained network, its history and the epoch it resumed from."""
        model, training = self.settings.model, self.settings.training
        x_fit, y_fit, x_val, y_val = split
        validation = (x_val, y_val) if len(x_val) else None
        backup = self.out / BACKUP_NAME
        resumed_from = 0 if self.multiworker else resume_or_start(self.settings, self.out, fresh, self.lock())
        print(f"training on {described_devices(self.hardware)}")
        started = time.perf_counter()
        with stop_on_signals() as stopper:
            # Per-epoch loss, accuracy and learning rate: `tensorboard --logdir artifacts`; written
            # by the one process of a cluster that writes `out`.
            writes = self.distribution.extended.should_checkpoint
            logs = [keras.callbacks.TensorBoard(str(self.out / outputs.LOGS_NAME))] if writes else []
            if self.multiworker:
                network, history = multiworker.train(
                    model, training, (x_fit, y_fit), validation, self.distribution, stopper, logs
                )
            else:
                network, history = train(
                    model, training, (x_fit, y_fit), validation, [stopper, *logs], backup, self.distribution
                )
        self.wall_seconds = time.perf_counter() - started
        return network, history, resumed_from

    def placement(self) -> dict:
        return {"strategy": self.strategy, "replicas": self.distribution.num_replicas_in_sync}

    def lock(self) -> dict:
        """What a backup must have been made with to be resumed: the settings, their placement and
        the arithmetic ("auto" may mean another here)."""
        return {**self.settings.as_dict(), **self.placement(), "precision": self.hardware["precision"]}

    def record(self, mnist, split, network, history, resumed_from, calibration) -> dict:
        """The run record saved beside the model (run.json)."""
        x_fit, _, x_val, _ = split
        return outputs.run_record(
            **self.settings.as_dict(),
            distribution=self.placement(),
            devices=self.hardware,
            data={
                "source": mnist.source,
                "sha256": MNIST_SHA256,
                "train_images": len(x_fit),
                "validation_images": len(x_val),
            },
            epochs_run=len(history["loss"]),
            resumed_from_epoch=resumed_from,
            wall_seconds=round(self.wall_seconds, 1),  # this session's, when resumed
            final={name: values[-1] for name, values in history.items()},
            weights_sha256=weights_sha256(network),
            calibration=calibration,
        )


def calibrated(network: keras.Model, split: tuple, settings: Settings) -> dict | None:
    """The confidence below which a reading is "not sure" (trained.calibrate), from the validation
    split (a line model's: from the validation lines); None without one."""
    _, _, x_val, y_val = split
    if not len(x_val):
        return None
    if settings.model.arch == "line":
        return calibrate_lines(network, validation_lines(settings.training, x_val, y_val))
    probabilities = probability_model(network).predict(x_val, batch_size=1000, verbose=0)
    return calibrate(probabilities, y_val.argmax(axis=1))


def calibrate_lines(network: keras.Model, batches: list[tuple]) -> dict:
    """`calibrate`'s rule on whole lines: each line's confidence (ctc.line_confidence), and whether
    its symbols are its labels, all of them and no more."""
    confidences, right = [], []
    for x, y in batches:
        for probabilities, labels in zip(np.asarray(network(x, training=False)), y, strict=True):
            symbols = decoded_line(probabilities)
            confidences.append(line_confidence(probabilities, symbols))
            right.append([symbol.symbol for symbol in symbols] == labels[labels >= 0].tolist())
    return calibrate_confidences(np.array(confidences), np.array(right), held_out="validation lines")


def report(run: TrainingRun, record: dict) -> None:
    """The run's result in a line, and its "not sure" threshold in another."""
    final, calibration = record["final"], record["calibration"]
    summary = (
        f"val accuracy {final['val_accuracy']:.4f}"
        if "val_accuracy" in final
        else f"train accuracy {final['accuracy']:.4f}"
    )
    worker = ""
    if run.multiworker:
        resolver = run.distribution.cluster_resolver
        worker = (
            f" on {resolver.task_type} {resolver.task_id} of {run.distribution.num_replicas_in_sync} replicas"
        )
    fingerprint = record["weights_sha256"][:16]
    arch = run.settings.model.arch
    print(f"trained {arch}{worker} in {run.wall_seconds:.1f}s, {summary}; weights sha256 {fingerprint}")
    if calibration:
        print(
            f"not sure below {calibration['threshold']:.1%} confidence: "
            f"{calibration['flagged_share']:.1%} of the validation {'lines' if arch == 'line' else 'digits'}"
        )


def main(argv: list[str] | None = None) -> tuple[keras.Model, dict]:
    args = parse_args(argv)
    try:
        return train_and_save(args.settings, args.out, args.data, args.strategy, args.fresh)
    except (outputs.OutputError, DataError, TrainingError) as exc:
        raise SystemExit(f"error: {exc}") from None
    except KeyboardInterrupt:
        backup = args.out / BACKUP_NAME
        saved = (
            "nothing saved: a multi-worker run starts over"
            if args.strategy == "multiworker"
            else (
                f"{completed_epochs(backup)} of {args.settings.training.epochs} epochs saved in {backup}: "
                "run the same command again to resume, or add --fresh to start over"
            )
        )
        print(f"\ninterrupted with {saved}", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
