"""The network: its configuration, one builder for every variant, and its probabilities.

    from model import ModelConfig, build_model
    model = build_model(ModelConfig())                # 784 -> 1024 -> 512 -> 10 sigmoid
    model = build_model(ModelConfig(arch="cnn", hidden=(128,), output_activation="softmax"))
    model = build_model(ModelConfig(arch="line", ...))   # a line (n, 32, w) -> (n, w / 4, 12)

Every digit classifier takes float32 images (n, 28, 28) from data.normalize_images and returns 10
scores. The line model takes a line of any width in data.line_style's form, float32 (n, 32, w) in
[0, 1], and returns probabilities over data.LINE_CLASSES per frame of FRAME_WIDTH px, for CTC.
It is the inference network only: augmentation belongs to training (recipe/fit.py). The per-arch
defaults live in recipe/settings.py; a saved model travels with a run record (run.json, ground/outputs.py) and
is loaded, safely, by ground/saved_network.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np

from data import FRAME_WIDTH, IMAGE_SIZE, LINE_CLASSES, LINE_HEIGHT, NUM_CLASSES
from ground.saved_network import LOGITS_LAYER, MAX_WEIGHTS, MAX_WIDTH, OUTPUT_LAYER

ARCHS = ("mlp", "cnn", "line")
OUTPUT_ACTIVATIONS = ("sigmoid", "softmax")
# Upper bounds of the settings, far past any useful network, so that no setting asks for more
# memory than a machine has (with the bound on a batch's activations, recipe/settings.py); the widest
# layer and the most weights are ground/saved_network.py's, which refuses a saved model past them too. Time is
# the user's to spend: a large network trains slowly, and --epochs is bounded only at 10,000.
MAX_LAYERS = 16  # dense layers
MAX_BLOCKS = 4  # convolution blocks: each pooling halves the 28 px side, and a fifth leaves none
MAX_CONVOLUTIONS = 8  # in one block
# The line model: its blocks each halve the height; the first WIDTH_POOLS halve the width too,
# leaving one frame per FRAME_WIDTH px, 3 to 4 a digit: CTC needs one per symbol and a blank between.
WIDTH_POOLS = 2
BATCH_NORM_MOMENTUM = 0.9
NOMINAL_LINE_WIDTH = 384  # px: a line of 12 digits, for the bound on a batch's activations


@dataclass(frozen=True)
class ModelConfig:
    """The network's settings. Each field is a flag of train.py; its metadata holds the help."""

    arch: str = field(
        default="mlp",
        metadata={
            "choices": ARCHS,
            "help": "dense network, or convolution blocks first; line: a number's line read by CTC",
        },
    )
    hidden: tuple[int, ...] = field(
        default=(1024, 512),
        metadata={"help": "widths of the Dense ReLU layers (line: of its bidirectional GRU layers)"},
    )
    dropout: float = field(default=0.1, metadata={"help": "dropout after each hidden layer; 0 turns it off"})
    # The user's design: 10 independent sigmoid units. Keras computes categorical cross-entropy
    # from the logits under them, so they train exactly as a softmax output would (see
    # probability_model); softmax is the textbook alternative.
    output_activation: str = field(
        default="sigmoid", metadata={"choices": OUTPUT_ACTIVATIONS, "help": "the output layer's activation"}
    )
    filters: tuple[int, ...] = field(
        default=(32, 64), metadata={"help": "cnn: filters of each convolution block"}
    )
    kernel_size: int = field(default=3, metadata={"help": "cnn, line: convolution kernel size"})
    convolutions: int = field(
        default=1, metadata={"help": "cnn, line: convolutions in each block, before its pooling"}
    )

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.output_activation not in OUTPUT_ACTIVATIONS:
            choices = ", ".join(OUTPUT_ACTIVATIONS)
            raise ValueError(f"output_activation must be one of {choices}, got {self.output_activation!r}")
        if not 0 <= self.dropout < 1:  # NaN fails this too
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        for name, most in (("hidden", MAX_LAYERS), ("filters", MAX_BLOCKS)):
            sizes = getattr(self, name)
            if not sizes or min(sizes) < 1 or len(sizes) > most or max(sizes) > MAX_WIDTH:
                raise ValueError(
                    f"{name} must be 1 to {most} sizes of 1 to {MAX_WIDTH:,}, got {shown(sizes)}"
                )
        if not 1 <= self.kernel_size <= IMAGE_SIZE:
            raise ValueError(f"kernel_size must be 1 to {IMAGE_SIZE}, got {shown(self.kernel_size)}")
        if not 1 <= self.convolutions <= MAX_CONVOLUTIONS:
            raise ValueError(f"convolutions must be 1 to {MAX_CONVOLUTIONS}, got {shown(self.convolutions)}")
        if self.arch == "line":
            line_problem(self)
        if self.weights() > MAX_WEIGHTS:
            convolutions = (
                f" and filters {shown(self.filters)}, {self.convolutions} a block"
                if self.arch != "mlp"
                else ""
            )
            raise ValueError(
                f"{self.arch} with hidden {shown(self.hidden)}{convolutions} makes {self.weights():,} "
                f"weights, over {MAX_WEIGHTS:,}: choose smaller layers"
            )

    def activations(self) -> int:
        """How many values the network these settings describe computes for one image: what a
        batch's training keeps for its gradients, per image (per line of NOMINAL_LINE_WIDTH)."""
        if self.arch == "line":
            return line_activations(self)
        side, values = IMAGE_SIZE, IMAGE_SIZE * IMAGE_SIZE
        if self.arch == "cnn":
            for filters in self.filters:  # each convolution's output, then the pooling's
                values += self.convolutions * filters * side * side + filters * (side // 2) ** 2
                side //= 2
        return values + sum(self.hidden) + NUM_CLASSES

    def weights(self) -> int:
        """How many weights the network these settings describe holds."""
        if self.arch == "line":
            return line_weights(self)
        features, side, channels = IMAGE_SIZE * IMAGE_SIZE, IMAGE_SIZE, 1
        weights = 0
        if self.arch == "cnn":
            for filters in self.filters:  # a convolution keeps the side; the pooling halves it
                for _ in range(self.convolutions):
                    weights += filters * (self.kernel_size**2 * channels + 1)
                    channels = filters
                side //= 2
            features = side * side * channels
        for width in (*self.hidden, NUM_CLASSES):
            weights += width * (features + 1)
            features = width
        return weights


def line_problem(config: ModelConfig) -> None:
    """ValueError where settings cannot make a line model."""
    if config.output_activation != "softmax":
        raise ValueError("the line model reads with softmax over its symbols: set output_activation softmax")
    if len(config.filters) < WIDTH_POOLS:
        raise ValueError(
            f"the line model needs {WIDTH_POOLS} to {MAX_BLOCKS} convolution blocks, "
            f"got {shown(config.filters)}"
        )


def line_weights(config: ModelConfig) -> int:
    """The weights of the line model `config` describes: convolutions, GRUs both ways, output."""
    weights, channels = 0, 1
    for filters in config.filters:  # each convolution without a bias, then batch norm's 4 a filter
        weights += filters * (config.kernel_size**2 * channels + 4)
        weights += (config.convolutions - 1) * filters * (config.kernel_size**2 * filters + 4)
        channels = filters
    features = (LINE_HEIGHT >> len(config.filters)) * channels
    for units in config.hidden:  # a GRU's three gates, each with two biases (reset_after), both ways
        weights += 2 * 3 * units * (features + units + 2)
        features = 2 * units
    return weights + LINE_CLASSES * (features + 1)


def line_activations(config: ModelConfig) -> int:
    """The values the line model computes for a line NOMINAL_LINE_WIDTH px wide."""
    rows, columns = LINE_HEIGHT, NOMINAL_LINE_WIDTH
    values = rows * columns
    for index, filters in enumerate(config.filters):  # convolution, batch norm and ReLU each
        values += 3 * config.convolutions * filters * rows * columns
        rows, columns = rows // 2, columns // 2 if index < WIDTH_POOLS else columns
        values += filters * rows * columns
    frames = NOMINAL_LINE_WIDTH // FRAME_WIDTH
    return values + frames * (sum(2 * 4 * units for units in config.hidden) + 2 * LINE_CLASSES)


def shown(value: object) -> str:
    """A setting's value as an error message shows it: whole, unless it is very long."""
    text = str(value)
    return text if len(text) <= 40 else f"{text[:30]}... ({len(text)} characters)"


def build_model(config: ModelConfig, dtype: str = "float32") -> keras.Model:
    """An uncompiled Keras model: float32 (n, 28, 28) in [0, 1] -> (n, 10) class scores.

    `dtype` is the Keras dtype policy of the hidden layers ("mixed_bfloat16" while training where
    the CPU has bfloat16 arithmetic, recipe/fit.py). The logits and the output stay float32: the
    loss is computed from the logits the output keeps, and a cast to float32 would drop them.
    """
    if config.arch == "line":
        return build_line_model(config, dtype)
    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE), name="image")
    x = keras.layers.Reshape((IMAGE_SIZE, IMAGE_SIZE, 1), dtype=dtype)(inputs)
    if config.arch == "cnn":
        # No batch norm: with its statistics re-estimated after training it read no better here,
        # and Keras's unfused batch norm doubled the epoch on a CPU (bench/NOTES.md).
        for filters in config.filters:
            for _ in range(config.convolutions):
                x = keras.layers.Conv2D(
                    filters, config.kernel_size, padding="same", activation="relu", dtype=dtype
                )(x)
            x = keras.layers.MaxPooling2D(dtype=dtype)(x)
    x = keras.layers.Flatten(dtype=dtype)(x)
    for width in config.hidden:
        x = keras.layers.Dense(width, activation="relu", dtype=dtype)(x)
        if config.dropout:
            x = keras.layers.Dropout(config.dropout, dtype=dtype)(x)
    logits = keras.layers.Dense(NUM_CLASSES, name=LOGITS_LAYER, dtype="float32")(x)
    outputs = keras.layers.Activation(config.output_activation, name=OUTPUT_LAYER, dtype="float32")(logits)
    return keras.Model(inputs, outputs, name=f"mnist_{config.arch}_{config.output_activation}")


