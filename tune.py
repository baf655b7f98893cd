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
KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT set (docs/tuning.md).
"""

from __future__ import annotations

from quiet_tensorflow import import_tensorflow_quietly

import_tensorflow_quietly()

import argparse
import contextlib
import csv
import dataclasses
import math
import numbers
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import keras
import keras_tuner
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

import outputs
import settings
from data import DataError, load_mnist
from settings import Settings
from training import (
    StopOnSignal,
    TrainingError,
    build_for_training,
    fit,
    progress_mode,
    stop_on_signals,
    training_split,
)

PROJECT_NAME = "search"  # KerasTuner's folder in --out
OBJECTIVE = "val_accuracy"
BAYESIAN_TRIALS = 10  # --trials for bayesian when not given; Hyperband's count follows --max-epochs
# The settings a trial chooses; every other one is fixed for the search (and can be given as a flag).
SEARCHED = ("filters", "kernel_size", "convolutions", "hidden", "dropout", "batch_size", "lr")
CNN_ONLY = ("filters", "kernel_size", "convolutions")
REFUSED = "refused: "  # the start of the message of a trial whose report was refused


@dataclass(frozen=True)
class Search:
    """A search: the settings every trial starts from, the tuner and how many trials it may run."""

    base: Settings
    tuner: str = "hyperband"  # or "bayesian"
    trials: int | None = None  # hyperband: its whole schedule; bayesian: BAYESIAN_TRIALS

    def as_dict(self) -> dict:
        return {"base": self.base.as_dict(), "tuner": self.tuner, "trials": self.trials}


class DigitHyperModel(keras_tuner.HyperModel):
    """The search space around `base`: each point is a `Settings`, built and fitted by training.py.

    The space's default point is `base` itself, so the first trial of a search is train.py's run.
    """

    def __init__(self, base: Settings, train_images: int, stopper: StopOnSignal):
        super().__init__(name=f"digits_{base.model.arch}")
        self.base = base
        self.train_images = train_images
        self.stopper = stopper

    def settings(self, hp: keras_tuner.HyperParameters) -> Settings:
        """The settings that the point `hp` stands for."""
        model, training = self.base.model, self.base.training
        if model.arch == "cnn":
            chosen = {
                "filters": (
                    hp.Choice("filters_1", [16, 32, 64], default=model.filters[0]),
                    hp.Choice("filters_2", [32, 64, 128], default=model.filters[1]),
                ),
                "kernel_size": hp.Choice("kernel_size", [3, 5], default=model.kernel_size),
                "convolutions": hp.Int("convolutions", 1, 2, default=model.convolutions),
                "hidden": (hp.Choice("width_1", [64, 128, 256], default=model.hidden[0]),),
            }
        else:
            layers = hp.Int("layers", 1, 3, default=len(model.hidden))
            chosen = {
                "hidden": tuple(
                    hp.Choice(
                        f"width_{i}",
                        [256, 512, 1024, 2048],
                        default=model.hidden[min(i, len(model.hidden)) - 1],
                    )
                    for i in range(1, layers + 1)
                )
            }
        dropout = hp.Float("dropout", 0.0, 0.5, step=0.1, default=model.dropout)
        return Settings(
            dataclasses.replace(model, **chosen, dropout=round(dropout, 2)),
            dataclasses.replace(
                training,
                batch_size=hp.Choice("batch_size", [64, 128, 256, 512], default=training.batch_size),
                lr=float(f"{hp.Float('lr', 3e-4, 1e-2, sampling='log', default=training.lr):.3g}"),
            ),
        )

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        point = self.settings(hp)
        return build_for_training(point.model, point.training, self.train_images)

    def fit(
        self, hp, model, x, y, validation_data=None, callbacks=(), epochs=None, initial_epoch=0, verbose=None
    ):
        fit(
            model,
            self.settings(hp).training,
            x,
            y,
            validation_data,
            [*callbacks, self.stopper],
            epochs=epochs,
            initial_epoch=initial_epoch,
            verbose=verbose,
        )
        return model.history  # KerasTuner scores a History


def inside(declared: keras_tuner.engine.hyperparameters.HyperParameter, value) -> bool:
    """Whether `value` is one that the hyperparameter `declared` can take."""
    if isinstance(declared, keras_tuner.engine.hyperparameters.Choice):
        return value in declared.values
    return (  # Int or Float
        isinstance(value, numbers.Real)
        and math.isfinite(value)
        and declared.min_value <= value <= declared.max_value
    )


def first_outside(declared: list, values: dict) -> str | None:
    """The first of `values` that its hyperparameter in `declared` cannot take (None: none)."""
    for hyperparameter in declared:
        name = hyperparameter.name
        if name in values and not inside(hyperparameter, values[name]):
            return f"{name} = {values[name]!r}"
    return None


def outside_space(
    hypermodel: DigitHyperModel, space: keras_tuner.HyperParameters, values: dict
) -> str | None:
    """What in a reported point lies outside the search space (None: all inside). Values are first
    checked against the `space` the oracle holds (so no value is used before it is checked), then
    read through the hypermodel, which declares the choices or range of any it reads."""
    point = keras_tuner.HyperParameters()
    point.values = {name: value for name, value in values.items() if not name.startswith("tuner/")}
    problem = first_outside(space.space, point.values)
    if problem:
        return problem
    try:
        hypermodel.settings(point)  # declares the space, keeping the reported values
    except (ValueError, TypeError) as exc:
        return str(exc)
    return first_outside(point.space, point.values)


class CheckedOracle:
    """The search's oracle, refusing reports from outside the search. A chief's oracle answers
    anyone who reaches its port (KerasTuner's gRPC has neither authentication nor encryption), so
    a trial ended with settings outside the space is kept with the settings it was given and
    marked FAILED, and metrics that are not finite (accuracies: not in [0, 1]) are refused.

    KerasTuner ends a search after a few failed trials in a row; refused reports are someone
    else's doing, so here only the search's own failures count towards that."""

    def __init__(self, oracle: keras_tuner.Oracle, hypermodel: DigitHyperModel):
        self.oracle = oracle
        self.hypermodel = hypermodel
        self.max_failures = oracle.max_consecutive_failed_trials
        oracle.max_consecutive_failed_trials = None  # counted in end_trial instead

    def __getattr__(self, name):
        return getattr(self.oracle, name)

    def update_trial(self, trial_id, metrics, step=0):
        for name, value in metrics.items():
            finite = isinstance(value, numbers.Real) and math.isfinite(value)
            if not finite or (name.endswith("accuracy") and not 0 <= value <= 1):
                raise ValueError(f"refused trial {trial_id}'s {name} = {value!r}")
        return self.oracle.update_trial(trial_id, metrics, step=step)

    def end_trial(self, trial):
        problem = outside_space(self.hypermodel, self.oracle.get_space(), trial.hyperparameters.values)
        if problem:
            print(
                f"refused trial {trial.trial_id} as reported: {problem} is outside the search",
                file=sys.stderr,
            )
            trial.hyperparameters = self.oracle.get_trial(trial.trial_id).hyperparameters
            trial.status, trial.message = keras_tuner.engine.trial.TrialStatus.FAILED, f"{REFUSED}{problem}"
        ended = self.oracle.end_trial(trial)
        self.check_failures()
        return ended

    def check_failures(self) -> None:
        """KerasTuner's end of a search after `max_failures` failed trials in a row, counting only
        the trials that failed of themselves, not those refused."""
        in_a_row = 0
        for trial_id in self.oracle.end_order:
            ended = self.oracle.trials[trial_id]
            if (ended.message or "").startswith(REFUSED):
                continue
            in_a_row = in_a_row + 1 if ended.status == keras_tuner.engine.trial.TrialStatus.FAILED else 0
            if self.max_failures is not None and in_a_row >= self.max_failures:
                raise RuntimeError(f"{in_a_row} trials failed in a row: {ended.message}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=outputs.HelpFormatter
    )
    settings.add_flags(parser, exclude=SEARCHED + ("epochs",))
    search = parser.add_argument_group("search")
    search.add_argument(
        "--tuner",
        choices=("hyperband", "bayesian"),
        default="hyperband",
        help="Hyperband trains many settings briefly and the best longer; Bayesian fits each fully",
    )
    search.add_argument(
        "--trials",
        type=int,
        help=f"most trials to run [hyperband: its whole schedule; bayesian: {BAYESIAN_TRIALS}]",
    )
    search.add_argument(
        "--max-epochs",
        type=int,
        help="epochs of a fully trained trial, and of best_config.json [train.py's --epochs]",
    )
    search.add_argument("--data", type=Path, help="mnist.npz or a folder of IDX files [datasets/mnist.npz]")
    search.add_argument("--out", type=Path, default=Path("artifacts/tuning"), help="output folder")
    search.add_argument("--fresh", action="store_true", help="discard an interrupted search in --out")
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The flags, with `search`: the search they describe."""
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = settings.given_flags(args)
    if args.max_epochs is not None:
        overrides["training"]["epochs"] = args.max_epochs
    try:
        base = settings.resolve(overrides)
    except ValueError as exc:
        parser.error(str(exc))
    if args.trials is not None and args.trials < 1:
        parser.error(f"trials must be a positive integer, got {args.trials}")
    if base.training.val_split == 0:
        parser.error("the search needs a validation split: val_split must be above 0")
    args.search = Search(base, args.tuner, args.trials)
    return args


def role() -> str:
    """'chief' or 'worker' of a distributed search (KerasTuner's variables), else 'alone'."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "alone"
    missing = [name for name in ("KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID") if name not in os.environ]
    if missing:
        raise TrainingError(
            f"KERASTUNER_ORACLE_IP is set but {' and '.join(missing)} not: set both (docs/tuning.md)"
        )
    return "chief" if "chief" in os.environ["KERASTUNER_TUNER_ID"] else "worker"


def make_tuner(search: Search, out: Path, hypermodel: DigitHyperModel) -> keras_tuner.Tuner:
    """KerasTuner's tuner, reloading the search already in `out` if there is one."""
    common = dict(
        hypermodel=hypermodel,
        objective=OBJECTIVE,
        seed=search.base.training.seed + 1,  # KerasTuner draws a seed for 0
        directory=str(out),
        project_name=PROJECT_NAME,
        overwrite=False,
    )
    if search.tuner == "bayesian":
        tuner = keras_tuner.BayesianOptimization(max_trials=search.trials or BAYESIAN_TRIALS, **common)
    else:
        tuner = keras_tuner.Hyperband(max_epochs=search.base.training.epochs, factor=3, **common)
        tuner.oracle.max_trials = search.trials  # Hyperband takes no max_trials; its oracle honours one
    if role() != "worker":  # a worker's oracle is a client of the chief's
        tuner.oracle = CheckedOracle(tuner.oracle, hypermodel)
    return tuner


def trial_rows(tuner: keras_tuner.Tuner, hypermodel: DigitHyperModel) -> list[dict]:
    """One row per trial, in the order they ran: its score, epochs trained and searched settings."""
    columns = [name for name in SEARCHED if hypermodel.base.model.arch == "cnn" or name not in CNN_ONLY]
    rows = []
    for trial in sorted(tuner.oracle.trials.values(), key=lambda trial: trial.trial_id):
        point = hypermodel.settings(trial.hyperparameters.copy())
        chosen = {**dataclasses.asdict(point.model), **dataclasses.asdict(point.training)}
        rows.append(
            {
                "trial": trial.trial_id,
                "status": trial.status,
                OBJECTIVE: None if trial.score is None else round(float(trial.score), 4),
                "epochs": trial.hyperparameters.values.get("tuner/epochs", point.training.epochs),
                **{name: settings.shown_value(chosen[name]) for name in columns},
            }
        )
    return rows


def write_table(rows: list[dict], folder: Path, title: str) -> None:
    """trials.csv in the order trials ran; trials.md best first."""
    with outputs.atomic_path(folder / "trials.csv") as temporary, open(temporary, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    ranked = sorted(rows, key=lambda row: -1 if row[OBJECTIVE] is None else row[OBJECTIVE], reverse=True)
    lines = [f"# {title}", "", "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += [
        "| " + " | ".join("" if value is None else str(value) for value in row.values()) + " |"
        for row in ranked
    ]
    with outputs.atomic_path(folder / "trials.md") as temporary:
        temporary.write_text("\n".join(lines) + "\n")


def plot_trials(rows: list[dict], path: Path, title: str) -> None:
    """Validation accuracy of each trial in the order they ran, coloured by epochs trained."""
    scored = [row for row in rows if row[OBJECTIVE] is not None]
    number = np.array([int(row["trial"]) for row in scored])
    accuracy = np.array([row[OBJECTIVE] for row in scored])
    figure = Figure(figsize=(9, 4.5), layout="constrained")
    ax = figure.subplots()
    points = ax.scatter(number, accuracy, c=[row["epochs"] for row in scored], cmap="viridis", s=40, zorder=3)
    figure.colorbar(points, ax=ax, label="epochs trained").ax.yaxis.set_major_locator(
        MaxNLocator(integer=True)
    )
    ax.step(number, np.maximum.accumulate(accuracy), where="post", color="grey", label="best so far")
    best = int(np.argmax(accuracy))
    ax.scatter(
        number[best],
        accuracy[best],
        marker="*",
        s=300,
        color="crimson",
        zorder=4,
        label=f"best: trial {scored[best]['trial']}, {accuracy[best]:.4f}",
    )
    ax.set(title=title, xlabel="trial", ylabel="validation accuracy")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    outputs.save_figure(figure, path)


def main(argv: list[str] | None = None) -> dict | None:
    """Run (or join, or resume) the search; return the best settings (None on a worker)."""
    args = parse_args(argv)
    try:
        return run_search(args.search, args.out, args.data, args.fresh)
    except (outputs.OutputError, DataError, TrainingError) as exc:
        raise SystemExit(f"error: {exc}") from None
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: the search so far is kept in {args.out / PROJECT_NAME}: run the same command "
            "again to resume it, or add --fresh to start over",
            file=sys.stderr,
        )
        raise SystemExit(130) from None


def run_search(search: Search, out: Path, data: Path | None = None, fresh: bool = False) -> dict | None:
    """Run (or join, or resume) `search` on MNIST (`data`: datasets/mnist.npz by default) in `out`;
    on the chief (or alone) write its results there and return the best settings (None on a
    worker). Raises OutputError, DataError or TrainingError with a message for the user, and
    KeyboardInterrupt when stopped (the search so far stays in `out`)."""
    this_role = role()
    outputs.check_writable(out)  # every process writes its trials there
    with contextlib.ExitStack() as held:
        if this_role != "worker":  # the one process of a search that writes the results
            held.enter_context(outputs.folder_lock(out))
        split = prepared(search, out, data, fresh, this_role)
        if this_role == "chief":
            print(
                f"chief: serving the search on {os.environ['KERASTUNER_ORACLE_IP']}:"
                f"{os.environ['KERASTUNER_ORACLE_PORT']} until the workers finish it"
            )
        tuner, hypermodel = searched(search, out, split)
        if this_role == "worker":
            print(
                f"{os.environ['KERASTUNER_TUNER_ID']}: the search is finished; the chief writes the results"
            )
            return None
        return write_results(search, out, tuner, hypermodel, split)


def prepared(search: Search, out: Path, data: Path | None, fresh: bool, this_role: str) -> tuple:
    """The training split the search scores on, once `out` is ready for it: started afresh if
    `fresh`, else holding only a search of the same settings."""
    project = out / PROJECT_NAME
    if fresh:
        if this_role == "worker":
            raise outputs.OutputError("--fresh belongs on the chief only: workers join the chief's search")
        shutil.rmtree(project, ignore_errors=True)
    mnist = load_mnist(data)
    outputs.keep_settings(project / "settings.json", search.as_dict(), out)
    return training_split(mnist, search.base.training)


def searched(search: Search, out: Path, split: tuple) -> tuple[keras_tuner.Tuner, DigitHyperModel]:
    """KerasTuner's search run to its end (this process's share of it), and its hypermodel."""
    x_fit, y_fit, x_val, y_val = split
    with stop_on_signals() as stopper:
        hypermodel = DigitHyperModel(search.base, len(x_fit), stopper)
        tuner = make_tuner(search, out, hypermodel)
        tuner.search(
            x_fit,
            y_fit,
            validation_data=(x_val, y_val),
            epochs=search.base.training.epochs,
            # KerasTuner gives each trial its own folder of logs under this one.
            callbacks=[keras.callbacks.TensorBoard(str(out / outputs.LOGS_NAME))],
            verbose=progress_mode(),
        )
    return tuner, hypermodel


def write_results(
    search: Search, out: Path, tuner: keras_tuner.Tuner, hypermodel: DigitHyperModel, split: tuple
) -> dict:
    """best_config.json, the trials' table and plot in `out`; returns the best settings."""
    x_fit, _, x_val, _ = split
    rows = trial_rows(tuner, hypermodel)
    completed = [row for row in rows if row[OBJECTIVE] is not None]
    if not completed:
        raise TrainingError(f"none of the {len(rows)} trials completed: see the messages above")
    best = hypermodel.settings(tuner.get_best_hyperparameters(1)[0]).as_dict()
    outputs.write_json(out / "best_config.json", best)
    title = (
        f"{search.tuner} search over the {search.base.model.arch}: {len(completed)} trials on "
        f"{len(x_fit):,} images, scored on {len(x_val):,} validation images"
    )
    write_table(rows, out, title)
    plot_trials(rows, out / "trials.png", title)
    top = max(completed, key=lambda row: row[OBJECTIVE])
    print(f"best of {len(completed)} trials: trial {top['trial']}, {OBJECTIVE} {top[OBJECTIVE]:.4f}, {best}")
    print(
        f"wrote best_config.json, trials.csv, trials.md and trials.png in {out}; retrain with\n"
        f"  python train.py --config {out / 'best_config.json'} --out artifacts/tuned"
    )
    return best


if __name__ == "__main__":
    main()
