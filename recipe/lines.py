"""Lines of handwritten digits composed from MNIST, and what a line model trains with: the batches,
the CTC loss and whole-line accuracy.

    from lines import LineComposer
    composer = LineComposer.of(x_digits_uint8, labels, seed=0)
    line = composer.line(np.random.default_rng(1))   # line.image uint8 (32, w), line.labels [4, 10, 7]

A number as people write it is not MNIST digits in a row: sizes, baselines and slants vary, the
pen is heavier or lighter, fast writers lift the pen across a stroke, and neighbours touch or run
into each other. So each line is 1 to MAX_LINE_SYMBOLS digits written that way from the digits it
is given (the training split's for training, the validation split's for validation, the test set's
for measuring), with now and then a mark that is not a digit (a letter, a symbol, a scribble from
recipe/not_digits.py) labelled NOT_A_DIGIT. It is then brought to data.line_style's form, as the reader
brings a real line. The same seed and index give the same line, so training is reproducible and a
resumed run sees the lines it would have seen.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from keras import ops
from PIL import Image
from scipy import ndimage

from data import (
    BLANK,
    FRAME_WIDTH,
    INK_THRESHOLD,
    LINE_HEIGHT,
    LINE_INK_HEIGHT,
    LINE_MARGIN,
    MAX_LINE_SYMBOLS,
    NOT_A_DIGIT_SYMBOL,
    cropped_to_ink,
    line_style,
)
from recipe.not_digits import letter, stroke, symbol

NOT_A_DIGIT = NOT_A_DIGIT_SYMBOL
PADDING = -1  # after a line's labels, up to MAX_LINE_SYMBOLS
# A batch's lines, (n, LINE_HEIGHT, any width) and labels (n, MAX_LINE_SYMBOLS): one traced step.
BATCH_SIGNATURE = (
    tf.TensorSpec((None, LINE_HEIGHT, None), tf.float32),
    tf.TensorSpec((None, MAX_LINE_SYMBOLS), tf.int32),
)
WIDTH_STEP = 64  # px: a batch is padded to a multiple of this, so few batch shapes are traced
MEAN_SYMBOLS = (1 + MAX_LINE_SYMBOLS) / 2  # an epoch's lines hold about as many digits as it has
DIGIT_HEIGHT = 22  # px, as composed (line_style then scales the whole line to its height)
MARKS = 600  # marks that are not digits, drawn once per composer: drawing a glyph is slow
# How a line varies, at variation 1 (TrainConfig.pose scales the ranges of size, slant and baseline).
SIZE = 0.2  # each symbol up to 20% larger or smaller
SLANT = 0.35  # shear: x shifted by up to 0.35 y, either way, one slant per line as a writer has
BASELINE = 0.12  # of the digit height, up or down, per symbol
PEN_CHANGE = 0.4  # of the lines: written a pixel heavier or lighter
PEN_LIFT = 0.15  # of the digits: a stroke cut across, as fast writers leave it
# Of the gaps: the neighbours touch or overlap by up to a quarter of a digit's width. A writer who
# runs digits together does it all along a line, so each line's share is drawn from 0 to twice this.
TOUCHING = 0.35
WIDE = 0.15  # of the gaps: wider than a digit's half height, up to one and a half heights


@dataclass(frozen=True)
class Line:
    image: np.ndarray  # uint8 (LINE_HEIGHT, w), white ink on black, data.line_style's form
    labels: list[int]  # left to right: 0-9, or NOT_A_DIGIT
    spans: list[tuple[int, int]]  # each symbol's columns (left, right) in `image`


@dataclass(frozen=True)
class LineComposer:
    """Composes lines from the digits (and marks) it holds, each cropped to its ink once."""

    digits: list[np.ndarray]  # float32 crops, 0-255
    labels: np.ndarray
    marks: list[np.ndarray]
    mark_share: float  # of the symbols: a mark that is not a digit
    variation: float = 1.0  # how far sizes, slants and baselines vary (0: plain lines)

    @classmethod
    def of(
        cls,
        digits: np.ndarray,
        labels: np.ndarray,
        seed: int,
        mark_share: float = 0.05,
        variation: float = 1.0,
    ) -> LineComposer:
        """A composer of MNIST-form uint8 digits (n, 28, 28) with their labels (n,)."""
        rng = np.random.default_rng([seed, 1])
        crops = [cropped_to_ink(digit.astype(np.float32)) for digit in digits]
        marks = [mark_ink(rng) for _ in range(MARKS if mark_share else 0)]
        return cls(crops, np.asarray(labels), marks, mark_share, variation)

    def line(self, rng: np.random.Generator, count: int | None = None) -> Line:
        """One line of `count` symbols (1 to MAX_LINE_SYMBOLS, at random if None)."""
        count = count or int(rng.integers(1, MAX_LINE_SYMBOLS + 1))
        is_mark = rng.random(count) < self.mark_share
        if is_mark.all():  # a line holds at least one digit: the height is a digit's
            is_mark[int(rng.integers(count))] = False
        chosen = rng.integers(len(self.digits), size=count)
        labels = [
            NOT_A_DIGIT if mark else int(self.labels[index])
            for mark, index in zip(is_mark, chosen, strict=True)
        ]
        slant = rng.uniform(-SLANT, SLANT) * self.variation
        pen = int(rng.choice([-1, 1])) if rng.random() < PEN_CHANGE * min(self.variation, 1) else 0
        pieces = []
        for mark, index in zip(is_mark, chosen, strict=True):
            ink = self.marks[int(rng.integers(len(self.marks)))] if mark else self.digits[index]
            lift = not mark and rng.random() < PEN_LIFT * min(self.variation, 1)
            pieces.append(written(ink, rng, slant, pen, lift, self.variation))
        return composed(pieces, labels, rng, self.variation)

    def batch(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        """`count` lines as float32 (count, LINE_HEIGHT, w) in [0, 1], padded on the right to a
        multiple of WIDTH_STEP, and their labels int32 (count, MAX_LINE_SYMBOLS) padded with PADDING.
        The lines of a batch hold as many symbols each, so that little of it is padding."""
        symbols = int(rng.integers(1, MAX_LINE_SYMBOLS + 1))
        made = [self.line(rng, symbols) for _ in range(count)]
        return line_batch([line.image for line in made], [line.labels for line in made])


def line_batch(images: list[np.ndarray], labels: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Lines (uint8 (LINE_HEIGHT, w) each) as one float32 batch padded with paper on the right, and
    their labels padded with PADDING."""
    width = WIDTH_STEP * math.ceil(max(image.shape[1] for image in images) / WIDTH_STEP)
    x = np.zeros((len(images), LINE_HEIGHT, width), np.float32)
    y = np.full((len(images), MAX_LINE_SYMBOLS), PADDING, np.int32)
    for row, (image, symbols) in enumerate(zip(images, labels, strict=True)):
        x[row, :, : image.shape[1]] = image / 255.0
        y[row, : len(symbols)] = symbols
    return x, y


