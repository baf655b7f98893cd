"""Train a digit classifier on MNIST and save it, with everything needed to trust it, in artifacts/.

    python train.py                                   # the default: dense ReLU net, sigmoid output
    python train.py --arch cnn                        # a small convolutional network
    python train.py --output-activation softmax --epochs 5 --out artifacts/softmax
    python train.py --config artifacts/tuning/best_config.json   # tune.py's best settings
    python train.py --config artifacts/run.json --out artifacts/again   # the same run again

Writes model.keras, run.json (settings, data checksums, versions, results), history.json and
training_curves.png into --out. Select settings on the validation split; evaluate.py alone touches
the test set. An interrupted run (Ctrl-C, kill, power loss) resumes from its last completed epoch
when the same command is run again; --fresh starts over. --strategy mirrored spreads each batch over
all local GPUs, --strategy multiworker over several machines (TF_CONFIG; README).
"""

from __future__ import annotations

from startup import import_tensorflow_quietly

import_tensorflow_quietly()

import argparse
import contextlib
import os
import shutil
import sys
import time
from pathlib import Path

import keras
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

import multiworker
import outputs
import settings
from data import MNIST_SHA256, DataError, Mnist, load_mnist
from model import probability_model, weights_sha256
from reading import calibrate
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
)

BACKUP_NAME = ".backup"  # in --out: the state of an unfinished run, removed when it completes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The flags, with `settings`: the file's and the flags' settings over the --arch defaults."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
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
        "--config", type=Path, help="JSON settings: a run.json or tune.py's best_config.json; flags win"
    )
    run.add_argument("--data", type=Path, help="mnist.npz or a folder of IDX files [datasets/mnist.npz]")
    run.add_argument("--out", type=Path, default=Path("artifacts"), help="output folder")
    run.add_argument("--fresh", action="store_true", help="discard an interrupted run's backup in --out")
    args = parser.parse_args(argv)
    try:
        from_file = settings.read_file(args.config) if args.config else {}
        args.settings = settings.resolve(settings.merged(from_file, settings.given_flags(args)))
    except ValueError as exc:
        parser.error(str(exc))
    if args.strategy == "multiworker" and "TF_CONFIG" not in os.environ:
        parser.error(
            "--strategy multiworker needs TF_CONFIG naming the workers and this one's index (README)"
        )
    return args


