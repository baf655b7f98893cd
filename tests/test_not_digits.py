"""not_digits.py: the images a network learns to read as no digit, made from the training split."""

import string

import numpy as np
import pytest
from scipy import ndimage

import not_digits
from data import DIGIT_BOX, IMAGE_SIZE, normalize_images


@pytest.fixture(scope="module")
def training_digits(mnist):
    return normalize_images(mnist.x_train[:2000]), np.eye(10, dtype=np.float32)[mnist.y_train[:2000]]


@pytest.fixture(scope="module")
def made(training_digits):
    return not_digits.not_digits(*training_digits, 600, np.random.default_rng(0))


def test_each_image_is_in_mnists_form_with_its_target(made):
    images, targets = made
    assert images.shape == (600, IMAGE_SIZE, IMAGE_SIZE) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() == 1
    for image in images[:100]:
        rows, columns = np.nonzero(image >= 0.25)
        assert max(np.ptp(rows), np.ptp(columns)) + 1 in (DIGIT_BOX - 1, DIGIT_BOX, DIGIT_BOX + 1)
        assert np.allclose(ndimage.center_of_mass(image), 14, atol=1.5)
    uniform = np.all(targets == 0.1, axis=1)
    printed = targets.max(axis=1) == 1
    assert np.all(uniform | printed) and np.all(targets[printed].sum(axis=1) == 1)
    assert 0.85 < uniform.mean() < 0.99  # printed digits are 7% of what is made


def test_the_same_seed_makes_the_same_images_and_another_seed_others(training_digits, made):
    again = not_digits.not_digits(*training_digits, 600, np.random.default_rng(0))
    other = not_digits.not_digits(*training_digits, 600, np.random.default_rng(1))
    assert np.array_equal(again[0], made[0]) and np.array_equal(again[1], made[1])
    assert not np.array_equal(other[0], made[0])


def test_two_digits_and_pieces_are_made_of_the_digits_given(training_digits):
    rng = np.random.default_rng(0)
    digit = np.rint(training_digits[0][:1] * 255)  # one training digit, the only one given
    ink = not_digits.cropped(digit[0])
    for _ in range(20):
        pair, _ = not_digits.two_digits(rng, digit, np.array([2]))
        assert ink.sum() < pair.sum() <= 2 * ink.sum() and pair.shape[1] > ink.shape[1]
        part, _ = not_digits.piece(rng, np.repeat(digit, 2, axis=0), np.array([2, 3]))
        assert part.sum() < 2 * ink.sum()  # at most a digit's width out of two side by side


def test_no_letter_or_symbol_made_is_a_digits_shape():
    taught = set(not_digits.LETTERS) | set(not_digits.SYMBOLS)
    assert taught.isdisjoint("OoIl|/" + string.digits)
    assert set(string.ascii_letters) - taught == set("OoIl")


def test_the_fonts_ship_with_the_libraries_and_are_not_the_ones_bench_measures_on():
    names = [name for name, _ in not_digits.fonts()]
    assert not any(name.startswith("DejaVuSans") for name in names)  # bench/number_reading.py's
    for name, characters in not_digits.fonts():
        assert {ord(c) for c in string.ascii_letters + string.digits} <= characters, name
        assert not_digits.font_of(name, 30).getbbox("A")[2] > 0


def test_every_kind_is_made_in_its_share(training_digits):
    assert sum(not_digits.KINDS.values()) == pytest.approx(1)
    assert set(not_digits.KINDS) == set(not_digits.MAKERS)
    rng = np.random.default_rng(2)
    digits, labels = np.rint(training_digits[0] * 255), training_digits[1].argmax(axis=1)
    for kind, make in not_digits.MAKERS.items():
        made = [make(rng, digits, labels) for _ in range(10)]
        assert sum(ink.max() > 0 for ink, _ in made) >= 5, kind  # a 1-like piece is made empty
        assert all((label is not None) == (kind == "printed digit") for _, label in made)


def test_the_least_training_loss_is_the_entropy_of_the_targets(made):
    _, targets = made  # 600 made for 2,000 digits, whose targets' entropy is 0
    entropy = -np.sum(targets * np.log(np.where(targets > 0, targets, 1)), axis=1)
    assert np.sum(entropy) / 2600 == pytest.approx(not_digits.least_loss(0.3), rel=0.1)
    assert not_digits.least_loss(0) == 0
