"""The saved-network contract: what a network train.py saves must be (its last layers, its bounds,
its answers, its calibrated "not sure" threshold), and a .keras file read back safely against it.

    from ground.saved_network import calibrate, load_trained_model, threshold_of
    calibration = calibrate(probabilities, labels)   # train.py: the "not sure" threshold, for run.json
    network = load_trained_model("artifacts/model.keras")   # a 28x28 -> 10 classifier, or ModelError

A .keras file is refused before it is built if its archive, its config or its weights file asks for
more than train.py's networks hold. Importing this module does not import TensorFlow: the loaders
import it, so the reader runs an .onnx file (ground/onnx_network.py) where only
requirements-serve.txt is installed.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from data import (
    FRAME_WIDTH,
    IMAGE_SIZE,
    LINE_CLASSES,
    LINE_HEIGHT,
    NUM_CLASSES,
)
from ground.outputs import parse_json

if TYPE_CHECKING:  # Keras is imported for .keras files only
    import keras
EXPORT_RECORD = "export.json"  # beside export.py's files: their sha256 and the run they came from
# The rule: the lowest confidence at which the validation digits read at or above it are still
# right 99.5% of the time. Below it a reading is reported as "not sure".
TARGET_PRECISION = 0.995
# The likeliest of 10 probabilities summing to 1 is at least 1/10: a threshold at or below it flags
# no reading, and calibrate never writes one.
NO_FLAG_THRESHOLD = 1 / NUM_CLASSES
MAX_CONFIG_BYTES = 1_000_000  # a .keras file's config.json; train.py's are a few kB
MAX_CONFIG_DEPTH = 40  # nesting of that config; train.py's nest about 8 deep
# The names train.py's networks give their last two layers (model.build_model): the logits, which
# every reading takes the softmax of, and the output activation after them.
LOGITS_LAYER = "logits"
OUTPUT_LAYER = "digit"
# The largest network the project builds (model.ModelConfig) or loads: units or filters of one
# layer (train.py's are at most a few thousand), and weights of a whole model (100 million float32
# are 400 MB; the default MLP holds 1.3 million).
MAX_WIDTH = 65_536
MAX_WEIGHTS = 100_000_000
# The layers train.py's networks are made of (and RandomTranslation and RandomRotation, which models
# saved before augmentation moved into training hold); a file holding others is not one of its.
KNOWN_LAYERS = {
    "InputLayer",
    "Flatten",
    "Reshape",
    "Permute",
    "Dense",
    "Conv2D",
    "BatchNormalization",
    "MaxPooling2D",
    "Dropout",
    "Activation",
    "ReLU",
    "Softmax",
    "Bidirectional",
    "RandomTranslation",
    "RandomRotation",
    "Functional",
}
# What a line model's Bidirectional wraps, both ways.
KNOWN_WRAPPED = {"GRU"}
# A .keras file's weights, in HDF5: what its datasets declare, plus HDF5's own headers (train.py's
# take tens of kB; a member expanding further is padding, a zip bomb), and at most so many groups
# and datasets (train.py's hold under 100).
WEIGHTS_FILE = "model.weights.h5"
WEIGHTS_FILE_OVERHEAD = 1_000_000
MAX_WEIGHTS_FILE_BYTES = 4 * MAX_WEIGHTS + WEIGHTS_FILE_OVERHEAD
MAX_WEIGHTS_OBJECTS = 10_000
# A float32 softmax's rows sum to 1 within about 1e-6, a bfloat16 one's within a few thousandths.
SUM_TOLERANCE = 0.01
# Where a line model goes, for the messages that refuse one given in a classifier's place.
LINE_USE = "read numbers with it (predict.py --number --model, serve.py --line-model)"
Probabilities = Callable[[np.ndarray], np.ndarray]  # float32 images (n, 28, 28) -> (n, 10)
# What reading a damaged or hostile .keras file raises, from its zip archive (a damaged compressed
# stream, an encrypted or unknown-compression entry, a cut-off file) to Keras's own checks.
UNREADABLE = (
    OSError,
    ValueError,
    TypeError,
    KeyError,
    EOFError,
    RuntimeError,
    NotImplementedError,
    zipfile.BadZipFile,
    zlib.error,
)


class ModelError(Exception):
    """A saved model that is missing, unreadable or not a digit classifier; says how to fix it."""


class ModelRunError(ModelError):
    """A model that failed on a reading, or answered it with something that is not probabilities."""


def reason(exc: BaseException) -> str:
    """An exception's first line, or its type where it has no message: the cause in a message."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def calibrate(probabilities: np.ndarray, labels: np.ndarray, precision: float = TARGET_PRECISION) -> dict:
    """The confidence threshold for `precision` on held-out digits (probabilities (n, 10), labels (n,)),
    with the share of them it flags and the precision it keeps."""
    correct = probabilities.argmax(axis=1) == labels
    return calibrate_confidences(probabilities.max(axis=1), correct, precision, "validation split")


