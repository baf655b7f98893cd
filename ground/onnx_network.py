"""An exported network run on onnxruntime alone, every answer checked: a digit classifier's
(images (n, 28, 28) -> (n, 10)) or a line model's (lines (n, 32, w) -> (n, w / 4, 12)).

    from ground.onnx_network import onnx_probabilities
    probabilities_of = onnx_probabilities(Path("artifacts/export/model.onnx"))   # or ValueError

Each file is run on real digits when it loads, in one bounded arena, and each answer that is not
probabilities of the expected shape is a ModelRunError. Importing this module imports neither
TensorFlow nor onnxruntime.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

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
from ground.outputs import read_json, sha256_of
from ground.saved_network import (
    EXPORT_RECORD,
    LINE_USE,
    ModelRunError,
    Probabilities,
    answer_problem,
    checked,
    classifier_answer,
    line_answer,
    reason,
)

# A run of an ONNX model: at most this many images, and MAX_RUN_BYTES of memory for all runs at
# once (the default CNN's run of ONNX_CHUNK images needs under 20 MB; a hostile file asked for GBs).
ONNX_CHUNK = 100
MAX_RUN_BYTES = 256 * 2**20
CHECK_DIGITS = 5  # real digits an ONNX model reads when it loads
CHECK_BATCHES = (1, 2, 3, ONNX_CHUNK)  # at these batch sizes: one image, a few, and a whole run


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
    opened: tuple, fits: Callable, answer_shape: Callable, check: np.ndarray, noun: str
) -> Probabilities:
    """An ONNX model `opened` (onnx_session's session, input and output) as a probabilities
    function, `fits(entry, exit_)` or ValueError (what it maps to what), run ONNX_CHUNK inputs at a
    time, each answer checked (ModelRunError); its messages call an input a `noun` ("image", "line").
    It reads `check` (real inputs, repeated to fill) in batches of CHECK_BATCHES first: a file can load and
    still fail, answer NaN or ask for gigabytes when it runs, and that must be one clear error at
    start-up, not a failure of every reading."""
    from onnxruntime.capi import onnxruntime_pybind11_state as failures

    # What a run raises: onnxruntime's error classes share no base but Exception.
    run_errors = (failures.Fail, failures.InvalidArgument, failures.RuntimeException, failures.NotImplemented)
    session, entry, exit_ = opened
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


def classifier_fits(entry, exit_) -> None:
    """ValueError unless an ONNX file's input and output are a digit classifier's: any number of
    28x28 images to 10 digits."""
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


def classifier_runs(opened: tuple) -> Probabilities:
    """An opened ONNX digit classifier's probabilities function, checked (onnx_runs) on real digits."""
    return onnx_runs(opened, classifier_fits, classifier_answer, check_digits(), "image")


def onnx_probabilities(path: Path) -> Probabilities:
    """An ONNX digit classifier's probabilities function on onnxruntime's CPU provider (classifier_runs)."""
    return classifier_runs(onnx_session(path))


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


def line_fits(entry, exit_) -> None:
    """ValueError unless an ONNX file's input and output are a line model's (onnx_is_line)."""
    if not onnx_is_line(entry, exit_):
        raise ValueError(
            f"it maps {entry.shape} {entry.type} to {exit_.shape}, not lines to frames of symbols: "
            "export a line model (`python train.py --arch line`, then export.py)"
        )


def line_runs(opened: tuple) -> Probabilities:
    """An opened ONNX line model's function: float32 lines (n, LINE_HEIGHT, w) -> probabilities
    (n, w / FRAME_WIDTH, LINE_CLASSES), checked (onnx_runs) on a real number."""
    return onnx_runs(opened, line_fits, line_answer, check_line()[np.newaxis], "line")


def onnx_line_probabilities(path: Path) -> Probabilities:
    """An ONNX line model's function on onnxruntime's CPU provider (line_runs)."""
    return line_runs(onnx_session(path))


def onnx_reader(path: Path) -> tuple[bool, Probabilities]:
    """Whichever export.py wrote at `path`, from one session: whether it is a line model, and its
    checked probabilities function."""
    opened = onnx_session(path)
    line = onnx_is_line(*opened[1:])
    return line, (line_runs if line else classifier_runs)(opened)


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
