"""Shared fixtures: the real MNIST loaded once, one tiny real training run and its exports, its
network saved untrained (for tests that need a model file, not a good one), and MNIST test digits
saved as a user's scans; and the helpers many tests use: encoding an image, a row of digits, a
page of drawn strokes, running a script.

Keras is imported where a fixture needs it: pytest-xdist's controller, which runs no test, imports
this file too, and TensorFlow's start-up there would hold up every worker's."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pytest
from PIL import Image, ImageDraw

from data import BLANK, FRAME_WIDTH, INK_THRESHOLD, LINE_CLASSES, load_mnist
from ground.quiet_tensorflow import INTRA_OP_THREADS, usable_cores
from harness.chromium import CHROMIUM, CHROMIUM_FLAGS

if TYPE_CHECKING:
    import keras

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


class SavedRun(NamedTuple):
    model: keras.Model  # the network saved, as train.py returns it
    record: dict  # its run.json
    folder: Path  # where both are, as train.py's --out


def pytest_configure():
    """Under pytest-xdist, each worker's TensorFlow, and the scripts its tests start, computes on the
    worker's share of the cores: a thread per core in every worker makes them fight over each core."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        os.environ.setdefault(INTRA_OP_THREADS, str(max(1, usable_cores() // workers)))


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items):
    """Every test that needs the tiny trained run, or anything made from it, is slow: the fast tier
    never waits for that run (a test that only needs a model file takes untrained_run)."""
    for item in items:
        if "trained_run" in item.fixturenames:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def mnist():
    return load_mnist()


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> SavedRun:
    """A tiny real run of train.py on the first 3,000 digits."""
    import train

    folder = tmp_path_factory.mktemp("run")
    model, record = train.main(TINY_TRAINING + ["--out", str(folder)])
    return SavedRun(model, record, folder)


@pytest.fixture(scope="session")
def untrained_run(tmp_path_factory, mnist) -> SavedRun:
    """The tiny run's network as train.py builds it but never trained, saved as train.py saves it,
    with a run record whose "not sure" threshold is calibrated on its validation split: for tests
    that need a model that loads and reads, not one that reads right (its answers are near chance)."""
    import keras

    import train
    from ground import outputs
    from model import build_model
    from recipe.config import training_split
    from recipe.run import calibrated

    folder = tmp_path_factory.mktemp("untrained")
    settings = train.parse_args(TINY_TRAINING + ["--out", str(folder)]).settings
    keras.utils.set_random_seed(settings.training.seed)  # the same weights every session
    network = build_model(settings.model)
    calibration = calibrated(network, training_split(mnist, settings.training), settings)
    record = outputs.run_record(**settings.as_dict(), calibration=calibration)
    outputs.save_model(network, folder, record)
    return SavedRun(network, record, folder)


@pytest.fixture(scope="session")
def exported(trained_run, tmp_path_factory) -> tuple[dict, Path]:
    """export.py's formats of the tiny run's model: (export.json's record, the folder). Where npm is
    missing, its web/ folder alone is not written (the record says why; the page's tests skip)."""
    import export

    folder = tmp_path_factory.mktemp("export")
    try:
        return export.main(["--model", str(trained_run.folder / "model.keras"), "--out", str(folder)]), folder
    except SystemExit:
        record = json.loads((folder / "export.json").read_text())
        if set(record["failed"]) != {"web"}:
            raise
        return record, folder


def onnx_path(exported: tuple[dict, Path]) -> Path:
    """The ONNX model in `exported`'s folder."""
    record, folder = exported
    return folder / record["formats"]["onnx"]["path"]


@pytest.fixture(scope="session")
def rerendered(tmp_path_factory, mnist):
    """200 real MNIST test digits saved as dark-on-light 200x200 PNGs, as a user's scans would be."""
    folder = tmp_path_factory.mktemp("scans")
    for index in range(200):
        image = Image.fromarray(255 - mnist.x_test[index]).resize((200, 200), Image.Resampling.BICUBIC)
        image.save(folder / f"{index:03d}.png")
    return folder


def encoded(image: Image.Image, format: str = "PNG") -> bytes:
    """`image` as the bytes of a file in `format`."""
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def digit_row(digits: np.ndarray) -> np.ndarray:
    """MNIST digits (n, 28, 28) side by side with a little paper around each: (40, 36n), as a
    number written on one line (white on black, as MNIST)."""
    return np.hstack([np.pad(digit, ((6, 6), (4, 4))) for digit in digits])


@pytest.fixture(scope="session")
def written_number(tmp_path_factory, mnist):
    """MNIST test digits 7, 2, 1 (its first three) side by side, dark on light, as a scanned number."""
    row = digit_row(mnist.x_test[:3])
    path = tmp_path_factory.mktemp("number") / "721.png"
    Image.fromarray(255 - row).resize((row.shape[1] * 5, row.shape[0] * 5), Image.Resampling.BICUBIC).save(
        path
    )
    return path