def calibrate_confidences(
    confidence: np.ndarray, correct: np.ndarray, precision: float = TARGET_PRECISION, held_out: str = ""
) -> dict:
    """The rule of `calibrate` on readings' confidences (n,) and whether each was right (n,): the
    lowest confidence at which those at or above it are right `precision` of the time. A line
    model's are whole lines' (ctc.line_confidence), on validation lines."""
    order = np.argsort(-confidence)
    ordered = np.asarray(correct)[order]
    kept_precision = np.cumsum(ordered) / np.arange(1, len(ordered) + 1)
    meets = np.flatnonzero(kept_precision >= precision)
    kept = meets[-1] + 1 if len(meets) else 1  # the most readings that still meet the precision
    threshold = float(confidence[order][kept - 1])
    return {
        "threshold": threshold,
        "rule": f"lowest confidence keeping {precision:.1%} precision on the {held_out}",
        "flagged_share": float(np.mean(confidence < threshold)),
        "precision": float(kept_precision[kept - 1]),
    }


def recorded(run: object, section: str, key: str) -> object:
    """`run[section][key]` of a run record (run.json), or None where the record has no such value
    or is not a record at all (a malformed file)."""
    part = run.get(section) if isinstance(run, dict) else None
    return part.get(key) if isinstance(part, dict) else None


def threshold_of(run: object) -> float | None:
    """The calibrated "not sure" threshold in a run record, or None where it has none: a run
    without a validation split, a record that is not one, or a threshold that would flag no
    reading (1e-400 and -0.0 read as 0.0), so that such a model gets the same note."""
    threshold = recorded(run, "calibration", "threshold")
    number = isinstance(threshold, (int, float)) and not isinstance(threshold, bool)  # true is not 1.0
    return float(threshold) if number and NO_FLAG_THRESHOLD < threshold <= 1 else None


def config_problem(archive: zipfile.ZipFile) -> str | None:
    """What makes a .keras file's config unsafe to build (None: nothing): deeper nesting than
    Keras can recurse through, a layer so wide, or layers so many, that building them would
    exhaust memory, or more weights than the file holds."""
    if archive.getinfo("config.json").file_size > MAX_CONFIG_BYTES:  # before it is decompressed
        return f"its config is over {MAX_CONFIG_BYTES:,} bytes"
    try:
        config = parse_json(archive.read("config.json"), "its config", MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH)
    except ValueError as exc:
        return str(exc)
    weights, stack = 0, [config]  # walked without recursion
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            strange = unknown_layer(value.get("layers"))
            if strange:
                return f"it holds a layer of class {strange!r}, which train.py never builds"
            layer = value.get("config") if isinstance(value.get("config"), dict) else {}
            for key in ("units", "filters"):
                size = layer.get(key)
                if isinstance(size, int) and not isinstance(size, bool):
                    if size > MAX_WIDTH:
                        return f"a layer has {size:,} {key}, over {MAX_WIDTH:,}"
                    weights += layer_weights(value, size)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return weights_problem(weights, archive)


def unknown_layer(layers: object) -> str | None:
    """The class of the first of a model config's `layers`, or of the layers a Bidirectional wraps,
    that train.py never builds (None: all are known). Only Dense, Conv2D and GRU layers hold more
    weights than their input is wide, and config_problem counts those: any other class could
    allocate what it likes when built (an Embedding's table, a DepthwiseConv2D's kernel)."""
    for layer in layers if isinstance(layers, list) else []:
        name = layer.get("class_name") if isinstance(layer, dict) else None
        if name not in KNOWN_LAYERS:
            return str(name)
        wrapper = layer.get("config") if name == "Bidirectional" else None
        for key in ("layer", "backward_layer") if isinstance(wrapper, dict) else ():
            wrapped = wrapper.get(key)
            inner = wrapped.get("class_name") if isinstance(wrapped, dict) else None
            if inner not in KNOWN_WRAPPED and not (key == "backward_layer" and wrapped is None):
                return str(inner)
    return None


