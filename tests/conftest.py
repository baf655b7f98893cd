"""Shared fixtures: the real MNIST, loaded once, and one tiny real training run for the session."""

import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import keras
import pytest

from data import load_mnist

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Small enough to train in seconds, large enough that the loss visibly falls.
TINY_TRAINING = [
    "--limit",
    "3000",
    "--epochs",
    "2",
    "--hidden",
    "64",
    "--dropout",
    "0",
    "--no-augment",
    "--batch-size",
    "64",
]


class TrainedRun(NamedTuple):
    model: keras.Model  # the network train.py returned and saved
    record: dict  # its run.json
    folder: Path  # train.py's --out


@pytest.fixture(scope="session")
def mnist():
    return load_mnist()


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> TrainedRun:
    """A tiny real run of train.py on the first 3,000 digits."""
    import train

    folder = tmp_path_factory.mktemp("run")
    model, record = train.main(TINY_TRAINING + ["--out", str(folder)])
    return TrainedRun(model, record, folder)


def run_script(*args: str, **environment: str) -> subprocess.CompletedProcess:
    """Run one of the project's scripts as a user would, capturing its output."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=300,
    )


def start_script(*args: str, **environment: str) -> subprocess.Popen:
    """Start one of the project's scripts in the background with extra environment variables."""
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, **environment},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
