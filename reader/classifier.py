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

from outputs import record_of
from trained import (
    ModelError,
    Probabilities,
    checked,
    export_source,
    load_trained_model,
    onnx_probabilities,
    reason,
    recorded,
    threshold_of,
)

MODEL_HELP = "a .keras file from train.py, or a model.onnx from export.py (read without TensorFlow)"


@dataclass(frozen=True)
class Classifier:
    name: str
    # float32 images (n, 28, 28) -> probabilities (n, 10), or ModelRunError (never NaN, never a
    # row that is not a distribution)
    probabilities_of: Probabilities
    threshold: float | None  # the confidence below which a reading is "not sure"
    output_activation: str | None  # the network's own output layer ("sigmoid", "softmax"), if known


def unsure_never(path: Path) -> str:
    """The notice for a model without a calibrated threshold: none of its readings is "not sure"."""
    beside = "an export.json listing it" if path.suffix.lower() == ".onnx" else "its run.json"
    return f"note: {path} has no calibrated threshold ({beside}), so no reading is reported as not sure"


def load_classifier(path: str | Path) -> Classifier:
    """The classifier saved at `path`: an .onnx file read by onnxruntime, anything else by Keras."""
    path = Path(path)
    return onnx_classifier(path) if path.suffix.lower() == ".onnx" else keras_file_classifier(path)


def keras_file_classifier(path: Path) -> Classifier:
    """A .keras file saved by train.py, with the threshold from its run.json."""
    try:
        from quiet_tensorflow import import_tensorflow_quietly

        import_tensorflow_quietly()
    except ModuleNotFoundError:
        raise ModelError(
            f"{path} needs TensorFlow, which this environment lacks: install requirements.txt, or "
            "read an export of it (`python export.py` writes model.onnx) here"
        ) from None
    return keras_classifier(load_trained_model(path), threshold_of(record_of(path)))


def keras_classifier(network, threshold: float | None = None) -> Classifier:
    """A Keras model already loaded (keras.Model), read through the softmax of its logits."""
    from model import OUTPUT_LAYER, probabilities_function

    activation = network.get_layer(OUTPUT_LAYER).activation.__name__
    return Classifier(network.name, checked(probabilities_function(network)), threshold, activation)


def onnx_classifier(path: Path) -> Classifier:
    """An .onnx file written by export.py, with the source run's threshold from export.json."""
    if not path.is_file():
        raise ModelError(f"no exported model at {path}: run `python export.py` first")
    try:
        probabilities_of = onnx_probabilities(path)
    except Exception as exc:  # onnxruntime's own error classes (InvalidProtobuf, Fail...) share no base
        raise ModelError(
            f"cannot load {path} ({reason(exc)}): export it again with `python export.py`"
        ) from None
    source = export_source(path)
    name, run = source.get("name"), source.get("run")
    activation = recorded(run, "model", "output_activation")
    return Classifier(
        name if isinstance(name, str) else path.stem,
        probabilities_of,
        threshold_of(run),
        activation if isinstance(activation, str) else None,
    )
