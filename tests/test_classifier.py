"""Loading a trained model to read with. A .keras file: anything but a digit classifier made by
train.py is refused before it is built or run. An .onnx export: the same answers as the Keras model
it came from, and its calibrated threshold found through export.json (test_serving_environment.py
reads it where TensorFlow cannot be imported)."""

import io
import json
import shutil
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import onnx
import onnxruntime
import pytest

from conftest import onnx_path
from data import normalize_images
from ground import outputs
from ground.saved_network import ModelError, load_trained_model
from hostile_files import even_odds, nan_past_ink, onnx_digit_model, with_config
from reader.classifier import load_classifier


def test_missing_model_says_to_train_first(tmp_path):
    with pytest.raises(ModelError, match="run `python train.py` first"):
        load_trained_model(tmp_path / "model.keras")


def test_garbage_and_truncated_models_are_model_errors(tmp_path, untrained_run):
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"not a model at all")
    with pytest.raises(ModelError, match="cannot load"):
        load_trained_model(garbage)
    truncated = tmp_path / "truncated.keras"
    saved = (untrained_run.folder / "model.keras").read_bytes()
    truncated.write_bytes(saved[: len(saved) // 2])
    with pytest.raises(ModelError, match="cannot load"):
        load_trained_model(truncated)
    with pytest.raises(ModelError, match="cannot load"):
        load_trained_model(damaged_inside(untrained_run.folder / "model.keras", tmp_path / "damaged.keras"))


def damaged_inside(saved: Path, path: Path) -> Path:
    """A copy of the .keras file `saved` whose config.json is compressed, and its compressed bytes
    then damaged: the archive's directory reads, the entry does not (zlib's own error)."""
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as copy:
        for item in source.infolist():
            copy.writestr(item.filename, source.read(item))
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        entry = archive.getinfo("config.json")
    start = entry.header_offset + 30 + len(entry.filename) + len(entry.extra)
    raw[start : start + 16] = bytes(16)  # zeros where the deflate stream's first block was
    path.write_bytes(bytes(raw))
    return path


def first_dense(config):
    return next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")


def widened(config):
    first_dense(config)["config"]["units"] = 2**28  # 800 GB of weights
    return json.dumps(config)


def dense_layers(config):
    return [layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense"]


def each_layer_allowed_all_too_many(config):
    first, second = dense_layers(config)[:2]  # 784 -> 65,536 -> 65,536: 17 GB, each layer allowed
    first["config"]["units"] = second["config"]["units"] = 65_536
    second["build_config"]["input_shape"] = [None, 65_536]
    return json.dumps(config)


def more_than_the_file_holds(config):
    dense_layers(config)[0]["config"]["units"] = 65_536  # 51 million weights in a file of kilobytes
    return json.dumps(config)


def nested(config, depth=100_000):
    first_dense(config)["config"]["extra"] = "DEEP"
    return json.dumps(config).replace('"DEEP"', "[" * depth + "]" * depth)


def fairly_nested(config):
    return nested(config, depth=100)


@pytest.mark.parametrize(
    "change, says",
    [
        (widened, "268,435,456 units"),
        (each_layer_allowed_all_too_many, "layers hold 4,346,[0-9,]+ weights, over 100,000,000"),
        (more_than_the_file_holds, "layers hold 51,[0-9,]+ weights, more than its [0-9,]+-byte weights file"),
        (nested, "nests too deep"),
        (fairly_nested, "nests over 40"),
    ],
)
def test_a_model_file_too_wide_or_too_deep_to_build_is_refused_unbuilt(tmp_path, untrained_run, change, says):
    path = with_config(untrained_run.folder / "model.keras", tmp_path / "bad.keras", change)
    with pytest.raises(ModelError, match=f"cannot load .*{says}"):
        load_trained_model(path)


def with_unconnected(layer, input_shape):
    """A config change: `layer`, built for `input_shape`, added to the model but to none of its paths."""

    def change(config):
        saved = keras.saving.serialize_keras_object(layer)
        saved.update(name=layer.name, inbound_nodes=[], build_config={"input_shape": input_shape})
        config["config"]["layers"].append(saved)
        return json.dumps(config)

    return change


@pytest.mark.parametrize(
    "layer, input_shape",
    [
        (keras.layers.Embedding(200_000, 2_000, name="table"), [None, 3]),  # 1.6 GB, no units or filters
        (keras.layers.DepthwiseConv2D(9_000, name="kernel"), [None, 9_000, 9_000, 1]),  # 324 MB
    ],
    ids=["embedding", "depthwise-convolution"],
)
def test_a_model_file_with_a_layer_train_py_never_builds_is_refused_unbuilt(
    tmp_path, untrained_run, layer, input_shape
):
    change = with_unconnected(layer, input_shape)
    path = with_config(untrained_run.folder / "model.keras", tmp_path / "bad.keras", change)
    assert path.stat().st_size < 1_000_000
    with pytest.raises(ModelError, match=f"cannot load .*a layer of class '{layer.__class__.__name__}'"):
        load_trained_model(path)


def with_weights(saved, path, change):
    """A copy of the .keras file `saved` at `path`, its weights file rewritten by `change` (which
    takes and returns the file's bytes), and every member deflated."""
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as copy:
        for item in source.infolist():
            data = source.read(item)
            copy.writestr(item.filename, change(data) if item.filename == "model.weights.h5" else data)
    return path


def with_undeclared_dataset(weights):
    """HDF5 `weights` with one more dataset of 20000x20000 float32 (1.6 GB) declared, none of it
    written: chunked storage is allocated only when written, so the file stays small."""
    buffer = io.BytesIO(weights)
    with h5py.File(buffer, "r+") as opened:
        opened.create_dataset("layers/spare/vars/0", shape=(20_000, 20_000), dtype="f4", chunks=(100, 100))
    return buffer.getvalue()


@pytest.mark.parametrize(
    "change, says",
    [
        (lambda weights: weights + bytes(50_000_000), "its weights file expands to 50,[0-9,]+ bytes"),
        (with_undeclared_dataset, "its weights file declares 1,600,[0-9,]+ bytes of weights, over"),
    ],
    ids=["zip-bomb", "declared-dataset"],
)
def test_a_weights_file_expanding_past_its_weights_is_refused_unextracted(
    tmp_path, untrained_run, change, says
):
    path = with_weights(untrained_run.folder / "model.keras", tmp_path / "bomb.keras", change)
    assert path.stat().st_size < 1_000_000
    with pytest.raises(ModelError, match=f"cannot load .*{says}"):
        load_trained_model(path)


def test_a_model_file_with_a_member_expanding_past_its_bound_is_refused_unextracted(tmp_path, untrained_run):
    path = with_weights(
        untrained_run.folder / "model.keras", tmp_path / "bomb.keras", lambda weights: weights
    )
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("assets/padding.bin", bytes(50_000_000))
    with pytest.raises(ModelError, match="member assets/padding.bin expands to 50,000,000 bytes, over"):
        load_trained_model(path)


def test_model_of_another_shape_is_refused(tmp_path):
    inputs = keras.Input((32, 32))
    other = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
    path = tmp_path / "other.keras"
    other.save(path)
    with pytest.raises(ModelError, match="not a digit classifier"):
        load_trained_model(path)


def test_model_carrying_code_is_refused_not_run(tmp_path):
    inputs = keras.Input((28, 28))
    flat = keras.layers.Flatten()(inputs)
    # A Lambda's Python code is stored in the file; safe_mode must refuse to deserialize it.
    outputs = keras.layers.Lambda(lambda x: x[:, :10] * 2)(keras.layers.Dense(10, name="logits")(flat))
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(ModelError, match="cannot load"):
        load_trained_model(path)


def test_a_model_saved_with_augmentation_inside_is_read_with_it_off(tmp_path, mnist):
    # Models saved before augmentation moved into training carry RandomTranslation/RandomRotation:
    # the reader must run them as at inference (training=False), or each reading would differ.
    inputs = keras.Input((28, 28))
    x = keras.layers.Reshape((28, 28, 1))(inputs)
    x = keras.layers.RandomRotation(0.04, fill_mode="constant")(keras.layers.RandomTranslation(0.1, 0.1)(x))
    logits = keras.layers.Dense(10, name="logits")(keras.layers.Flatten()(x))
    path = tmp_path / "old.keras"
    keras.Model(inputs, keras.layers.Activation("sigmoid", name="digit")(logits)).save(path)
    classifier = load_classifier(path)
    images = normalize_images(mnist.x_test[:50])
    first = classifier.probabilities_of(images)
    assert np.array_equal(first, classifier.probabilities_of(images))
    np.testing.assert_allclose(first.sum(axis=1), 1, rtol=1e-5)


@pytest.mark.slow
def test_an_onnx_export_reads_like_its_keras_model_with_the_same_threshold(exported, trained_run, mnist):
    keras_model = load_classifier(trained_run.folder / "model.keras")
    onnx_model = load_classifier(onnx_path(exported))
    images = normalize_images(mnist.x_test[:500])
    np.testing.assert_allclose(
        onnx_model.probabilities_of(images), keras_model.probabilities_of(images), atol=1e-5
    )
    assert onnx_model.threshold == keras_model.threshold == trained_run.record["calibration"]["threshold"]
    assert (onnx_model.name, onnx_model.output_activation) == (
        keras_model.name,
        keras_model.output_activation,
    )


@pytest.mark.slow
def test_an_onnx_file_that_export_json_does_not_list_has_no_threshold(exported, tmp_path):
    alone = tmp_path / "model.onnx"
    shutil.copy(onnx_path(exported), alone)
    assert load_classifier(alone).threshold is None  # no export.json beside it
    shutil.copy(exported[1] / "export.json", tmp_path / "export.json")
    assert load_classifier(alone).threshold is not None
    other = onnx.load(alone)
    other.doc_string = "another model"  # as readable, but not the file export.json lists
    onnx.save(other, alone)
    assert load_classifier(alone).threshold is None


@pytest.mark.parametrize(
    "record",
    [
        "not json",
        {"formats": "none"},
        {"formats": {"onnx": {"path": "model.onnx", "sha256": "LISTED"}}, "source": "x"},
        {"formats": {"onnx": {"path": "model.onnx", "sha256": "LISTED"}}, "source": {"run": None}},
        {
            "formats": {"onnx": {"path": "model.onnx", "sha256": "LISTED"}},
            "source": {"run": {"calibration": None, "model": "mlp"}, "name": 7},
        },
        {
            "formats": {"onnx": {"path": "model.onnx", "sha256": "LISTED"}},
            "source": {"run": {"calibration": {"threshold": "high"}}},
        },
        {  # true is not 1.0 (which would make every reading "not sure")
            "formats": {"onnx": {"path": "model.onnx", "sha256": "LISTED"}},
            "source": {"run": {"calibration": {"threshold": True}}},
        },
        "[" * 100_000 + "]" * 100_000,  # too deep for Python's recursion
        # Both read as 0.0, which would flag no reading: as good as none, and said so.
        '{"formats": {"onnx": {"path": "model.onnx", "sha256": "LISTED"}}, '
        '"source": {"run": {"calibration": {"threshold": 1e-400}}}}',
        {
            "formats": {"onnx": {"path": "model.onnx", "sha256": "LISTED"}},
            "source": {"run": {"calibration": {"threshold": -0.0}}},
        },
    ],
)
def test_an_export_json_that_says_nothing_usable_leaves_the_model_readable_and_never_unsure(tmp_path, record):
    model = even_odds(tmp_path / "model.onnx")
    text = record if isinstance(record, str) else json.dumps(record)
    (tmp_path / "export.json").write_text(text.replace("LISTED", outputs.sha256_of(model)))
    loaded = load_classifier(model)
    assert loaded.threshold is None and loaded.name == "model"
    assert loaded.probabilities_of(np.zeros((2, 28, 28), np.float32)).shape == (2, 10)


def test_onnx_files_that_are_missing_damaged_or_not_digit_classifiers_are_refused(tmp_path):
    with pytest.raises(ModelError, match="run `python export.py` first"):
        load_classifier(tmp_path / "model.onnx")
    (tmp_path / "garbage.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load .*export it again"):
        load_classifier(tmp_path / "garbage.onnx")
    inputs = keras.Input(shape=(5,), name="image")
    other = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    other(np.zeros((1, 5), np.float32))  # Keras exports only a model that has been called
    other.export(str(tmp_path / "other.onnx"), format="onnx", verbose=False)
    with pytest.raises(ModelError, match="not 28x28 images to 10 digits"):
        load_classifier(tmp_path / "other.onnx")


@pytest.mark.slow
def test_an_onnx_model_that_loads_but_fails_when_run_is_refused_at_load(exported, tmp_path):
    failing = onnx.load(onnx_path(exported))
    # Its first operation asks for a shape no image has: loading succeeds, the first run fails.
    reshape = onnx.helper.make_node("Reshape", [failing.graph.input[0].name, "odd"], ["odd_images"])
    failing.graph.initializer.append(onnx.numpy_helper.from_array(np.array([-1, 11], np.int64), "odd"))
    for node in failing.graph.node:
        node.input[:] = ["odd_images" if name == failing.graph.input[0].name else name for name in node.input]
    failing.graph.node.insert(0, reshape)
    onnx.save(failing, tmp_path / "failing.onnx")
    onnxruntime.InferenceSession(str(tmp_path / "failing.onnx"), providers=["CPUExecutionProvider"])  # loads
    with pytest.raises(ModelError, match="cannot load .*export it again"):
        load_classifier(tmp_path / "failing.onnx")


def test_an_onnx_digit_model_taking_a_fixed_number_of_images_is_refused(tmp_path):
    fixed = onnx.load(even_odds(tmp_path / "model.onnx"))
    fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1  # one image per call, no more
    onnx.save(fixed, tmp_path / "fixed.onnx")
    with pytest.raises(ModelError, match=r"maps \[1, 28, 28\].*not 28x28 images to 10 digits"):
        load_classifier(tmp_path / "fixed.onnx")


def test_an_onnx_model_answering_nan_for_real_digits_is_refused_at_load(tmp_path):
    # Blank images, the old check, are read (ten 0.1s); a digit's ink is NaN.
    model = nan_past_ink(tmp_path / "nan.onnx", most_ink=0.0)
    with pytest.raises(ModelError, match=r"on 1 real image\(s\), its answer is not numbers"):
        load_classifier(model)


def test_an_onnx_model_that_runs_only_two_images_at_a_time_is_refused_at_load(tmp_path):
    nodes = [
        onnx.helper.make_node("Reshape", ["images", "two"], ["rows"]),  # (2, 784): no other batch
        onnx.helper.make_node("MatMul", ["rows", "weights"], ["logits"]),
        onnx.helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    constants = {"two": np.array([2, 784], np.int64), "weights": np.zeros((784, 10), np.float32)}
    model = onnx_digit_model(tmp_path / "two.onnx", nodes, constants)
    with pytest.raises(ModelError, match=r"cannot load .*failed on 1 image\(s\)"):
        load_classifier(model)


def test_an_onnx_model_asking_a_gigabyte_a_run_is_refused_at_load(tmp_path):
    nodes = [  # each image's ink spread over a billion bytes, then summed
        onnx.helper.make_node("ReduceSum", ["images", "pixels"], ["ink"], keepdims=1),  # (n, 1, 1)
        onnx.helper.make_node("Reshape", ["ink", "column"], ["ink_column"]),  # (n, 1)
        onnx.helper.make_node("Expand", ["ink_column", "gigabyte"], ["spread"]),  # (n, 250M)
        onnx.helper.make_node("ReduceSum", ["spread", "last"], ["total"], keepdims=1),
        onnx.helper.make_node("Mul", ["total", "zeros"], ["logits"]),
        onnx.helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    constants = {
        "pixels": np.array([1, 2], np.int64),
        "column": np.array([-1, 1], np.int64),
        "gigabyte": np.array([1, 250_000_000], np.int64),
        "last": np.array([1], np.int64),
        "zeros": np.zeros((1, 10), np.float32),
    }
    model = onnx_digit_model(tmp_path / "greedy.onnx", nodes, constants)
    with pytest.raises(ModelError, match=r"cannot load .*failed on 1 image\(s\)"):
        load_classifier(model)


def test_an_onnx_file_is_opened_once_when_it_loads(tmp_path, monkeypatch):
    sessions = []
    open_session = onnxruntime.InferenceSession
    monkeypatch.setattr(
        onnxruntime,
        "InferenceSession",
        lambda *args, **kwargs: sessions.append(args[0]) or open_session(*args, **kwargs),
    )
    model = load_classifier(even_odds(tmp_path / "model.onnx"))
    assert sessions == [str(tmp_path / "model.onnx")] and model.threshold is None
