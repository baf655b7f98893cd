"""What train.py and export.py save, read back safely: the ground floor that the trainer's scripts
and the reader share.

    from trained import calibrate, load_trained_model, onnx_probabilities, threshold_of
    calibration = calibrate(probabilities, labels)   # train.py: the "not sure" threshold, for run.json
    network = load_trained_model("artifacts/model.keras")   # a 28x28 -> 10 classifier, or ModelError
    probabilities_of = onnx_probabilities(Path("artifacts/export/model.onnx"))   # onnxruntime only

Importing this module imports neither TensorFlow nor onnxruntime: each is imported by the one
function that needs it, so the reader runs an .onnx file where only requirements-serve.txt is
installed.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from data import FRAME_WIDTH, IMAGE_SIZE, LINE_CLASSES, LINE_HEIGHT, NUM_CLASSES
from outputs import parse_json, read_json, sha256_of

if TYPE_CHECKING:  # Keras is imported for .keras files only
    import keras

EXPORT_RECORD = "export.json"  # beside export.py's files: their sha256 and the run they came from
# The rule: the lowest confidence at which the validation digits read at or above it are still
# right 99.5% of the time. Below it a reading is reported as "not sure".
TARGET_PRECISION = 0.995
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
    without a validation split, or a record that is not one."""
    threshold = recorded(run, "calibration", "threshold")
    number = isinstance(threshold, (int, float)) and not isinstance(threshold, bool)  # true is not 1.0
    return float(threshold) if number and 0 <= threshold <= 1 else None


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
            layer = value.get("config") if isinstance(value.get("config"), dict) else {}
            for key in ("units", "filters"):
                size = layer.get(key)
                if isinstance(size, int) and not isinstance(size, bool):
                    if size > MAX_WIDTH:
                        return f"a layer has {size:,} {key}, over {MAX_WIDTH:,}"
                    weights += layer_weights(size, layer.get("kernel_size"), value.get("build_config"))
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return weights_problem(weights, archive)


def layer_weights(size: int, kernel_size: object, build_config: object) -> int:
    """The weights of a Dense (`size` units) or convolution (`size` filters) layer, from its input's
    width as Keras records it when it saves a built layer: the most the layer can take, where that
    is missing, so a file cannot hide a layer's size by leaving it out."""
    shape = build_config.get("input_shape") if isinstance(build_config, dict) else None
    inputs = shape[-1] if isinstance(shape, list) and shape else None
    if not isinstance(inputs, int) or isinstance(inputs, bool) or inputs < 1:
        inputs = MAX_WIDTH
    area = 1
    for side in kernel_size if isinstance(kernel_size, list) else [kernel_size]:
        area *= side if isinstance(side, int) and not isinstance(side, bool) and side > 0 else 1
    return size * (min(inputs, MAX_WIDTH) * area + 1)


def weights_problem(weights: int, archive: zipfile.ZipFile) -> str | None:
    """Why `weights` (float32, counted from a .keras file's config) cannot be built from `archive`:
    more than MAX_WEIGHTS, or more than its weights file holds (None: neither)."""
    if weights > MAX_WEIGHTS:
        return f"its layers hold {weights:,} weights, over {MAX_WEIGHTS:,}"
    stored = sum(info.file_size for info in archive.infolist() if info.filename.endswith(".h5"))
    if 4 * weights > 2 * stored + 1_000_000:  # float32; HDF5's overhead is small
        return f"its layers hold {weights:,} weights, more than its {stored:,}-byte weights file can"
    return None


def load_keras_file(path: str | Path) -> keras.Model:
    """A .keras file loaded safely: refusing code stored in it, and layers past the bounds. Needs
    TensorFlow, which the caller has imported (quiet_tensorflow.import_tensorflow_quietly)."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"no trained model at {path}: run `python train.py` first")
    try:
        with zipfile.ZipFile(path) as archive:
            problem = config_problem(archive)
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


def load_line_model(path: str | Path) -> keras.Model:
    """Load a line model saved by train.py --arch line, refusing anything else."""
    model = load_keras_file(path)
    if not is_line_network(model):
        raise ModelError(
            f"{path} maps {model.input_shape} to {model.output_shape} and is not a line model: "
            "train one with `python train.py --arch line --out artifacts/line`"
        )
    return model


def onnx_session(path: Path):
    """An onnxruntime session of the file at `path` on the CPU, and its one input and one output."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # One thread per call: a few digits at a time are too small to share, and the thread pool's
    # spinning would take the cores that decoding images needs.
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (entry,), (exit_,) = session.get_inputs(), session.get_outputs()
    return session, entry, exit_


