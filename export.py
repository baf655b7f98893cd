"""Export a trained model for other runtimes, each file checked in its own runtime before it counts.

    python export.py                                       # artifacts/model.keras -> artifacts/export
    python export.py --model artifacts/cnn/model.keras --out artifacts/cnn-export
    python export.py --line-model artifacts/line/model.keras    # the page reads numbers too

Writes into --out:
- saved_model/mnist/<version>/: a SavedModel in TF Serving's layout (versions count up from 1,
  never overwritten), signature `serving_default`;
- model.onnx (ONNX, for onnxruntime) and model.tflite (LiteRT, for phones and ai-edge-litert);
- export.json: each file's sha256, the input and output contract, the checks and the run.json of
  the model they came from;
- web/: the page that reads in the browser with model.onnx, offline once visited, on any static
  host (docs/offline-page.md); its runtime comes from npm (`npm ci` in runtime/, run here if needed).
  With --line-model it reads numbers too (a .keras line model exported into line/ first, as below).
Every format takes float32 images (n, 28, 28) in [0, 1], as the reader and data.normalize_images make
them, and returns the ten probabilities (the softmax of the logits). Before a file is moved
into place it must give the Keras model's digit on all 10,000 test images, probabilities within
1e-4, and the same answer twice. A format that fails is reported and the others still written.

A line model (train.py --arch line) is exported to ONNX alone, the format the reader reads without
TensorFlow: it takes lines float32 (n, 32, w) in data.line_style's form and returns each frame's
probabilities (n, w / 4, 12), and must read every one of 500 lines composed from the test digits as
the Keras model does, probabilities within 1e-4, the same answer twice.
"""

from __future__ import annotations

from ground.quiet_tensorflow import import_tensorflow_quietly

import_tensorflow_quietly()

import argparse
import os
import shutil
import sys
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from data import IMAGE_SIZE, LINE_CLASSES, LINE_HEIGHT, NUM_CLASSES, DataError, load_mnist, normalize_images
from ground import outputs
from ground.ctc import decoded_line
from ground.onnx_network import onnx_line_probabilities, onnx_probabilities
from ground.saved_network import (
    ModelError,
    checked_classifier,
    is_line_network,
    load_keras_file,
    reason,
    threshold_of,
)
from model import probability_model
from reader.browser import PageModel, RuntimeMissing, line_page_model, write_web_folder
from recipe import lines

TOLERANCE = 1e-4  # largest difference in any probability from the Keras model's
BATCH = 1000  # test images per call in the checks
TEST_LINES = 500  # composed from the test digits, to check a line model's export
LINE_BATCH = 50
SERVING_NAME = "mnist"  # TF Serving's model name: saved_model/mnist/<version>/
LINE_FOLDER = "line"  # where --line-model's .keras file is exported, beside the digit model's formats
# What the page says in place of number mode when it has no line model: how to give it one.
WITHOUT_LINE = (
    "Numbers need a line model, which this export does not have: train one with `python train.py --arch "
    "line --out artifacts/line`, then export with it: `python export.py --model {model} --out {out} "
    "--line-model artifacts/line/model.keras`."
)
# The converters Keras's own `model.export` uses; their known failures on Keras 3 models.
UPSTREAM = {
    "onnx": "tf2onnx via keras export; see onnx/tensorflow-onnx#2329",
    "litert": "the LiteRT converter via keras export; see tensorflow/tensorflow#63867",
}
INPUT_CONTRACT = {
    "name": "image",
    "shape": [None, IMAGE_SIZE, IMAGE_SIZE],
    "dtype": "float32",
    "range": [0.0, 1.0],
    "preprocessing": "reader.page.mnist_style_digit (white digit on black, 20x20 box centred by mass "
    "in 28x28), then data.normalize_images (uint8 / 255)",
}


# Keras's ONNX route probes `np.object`, which NumPy 2 warns about on every export: not ours to fix.
warnings.filterwarnings("ignore", category=FutureWarning, module="keras.src.export.tf2onnx_lib")


