"""What real writing varies in, applied to the training images only (never to a saved network).

    layers = augmentation_layers(seed, pose=1.0)       # in the training model, per batch, in the graph
    x_fit = with_continental_marks(x_fit, y_fit, rng)  # once per run, on the arrays

MNIST's 500 writers of 1990 wrote a narrow range of styles with one kind of pen. The people who use
this recognizer do not: their writing leans, is larger or smaller in its box, is written with
thinner or thicker pens, and in much of the world a 1 has a long upstroke flag and a 7 a crossbar
(bench/handwriting.py measures each). Each is modelled here as a random change of the training
images, so the network learns the digit and not MNIST's habits.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops
from PIL import Image, ImageDraw
from scipy import ndimage

from data import mnist_style

# The random pose's ranges at --pose 1; --pose scales them all.
ROTATION_DEGREES = 14  # either way
SHEAR = 0.3  # x shifted by up to 0.3 y: writing leaning about 17 degrees either way
ZOOM = 0.12  # the digit's size in its box, up to 12% larger or smaller
SHIFT = 0.1  # of the image, in each direction
MARKED_SHARE = 0.5  # of the training 1s and 7s that get a flag or a crossbar


class TrainingOnly(keras.layers.Layer):
    """A seeded random change of images (n, h, w, 1) while training; the identity otherwise."""

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        return self.changed(images) if training else images

    def changed(self, images):
        raise NotImplementedError


class RandomAffine(TrainingOnly):
    """A random rotation, shear, zoom and shift of each image, in one resampling, each up to
    `scale` times its range above."""

    def __init__(self, seed: int | None = None, scale: float = 1.0, **kwargs):
        super().__init__(seed, **kwargs)
        self.scale = scale

    def changed(self, images):
        count = ops.shape(images)[0]
        height, width = images.shape[1], images.shape[2]
        draw = keras.random.uniform((count, 5), -self.scale, self.scale, seed=self.seed_generator)
        angle = draw[:, 0] * math.radians(ROTATION_DEGREES)
        shear, zoom = draw[:, 1] * SHEAR, 1.0 + draw[:, 2] * ZOOM
        shift_x, shift_y = draw[:, 3] * SHIFT * width, draw[:, 4] * SHIFT * height
        cos, sin = ops.cos(angle), ops.sin(angle)
        # Each output pixel (x, y) reads the input at A (x, y) - center) + center + shift.
        a00, a01 = cos / zoom, (cos * shear - sin) / zoom
        a10, a11 = sin / zoom, (sin * shear + cos) / zoom
        center_x, center_y = (width - 1) / 2, (height - 1) / 2
        offset_x = center_x - a00 * center_x - a01 * center_y + shift_x
        offset_y = center_y - a10 * center_x - a11 * center_y + shift_y
        zeros = ops.zeros_like(a00)
        transform = ops.stack([a00, a01, offset_x, a10, a11, offset_y, zeros, zeros], axis=1)
        return ops.image.affine_transform(images, transform, fill_mode="constant")


class RandomStrokeWidth(TrainingOnly):
    """Each image's strokes made up to a pixel thinner or thicker (grey erosion or dilation)."""

    def changed(self, images):
        thicker = ops.max_pool(images, 3, strides=1, padding="same") - images
        thinner = images + ops.max_pool(-images, 3, strides=1, padding="same")
        amount = keras.random.uniform((ops.shape(images)[0], 1, 1, 1), -1.0, 1.0, seed=self.seed_generator)
        # Thinner only by half a pixel: a full one would erase MNIST's thinnest strokes.
        return images + ops.where(amount > 0, amount * thicker, amount * 0.5 * thinner)


def augmentation_layers(seed: int | None = None, pose: float = 1.0) -> list[keras.layers.Layer]:
    """The in-graph augmentation, for images (n, 28, 28, 1): pose (its ranges times `pose`), then pen."""
    return [RandomAffine(seed, pose), RandomStrokeWidth(None if seed is None else seed + 1)]


def with_continental_marks(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of float images (n, 28, 28) in which a random MARKED_SHARE of the 1s have a flag and
    of the 7s a crossbar, each then brought back to MNIST's form (data.mnist_style), as the reader
    brings a user's digits."""
    labels = y.argmax(axis=1) if y.ndim == 2 else y
    marked = x.copy()
    for index in np.flatnonzero(np.isin(labels, (1, 7)) & (rng.random(len(x)) < MARKED_SHARE)):
        marked[index] = with_mark(x[index], int(labels[index]), rng)
    return marked


def with_mark(digit: np.ndarray, label: int, rng: np.random.Generator) -> np.ndarray:
    """One float digit (28, 28) with a flag (label 1) or a crossbar (label 7) drawn at pen width."""
    solid = digit > 0.5
    rows = np.flatnonzero(solid.any(axis=1))
    if len(rows) < 4:
        return digit
    top, height = rows[0], rows[-1] - rows[0]
    supersample = 4  # draw at 4x and shrink, for anti-aliased strokes like MNIST's
    canvas = Image.new("F", (28 * supersample, 28 * supersample), 0.0)
    pen = ImageDraw.Draw(canvas)
    width = 4 * float(ndimage.distance_transform_edt(solid)[solid].mean()) * rng.uniform(0.8, 1.2)
    if label == 1:  # from the top of the stem, down and to the left
        x_top = float(np.flatnonzero(solid[top : top + 2].any(axis=0)).mean())
        length, angle = height * rng.uniform(0.25, 0.5), math.radians(rng.uniform(30, 60))
        start, end = (x_top, top), (x_top - length * math.cos(angle), top + length * math.sin(angle))
    else:  # across the down stroke, a little above or below its middle
        row = top + int(height * rng.uniform(0.4, 0.65))
        columns = np.flatnonzero(solid[row])
        if not len(columns):
            return digit
        middle, half = float(columns.mean()), height * rng.uniform(0.15, 0.3)
        tilt = half * math.tan(math.radians(rng.uniform(-10, 10)))
        start, end = (middle - half, row + tilt), (middle + half, row - tilt)
    pen.line(
        [tuple(supersample * (v + 0.5) for v in start), tuple(supersample * (v + 0.5) for v in end)],
        fill=1.0,
        width=max(1, round(width * supersample)),
    )
    shrunk = np.asarray(canvas.resize((28, 28), Image.Resampling.BOX))
    combined = np.maximum(digit, shrunk)
    return mnist_style(combined * 255).astype(np.float32) / 255