def onnx_probabilities(path: Path) -> Probabilities:
    """An ONNX digit classifier's probabilities function on onnxruntime's CPU provider."""
    session, entry, exit_ = onnx_session(path)
    if onnx_is_line(entry, exit_):
        raise ValueError(f"it is a line model, not a digit classifier: {LINE_USE}")
    fits = (
        entry.type == exit_.type == "tensor(float)"
        and not isinstance(entry.shape[0], int)  # any number of images at once, not a fixed batch
        and entry.shape[1:] == [IMAGE_SIZE, IMAGE_SIZE]
        and exit_.shape[1:] == [NUM_CLASSES]
    )
    if not fits:
        raise ValueError(
            f"it maps {entry.shape} {entry.type} to {exit_.shape}, not 28x28 images to 10 digits"
        )

    def probabilities_of(images: np.ndarray) -> np.ndarray:
        return session.run([exit_.name], {entry.name: np.asarray(images, np.float32)})[0]

    # Run once now: a file can load and still fail (or ask for gigabytes) when it runs, and that
    # must be one clear error at start-up, not a failure of every reading.
    answer = probabilities_of(np.zeros((2, IMAGE_SIZE, IMAGE_SIZE), np.float32))
    if answer.shape != (2, NUM_CLASSES):
        raise ValueError(f"it answers {answer.shape} for 2 images, not 10 probabilities each")
    if not np.isfinite(answer).all():
        raise ValueError("its answer for 2 blank images is not numbers (NaN or infinite)")
    return probabilities_of


def onnx_is_line(entry, exit_) -> bool:
    """Whether an ONNX file's input and output are a line model's: lines (n, LINE_HEIGHT, w) to
    frames (n, f, LINE_CLASSES)."""
    return (
        entry.type == exit_.type == "tensor(float)"
        and len(entry.shape) == 3
        and entry.shape[1] == LINE_HEIGHT
        and not isinstance(entry.shape[2], int)  # any width
        and len(exit_.shape) == 3
        and exit_.shape[2] == LINE_CLASSES
    )


def onnx_line_probabilities(path: Path) -> Probabilities:
    """An ONNX line model's function on onnxruntime's CPU provider: float32 lines (n, LINE_HEIGHT,
    w) -> probabilities (n, w / FRAME_WIDTH, LINE_CLASSES)."""
    session, entry, exit_ = onnx_session(path)
    if not onnx_is_line(entry, exit_):
        raise ValueError(
            f"it maps {entry.shape} {entry.type} to {exit_.shape}, not lines to frames of symbols: "
            "export a line model (`python train.py --arch line`, then export.py)"
        )

    def probabilities_of(lines: np.ndarray) -> np.ndarray:
        return session.run([exit_.name], {entry.name: np.asarray(lines, np.float32)})[0]

    # Run once now, as onnx_probabilities does: a failure is one clear error at start-up.
    answer = probabilities_of(np.zeros((2, LINE_HEIGHT, 16 * FRAME_WIDTH), np.float32))
    if answer.shape != (2, 16, LINE_CLASSES) or not np.isfinite(answer).all():
        raise ValueError(
            f"it answers {answer.shape} for 2 blank lines of 16 frames, not {LINE_CLASSES} per frame"
        )
    return probabilities_of


def export_source(path: Path) -> dict:
    """What export.json beside `path` says of the model it was exported from ({} when there is no
    export.json, or it does not list this very file, e.g. a file copied over from another export)."""
    try:
        record = read_json(path.parent / EXPORT_RECORD)
        listed = {entry["path"]: entry["sha256"] for entry in record["formats"].values()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
    if listed.get(path.name) != sha256_of(path) or not isinstance(record.get("source"), dict):
        return {}
    return record["source"]
