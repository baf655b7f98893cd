"""recipe/augmentation.py: what real writing varies in, applied to training images only."""

import keras
import numpy as np

from data import normalize_images
from recipe.augmentation import (
    MARKED_SHARE,
    RandomAffine,
    RandomStrokeWidth,
    with_continental_marks,
    with_mark,
)


def batch(mnist, count=64):
    return normalize_images(mnist.x_train[:count])[..., None]


def test_pose_changes_while_training_only_and_keeps_the_digit_in_the_frame(mnist):
    keras.utils.set_random_seed(0)
    images = batch(mnist)
    layer = RandomAffine()
    assert np.array_equal(np.asarray(layer(images, training=False)), images)
    moved = np.asarray(layer(images, training=True))
    assert not np.allclose(moved, images, atol=0.05)
    # Rotation, shear, zoom and shift keep most of the ink inside the 28x28 frame.
    assert np.all(moved.sum(axis=(1, 2, 3)) > 0.6 * images.sum(axis=(1, 2, 3)))


def largest_move(images, scale):
    """How far, at most, a pose of `scale` times the ranges moved any image's ink (mean absolute change)."""
    keras.utils.set_random_seed(0)
    return float(
        np.abs(np.asarray(RandomAffine(scale=scale)(images, training=True)) - images)
        .mean(axis=(1, 2, 3))
        .max()
    )


def test_the_pose_scale_moves_the_ink_less_or_more_and_zero_not_at_all(mnist):
    images = batch(mnist, 256)
    assert largest_move(images, 0.0) < 1e-6
    assert largest_move(images, 0.5) < largest_move(images, 1.0) < largest_move(images, 2.0)


def test_pen_width_varies_both_ways(mnist):
    keras.utils.set_random_seed(0)
    images = batch(mnist, 256)
    changed = np.asarray(RandomStrokeWidth()(images, training=True))
    ratio = changed.sum(axis=(1, 2, 3)) / images.sum(axis=(1, 2, 3))
    assert ratio.min() < 0.85 and ratio.max() > 1.4  # thinner and thicker pens
    assert changed.min() >= 0 and changed.max() <= 1.0 + 1e-6


def test_a_share_of_the_ones_and_sevens_get_a_flag_or_a_crossbar(mnist):
    x, y = normalize_images(mnist.x_train[:2000]), mnist.y_train[:2000]
    marked = with_continental_marks(x, y, np.random.default_rng(0))
    changed = np.any(np.abs(marked - x) > 0.01, axis=(1, 2))
    assert not changed[~np.isin(y, (1, 7))].any()
    share = changed[np.isin(y, (1, 7))].mean()
    assert abs(share - MARKED_SHARE) < 0.1
    assert marked[changed].max() == 1.0  # brought back to MNIST's form


def test_a_flag_leaves_the_top_of_the_stem_down_to_the_left():
    stem = np.zeros((28, 28), np.float32)
    stem[4:24, 13:15] = 1.0
    flagged = with_mark(stem, 1, np.random.default_rng(0))
    rows, columns = np.nonzero(flagged > 0.5)
    left_of_stem = columns < columns.max() - 4
    assert left_of_stem.any() and rows[left_of_stem].mean() < rows.mean()  # the flag is high up, on the left
