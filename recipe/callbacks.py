"""What watches a fit: progress with the time left, every epoch's metrics kept, Ctrl-C and SIGTERM
turned into a clean stop, and backups that resume an interrupted run (damaged ones too).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import keras

from ground.outputs import read_json, write_json
from ground.saved_network import reason
from recipe.config import TrainingError


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
