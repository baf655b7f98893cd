"""A trained digit classifier ready to read with: train.py's .keras file, on TensorFlow, or
export.py's .onnx file, on onnxruntime alone.

    from reader import load_classifier
    digits = load_classifier(Path("artifacts/model.keras"))   # or artifacts/export/model.onnx
    digits.probabilities_of(images)   # float32 (n, 28, 28) in [0, 1] -> probabilities (n, 10)
    digits.threshold                  # below it a reading is "not sure" (None: never calibrated)

predict.py and serve.py load their model here, so with an .onnx file they run where only
requirements-serve.txt is installed: TensorFlow is imported for a .keras file only. The threshold
is the one calibrated when the model was trained, from its run.json (a .keras file) or from the
export.json beside an .onnx file that it lists by sha256.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ground.onnx_network import export_source, onnx_reader
from ground.outputs import record_of
from ground.saved_network import (
    LINE_USE,
    ModelError,
    Probabilities,
    checked,
    checked_classifier,
    is_line_network,
    line_answer,
    load_keras_file,
    reason,
    recorded,
    threshold_of,
)

MODEL_HELP = "a .keras file from train.py, or a model.onnx from export.py (read without TensorFlow)"
LINE_MODEL_HELP = "a line model: train.py --arch line's .keras file, or its model.onnx from export.py"


@dataclass(frozen=True)
class Classifier:
    name: str
    # float32 images (n, 28, 28) -> probabilities (n, 10), or ModelRunError (never NaN, never a
    # row that is not a distribution)
    probabilities_of: Probabilities
    threshold: float | None  # the confidence below which a reading is "not sure"
    output_activation: str | None  # the network's own output layer ("sigmoid", "softmax"), if known


@dataclass(frozen=True)
class LineModel:
    name: str
    probabilities_of: Probabilities  # float32 lines (n, 32, w) -> probabilities (n, w / 4, 12)
    threshold: float | None  # the line confidence below which a number is "not sure"


def unsure_never(path: Path) -> str:
    """The notice for a model without a calibrated threshold: none of its readings is "not sure"."""
    beside = "an export.json listing it" if path.suffix.lower() == ".onnx" else "its run.json"
    return f"note: {path} has no calibrated threshold ({beside}), so no reading is reported as not sure"


def load_classifier(path: str | Path) -> Classifier:
    """The classifier saved at `path`: an .onnx file read by onnxruntime, anything else by Keras;
    a ModelError for anything else, a line model included."""
    path = Path(path)
    model = load_model_file(path)
    if isinstance(model, LineModel):
        raise ModelError(f"{path} is a line model (train.py --arch line), not a digit classifier: {LINE_USE}")
    return model


def load_line_model(path: str | Path) -> LineModel:
    """The line model saved at `path` (train.py --arch line's .keras, or its export's .onnx); a
    ModelError for anything else, a digit classifier included."""
    path = Path(path)
    model = load_model_file(path)
    if not isinstance(model, LineModel):
        raise ModelError(
            f"{path} is a digit classifier, not a line model: train one with "
            "`python train.py --arch line --out artifacts/line`"
        )
    return model


def load_model_file(path: str | Path) -> Classifier | LineModel:
    """Whatever train.py or export.py saved at `path`: a digit classifier or a line model."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return onnx_model(path)
    import_tensorflow(path)
    network = load_keras_file(path)
    threshold = threshold_of(record_of(path))
    if is_line_network(network):
        from model import line_probabilities_function

        return LineModel(network.name, checked(line_probabilities_function(network), line_answer), threshold)
    return keras_classifier(checked_classifier(network, path), threshold)


def import_tensorflow(path: Path) -> None:
    """TensorFlow imported quietly, or a ModelError saying how to read `path` without it."""
    try:
        from ground.quiet_tensorflow import import_tensorflow_quietly

        import_tensorflow_quietly()
    except ModuleNotFoundError:
        raise ModelError(
            f"{path} needs TensorFlow, which this environment lacks: install requirements.txt, or "
            "read an export of it (`python export.py` writes model.onnx) here"
        ) from None


def keras_classifier(network, threshold: float | None = None) -> Classifier:
    """A Keras model already loaded (keras.Model), read through the softmax of its logits."""
    from model import OUTPUT_LAYER, probabilities_function

    activation = network.get_layer(OUTPUT_LAYER).activation.__name__
    return Classifier(network.name, checked(probabilities_function(network)), threshold, activation)


def onnx_model(path: Path) -> Classifier | LineModel:
    """An .onnx file written by export.py, with the source run's threshold from export.json."""
    if not path.is_file():
        raise ModelError(f"no exported model at {path}: run `python export.py` first")
    try:
        line, probabilities_of = onnx_reader(path)
    except Exception as exc:  # onnxruntime's own error classes (InvalidProtobuf, Fail...) share no base
        raise ModelError(
            f"cannot load {path} ({reason(exc)}): export it again with `python export.py`"
        ) from None
    source = export_source(path)
    name, run = source.get("name"), source.get("run")
    name = name if isinstance(name, str) else path.stem
    if line:
        return LineModel(name, probabilities_of, threshold_of(run))
    activation = recorded(run, "model", "output_activation")
    return Classifier(
        name, probabilities_of, threshold_of(run), activation if isinstance(activation, str) else None
    )