def mark_ink(rng: np.random.Generator) -> np.ndarray:
    """A mark that is not a digit (a letter, a symbol or a scribble, recipe/not_digits.py), cropped."""
    make = (letter, symbol, stroke)[int(rng.choice(3, p=(0.5, 0.25, 0.25)))]
    while True:
        ink, _ = make(rng, None, None)
        if (ink >= INK_THRESHOLD * 255).any():
            return cropped_to_ink(ink)


def written(
    ink: np.ndarray, rng: np.random.Generator, slant: float, pen: int, lift: bool, variation: float
) -> np.ndarray:
    """One symbol's ink as written in a line: sized, slanted, heavier or lighter, and a stroke cut
    across where `lift`."""
    scale = DIGIT_HEIGHT / max(ink.shape) * (1 + rng.uniform(-SIZE, SIZE) * variation)
    if ink.shape[0] >= ink.shape[1]:  # a digit or tall mark by its height, a wide mark by its width
        scale = DIGIT_HEIGHT / ink.shape[0] * (1 + rng.uniform(-SIZE, SIZE) * variation)
    height, width = max(1, round(ink.shape[0] * scale)), max(1, round(ink.shape[1] * scale))
    image = Image.fromarray(ink, mode="F").resize((width, height), Image.Resampling.BILINEAR)
    if slant:  # leaning right for slant > 0: the top moves right
        extra = math.ceil(abs(slant) * height)
        shift = -slant * height if slant > 0 else 0.0
        image = image.transform(
            (width + extra, height),
            Image.Transform.AFFINE,
            (1, slant, shift, 0, 1, 0),
            Image.Resampling.BILINEAR,
        )
    out = np.asarray(image, np.float32)
    if pen:
        out = (ndimage.grey_dilation if pen > 0 else ndimage.grey_erosion)(out, size=(2, 2))
    if lift:
        out = lifted(out, rng)
    return out if (out >= INK_THRESHOLD * 255).any() else np.asarray(image, np.float32)


