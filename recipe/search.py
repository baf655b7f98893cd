"""The hyperparameter search's space and its oracle's checks, for tune.py: each point of the space
is a `Settings`, built and fitted by the recipe; reports from outside the space are refused.

    from recipe.search import CheckedOracle, DigitHyperModel, Search
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import sys
from dataclasses import dataclass

import keras
import keras_tuner

from recipe.callbacks import StopOnSignal
from recipe.fit import build_for_training, fit
from recipe.settings import Settings

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
    """The search space around `base`: each point is a `Settings`, built and fitted by recipe/fit.py.

    The space's default point is `base` itself, so the first trial of a search is train.py's run.
    """

    def __init__(self, base: Settings, train_images: int, stopper: StopOnSignal):
        super().__init__(name=f"digits_{base.model.arch}")
        self.base = base
        self.train_images = train_images
        self.stopper = stopper

    def settings(self, hp: keras_tuner.HyperParameters) -> Settings:
        """The settings that the point `hp` stands for."""
        model_config, train_config = self.base.model, self.base.training
        if model_config.arch == "cnn":
            chosen = {
                "filters": (
                    hp.Choice("filters_1", [16, 32, 64], default=model_config.filters[0]),
                    hp.Choice("filters_2", [32, 64, 128], default=model_config.filters[1]),
                ),
                "kernel_size": hp.Choice("kernel_size", [3, 5], default=model_config.kernel_size),
                "convolutions": hp.Int("convolutions", 1, 2, default=model_config.convolutions),
                "hidden": (hp.Choice("width_1", [64, 128, 256], default=model_config.hidden[0]),),
            }
        else:
            layers = hp.Int("layers", 1, 3, default=len(model_config.hidden))
            chosen = {
                "hidden": tuple(
                    hp.Choice(
                        f"width_{i}",
                        [256, 512, 1024, 2048],
                        default=model_config.hidden[min(i, len(model_config.hidden)) - 1],
                    )
                    for i in range(1, layers + 1)
                )
            }
        dropout = hp.Float("dropout", 0.0, 0.5, step=0.1, default=model_config.dropout)
        return Settings(
            dataclasses.replace(model_config, **chosen, dropout=round(dropout, 2)),
            dataclasses.replace(
                train_config,
                batch_size=hp.Choice("batch_size", [64, 128, 256, 512], default=train_config.batch_size),
                lr=float(f"{hp.Float('lr', 3e-4, 1e-2, sampling='log', default=train_config.lr):.3g}"),
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