class ExportError(Exception):
    """A format that could not be written or did not pass its checks; the message says why."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=outputs.HelpFormatter
    )
    parser.add_argument(
        "--model", type=Path, default=Path("artifacts/model.keras"), help="the .keras file train.py saved"
    )
    outputs.add_folder_flags(parser, Path("artifacts/export"), data_use=" for the checks")
    line_help = "a line model (train.py --arch line's .keras, or its export's model.onnx) for web/'s numbers"
    parser.add_argument("--line-model", type=Path, help=f"{line_help} [none: digits only]")
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def saved_model_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The SavedModel's `serving_default` signature, as TF Serving calls it."""
    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    return lambda images: signature(image=tf.constant(images))["output_0"].numpy()


def litert_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    entry, exit_ = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]

    def run(images: np.ndarray) -> np.ndarray:
        interpreter.resize_tensor_input(entry, images.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(entry, images)
        interpreter.invoke()
        return interpreter.get_tensor(exit_).copy()

    return run


FORMATS = {  # name -> (keras export format, file or folder name, runner)
    "saved_model": ("tf_saved_model", None, saved_model_runner),
    "onnx": ("onnx", "model.onnx", onnx_probabilities),
    "litert": ("litert", "model.tflite", litert_runner),
}


def checks(run: Callable[[np.ndarray], np.ndarray], images: np.ndarray, reference: np.ndarray) -> dict:
    """How `run` agrees with the Keras model's probabilities `reference` on `images`."""
    answers = np.concatenate([run(images[start : start + BATCH]) for start in range(0, len(images), BATCH)])
    again = run(images[:BATCH])
    return {
        "test_images": len(images),
        "same_digit": int((answers.argmax(axis=1) == reference.argmax(axis=1)).sum()),
        "largest_probability_difference": float(np.abs(answers - reference).max()),
        "same_answer_twice": bool(np.array_equal(again, answers[:BATCH])),
    }


def line_checks(run: Callable[[np.ndarray], np.ndarray], batches: list[tuple], reference: list) -> dict:
    """How `run` agrees with the Keras line model's probabilities `reference` on the lines of
    `batches`: the same symbols read in each line, the probabilities, the same answer twice."""
    answers = [run(x) for x, _ in batches]
    pairs = [
        (a, r)
        for answer, expected in zip(answers, reference, strict=True)
        for a, r in zip(answer, expected, strict=True)
    ]
    return {
        "test_lines": len(pairs),
        "same_reading": sum(
            [s.symbol for s in decoded_line(a)] == [s.symbol for s in decoded_line(r)] for a, r in pairs
        ),
        "largest_probability_difference": float(max(np.abs(a - r).max() for a, r in pairs)),
        "same_answer_twice": bool(np.array_equal(run(batches[0][0]), answers[0])),
    }


def failure(result: dict) -> str | None:
    """Why the checks' `result` fails (None: it passes)."""
    if "test_lines" in result and result["same_reading"] != result["test_lines"]:
        return f"a different reading of {result['test_lines'] - result['same_reading']} test lines"
    if "test_images" in result and result["same_digit"] != result["test_images"]:
        return f"a different digit on {result['test_images'] - result['same_digit']} test images"
    if result["largest_probability_difference"] > TOLERANCE:
        return f"probabilities differ by up to {result['largest_probability_difference']:.2g}"
    if not result["same_answer_twice"]:
        return "a different answer for the same images"
    return None


def next_version(folder: Path) -> int:
    """TF Serving's next version number in `folder`: one past the highest there, from 1."""
    versions = [int(entry.name) for entry in folder.glob("*") if entry.name.isdigit()]
    return max(versions, default=0) + 1


def export_format(
    name: str, probabilities: keras.Model, out: Path, images, reference, line: bool = False
) -> tuple[Path, dict]:
    """Write one format beside its final place, check it (a line model's on line batches), then
    move it there; returns its path and the checks' figures, or raises ExportError leaving nothing
    behind."""
    keras_format, file_name, runner = FORMATS[name]
    if line:
        runner, checks_of = onnx_line_probabilities, line_checks
    else:
        checks_of = checks
    if file_name is None:
        parent = out / "saved_model" / SERVING_NAME
        final = parent / str(next_version(parent))
    else:
        parent, final = out, out / file_name
    parent.mkdir(parents=True, exist_ok=True)
    partial = parent / f".{final.name}.{uuid.uuid4().hex[:8]}.partial{final.suffix}"
    try:
        try:
            probabilities.export(str(partial), format=keras_format, verbose=False)
            result = checks_of(runner(partial), images, reference)
        except Exception as exc:  # a converter's or a runtime's own failure, whatever its type
            upstream = f" ({UPSTREAM[name]})" if name in UPSTREAM else ""
            raise ExportError(f"the converter or its runtime failed: {reason(exc)}{upstream}") from None
        problem = failure(result)
        if problem:
            raise ExportError(f"its check failed: {problem}, against the Keras model")
        os.replace(partial, final)
    finally:
        if partial.is_dir():
            shutil.rmtree(partial)
        elif partial.exists():
            partial.unlink()
    return final, result


def export(model_path: Path, out: Path, data: Path | None = None, line_path: Path | None = None) -> dict:
    """Export the model saved at `model_path` into `out` in every format, each checked against it
    on MNIST's test set (`data`: datasets/mnist.npz by default), and its page with the line model
    at `line_path`, if any; write export.json. Returns its record; raises ModelError, DataError or
    OutputError, and ExportError when a format failed (after the others are written)."""
    network = load_keras_file(model_path)
    if line_path and is_line_network(network):
        raise ModelError(f"{model_path} is a line model: --line-model goes with a digit classifier")
    line = line_page_model(line_path) if line_path else None  # before the long checks: is it one?
    mnist = load_mnist(data)
    outputs.check_writable(out)
    if is_line_network(network):
        return export_line(network, model_path, out, mnist)
    checked_classifier(network, model_path)
    random = [layer.name for layer in network.layers if type(layer).__name__.startswith("Random")]
    if random:  # models saved before augmentation moved into recipe/fit.py hold it inside
        raise ModelError(
            f"{model_path} holds training-time augmentation ({', '.join(random)}), which an "
            "export would apply at inference: retrain it with `python train.py`"
        )
    probabilities = probability_model(network)
    images = normalize_images(mnist.x_test)
    reference = probabilities.predict(images, batch_size=BATCH, verbose=0)
    written, failed = export_all(probabilities, out, images, reference)
    line_page, line_failure = line_model_for_page(line, out, mnist) if line else (None, None)
    if line_failure:
        failed["line_model"] = line_failure
    threshold = threshold_of(outputs.record_of(model_path))
    digits = PageModel(out / written["onnx"]["path"], threshold, network.name) if "onnx" in written else None
    web = web_folder(out, digits, line_page, WITHOUT_LINE.format(model=model_path, out=out))
    if web:
        failed["web"] = web
    record = outputs.run_record(
        source={"model": str(model_path), "name": network.name, "run": outputs.record_of(model_path)},
        line_model=line_page and {"model": str(line_path), "onnx": str(line_page.path), "name": line.name},
        input=INPUT_CONTRACT,
        output={
            "name": "output_0",
            "shape": [None, NUM_CLASSES],
            "dtype": "float32",
            "meaning": ("the probability of each digit 0-9: the softmax of the network's logits"),
        },
        formats=written,
        failed=failed,
    )
    outputs.write_json(out / "export.json", record)
    print(f"wrote {out / 'export.json'}")
    if failed:
        raise ExportError(f"{', '.join(failed)} not written: see above")
    return record


def export_line(network: keras.Model, model_path: Path, out: Path, mnist) -> dict:
    """A line model's ONNX export, checked on TEST_LINES lines composed from the test digits; its
    export.json. Returns its record; raises ExportError when the check fails."""
    composer = lines.LineComposer.of(mnist.x_test, mnist.y_test, seed=0)
    batches = lines.fixed_batches(composer, TEST_LINES, LINE_BATCH, seed=0)
    reference = [np.asarray(network(x, training=False)) for x, _ in batches]
    written, failed = {}, {}
    try:
        path, result = export_format("onnx", network, out, batches, reference, line=True)
        written["onnx"] = {"path": path.name, "sha256": outputs.sha256_of(path), "checks": result}
        print(
            f"onnx: {path} (the same reading of {result['same_reading']:,} of {result['test_lines']:,} test "
            f"lines, probabilities within {result['largest_probability_difference']:.1e})"
        )
    except ExportError as exc:
        failed["onnx"] = str(exc)
        print(f"error: onnx: {exc}; not written", file=sys.stderr)
    record = outputs.run_record(
        source={"model": str(model_path), "name": network.name, "run": outputs.record_of(model_path)},
        input={
            "name": "line",
            "shape": [None, LINE_HEIGHT, None],
            "dtype": "float32",
            "range": [0.0, 1.0],
            "preprocessing": "data.line_style (the line's ink 24 px tall in 32, 4 px margins), its width "
            "padded to a multiple of 4, then / 255",
        },
        output={
            "name": "output_0",
            "shape": [None, None, LINE_CLASSES],
            "dtype": "float32",
            "meaning": "per frame of 4 px, the probability of each digit 0-9, of a mark that is not a "
            "digit (10) and of CTC's blank (11); ctc.decoded_line reads them",
        },
        formats=written,
        failed=failed,
    )
    outputs.write_json(out / "export.json", record)
    print(f"wrote {out / 'export.json'}")
    if failed:
        raise ExportError("onnx not written: see above")
    return record


def export_all(
    probabilities: keras.Model, out: Path, images: np.ndarray, reference: np.ndarray
) -> tuple[dict, dict]:
    """Every format that passes its checks, by name, with its path, sha256 and the checks' figures;
    and why each other one failed (its earlier file in `out`, maybe of another model, removed)."""
    written, failed = {}, {}
    for name in FORMATS:
        try:
            path, result = export_format(name, probabilities, out, images, reference)
        except ExportError as exc:
            failed[name] = str(exc)
            file_name = FORMATS[name][1]
            if file_name and (out / file_name).exists():
                (out / file_name).unlink()
                exc = f"{exc}; the earlier {file_name} there is removed"
            print(f"error: {name}: {exc}; not written", file=sys.stderr)
            continue
        written[name] = {
            "path": str(path.relative_to(out)),
            "sha256": outputs.sha256_of(path),
            "checks": result,
        }
        print(
            f"{name}: {path} (same digit on {result['same_digit']:,} of {result['test_images']:,} test "
            f"images, probabilities within {result['largest_probability_difference']:.1e})"
        )
    return written, failed


def line_model_for_page(line: PageModel, out: Path, mnist) -> tuple[PageModel | None, str | None]:
    """The `line` model as the page reads it, from an .onnx file: its own, or its export into
    out/line/ (checked by export_line) if it is a .keras file; and why it is not there, if that
    export failed."""
    if line.threshold is None:
        print(f"note: {line.path} has no calibrated threshold, so the page says no number is not sure")
    if line.path.suffix.lower() == ".onnx":
        return line, None
    try:
        export_line(load_keras_file(line.path), line.path, out / LINE_FOLDER, mnist)
    except ExportError:
        return None, f"{line.path} could not be exported to ONNX (see above), so the page reads no numbers"
    return PageModel(out / LINE_FOLDER / FORMATS["onnx"][1], line.threshold, line.name), None


def web_folder(
    out: Path, digits: PageModel | None, line: PageModel | None = None, without: str = ""
) -> str | None:
    """Write out/web/, the page reading with the `digits` model (None: model.onnx was not written),
    and numbers with the `line` model (None: it says `without`); why it was not written, if not."""
    if digits is None:
        problem = "it reads model.onnx, which was not written"
    else:
        try:
            write_web_folder(out / "web", digits, line, without)
            reads = "digits and numbers" if line else "digits"
            print(f"web: {out / 'web'} (the page, reading {reads} in the browser: docs/offline-page.md)")
            return None
        except RuntimeMissing as exc:
            problem = str(exc)
    print(f"error: web: {problem}; not written", file=sys.stderr)
    return problem


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    try:
        return export(args.model, args.out, args.data, args.line_model)
    except ExportError:
        raise SystemExit(1) from None  # each failure is reported above
    except (ModelError, DataError, outputs.OutputError) as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
