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

import math
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from data import (
    DEFAULT_DATA_PATH,
    FRAME_WIDTH,
    IMAGE_SIZE,
    LINE_CLASSES,
    LINE_HEIGHT,
    NUM_CLASSES,
    REBUILD_HINT,
    normalize_images,
)
from outputs import parse_json, read_json, sha256_of

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
# A run of an ONNX model: at most this many images, and MAX_RUN_BYTES of memory for all runs at
# once (the default CNN's run of ONNX_CHUNK images needs under 20 MB; a hostile file asked for GBs).
ONNX_CHUNK = 100
MAX_RUN_BYTES = 256 * 2**20
CHECK_DIGITS = 5  # real digits an ONNX model reads when it loads
CHECK_BATCHES = (1, 2, 3, ONNX_CHUNK)  # at these batch sizes: one image, a few, and a whole run
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


def check_digits() -> np.ndarray:
    """float32 (CHECK_DIGITS, 28, 28): the first MNIST test digits, from the shipped file."""
    try:
        with np.load(DEFAULT_DATA_PATH, allow_pickle=False) as npz:
            return normalize_images(npz["x_test"][:CHECK_DIGITS])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ValueError(
            f"MNIST's test digits to check it on are unreadable ({reason(exc)}): {REBUILD_HINT}"
        ) from None


def check_line() -> np.ndarray:
    """float32 (LINE_HEIGHT, w): the check digits side by side, a number for a line model to read
    when it loads."""
    digits = np.concatenate(list(check_digits()), axis=1)
    margin = (LINE_HEIGHT - IMAGE_SIZE) // 2
    return np.pad(digits, ((margin, LINE_HEIGHT - IMAGE_SIZE - margin), (0, -digits.shape[1] % FRAME_WIDTH)))


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
    """An onnxruntime session of the file at `path` on the CPU, and its one input and one output:
    one thread, and a run's memory bounded."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # One thread per call: a few digits at a time are too small to share, and the thread pool's
    # spinning would take the cores that decoding images needs.
    options.intra_op_num_threads = 1
    # Runs allocate from one arena per process, of at most MAX_RUN_BYTES: past it a run fails
    # (ModelRunError) instead of taking the machine's memory. Registering it again is a no-op.
    arena_type, default = onnxruntime.OrtAllocatorType.ORT_ARENA_ALLOCATOR, onnxruntime.OrtMemType.DEFAULT
    cpu = onnxruntime.OrtMemoryInfo("Cpu", arena_type, 0, default)
    arena = onnxruntime.OrtArenaCfg({"max_mem": MAX_RUN_BYTES, "arena_extend_strategy": 1})
    onnxruntime.create_and_register_allocator(cpu, arena)
    options.add_session_config_entry("session.use_env_allocators", "1")
    options.log_severity_level = 4  # a failed run is raised, and said once, not logged as well
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (entry,), (exit_,) = session.get_inputs(), session.get_outputs()
    return session, entry, exit_


def onnx_runs(
    path: Path, fits: Callable, answer_shape: Callable, check: np.ndarray, noun: str
) -> Probabilities:
    """The ONNX model at `path` as a probabilities function, `fits(entry, exit_)` or ValueError
    (what it maps to what), run ONNX_CHUNK inputs at a time, each answer checked (ModelRunError);
    its messages call an input a `noun` ("image", "line").
    It reads `check` (real inputs, repeated to fill) in batches of CHECK_BATCHES first: a file can load and
    still fail, answer NaN or ask for gigabytes when it runs, and that must be one clear error at
    start-up, not a failure of every reading."""
    from onnxruntime.capi import onnxruntime_pybind11_state as failures

    # What a run raises: onnxruntime's error classes share no base but Exception.
    run_errors = (failures.Fail, failures.InvalidArgument, failures.RuntimeException, failures.NotImplemented)
    session, entry, exit_ = onnx_session(path)
    fits(entry, exit_)

    def run(inputs: np.ndarray) -> np.ndarray:
        try:
            answer = session.run([exit_.name], {entry.name: np.asarray(inputs, np.float32)})[0]
        except run_errors as exc:
            raise ModelRunError(f"the model failed on {len(inputs)} {noun}(s) ({reason(exc)})") from None
        if answer.shape != answer_shape(inputs):  # checked here, before runs' answers are joined
            raise ModelRunError(f"the model answered {answer.shape} for {len(inputs)} {noun}(s)")
        return answer

    def probabilities_of(inputs: np.ndarray) -> np.ndarray:
        if not len(inputs):
            return np.zeros(answer_shape(inputs), np.float32)
        starts = range(0, len(inputs), ONNX_CHUNK)
        return np.concatenate([run(inputs[start : start + ONNX_CHUNK]) for start in starts])

    for count in CHECK_BATCHES:
        inputs = np.resize(check, (count, *check.shape[1:]))
        problem = answer_problem(probabilities_of(inputs), answer_shape(inputs))
        if problem:
            raise ValueError(f"on {count} real {noun}(s), {problem}")
    return checked(probabilities_of, answer_shape)


def onnx_probabilities(path: Path) -> Probabilities:
    """An ONNX digit classifier's probabilities function on onnxruntime's CPU provider, checked
    (onnx_runs) on real digits."""

    def fits(entry, exit_) -> None:
        if onnx_is_line(entry, exit_):
            raise ValueError(f"it is a line model, not a digit classifier: {LINE_USE}")
        if not (
            entry.type == exit_.type == "tensor(float)"
            and not isinstance(entry.shape[0], int)  # any number of images at once, not a fixed batch
            and entry.shape[1:] == [IMAGE_SIZE, IMAGE_SIZE]
            and exit_.shape[1:] == [NUM_CLASSES]
        ):
            raise ValueError(
                f"it maps {entry.shape} {entry.type} to {exit_.shape}, not 28x28 images to 10 digits"
            )

    return onnx_runs(path, fits, classifier_answer, check_digits(), "image")


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
    w) -> probabilities (n, w / FRAME_WIDTH, LINE_CLASSES), checked (onnx_runs) on a real number."""

    def fits(entry, exit_) -> None:
        if not onnx_is_line(entry, exit_):
            raise ValueError(
                f"it maps {entry.shape} {entry.type} to {exit_.shape}, not lines to frames of symbols: "
                "export a line model (`python train.py --arch line`, then export.py)"
            )

    return onnx_runs(path, fits, line_answer, check_line()[np.newaxis], "line")


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