def build_line_model(config: ModelConfig, dtype: str = "float32") -> keras.Model:
    """An uncompiled line model: float32 (n, LINE_HEIGHT, w) in [0, 1], w any multiple of
    FRAME_WIDTH -> (n, w / FRAME_WIDTH, LINE_CLASSES) probabilities, one row per frame.

    Convolutions see each stretch of the line; the bidirectional GRUs read the frames in order,
    both ways, so that a symbol's frames know their neighbours (a 1 beside a 7's bar, a pen lift).
    """
    inputs = keras.Input(shape=(LINE_HEIGHT, None), name="line")
    x = keras.layers.Reshape((LINE_HEIGHT, -1, 1), dtype=dtype)(inputs)
    for index, filters in enumerate(config.filters):
        for _ in range(config.convolutions):
            x = keras.layers.Conv2D(filters, config.kernel_size, padding="same", use_bias=False, dtype=dtype)(
                x
            )
            # Without batch norm CTC sat on "all blank" for the first 260 steps and more, with it
            # it read lines by then; momentum 0.9 so that its statistics keep up with weights
            # that change fast in a short run (bench/NOTES.md).
            x = keras.layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, dtype=dtype)(x)
            x = keras.layers.ReLU(dtype=dtype)(x)
        x = keras.layers.MaxPooling2D((2, 2 if index < WIDTH_POOLS else 1), dtype=dtype)(x)
    x = keras.layers.Permute((2, 1, 3), dtype=dtype)(x)  # (n, frames, rows, filters)
    rows = LINE_HEIGHT >> len(config.filters)
    x = keras.layers.Reshape((-1, rows * config.filters[-1]), dtype=dtype)(x)  # a vector per frame
    for units in config.hidden:
        x = keras.layers.Bidirectional(
            keras.layers.GRU(units, return_sequences=True, dtype=dtype), dtype=dtype
        )(x)
        if config.dropout:
            x = keras.layers.Dropout(config.dropout, dtype=dtype)(x)
    logits = keras.layers.Dense(LINE_CLASSES, name=LOGITS_LAYER, dtype="float32")(x)
    outputs = keras.layers.Activation("softmax", name=OUTPUT_LAYER, dtype="float32")(logits)
    return keras.Model(inputs, outputs, name="mnist_line_ctc")