def layer_weights(layer: dict, size: int) -> int:
    """The weights of a Dense (`size` units), convolution (`size` filters) or GRU (`size` units)
    layer's config, from its input's width as Keras records it when it saves a built layer: the
    most the layer can take, where that is missing, so a file cannot hide a layer's size by leaving
    it out."""
    build_config = layer.get("build_config")
    shape = build_config.get("input_shape") if isinstance(build_config, dict) else None
    inputs = shape[-1] if isinstance(shape, list) and shape else None
    if not isinstance(inputs, int) or isinstance(inputs, bool) or inputs < 1:
        inputs = MAX_WIDTH
    inputs = min(inputs, MAX_WIDTH)
    if layer.get("class_name") == "GRU":  # three gates, each over the input and its own state
        return 3 * size * (inputs + size + 2)
    kernel_size = layer["config"].get("kernel_size")
    area = 1
    for side in kernel_size if isinstance(kernel_size, list) else [kernel_size]:
        area *= side if isinstance(side, int) and not isinstance(side, bool) and side > 0 else 1
    return size * (inputs * area + 1)


def weights_problem(weights: int, archive: zipfile.ZipFile) -> str | None:
    """Why `weights` (float32, counted from a .keras file's config) cannot be built from `archive`:
    more than MAX_WEIGHTS, or more than its weights file holds (None: neither)."""
    if weights > MAX_WEIGHTS:
        return f"its layers hold {weights:,} weights, over {MAX_WEIGHTS:,}"
    stored = sum(info.file_size for info in archive.infolist() if info.filename.endswith(".h5"))
    if 4 * weights > 2 * stored + 1_000_000:  # float32; HDF5's overhead is small
        return f"its layers hold {weights:,} weights, more than its {stored:,}-byte weights file can"
    return None


def archive_problem(archive: zipfile.ZipFile) -> str | None:
    """What makes a .keras file's members unsafe to extract (None: nothing): a member that expands
    past what it can hold, judged from the sizes the archive declares before anything is
    decompressed, and the weights file from the datasets it declares, before any is read."""
    for info in archive.infolist():
        bound = MAX_WEIGHTS_FILE_BYTES if info.filename == WEIGHTS_FILE else MAX_CONFIG_BYTES
        if info.file_size > bound:
            return f"its member {info.filename} expands to {info.file_size:,} bytes, over {bound:,}"
    if WEIGHTS_FILE not in archive.namelist():
        return None  # Keras says what is missing
    with archive.open(WEIGHTS_FILE) as member:
        declared = declared_bytes(member)
    if declared is None:
        return f"its weights file holds over {MAX_WEIGHTS_OBJECTS:,} groups and datasets"
    if declared > 4 * MAX_WEIGHTS:
        return f"its weights file declares {declared:,} bytes of weights, over {4 * MAX_WEIGHTS:,}"
    expands_to = archive.getinfo(WEIGHTS_FILE).file_size
    if expands_to > declared + WEIGHTS_FILE_OVERHEAD:
        return f"its weights file expands to {expands_to:,} bytes, for {declared:,} bytes of weights"
    return None


def declared_bytes(member) -> int | None:
    """The bytes that the datasets of an HDF5 file (a readable, seekable file object) declare, read
    from their headers without reading their data; None past MAX_WEIGHTS_OBJECTS objects."""
    import h5py

    total, objects = 0, 0

    def count(name: str, item) -> bool | None:
        nonlocal total, objects
        objects += 1
        if isinstance(item, h5py.Dataset):
            total += math.prod(item.shape or ()) * item.dtype.itemsize
        return True if objects > MAX_WEIGHTS_OBJECTS else None  # True stops the visit

    with h5py.File(member, "r") as weights:
        weights.visititems(count)
    return None if objects > MAX_WEIGHTS_OBJECTS else total


