"""One run of train.py: the settings fitted on the devices chosen, resumed where an interrupted run
of the same settings stopped, calibrated on the validation split, and described in a run record.

    from recipe.run import TrainingRun, calibrated
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from data import MNIST_SHA256
from ground import outputs
from ground.ctc import decoded_line, line_confidence
from ground.saved_network import calibrate, calibrate_confidences
from model import probability_model, weights_sha256
from recipe import multiworker
from recipe.callbacks import completed_epochs, stop_on_signals
from recipe.devices import described_devices, devices
from recipe.fit import train, validation_lines
from recipe.settings import Settings

BACKUP_NAME = ".backup"  # in --out: the state of an unfinished run, removed when it completes


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


@dataclass
class TrainingRun:
    """One run of `train_and_save`: its settings, its folder and how it is spread over devices."""

    settings: Settings
    out: Path
    strategy: str
    distribution: tf.distribute.Strategy
    hardware: dict = field(init=False)  # devices(): what it trains on, in which arithmetic
    writes: bool = field(init=False)  # whether this process writes `out` (one of a cluster does)
    wall_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.hardware = devices(self.settings.training)
        self.writes = self.distribution.extended.should_checkpoint

    @property
    def multiworker(self) -> bool:
        return self.strategy == "multiworker"

    def fit(self, split: tuple, fresh: bool) -> tuple[keras.Model, dict, int]:
        """The trained network, its history and the epoch it resumed from."""
        x_fit, y_fit, x_val, y_val = split
        validation_data = (x_val, y_val) if len(x_val) else None
        resumed_from = 0 if self.multiworker else resume_or_start(self.settings, self.out, fresh, self.lock())
        print(f"training on {described_devices(self.hardware)}")
        trains, backup = (multiworker.train, None) if self.multiworker else (train, self.out / BACKUP_NAME)
        # Per-epoch loss, accuracy and learning rate: `tensorboard --logdir artifacts`.
        logs = [keras.callbacks.TensorBoard(str(self.out / outputs.LOGS_NAME))] if self.writes else []
        started = time.perf_counter()
        with stop_on_signals() as stopper:
            network, history = trains(
                self.settings.model,
                self.settings.training,
                (x_fit, y_fit),
                validation_data,
                [stopper, *logs],
                backup,
                self.distribution,
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
