"""recipe/not_digits.py: the images a network learns to read as no digit, made from the training split."""

import string

import numpy as np
import pytest
from scipy import ndimage

from data import DIGIT_BOX, IMAGE_SIZE, cropped_to_ink, normalize_images
from recipe import not_digits


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
        # Fitted into 20 px; faint ends (an i's dot, a pen's taper) may fall under the ink threshold.
        assert DIGIT_BOX - 4 <= max(np.ptp(rows), np.ptp(columns)) + 1 <= DIGIT_BOX + 1
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


def test_two_digits_are_made_of_the_digits_given(training_digits):
    rng = np.random.default_rng(0)
    digit = np.rint(training_digits[0][:1] * 255)  # one training digit, the only one given
    ink = cropped_to_ink(digit[0])
    for _ in range(20):
        pair, _ = not_digits.two_digits(rng, digit, np.array([2]))
        assert ink.sum() < pair.sum() <= 2 * ink.sum() and pair.shape[1] > ink.shape[1]


def test_a_digit_whose_parts_are_digits_is_never_cut_alone(training_digits):
    digits, labels = np.rint(training_digits[0] * 255), training_digits[1].argmax(axis=1)
    rng = np.random.default_rng(0)
    for label in (4, 7, 9):  # a 4's left part is an L, a 7's a 5; their halves are digits
        only = np.flatnonzero(labels == label)[:1]  # one digit, paired with itself
        ink = cropped_to_ink(digits[only][0])
        cuts = [ink[:, :k] for k in range(1, ink.shape[1] + 1)] + [ink[:k] for k in range(1, len(ink) + 1)]
        cuts += [ink[k:] for k in range(len(ink))]
        for _ in range(20):
            part, _ = not_digits.piece(rng, digits[only], labels[only])
            assert not any(part.shape == cut.shape and np.array_equal(part, cut) for cut in cuts)


def test_no_letter_or_symbol_made_is_a_digits_shape():
    taught = set(not_digits.LETTERS) | set(not_digits.SYMBOLS)
    assert taught.isdisjoint("OoIl|/\\()" + string.digits)


def test_nothing_made_as_not_a_digit_is_one_upright_stroke(made):
    images, targets = made
    for image in images[targets.max(axis=1) < 1]:
        rows, columns = np.nonzero(image >= 0.25)
        assert np.ptp(columns) + 1 >= not_digits.ONE_LIKE * (np.ptp(rows) + 1) - 1


def test_the_fonts_ship_with_the_libraries_and_are_not_the_ones_bench_measures_on():
    names = [name for name, _ in not_digits.fonts()]
    assert not any(name.startswith("DejaVuSans") for name in names)  # bench/number_reading.py's
    for name, characters in not_digits.fonts():
        assert {ord(c) for c in string.ascii_letters + string.digits} <= characters, name
        assert not_digits.font_of(name, 30).getbbox("A")[2] > 0


def test_computer_moderns_symbols_are_not_drawn_since_its_map_is_teXs():
    tex = [characters for name, characters in not_digits.fonts() if name.startswith("cm")]
    assert tex and all(ord("<") not in characters and ord("§") not in characters for characters in tex)


def test_the_kinds_share_all_that_is_made_and_each_makes_its_kind(training_digits):
    assert sum(share for share, _ in not_digits.KINDS.values()) == pytest.approx(1)
    rng = np.random.default_rng(2)
    digits, labels = np.rint(training_digits[0] * 255), training_digits[1].argmax(axis=1)
    for kind, (_, make) in not_digits.KINDS.items():
        made = [make(rng, digits, labels) for _ in range(10)]
        assert sum(not_digits.has_ink(ink) for ink, _ in made) >= 8, kind
        assert all((label is not None) == (kind == "printed digit") for _, label in made)


def test_the_least_training_loss_is_the_entropy_of_the_targets(made):
    _, targets = made  # 600 made for 2,000 digits, whose targets' entropy is 0
    entropy = -np.sum(targets * np.log(np.where(targets > 0, targets, 1)), axis=1)
    assert np.sum(entropy) / 2600 == pytest.approx(not_digits.least_loss(0.3), rel=0.1)
    assert not_digits.least_loss(0) == 0