def lifted(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`ink` with a 1-2 px gap cut across it, at a row or column in its middle half: a pen lift."""
    cut = ink.copy()
    band = int(rng.integers(1, 3))
    if rng.random() < 0.5:
        row = int(rng.uniform(0.25, 0.75) * ink.shape[0])
        cut[row : row + band] = 0
    else:
        column = int(rng.uniform(0.25, 0.75) * ink.shape[1])
        cut[:, column : column + band] = 0
    return cut


def composed(pieces: list[np.ndarray], labels: list[int], rng: np.random.Generator, variation: float) -> Line:
    """Symbols' ink side by side on one line, gaps and baselines at random, in data.line_style's
    form, with where each symbol's columns ended up."""
    lefts, left = [], 0.0
    touching = rng.uniform(0, 2 * TOUCHING)
    for index, piece in enumerate(pieces):
        if index:
            left += gap(rng, pieces[index - 1].shape[1], piece.shape[1], touching)
        lefts.append(round(max(left, lefts[-1] + 1 if lefts else 0)))
        left = lefts[-1] + piece.shape[1]
    width = max(lefts[i] + piece.shape[1] for i, piece in enumerate(pieces))
    page = np.zeros((3 * DIGIT_HEIGHT, width), np.float32)
    for piece, start in zip(pieces, lefts, strict=True):
        wobble = rng.uniform(-BASELINE, BASELINE) * DIGIT_HEIGHT * variation
        top = int(
            np.clip(round(2 * DIGIT_HEIGHT - piece.shape[0] + wobble), 0, page.shape[0] - piece.shape[0])
        )
        region = page[top : top + piece.shape[0], start : start + piece.shape[1]]
        np.maximum(region, piece, out=region)
    marks = page >= INK_THRESHOLD * 255
    rows, columns = np.flatnonzero(marks.any(axis=1)), np.flatnonzero(marks.any(axis=0))
    scale = LINE_INK_HEIGHT / (rows[-1] + 1 - rows[0])  # as line_style scales it
    spans = [
        (
            LINE_MARGIN + round((start - columns[0]) * scale),
            LINE_MARGIN + round((start + piece.shape[1] - columns[0]) * scale),
        )
        for piece, start in zip(pieces, lefts, strict=True)
    ]
    return Line(wide_enough(line_style(page), len(labels)), labels, spans)


def wide_enough(image: np.ndarray, symbols: int) -> np.ndarray:
    """`image` padded on the right to hold two frames a symbol and one more: CTC needs a frame per
    symbol and a blank between two alike, and a loss it cannot compute is infinite."""
    least = FRAME_WIDTH * (2 * symbols + 1)
    return np.pad(image, ((0, 0), (0, max(0, least - image.shape[1]))))


def gap(rng: np.random.Generator, before: int, after: int, touching: float) -> float:
    """px between two neighbours' boxes: negative where they touch or overlap, as a `touching`
    share of a line's gaps do."""
    kind = rng.random()
    if kind < touching:
        return -rng.uniform(0, 0.25) * min(before, after)
    if kind < touching + WIDE:
        return rng.uniform(0.5, 1.5) * DIGIT_HEIGHT
    return rng.uniform(0.05, 0.5) * DIGIT_HEIGHT


def lines_per_epoch(digits: int) -> int:
    """Lines in an epoch over `digits` training digits: about as many digits as there are."""
    return max(1, round(digits / MEAN_SYMBOLS))


def label_lengths(labels):
    """int32 (n,): how many symbols each row of padded labels (n, MAX_LINE_SYMBOLS) holds."""
    return ops.sum(ops.cast(labels >= 0, "int32"), axis=-1)


def ctc_loss(y_true, y_pred):
    """The CTC loss of each line: labels (n, MAX_LINE_SYMBOLS) padded with PADDING, probabilities
    (n, frames, LINE_CLASSES). Keras casts the labels to floats on the way; they are whole."""
    labels = ops.cast(ops.round(y_true), "int32")
    lengths = label_lengths(labels)
    frames = ops.full((ops.shape(y_pred)[0],), ops.shape(y_pred)[1], dtype="int32")
    # ops.ctc_loss takes logits; the log of softmax probabilities is their log-softmax.
    log_probabilities = ops.log(ops.clip(ops.cast(y_pred, "float32"), 1e-12, 1.0))
    return ops.ctc_loss(ops.maximum(labels, 0), log_probabilities, lengths, frames, mask_index=BLANK)


def greedy_labels(probabilities):
    """int32 (n, frames): each line's best path with repeats and blanks removed, padded with -1."""
    frames = ops.full((ops.shape(probabilities)[0],), ops.shape(probabilities)[1], dtype="int32")
    decoded, _ = ops.ctc_decode(
        ops.cast(probabilities, "float32"), frames, strategy="greedy", mask_index=BLANK
    )
    return decoded[0]


class LineAccuracy(keras.metrics.Metric):
    """The share of lines read right as a whole: every symbol, none missing and none too many."""

    def __init__(self, name: str = "accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.right = self.add_variable(shape=(), initializer="zeros", name="right")
        self.lines = self.add_variable(shape=(), initializer="zeros", name="lines")

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels = ops.cast(ops.round(y_true), "int32")
        decoded = greedy_labels(y_pred)
        # At least as many frames as symbols (wide_enough): what lies past them must be padding.
        same = ops.all(decoded[:, :MAX_LINE_SYMBOLS] == labels, axis=-1)
        within = ops.all(decoded[:, MAX_LINE_SYMBOLS:] < 0, axis=-1)
        self.right.assign_add(ops.sum(ops.cast(same & within, "float32")))
        self.lines.assign_add(ops.cast(ops.shape(labels)[0], "float32"))

    def result(self):
        return ops.divide_no_nan(self.right, self.lines)


def endless_batches(composer: LineComposer, batch_size: int, seed: int, first_step: int) -> tf.data.Dataset:
    """Batches of new lines for ever, from step `first_step` on: step k's lines are seeded by
    (seed, k), so a resumed run sees the lines the uninterrupted one would have."""

    def batches():
        for step in itertools.count(first_step):
            yield composer.batch(np.random.default_rng([seed, 2, step]), batch_size)

    return tf.data.Dataset.from_generator(batches, output_signature=BATCH_SIGNATURE).prefetch(2)


def fixed_batches(composer: LineComposer, lines: int, batch_size: int, seed: int) -> list[tuple]:
    """`lines` lines made once, seeded by `seed`, in batches: the same validation lines each epoch."""
    rng = np.random.default_rng([seed, 3])
    sizes = [min(batch_size, lines - start) for start in range(0, lines, batch_size)]
    return [composer.batch(rng, size) for size in sizes]


def as_dataset(batches: list[tuple]) -> tf.data.Dataset:
    """Batches made already, as a dataset Keras can evaluate every epoch."""
    dataset = tf.data.Dataset.from_generator(lambda: iter(batches), output_signature=BATCH_SIGNATURE)
    return dataset.apply(tf.data.experimental.assert_cardinality(len(batches)))  # Keras knows its end
