"""reader/reading.py and trained.calibrate: the "not sure" threshold and how a reading is reported."""

import numpy as np
import pytest
from PIL import Image

from conftest import ZERO_TOUCHING_A_ONE, digit_row, encoded, written
from ground.saved_network import calibrate
from reader.deadline import Deadline, ReadingTimeout
from reader.page import ImageError, read_image
from reader.reading import read_number, reading


def probabilities_with(confidences, correct):
    """Rows whose top probability is `confidence`, on digit 0 when `correct` (labels are all 0)."""
    rows = np.full((len(confidences), 10), 0.0)
    for row, confidence, right in zip(rows, confidences, correct, strict=True):
        row[0 if right else 1] = confidence
        row[2] = 1 - confidence
    return rows


def test_threshold_is_the_lowest_confidence_that_keeps_the_precision():
    confidences = np.linspace(0.99, 0.5, 1000)
    correct = np.ones(1000, bool)
    correct[500:510] = False  # ten errors in a row, halfway down
    calibration = calibrate(probabilities_with(confidences, correct), np.zeros(1000, int), precision=0.995)
    kept = confidences >= calibration["threshold"]
    assert kept.sum() == 502  # 2 errors in 502 is 99.6% right; 3 in 503 is 99.4%, and it never recovers
    assert calibration["precision"] == pytest.approx(500 / 502) and calibration["flagged_share"] == 0.498


def test_below_the_threshold_a_reading_is_not_sure_and_names_two_digits():
    row = np.array([0.05, 0.55, 0.0, 0.0, 0.0, 0.0, 0.0, 0.4, 0.0, 0.0])
    sure = reading(row, threshold=0.5, top=1)
    assert sure["digit"] == 1 and not sure["not_sure"] and len(sure["top"]) == 1
    unsure = reading(row, threshold=0.6, top=1)
    assert unsure["not_sure"] and [item["digit"] for item in unsure["top"]] == [1, 7]
    assert not reading(row, threshold=None)["not_sure"]  # a model saved without a calibration
    assert not unsure["not_a_digit"]  # 1 or 7 together: 95%


def test_a_reading_no_two_digits_explain_is_not_a_digit():
    spread = np.array([0.16, 0.14, 0.12, 0.1, 0.1, 0.1, 0.08, 0.08, 0.06, 0.06])  # as for a letter
    letter = reading(spread, threshold=0.6)
    assert letter["not_sure"] and letter["not_a_digit"]
    assert [item["digit"] for item in letter["top"]] == [0, 1, 2]
    between_two = reading(np.array([0.0, 0.45, 0.0, 0.0, 0.0, 0.0, 0.0, 0.15, 0.0, 0.4]), threshold=0.6)
    assert between_two["not_sure"] and not between_two["not_a_digit"]  # 1 or 9: 85%
    assert not reading(spread, threshold=0.15)["not_a_digit"]  # sure enough: a digit
    assert not reading(spread, threshold=None)["not_a_digit"]  # never calibrated: never flagged


@pytest.mark.parametrize("enlarged", [5, 40], ids=["small", "shrunk-when-read"])
def test_digit_boxes_are_in_the_pixels_of_the_image_as_sent(mnist, enlarged):
    row = digit_row(mnist.x_test[:3])  # 40 x 108
    picture = Image.fromarray(255 - row).resize((108 * enlarged, 40 * enlarged), Image.Resampling.BICUBIC)

    def uniform(images):  # the boxes need no model
        return np.full((len(images), 10), 0.1)

    number, _ = read_number(uniform, read_image(encoded(picture)), threshold=None)
    for (left, top, right, bottom), column in zip(
        [item["box"] for item in number["digits"]], range(3), strict=True
    ):
        # Each digit's ink lies in its own 36-pixel column, 6 rows below the top, in source pixels.
        assert 36 * column * enlarged <= left < right <= 36 * (column + 1) * enlarged
        assert 5 * enlarged <= top < bottom <= 35 * enlarged


def sure_of(shape, sure=0.99, otherwise=0.5):
    """A reader `sure` of a digit image whose ink is `shape` ("tall" or "wide"), `otherwise` else."""

    def probabilities_of(images):
        rows = np.zeros((len(images), 10))
        for row, image in zip(rows, images, strict=True):
            ink = image > 0.25
            height, width = ink.any(axis=1).sum(), ink.any(axis=0).sum()
            row[0] = sure if (height > width) == (shape == "tall") else otherwise
            row[1:] = (1 - row[0]) / 9
        return rows

    return probabilities_of


def page(*strokes_per_digit, size=(700, 200)):
    """Digits drawn as polylines, one list of strokes per digit, as a PNG read back."""
    return read_image(encoded(written(*strokes_per_digit, size=size)))


def test_touching_digits_are_divided_as_the_reader_is_surest_of_them():
    # Whole, the 0 and 1 are wider than tall; cut at the join, each is taller than wide.
    as_two, _ = read_number(sure_of("tall"), page(*ZERO_TOUCHING_A_ONE), threshold=None)
    assert len(as_two["digits"]) == 2
    assert 120 <= as_two["digits"][0]["box"][2] == as_two["digits"][1]["box"][0] <= 200
    as_one, _ = read_number(sure_of("wide"), page(*ZERO_TOUCHING_A_ONE), threshold=None)
    assert len(as_one["digits"]) == 1
    # Two parts read at 0.9 each (0.81 together) are less sure than one read at 0.85.
    together, _ = read_number(sure_of("tall", 0.9, 0.85), page(*ZERO_TOUCHING_A_ONE), threshold=None)
    assert len(together["digits"]) == 1


def test_more_digits_than_a_number_holds_is_an_error_even_when_they_touch():
    bars = [[[(20 + 45 * i, 40), (20 + 45 * i, 160)]] for i in range(10)]
    chain = [[(470 + 60 * i, 40), (470 + 60 * i, 160)] for i in range(4)]
    joins = [[(470 + 60 * i, 100), (530 + 60 * i, 100)] for i in range(3)]
    with pytest.raises(ImageError, match="found 13 digits; a number of at most 12 digits"):
        read_number(sure_of("tall"), page(*bars, chain + joins), threshold=None)


def test_a_reading_past_its_deadline_stops_with_a_timeout():
    passed = Deadline(at=0.0, seconds=10)  # long past
    with pytest.raises(ReadingTimeout, match="reading it took over 10 s: send a smaller image"):
        read_number(
            lambda images: np.full((len(images), 10), 0.1), page(*ZERO_TOUCHING_A_ONE), None, deadline=passed
        )
