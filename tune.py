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

from ground.quiet_tensorflow import import_tensorflow_quietly

import_tensorflow_quietly()

import argparse
import contextlib
import csv
import dataclasses
import os
import shutil
import sys
from pathlib import Path

import keras
import keras_tuner
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from data import DataError, load_mnist
from ground import outputs
from recipe import settings
from recipe.callbacks import progress_mode, stop_on_signals
from recipe.config import TrainingError, training_split
from recipe.search import CNN_ONLY, SEARCHED, CheckedOracle, DigitHyperModel, Search

PROJECT_NAME = "search"  # KerasTuner's folder in --out
OBJECTIVE = "val_accuracy"
BAYESIAN_TRIALS = 10  # --trials for bayesian when not given; Hyperband's count follows --max-epochs


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
    outputs.add_folder_flags(search, Path("artifacts/tuning"), fresh="an interrupted search")
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