def written(*strokes_per_digit, size=(700, 200), width=12) -> Image.Image:
    """A page with digits drawn as polylines, one list of strokes per digit."""
    page = Image.new("L", size, 255)
    draw = ImageDraw.Draw(page)
    for strokes in strokes_per_digit:
        for stroke in strokes:
            draw.line(stroke, fill=0, width=width, joint="curve")
    return page


# A 0 joined to a 1 by a thin stroke at mid-height: two digits that touch.
ZERO_TOUCHING_A_ONE = (
    [[(40, 40), (40, 160), (120, 160), (120, 40), (40, 40)], [(120, 100), (200, 100)]],
    [[(200, 40), (200, 160)]],
)


def assert_tensorboard_logs(folder: Path, epochs: int) -> None:
    """`folder` holds TensorBoard's per-epoch loss, accuracy and learning rate, for each of `epochs`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for split, tags in [
        ("train", {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"}),
        ("validation", {"epoch_loss", "epoch_accuracy"}),
    ]:
        events = EventAccumulator(str(folder / split), size_guidance={"tensors": 0}).Reload()
        assert tags <= set(events.Tags()["tensors"]), events.Tags()
        assert len(events.Tensors("epoch_loss")) == epochs


def wait_until(condition: Callable[[], bool], seconds: float, waiting_for: str) -> None:
    """Poll `condition` until it holds; fail the test, saying what it was `waiting_for`, if it
    still does not after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"still waiting for {waiting_for} after {seconds:g} s")
        time.sleep(0.02)


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


@contextlib.contextmanager
def chromium():
    """Debian's Chromium, headless, through Playwright (the test skips where there is none)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def draw(page, *strokes):
    """Mouse strokes on the pad, each a list of points as fractions of its width and height."""
    box = page.locator("#pad").bounding_box()

    def move(x, y):
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])

    for stroke in strokes:
        move(*stroke[0])
        page.mouse.down()
        for (x0, y0), (x1, y1) in zip(stroke[:-1], stroke[1:], strict=True):
            for step in range(1, 11):  # in small steps, as a hand moves
                move(x0 + (x1 - x0) * step / 10, y0 + (y1 - y0) * step / 10)
        page.mouse.up()
    page.wait_for_selector("body[data-state='ready']", state="attached")


def oversized_photo(folder: Path) -> Path:
    """A 50 MB "photo" (huge.jpg), past the page's 30 MB bound, as a file: Playwright hands Chromium
    a file's path, where it would send a buffer this size through its driver (most of a minute)."""
    path = folder / "huge.jpg"
    path.write_bytes(b"\xff" * 50_000_000)
    return path


def shown_for(answer: dict) -> str:
    """What the page shows for a digit's reading: the digit, "?" when not sure, a cross when it is
    not a digit."""
    return "\u2715" if answer["not_a_digit"] else "?" if answer["not_sure"] else str(answer["digit"])


# Line models for reading tests: functions of the line, not trained networks.
SURE = 0.97


@pytest.fixture(scope="session")
def line_model_file(tmp_path_factory) -> Path:
    """A small untrained line model saved as train.py saves one: for what needs a line model's file,
    not its readings."""
    from model import ModelConfig, build_model

    config = ModelConfig(arch="line", filters=(8, 8), hidden=(8,), output_activation="softmax")
    path = tmp_path_factory.mktemp("line") / "model.keras"
    build_model(config).save(path)
    return path


def spelling(symbols: list[int], sure: float = SURE):
    """A line model's function that reads `symbols` left to right, one at the middle of each run
    of inked frames of the line it is given (blank elsewhere), with probability `sure`."""

    def probabilities_of(lines: np.ndarray) -> np.ndarray:
        frames = lines.shape[2] // FRAME_WIDTH
        inked = (lines[0] >= INK_THRESHOLD).any(axis=0)[: frames * FRAME_WIDTH]
        inked = inked.reshape(frames, FRAME_WIDTH).any(axis=1)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], inked.astype(int), [0]])))
        centres = [(start + stop - 1) // 2 for start, stop in zip(edges[::2], edges[1::2], strict=True)]
        path = np.full(frames, BLANK)
        for centre, symbol in zip(centres, symbols, strict=False):
            path[centre] = symbol
        rest = (1 - sure) / (LINE_CLASSES - 1)
        rows = np.full((frames, LINE_CLASSES), rest, np.float32)
        rows[np.arange(frames), path] = sure
        return rows[None]

    return probabilities_of


def blobs(count: int, width: int = 60, gap: int = 60) -> tuple[Image.Image, list[tuple[int, int]]]:
    """A page with `count` dark strokes on one line; and each one's columns (left, right)."""
    page = Image.new("L", (40 + count * (width + gap), 200), 255)
    pen = ImageDraw.Draw(page)
    spans = []
    for index in range(count):
        left = 40 + index * (width + gap)
        pen.ellipse([left, 50, left + width, 150], outline=0, width=10)
        spans.append((left, left + width + 1))
    return page, spans
