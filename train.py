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

from ground.quiet_tensorflow import import_tensorflow_quietly

import_tensorflow_quietly()

import argparse
import contextlib
import os
import sys
from pathlib import Path

import keras
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from data import DataError, load_mnist
from ground import outputs
from recipe import settings
from recipe.callbacks import completed_epochs
from recipe.config import STRATEGIES, TrainingError, training_split
from recipe.devices import distribution_strategy
from recipe.not_digits import least_loss
from recipe.run import BACKUP_NAME, TrainingRun, calibrated
from recipe.settings import Settings


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
    outputs.add_folder_flags(run, Path("artifacts"), fresh="an interrupted run's backup")
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
    run = TrainingRun(settings, out, strategy, distribution)
    with contextlib.ExitStack() as held:
        if run.writes:
            held.enter_context(outputs.folder_lock(out))
        network, history, resumed_from = run.fit(split, fresh)
        calibration = calibrated(network, split, settings)
        record = run.record(mnist, split, network, history, resumed_from, calibration)
        report(run, record)
        if run.writes:
            outputs.save_model(network, out, record)
            outputs.write_json(out / "history.json", history)
            # A line's marks have labels of their own: nothing keeps a line model's loss up.
            line = settings.model.arch == "line"
            floor = 0.0 if line else least_loss(settings.training.not_digits)
            plot_training_curves(history, out / "training_curves.png", floor)
            print(f"saved {out / outputs.MODEL_NAME}")
    return network, record


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
