import dataclasses
import math

import keras
import numpy as np
import pytest

from data import FRAME_WIDTH, LINE_CLASSES, LINE_HEIGHT, normalize_images
from model import PREDICTION_CHUNK, ModelConfig, build_model, probabilities_function, probability_model
from recipe.settings import ARCH_DEFAULTS


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


@pytest.mark.parametrize("convolutions", [1, 2])
def test_cnn_has_blocks_of_convolutions_then_pooling_and_no_random_layers(convolutions):
    model = build_model(dataclasses.replace(ARCH_DEFAULTS["cnn"].model, convolutions=convolutions))
    types = layer_types(model)
    block = ["Conv2D"] * convolutions + ["MaxPooling2D"]
    assert types[: types.index("Flatten")] == ["InputLayer", "Reshape", *block, *block]
    assert not [name for name in types if name.startswith("Random")]  # augmentation is training's
    assert model.input_shape == (None, 28, 28) and model.output_shape == (None, 10)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"arch": "rnn"}, "arch must be one of mlp, cnn, line, got 'rnn'"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
        ({"dropout": float("nan")}, r"dropout must be in \[0, 1\), got nan"),
        ({"hidden": (0,)}, r"hidden must be 1 to 16 sizes of 1 to 65,536, got \(0,\)"),
        ({"hidden": (8,) * 17}, r"hidden must be 1 to 16 sizes"),
        ({"filters": ()}, r"filters must be 1 to 4 sizes of 1 to 65,536, got \(\)"),
        ({"kernel_size": 0}, "kernel_size must be 1 to 28, got 0"),
        ({"convolutions": 0}, "convolutions must be 1 to 8, got 0"),
        ({"convolutions": 9}, "convolutions must be 1 to 8, got 9"),
        (
            {"arch": "cnn", "filters": (65536, 65536)},
            "cnn with hidden .* and filters .* makes [0-9,]+ weights, over",
        ),
        ({"output_activation": "tanh"}, "output_activation must be one of sigmoid, softmax, got 'tanh'"),
    ],
)
def test_invalid_configs_are_refused_with_the_reason(bad, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**bad)


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(),
        ModelConfig(arch="cnn", hidden=(128,)),
        ModelConfig(arch="cnn", filters=(8, 16, 32, 64), kernel_size=5),
        ModelConfig(arch="cnn", filters=(8, 16, 32), convolutions=3),
        ModelConfig(arch="line", filters=(8, 16, 32), hidden=(24, 16), output_activation="softmax"),
        ModelConfig(arch="line", filters=(8, 8, 8, 8), convolutions=2, output_activation="softmax"),
    ],
)
def test_the_weights_a_config_describes_are_the_weights_its_network_holds(config):
    assert config.weights() == build_model(config).count_params()


@pytest.mark.parametrize(
    "config",
    [ModelConfig(), ModelConfig(arch="cnn", filters=(8, 16, 32), convolutions=3, hidden=(64, 32))],
)
def test_the_activations_a_config_counts_are_what_its_layers_compute_for_an_image(config):
    computed = (keras.layers.Conv2D, keras.layers.MaxPooling2D, keras.layers.Dense)
    layers = [layer for layer in build_model(config).layers if isinstance(layer, computed)]
    assert config.activations() == 28 * 28 + sum(math.prod(layer.output.shape[1:]) for layer in layers)


def test_probabilities_sum_to_one_and_keep_the_sigmoid_ranking(mnist):
    model = build_model(ModelConfig(hidden=(32,)))
    images = normalize_images(mnist.x_test[:50])
    scores = model.predict(images, verbose=0)
    probabilities = probability_model(model).predict(images, verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    assert np.array_equal(probabilities.argmax(axis=1), scores.argmax(axis=1))


@pytest.mark.parametrize("count", [0, 1, PREDICTION_CHUNK, 2 * PREDICTION_CHUNK + 7])
def test_the_probabilities_function_reads_any_number_of_images_as_predict_does(mnist, count):
    model = build_model(ModelConfig(arch="cnn", hidden=(16,), filters=(4, 8)))
    images = normalize_images(mnist.x_test[:count])
    read = probabilities_function(model)(images)
    assert read.shape == (count, 10)
    if count:
        expected = probability_model(model).predict(images, batch_size=256, verbose=0)
        np.testing.assert_allclose(read, expected, atol=1e-6)


def test_the_line_model_reads_any_width_into_a_frame_per_4_px_of_12_probabilities():
    model = build_model(ModelConfig(arch="line", filters=(8, 16), hidden=(16,), output_activation="softmax"))
    for width in (64, 200, 332):
        probabilities = np.asarray(
            model(np.random.default_rng(0).random((2, LINE_HEIGHT, width)), training=False)
        )
        assert probabilities.shape == (2, width // FRAME_WIDTH, LINE_CLASSES)
        np.testing.assert_allclose(probabilities.sum(axis=-1), 1, rtol=1e-5)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"output_activation": "sigmoid"}, "the line model reads with softmax"),
        ({"filters": (16,)}, "the line model needs 2 to 4 convolution blocks"),
    ],
)
def test_line_settings_that_cannot_read_a_line_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{"arch": "line", "output_activation": "softmax", **bad})
