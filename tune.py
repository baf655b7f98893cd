"""Search the network's hyperparameters with KerasTuner on the validation split; write the best as a
config that train.py takes.

    python tune.py                                    # Hyperband over the dense network, sigmoid output
    python tune.py --tuner bayesian --trials 20
    python tune.py --arch cnn --max-epochs 6 --limit 20000 --out artifacts/tuning-cnn
    python train.py --config artifacts/tuning/best_config.json --out artifacts/tuned

Writes into --out: best_config.json, trials.csv and trials.md (every trial's settings and score),
trials.png, and KerasTuner's project folder search/, from which an interrupted search resumes when
the same command runs again (--fresh starts over). Several processes or machines can share one
search: a chief and workers, each running this same command with KERASTUNER_TUNER_ID,
KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT set (README).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
from pathlib import Path

import keras
import keras_tuner
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

import train
from model import ARCHS, OUTPUT_ACTIVATIONS, atomic_path, build_model, write_json

PROJECT_NAME = "search"  # KerasTuner's folder in --out
OBJECTIVE = "val_accuracy"
BAYESIAN_TRIALS = 10  # --trials for bayesian when not given; Hyperband's count follows --max-epochs


class DigitHyperModel(keras_tuner.HyperModel):
    """The search space: each point is a set of train.py settings, built and fitted as train.py does."""

    def __init__(self, args: argparse.Namespace, train_images: int, stopper: train.StopOnSignal):
        super().__init__(name=f"digits_{args.arch}")
        self.args = args
        self.train_images = train_images
        self.stopper = stopper

    def settings(self, hp: keras_tuner.HyperParameters) -> dict:
        """The train.py settings (train.CONFIG_SETTINGS) that the point `hp` stands for."""
        if self.args.arch == "cnn":
            model = {
                "filters": [hp.Choice("filters_1", [16, 32, 64], default=32),
                            hp.Choice("filters_2", [32, 64, 128], default=64)],
                "kernel_size": hp.Choice("kernel_size", [3, 5], default=3),
                "hidden": [hp.Choice("width_1", [64, 128, 256], default=128)],
            }
        else:
            layers = hp.Int("layers", 1, 3, default=2)
            model = {"hidden": [hp.Choice(f"width_{i}", [256, 512, 1024, 2048], default=2048 >> i)
                                for i in range(1, layers + 1)]}
        return {
            "arch": self.args.arch,
            **model,
            "dropout": round(hp.Float("dropout", 0.0, 0.5, step=0.1, default=0.3), 2),
            "output_activation": self.args.output_activation,
            "epochs": self.args.max_epochs,
            "batch_size": hp.Choice("batch_size", [64, 128, 256, 512], default=256),
            "lr": float(f'{hp.Float("lr", 3e-4, 1e-2, sampling="log", default=2e-3):.3g}'),
        }

    def training_args(self, hp: keras_tuner.HyperParameters) -> argparse.Namespace:
        """train.py's own reading of these settings, so a trial trains exactly what --config would."""
        return train.parse_args(train.settings_as_flags(self.settings(hp)) + ["--seed", str(self.args.seed)])

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        args = self.training_args(hp)
        keras.utils.set_random_seed(args.seed)
        model = build_model(train.config_from_args(args))
        steps = train.steps_per_epoch(self.train_images, args.batch_size)
        train.compile_for_training(model, args.lr, args.epochs * steps)
        return model

    def fit(self, hp, model, x, y, validation_data, callbacks=(), **kwargs):
        args = self.training_args(hp)
        return model.fit(
            train.training_batches(x, y, args.batch_size, args.seed),
            steps_per_epoch=train.steps_per_epoch(len(x), args.batch_size),
            shuffle=False,  # training_batches shuffles
            validation_data=validation_data,
            callbacks=[*callbacks, self.stopper],
            **kwargs,
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--arch", choices=ARCHS, default="mlp", help="the network family to search")
    parser.add_argument("--tuner", choices=("hyperband", "bayesian"), default="hyperband")
    parser.add_argument(
        "--trials", type=train.positive_int,
        help=f"most trials to run [hyperband: its whole schedule; bayesian: {BAYESIAN_TRIALS}]",
    )
    parser.add_argument(
        "--max-epochs", type=train.positive_int,
        help=f"epochs of a fully trained trial, and of best_config.json [train.py's: {train.EPOCHS_BY_ARCH}]",
    )
    parser.add_argument("--output-activation", choices=OUTPUT_ACTIVATIONS, default="sigmoid", help="kept fixed")
    parser.add_argument("--seed", type=train.non_negative_int, default=0, help="seeds the tuner, every trial and the split")
    parser.add_argument("--limit", type=train.positive_int, help="search on the first N training images")
    parser.add_argument("--val-split", type=train.fraction, default=train.VAL_SPLIT, help="share of train held out")
    parser.add_argument("--data", type=Path, help="mnist.npz or a folder of IDX files [datasets/mnist.npz]")
    parser.add_argument("--out", type=Path, default=Path("artifacts/tuning"), help="output folder")
    parser.add_argument("--fresh", action="store_true", help="discard an interrupted search in --out")
    args = parser.parse_args(argv)
    args.max_epochs = args.max_epochs or train.EPOCHS_BY_ARCH[args.arch]
    if args.val_split == 0:
        parser.error("argument --val-split: the search needs a validation split, got 0")
    return args


def role() -> str:
    """'chief' or 'worker' of a distributed search (KerasTuner's variables), else 'alone'."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "alone"
    missing = [name for name in ("KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID") if name not in os.environ]
    if missing:
        raise SystemExit(f"error: KERASTUNER_ORACLE_IP is set but {' and '.join(missing)} not: set both (README)")
    return "chief" if "chief" in os.environ["KERASTUNER_TUNER_ID"] else "worker"


def make_tuner(args: argparse.Namespace, hypermodel: DigitHyperModel) -> keras_tuner.Tuner:
    """KerasTuner's tuner, reloading the search already in --out if there is one."""
    common = dict(
        hypermodel=hypermodel, objective=OBJECTIVE, seed=args.seed + 1,  # KerasTuner draws a seed for 0
        directory=str(args.out), project_name=PROJECT_NAME, overwrite=False,
    )
    if args.tuner == "bayesian":
        return keras_tuner.BayesianOptimization(max_trials=args.trials or BAYESIAN_TRIALS, **common)
    tuner = keras_tuner.Hyperband(max_epochs=args.max_epochs, factor=3, **common)
    tuner.oracle.max_trials = args.trials  # Hyperband takes no max_trials; its oracle honours one
    return tuner


def trial_rows(tuner: keras_tuner.Tuner, hypermodel: DigitHyperModel) -> list[dict]:
    """One row per trial, in the order they ran: its score, epochs trained and settings."""
    rows = []
    for trial in sorted(tuner.oracle.trials.values(), key=lambda trial: trial.trial_id):
        settings = hypermodel.settings(trial.hyperparameters.copy())
        rows.append({
            "trial": trial.trial_id,
            "status": trial.status,
            OBJECTIVE: None if trial.score is None else round(float(trial.score), 4),
            "epochs": trial.hyperparameters.values.get("tuner/epochs", hypermodel.args.max_epochs),
            **{name: ",".join(map(str, value)) if isinstance(value, list) else value
               for name, value in settings.items() if name not in ("arch", "output_activation", "epochs")},
        })
    return rows


def write_table(rows: list[dict], folder: Path, title: str) -> None:
    """trials.csv in the order trials ran; trials.md best first."""
    with atomic_path(folder / "trials.csv") as temporary, open(temporary, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    ranked = sorted(rows, key=lambda row: -1 if row[OBJECTIVE] is None else row[OBJECTIVE], reverse=True)
    lines = [f"# {title}", "", "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join("" if value is None else str(value) for value in row.values()) + " |" for row in ranked]
    with atomic_path(folder / "trials.md") as temporary:
        temporary.write_text("\n".join(lines) + "\n")


def plot_trials(rows: list[dict], path: Path, title: str) -> None:
    """Validation accuracy of each trial in the order they ran, coloured by epochs trained."""
    scored = [row for row in rows if row[OBJECTIVE] is not None]
    number = np.array([int(row["trial"]) for row in scored])
    accuracy = np.array([row[OBJECTIVE] for row in scored])
    figure = Figure(figsize=(9, 4.5), layout="constrained")
    ax = figure.subplots()
    points = ax.scatter(number, accuracy, c=[row["epochs"] for row in scored], cmap="viridis", s=40, zorder=3)
    figure.colorbar(points, ax=ax, label="epochs trained").ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.step(number, np.maximum.accumulate(accuracy), where="post", color="grey", label="best so far")
    best = int(np.argmax(accuracy))
    ax.scatter(number[best], accuracy[best], marker="*", s=300, color="crimson", zorder=4,
               label=f"best: trial {scored[best]['trial']}, {accuracy[best]:.4f}")
    ax.set(title=title, xlabel="trial", ylabel="validation accuracy")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100)


def main(argv: list[str] | None = None) -> dict | None:
    """Run (or join, or resume) the search; return the best settings (None on a worker)."""
    args = parse_args(argv)
    this_role = role()
    project = args.out / PROJECT_NAME
    if args.fresh:
        if this_role == "worker":
            raise SystemExit("error: --fresh belongs on the chief only: workers join the chief's search")
        shutil.rmtree(project, ignore_errors=True)
    train.check_writable(args.out)
    mnist = train.load_training_data(args)
    search = {name: getattr(args, name) for name in
              ("arch", "tuner", "trials", "max_epochs", "output_activation", "seed", "limit", "val_split")}
    train.keep_settings(project / "settings.json", search, args.out)
    x_fit, y_fit, x_val, y_val = train.training_split(args, mnist)
    if this_role == "chief":
        print(f"chief: serving the search on {os.environ['KERASTUNER_ORACLE_IP']}:"
              f"{os.environ['KERASTUNER_ORACLE_PORT']} until the workers finish it")
    try:
        with train.stop_on_signals() as stopper:
            hypermodel = DigitHyperModel(args, len(x_fit), stopper)
            tuner = make_tuner(args, hypermodel)
            tuner.search(x_fit, y_fit, validation_data=(x_val, y_val), epochs=args.max_epochs,
                         verbose=train.progress_mode())
    except KeyboardInterrupt:
        print(f"\ninterrupted: the search so far is kept in {project}: run the same command again to "
              "resume it, or add --fresh to start over", file=sys.stderr)
        raise SystemExit(130)
    if this_role == "worker":
        print(f"{os.environ['KERASTUNER_TUNER_ID']}: the search is finished; the chief writes the results")
        return None

    rows = trial_rows(tuner, hypermodel)
    completed = [row for row in rows if row[OBJECTIVE] is not None]
    if not completed:
        raise SystemExit(f"error: none of the {len(rows)} trials completed: see the messages above")
    best = hypermodel.settings(tuner.get_best_hyperparameters(1)[0])
    write_json(args.out / "best_config.json", best)
    title = (f"{args.tuner} search over the {args.arch}: {len(completed)} trials on {len(x_fit):,} "
             f"images, scored on {len(x_val):,} validation images")
    write_table(rows, args.out, title)
    plot_trials(rows, args.out / "trials.png", title)
    top = max(completed, key=lambda row: row[OBJECTIVE])
    print(f"best of {len(completed)} trials: trial {top['trial']}, {OBJECTIVE} {top[OBJECTIVE]:.4f}, {best}")
    print(f"wrote best_config.json, trials.csv, trials.md and trials.png in {args.out}; retrain with\n"
          f"  python train.py --config {args.out / 'best_config.json'} --out artifacts/tuned")
    return best


if __name__ == "__main__":
    main()