def load_keras_file(path: str | Path) -> keras.Model:
    """A .keras file loaded safely: refusing code stored in it, and layers past the bounds. Needs
    TensorFlow, which the caller has imported (quiet_tensorflow.import_tensorflow_quietly)."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"no trained model at {path}: run `python train.py` first")
    try:
        with zipfile.ZipFile(path) as archive:
            problem = archive_problem(archive) or config_problem(archive)
        if problem:
            raise ValueError(problem)
        # safe_mode refuses lambdas and other code stored in the file: a model never runs code.
        return keras.models.load_model(path, safe_mode=True)
    except UNREADABLE as exc:
        raise ModelError(f"cannot load {path} ({reason(exc)}): retrain it with `python train.py`") from None


def is_line_network(model: keras.Model) -> bool:
    """Whether `model` is a line model as train.py --arch line makes: a line of any width in,
    LINE_CLASSES probabilities per frame out."""
    return (
        tuple(model.input_shape[1:]) == (LINE_HEIGHT, None)
        and tuple(model.output_shape[1:]) == (None, LINE_CLASSES)
        and LOGITS_LAYER in {layer.name for layer in model.layers}
    )


def load_trained_model(path: str | Path) -> keras.Model:
    """Load a model saved by train.py, refusing anything that is not a 28x28 -> 10 classifier."""
    return checked_classifier(load_keras_file(path), path)


def checked_classifier(model: keras.Model, path: str | Path) -> keras.Model:
    """`model`, loaded from `path`, if it is a 28x28 -> 10 classifier; else ModelError saying what."""
    shapes_fit = tuple(model.input_shape[1:]) == (IMAGE_SIZE, IMAGE_SIZE) and tuple(
        model.output_shape[1:]
    ) == (NUM_CLASSES,)
    if is_line_network(model):
        raise ModelError(f"{path} is a line model (train.py --arch line), not a digit classifier: {LINE_USE}")
    if not shapes_fit or LOGITS_LAYER not in {layer.name for layer in model.layers}:
        raise ModelError(
            f"{path} maps {model.input_shape} to {model.output_shape} and is not a digit "
            "classifier made by train.py: retrain it with `python train.py`"
        )
    return model


def classifier_answer(images: np.ndarray) -> tuple[int, ...]:
    """The shape of a digit classifier's answer for `images` (n, 28, 28): 10 probabilities each."""
    return (len(images), NUM_CLASSES)


def line_answer(lines: np.ndarray) -> tuple[int, ...]:
    """The shape of a line model's answer for `lines` (n, LINE_HEIGHT, w): LINE_CLASSES
    probabilities for each frame of FRAME_WIDTH px."""
    return (len(lines), lines.shape[-1] // FRAME_WIDTH, LINE_CLASSES)


def answer_problem(answer: np.ndarray, expected: tuple[int, ...]) -> str | None:
    """What makes a model's `answer` not probabilities of the `expected` shape (None: nothing)."""
    if answer.shape != expected:
        return f"it answered {answer.shape} where {expected} probabilities were due"
    if not np.isfinite(answer).all():
        return "its answer is not numbers (NaN or infinite)"
    if (answer < 0).any() or (np.abs(answer.sum(axis=-1) - 1) > SUM_TOLERANCE).any():
        return "its answer is not probabilities (at least 0, each reading's summing to 1)"
    return None


def checked(probabilities_of: Probabilities, answer_shape=classifier_answer) -> Probabilities:
    """`probabilities_of`, raising ModelRunError where an answer is not probabilities of
    `answer_shape(inputs)`, so that a broken model is that reading's error and never a sure one."""

    def checked_probabilities(inputs: np.ndarray) -> np.ndarray:
        answer = np.asarray(probabilities_of(inputs))
        problem = answer_problem(answer, answer_shape(inputs))
        if problem:
            raise ModelRunError(f"the model cannot read it: {problem}; use a model from train.py")
        return answer

    return checked_probabilities


def load_line_model(path: str | Path) -> keras.Model:
    """Load a line model saved by train.py --arch line, refusing anything else."""
    model = load_keras_file(path)
    if not is_line_network(model):
        raise ModelError(
            f"{path} maps {model.input_shape} to {model.output_shape} and is not a line model: "
            "train one with `python train.py --arch line --out artifacts/line`"
        )
    return model
