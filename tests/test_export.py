"""export.py: each format written, checked in its own runtime, and moved into place only if it
answers like the Keras model; TF Serving's version folders; models that must not be exported."""

import hashlib
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import export
from conftest import run_script
from data import normalize_images
from ground import outputs


@pytest.mark.slow
def test_every_format_answers_like_the_keras_model_on_all_test_digits(exported):
    record, folder = exported
    assert set(record["formats"]) == {"saved_model", "onnx", "litert"} and record["failed"] == {}
    for written in record["formats"].values():
        assert written["checks"]["same_digit"] == written["checks"]["test_images"] == 10_000
        assert written["checks"]["largest_probability_difference"] <= 1e-4
        assert written["checks"]["same_answer_twice"]
    assert json.loads((folder / "export.json").read_text()) == record
    onnx = folder / record["formats"]["onnx"]["path"]
    assert hashlib.sha256(onnx.read_bytes()).hexdigest() == record["formats"]["onnx"]["sha256"]
    assert record["source"]["run"]["weights_sha256"] and record["input"]["range"] == [0.0, 1.0]


@pytest.mark.slow
def test_the_saved_model_serves_probabilities_through_tf_servings_signature(exported, mnist):
    record, folder = exported
    assert record["formats"]["saved_model"]["path"] == "saved_model/mnist/1"
    signature = tf.saved_model.load(str(folder / "saved_model/mnist/1")).signatures["serving_default"]
    spec = signature.structured_input_signature[1]["image"]
    assert spec.dtype == tf.float32 and spec.shape.as_list() == [None, 28, 28]
    probabilities = signature(image=tf.constant(normalize_images(mnist.x_test[:50])))["output_0"].numpy()
    assert probabilities.shape == (50, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)


@pytest.mark.slow
def test_a_new_export_is_the_next_saved_model_version_and_leaves_the_last_untouched(exported, trained_run):
    record, folder = exported
    again = export.main(["--model", str(trained_run.folder / "model.keras"), "--out", str(folder)])
    assert again["formats"]["saved_model"]["path"] == "saved_model/mnist/2"
    assert outputs.sha256_of(folder / "saved_model/mnist/1") == record["formats"]["saved_model"]["sha256"]


@pytest.mark.slow
def test_a_format_failing_its_check_is_not_written_and_the_others_are(untrained_run, tmp_path, monkeypatch):
    keras_format, name, runner = export.FORMATS["onnx"]

    def reversed_digits(path):  # onnxruntime's answers with the digits in reverse order
        run = runner(path)
        return lambda images: run(images)[:, ::-1]

    monkeypatch.setitem(export.FORMATS, "onnx", (keras_format, name, reversed_digits))
    (tmp_path / "model.onnx").write_bytes(b"an earlier export, perhaps of another model")
    with pytest.raises(SystemExit) as exit_info:
        export.main(["--model", str(untrained_run.folder / "model.keras"), "--out", str(tmp_path)])
    assert exit_info.value.code == 1
    record = json.loads((tmp_path / "export.json").read_text())
    assert "a different digit" in record["failed"]["onnx"] and set(record["formats"]) == {
        "saved_model",
        "litert",
    }
    assert not (tmp_path / "model.onnx").exists() and not list(tmp_path.glob(".*partial*"))


def test_a_model_holding_training_augmentation_is_refused(tmp_path):
    inputs = keras.Input((28, 28))
    x = keras.layers.Reshape((28, 28, 1))(inputs)
    x = keras.layers.RandomTranslation(0.1, 0.1)(x)  # as models saved before recipe/fit.py held it
    logits = keras.layers.Dense(10, name="logits")(keras.layers.Flatten()(x))
    path = tmp_path / "old.keras"
    keras.Model(inputs, keras.layers.Activation("sigmoid", name="digit")(logits)).save(path)
    with pytest.raises(SystemExit, match="holds training-time augmentation"):
        export.main(["--model", str(path), "--out", str(tmp_path / "export")])
    assert not (tmp_path / "export").exists() or not any((tmp_path / "export").iterdir())


@pytest.fixture(scope="module")
def line_export(line_model_file, tmp_path_factory):
    """export.py's ONNX of an (untrained) line model."""
    folder = tmp_path_factory.mktemp("line-export")
    record = export.main(["--model", str(line_model_file), "--out", str(folder)])
    return record, folder


@pytest.mark.slow
def test_a_line_model_is_exported_to_onnx_reading_every_test_line_as_keras_does(line_export):
    record, folder = line_export
    assert set(record["formats"]) == {"onnx"} and record["failed"] == {}
    checks = record["formats"]["onnx"]["checks"]
    assert checks["same_reading"] == checks["test_lines"] == export.TEST_LINES
    assert checks["largest_probability_difference"] <= 1e-4 and checks["same_answer_twice"]
    assert record["input"]["shape"] == [None, 32, None] and record["output"]["shape"] == [None, None, 12]


@pytest.mark.slow
def test_the_exported_line_model_reads_without_tensorflow(line_export):
    _, folder = line_export
    script = (
        "import sys; from reader.classifier import load_model_file; "
        f"model = load_model_file({str(folder / 'model.onnx')!r}); "
        "print(type(model).__name__, 'tensorflow' in sys.modules)"
    )
    result = run_script("-c", script)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["LineModel", "False"]


def test_a_line_model_for_the_page_must_be_one_and_go_with_a_digit_classifier(
    untrained_run, line_model_file, tmp_path
):
    digits, line, out = str(untrained_run.folder / "model.keras"), str(line_model_file), tmp_path / "export"
    with pytest.raises(SystemExit, match="is a digit classifier, not a line model"):
        export.main(["--model", digits, "--out", str(out), "--line-model", digits])
    with pytest.raises(SystemExit, match="is a line model: --line-model goes with a digit classifier"):
        export.main(["--model", line, "--out", str(out), "--line-model", line])
    assert not out.exists()
