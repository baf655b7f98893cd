import json
import zipfile

import keras
import numpy as np
import pytest

from data import normalize_images
from model import ModelConfig, ModelError, build_model, load_trained_model, probability_model
from settings import ARCH_DEFAULTS


def layer_types(model):
    return [type(layer).__name__ for layer in model.layers]


def test_default_is_dense_relu_network_with_sigmoid_output():
    model = build_model(ModelConfig())
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [1024, 512, 10]
    assert all(layer.activation.__name__ == "relu" for layer in dense[:-1])
    assert model.layers[-1].activation.__name__ == "sigmoid"
    assert "Conv2D" not in layer_types(model)
    assert model.input_shape == (None, 28, 28) and model.output_shape == (None, 10)


def test_options_change_output_activation_widths_and_dropout():
    model = build_model(ModelConfig(hidden=(32, 16, 8), dropout=0.0, output_activation="softmax"))
    assert [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)] == [32, 16, 8, 10]
    assert model.layers[-1].activation.__name__ == "softmax"
    assert "Dropout" not in layer_types(model)


def test_cnn_has_convolutions_and_pooling_and_no_random_layers():
    model = build_model(ARCH_DEFAULTS["cnn"].model)
    types = layer_types(model)
    assert types.count("Conv2D") == 2 and types.count("MaxPooling2D") == 2
    assert not [name for name in types if name.startswith("Random")]  # augmentation is training's
    assert model.input_shape == (None, 28, 28) and model.output_shape == (None, 10)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"arch": "rnn"}, "arch must be one of mlp, cnn, got 'rnn'"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
        ({"dropout": float("nan")}, r"dropout must be in \[0, 1\), got nan"),
        ({"hidden": (0,)}, r"hidden must be one or more positive sizes, got \(0,\)"),
        ({"filters": ()}, r"filters must be one or more positive sizes, got \(\)"),
        ({"kernel_size": 0}, "kernel_size must be a positive integer, got 0"),
        ({"output_activation": "tanh"}, "output_activation must be one of sigmoid, softmax, got 'tanh'"),
    ],
)
def test_invalid_configs_are_refused_with_the_reason(bad, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**bad)


def test_probabilities_sum_to_one_and_keep_the_sigmoid_ranking(mnist):
    model = build_model(ModelConfig(hidden=(32,)))
    images = normalize_images(mnist.x_test[:50])
    scores = model.predict(images, verbose=0)
    probabilities = probability_model(model).predict(images, verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    assert np.array_equal(probabilities.argmax(axis=1), scores.argmax(axis=1))


def test_missing_model_says_to_train_first(tmp_path):
    with pytest.raises(ModelError, match="run `python train.py` first"):
        load_trained_model(tmp_path / "model.keras")


def test_garbage_and_truncated_models_are_model_errors(tmp_path, trained_run):
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"not a model at all")
    with pytest.raises(ModelError, match="cannot load"):
        load_trained_model(garbage)
    truncated = tmp_path / "truncated.keras"
    saved = (trained_run.folder / "model.keras").read_bytes()
    truncated.write_bytes(saved[: len(saved) // 2])
    with pytest.raises(ModelError, match="cannot load"):
        load_trained_model(truncated)


def with_config(saved, path, change):
    """A copy of the .keras file `saved` at `path`, its config.json text rewritten by `change`."""
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(path, "w") as copy:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "config.json":
                data = change(json.loads(data)).encode()
            copy.writestr(item, data)
    return path


def first_dense(config):
    return next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")


def widened(config):
    first_dense(config)["config"]["units"] = 2**28  # 800 GB of weights
    return json.dumps(config)


def nested(config, depth=100_000):
    first_dense(config)["config"]["extra"] = "DEEP"
    return json.dumps(config).replace('"DEEP"', "[" * depth + "]" * depth)


def fairly_nested(config):
    return nested(config, depth=100)


@pytest.mark.parametrize(
    "change, says",
    [(widened, "268,435,456 units"), (nested, "nests too deep"), (fairly_nested, "nests over 40")],
)
def test_a_model_file_too_wide_or_too_deep_to_build_is_refused_unbuilt(tmp_path, trained_run, change, says):
    path = with_config(trained_run.folder / "model.keras", tmp_path / "bad.keras", change)
    with pytest.raises(ModelError, match=f"cannot load .*{says}"):
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


def test_model_saved_with_augmentation_inside_still_loads_and_predicts_the_same_twice(tmp_path, mnist):
    # Models saved before augmentation moved into training carry RandomTranslation/RandomRotation.
    inputs = keras.Input((28, 28))
    x = keras.layers.Reshape((28, 28, 1))(inputs)
    x = keras.layers.RandomRotation(0.04, fill_mode="constant")(keras.layers.RandomTranslation(0.1, 0.1)(x))
    logits = keras.layers.Dense(10, name="logits")(keras.layers.Flatten()(x))
    path = tmp_path / "old.keras"
    keras.Model(inputs, keras.layers.Activation("sigmoid", name="digit")(logits)).save(path)
    model = load_trained_model(path)
    images = normalize_images(mnist.x_test[:50])
    assert np.array_equal(model.predict(images, verbose=0), model.predict(images, verbose=0))