def plot_training_curves(history: dict[str, list[float]], path: Path) -> None:
    """Loss and accuracy per epoch, training vs validation, as a PNG."""
    figure = Figure(figsize=(10, 4), layout="constrained")
    epochs = np.arange(1, len(history["loss"]) + 1)
    for ax, metric in zip(figure.subplots(1, 2), ("loss", "accuracy"), strict=True):
        ax.plot(epochs, history[metric], marker="o", label="training")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], marker="o", label="validation")
        ax.set(title=metric, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    outputs.save_figure(figure, path)


def resume_or_start(args: argparse.Namespace, backup: Path, lock: dict) -> int:
    """Epochs an interrupted run of the same settings left in `backup` (0 to start afresh)."""
    if args.fresh:
        shutil.rmtree(backup, ignore_errors=True)
    outputs.keep_settings(backup / "settings.json", lock, args.out)
    done = completed_epochs(backup)
    if done:
        epochs = args.settings.training.epochs
        print(f"resuming after epoch {done} of {epochs} from {backup} (--fresh starts over)")
    return done


def main(argv: list[str] | None = None) -> tuple[keras.Model, dict]:
    args = parse_args(argv)
    try:
        outputs.check_writable(args.out)
        mnist = load_mnist(args.data)
        split = training_split(mnist, args.settings.training)
    except (outputs.OutputError, DataError, TrainingError) as exc:
        raise SystemExit(f"error: {exc}") from None
    strategy = distribution_strategy(args.strategy)
    with contextlib.ExitStack() as held:
        if strategy.extended.should_checkpoint:  # the one process of a cluster that writes --out
            try:
                held.enter_context(outputs.folder_lock(args.out))
            except outputs.OutputError as exc:
                raise SystemExit(f"error: {exc}") from None
        return train_and_save(args, mnist, split, strategy)


def train_and_save(
    args: argparse.Namespace, mnist: Mnist, split: tuple, strategy
) -> tuple[keras.Model, dict]:
    """Train (or resume) as the flags say, then save the model, its record and its curves."""
    run = args.settings
    x_fit, y_fit, x_val, y_val = split
    multiworker_run = args.strategy == "multiworker"
    distribution = {"strategy": args.strategy, "replicas": strategy.num_replicas_in_sync}
    backup = args.out / BACKUP_NAME
    hardware = devices(run.training)
    # A backup resumes only in the arithmetic it was trained in: "auto" may mean another here.
    lock = {**run.as_dict(), **distribution, "precision": hardware["precision"]}
    try:
        resumed_from = 0 if multiworker_run else resume_or_start(args, backup, lock)
    except outputs.OutputError as exc:
        raise SystemExit(f"error: {exc}") from None
    validation = (x_val, y_val) if len(x_val) else None
    print(f"training on {described_devices(hardware)}")
    started = time.perf_counter()
    try:
        with stop_on_signals() as stopper:
            # Per-epoch loss, accuracy and learning rate: `tensorboard --logdir artifacts`; written
            # by the one process of a cluster that writes --out.
            writes = strategy.extended.should_checkpoint
            logs = [keras.callbacks.TensorBoard(str(args.out / outputs.LOGS_NAME))] if writes else []
            if multiworker_run:
                network, history = multiworker.train(
                    run.model, run.training, (x_fit, y_fit), validation, strategy, stopper, logs
                )
            else:
                network, history = train(
                    run.model, run.training, (x_fit, y_fit), validation, [stopper, *logs], backup, strategy
                )
    except KeyboardInterrupt:
        saved = (
            "nothing saved: a multi-worker run starts over"
            if multiworker_run
            else (
                f"{completed_epochs(backup)} of {run.training.epochs} epochs saved in {backup}: run the same "
                "command again to resume, or add --fresh to start over"
            )
        )
        print(f"\ninterrupted with {saved}", file=sys.stderr)
        raise SystemExit(130) from None
    except TrainingError as exc:
        raise SystemExit(f"error: {exc}") from None
    wall_seconds = time.perf_counter() - started
    calibration = None
    if validation:  # the confidence below which a reading is "not sure" (reading.py)
        probabilities = probability_model(network).predict(x_val, batch_size=1000, verbose=0)
        calibration = calibrate(probabilities, y_val.argmax(axis=1))

    record = outputs.run_record(
        **run.as_dict(),
        distribution=distribution,
        devices=hardware,
        data={
            "source": mnist.source,
            "sha256": MNIST_SHA256,
            "train_images": len(x_fit),
            "validation_images": len(x_val),
        },
        epochs_run=len(history["loss"]),
        resumed_from_epoch=resumed_from,
        wall_seconds=round(wall_seconds, 1),  # this session's, when resumed
        final={name: values[-1] for name, values in history.items()},
        weights_sha256=weights_sha256(network),
        calibration=calibration,
    )
    final = record["final"]
    summary = (
        f"val accuracy {final['val_accuracy']:.4f}"
        if validation
        else f"train accuracy {final['accuracy']:.4f}"
    )
    resolver = strategy.cluster_resolver
    worker = (
        f" on {resolver.task_type} {resolver.task_id} of {strategy.num_replicas_in_sync} replicas"
        if (multiworker_run)
        else ""
    )
    fingerprint = record["weights_sha256"][:16]
    print(f"trained {run.model.arch}{worker} in {wall_seconds:.1f}s, {summary}; weights sha256 {fingerprint}")
    if calibration:
        print(
            f"not sure below {calibration['threshold']:.1%} confidence: "
            f"{calibration['flagged_share']:.1%} of the validation digits"
        )
    if strategy.extended.should_checkpoint:  # the one process of a cluster that saves
        outputs.save_model(network, args.out, record)
        outputs.write_json(args.out / "history.json", history)
        plot_training_curves(history, args.out / "training_curves.png")
        print(f"saved {args.out / outputs.MODEL_NAME}")
    return network, record


if __name__ == "__main__":
    main()