def probability_model(model: keras.Model) -> keras.Model:
    """`model` ending in softmax over its logits: (n, 28, 28) -> (n, 10) rows that sum to 1.

    Keras computes categorical cross-entropy from the logits that a sigmoid or softmax output
    caches, so a sigmoid network trains exactly as if its output were softmax and softmax(logits)
    is the distribution it learned. Its 10 sigmoid outputs themselves are independent, need not
    sum to 1, and sit near 1.0 for every plausible digit.
    """
    logits = model.get_layer(LOGITS_LAYER).output
    return keras.Model(model.inputs, keras.layers.Softmax()(logits), name=f"{model.name}_probabilities")


PREDICTION_CHUNK = 1000  # images per call: a CNN's first activations for 10,000 would be 1 GB


def probabilities_function(model: keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    """float32 images (n, 28, 28) -> probabilities (n, 10) as NumPy, by `probability_model`, called
    directly: any batch size, without the tracing Keras's predict does for each new one."""
    probabilities = probability_model(model)

    def read(images: np.ndarray) -> np.ndarray:
        if not len(images):  # a convolution refuses an empty batch
            return np.zeros((0, NUM_CLASSES), np.float32)
        starts = range(0, len(images), PREDICTION_CHUNK)
        chunks = [images[start : start + PREDICTION_CHUNK] for start in starts]
        # One input, as a list.
        return np.concatenate([np.asarray(probabilities([chunk], training=False)) for chunk in chunks])

    return read


def weights_sha256(model: keras.Model) -> str:
    """A fingerprint of the weights: equal for equal training, and on every worker of a run."""
    return hashlib.sha256(b"".join(weight.tobytes() for weight in model.get_weights())).hexdigest()


def line_probabilities_function(model: keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    """float32 lines (n, LINE_HEIGHT, w) -> probabilities (n, w / FRAME_WIDTH, LINE_CLASSES) as
    NumPy, from a line model (build_line_model), traced once for any width: called eagerly, its
    GRU steps through the frames in Python, over a second a number."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((None, LINE_HEIGHT, None), tf.float32)])
    def call(lines):
        return model(lines, training=False)

    def read(lines: np.ndarray) -> np.ndarray:
        return np.asarray(call(np.asarray(lines, np.float32)))

    return read
