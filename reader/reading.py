"""What a trained model reads in an image: one digit or a whole number, and whether it is sure.

    from reader.reading import read_digits, read_number
    readings = read_digits(probabilities_of, [digit_28x28, ...], threshold)   # one digit each
    number, seen = read_number(probabilities_of, image, threshold)  # number["number"]: "02139"

`probabilities_of` maps float images (n, 28, 28) to probabilities (n, 10), e.g.
model.probability_model(network).predict. Below a confidence threshold a reading is "not sure",
with its likeliest digits, and "not a digit" if no two digits explain it: the threshold is
calibrated on the validation split when a model is trained (trained.calibrate) and saved in its
run.json. predict.py and serve.py read through here.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from data import mnist_style, normalize_images
from ground.saved_network import Probabilities
from reader.classifier import LineModel
from reader.deadline import NO_DEADLINE, Deadline
from reader.division import MAX_DIGITS, Part, number_layouts, too_many
from reader.page import SOURCE_SIZE, page_ink
from reader.sequence import read_line


def reading(row: np.ndarray, threshold: float | None, top: int = 3) -> dict:
    """One row of 10 probabilities as the project reports it.

    Below the threshold a reading is "not sure". It is "not a digit" as well where even its two
    likeliest digits together stay below the threshold: no digit, and no choice between two,
    explains the image. A network trained with images that are not digits (recipe/not_digits.py) spreads
    its probability over all ten for them.
    """
    ranked = np.argsort(-row)
    confidence = float(row[ranked[0]])
    not_sure = threshold is not None and confidence < threshold
    shown = max(top, 2) if not_sure else top  # "not sure" always names the two likeliest
    return {
        "digit": int(ranked[0]),
        "confidence": confidence,
        "not_sure": not_sure,
        "not_a_digit": not_sure and confidence + float(row[ranked[1]]) < threshold,
        "top": [{"digit": int(digit), "probability": float(row[digit])} for digit in ranked[:shown]],
    }


def read_digits(
    probabilities_of: Probabilities, digits: list[np.ndarray], threshold: float | None, top: int = 3
) -> list[dict]:
    """Readings of MNIST-style uint8 digits (28, 28)."""
    if not digits:
        return []
    probabilities = np.asarray(probabilities_of(normalize_images(np.stack(digits))))
    return [reading(row, threshold, top) for row in probabilities]


def read_number(
    probabilities_of: Probabilities,
    image: Image.Image,
    threshold: float | None,
    top: int = 3,
    deadline: Deadline = NO_DEADLINE,
    line: LineModel | None = None,
) -> tuple[dict, list[np.ndarray]]:
    """The number written on one line in `image`: its digits left to right, each with its box
    (left, top, right, bottom, in the pixels of the image as sent) and reading, not sure if any
    digit is, and which reader read it ("reader"); and the images the model saw.

    With a `line` model the whole line is read by it (reader.sequence.read_line): no division.

    Where the ink alone does not say where one digit ends (digits that touch or run into each
    other, a digit in pieces), every plausible division is read and the one whose digits the
    model is surest of, together, is kept. A best reading of more than MAX_DIGITS digits is an
    ImageError, as more than MAX_DIGITS separate marks are; a reading past `deadline` a
    ReadingTimeout.
    """
    if line is not None:
        return read_line(line, image, top, deadline)
    layouts = number_layouts(page_ink(image), deadline)
    parts = dict.fromkeys(part for group in layouts.groups for layout in group for part in layout)
    digits = {}
    for part in parts:  # each part once
        deadline.check()
        digits[part] = mnist_style(layouts.digit(part))
    rows = np.asarray(probabilities_of(normalize_images(np.stack(list(digits.values())))))
    probabilities = dict(zip(digits, rows, strict=True))

    def sureness(layout: list[Part]) -> float:
        return float(np.prod([probabilities[part].max() for part in layout]))

    # On a tie the first layout, the simplest, is kept.
    chosen = [part for group in layouts.groups for part in max(group, key=sureness)]
    if len(chosen) > MAX_DIGITS:
        raise too_many(f"{len(chosen)} digits")
    readings = [reading(probabilities[part], threshold, top) for part in chosen]
    width, height = image.info.get(SOURCE_SIZE, image.size)  # read_image may have shrunk it
    scale = np.array([width, height, width, height]) / np.array([*image.size, *image.size])
    boxes = [np.rint(np.array(layouts.box(part)) * scale).astype(int).tolist() for part in chosen]
    return {
        "number": "".join(str(item["digit"]) for item in readings),
        "not_sure": any(item["not_sure"] for item in readings),
        "reader": "division",
        "digits": [{"box": box, **item} for box, item in zip(boxes, readings, strict=True)],
    }, [digits[part] for part in chosen]
