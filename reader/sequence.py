"""Reading a number's whole line with a line model (train.py --arch line), without dividing it.

    from reader.sequence import read_line
    number, seen = read_line(line_model, image)   # number["number"]: "02139", number["reader"]: "line"

The line's ink is brought to data.line_style's form, as the model's training lines were; the model
gives probabilities per frame of 4 px, and CTC's greedy decoding (ground/ctc.py) reads the symbols in
them. Each digit's box on the page is the ink between the midpoints of its neighbours' peak frames;
its confidence is its probability at its peak, with the likeliest digits there; the number is not
sure where the line's confidence (ctc.line_confidence) is below the model's calibrated threshold,
or where a symbol is not a digit (✕ in the number).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from data import FRAME_WIDTH, INK_THRESHOLD, LINE_INK_HEIGHT, LINE_MARGIN, NOT_A_DIGIT_SYMBOL, line_style
from ground.ctc import Symbol, decoded_line, likeliest_digits, line_confidence
from reader.classifier import LineModel
from reader.deadline import NO_DEADLINE, Deadline
from reader.division import MAX_DIGITS, MIN_NUMBER_HEIGHT, too_many
from reader.page import SOURCE_SIZE, WORK_SIDE, ImageError, page_ink

# Training's longest lines are 12 digits with wide gaps, under 35 times as wide as tall: a line much
# wider holds more than a number, or is a rule or a scribble, and would cost a long reading.
MAX_LINE_ASPECT = 40
NOT_A_DIGIT_MARK = "✕"  # in the number, where the line holds a symbol that is not a digit
# What a refused line is told, filled in here and by the page's reader in the browser (reader/browser.py
# writes them into its config): one wording for both.
TOO_THIN = (
    "the number is {height} px tall as read (images are read at most {work_side} px across): "
    "crop the image closer to it, or write it larger"
)
TOO_WIDE = (
    "the line is {aspect} times as wide as tall, more than a number of {max_digits} digits: "
    "crop the image closer to the number"
)
NO_SYMBOL = "no digit found: the line model reads no symbol in the ink"
TOO_MANY = str(too_many("{count} symbols"))


def read_line(
    model: LineModel, image: Image.Image, top: int = 3, deadline: Deadline = NO_DEADLINE
) -> tuple[dict, list[np.ndarray]]:
    """The number written on one line in `image`, as reading.read_number reports it (with
    "reader": "line" and the line's "confidence"), and what the model saw of each digit: its
    columns of the line, uint8 (32, w)."""
    ink = page_ink(image)
    rows = np.flatnonzero((ink >= INK_THRESHOLD * 255).any(axis=1))
    columns = np.flatnonzero((ink >= INK_THRESHOLD * 255).any(axis=0))
    if rows[-1] + 1 - rows[0] < MIN_NUMBER_HEIGHT:
        raise ImageError(TOO_THIN.format(height=rows[-1] + 1 - rows[0], work_side=WORK_SIDE))
    aspect = (columns[-1] + 1 - columns[0]) / (rows[-1] + 1 - rows[0])
    if aspect > MAX_LINE_ASPECT:
        raise ImageError(TOO_WIDE.format(aspect=f"{aspect:.0f}", max_digits=MAX_DIGITS))
    line = line_style(ink)
    line = np.pad(line, ((0, 0), (0, -line.shape[1] % FRAME_WIDTH)))  # whole frames
    deadline.check()
    probabilities = np.asarray(model.probabilities_of(line[None].astype(np.float32) / 255))[0]
    deadline.check()
    symbols = decoded_line(probabilities)
    if not symbols:
        raise ImageError(NO_SYMBOL)
    if len(symbols) > MAX_DIGITS:
        raise ImageError(TOO_MANY.format(count=len(symbols)))
    confidence = line_confidence(probabilities, symbols)
    unsure = model.threshold is not None and confidence < model.threshold
    # Line pixels back to the page's: line_style cropped the ink, scaled it and added a margin.
    scale = LINE_INK_HEIGHT / (rows[-1] + 1 - rows[0])
    edges = column_edges(symbols, line.shape[1])
    digits = []
    for symbol, (left, right) in zip(symbols, edges, strict=True):
        page_left = columns[0] + int(np.floor((left - LINE_MARGIN) / scale))
        page_right = columns[0] + int(np.ceil((right - LINE_MARGIN) / scale))
        box = ink_box(ink, max(page_left, columns[0]), min(page_right, columns[-1] + 1))
        digits.append({"box": source_box(image, box), **symbol_reading(symbol, probabilities, model, top)})
    number = "".join(NOT_A_DIGIT_MARK if item["not_a_digit"] else str(item["digit"]) for item in digits)
    return {
        "number": number,
        "not_sure": unsure or any(item["not_sure"] for item in digits),
        "confidence": confidence,
        "reader": "line",
        "digits": digits,
    }, [line[:, left:right] for left, right in edges]


def column_edges(symbols: list[Symbol], width: int) -> list[tuple[int, int]]:
    """Each symbol's columns in the line image: from the midpoint between its peak frame and the
    one before to the midpoint with the one after (the line's ends at either end)."""
    peaks = [(symbol.peak + 0.5) * FRAME_WIDTH for symbol in symbols]
    cuts = [0.0, *[(a + b) / 2 for a, b in zip(peaks[:-1], peaks[1:], strict=True)], float(width)]
    return [(round(cuts[i]), round(cuts[i + 1])) for i in range(len(symbols))]


def ink_box(ink: np.ndarray, left: int, right: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the ink in columns left to right (the columns if none)."""
    marks = ink[:, left:right] >= INK_THRESHOLD * 255
    rows, columns = np.flatnonzero(marks.any(axis=1)), np.flatnonzero(marks.any(axis=0))
    if not len(rows):
        return left, 0, max(right, left + 1), ink.shape[0]
    return left + int(columns[0]), int(rows[0]), left + int(columns[-1]) + 1, int(rows[-1]) + 1


def source_box(image: Image.Image, box: tuple[int, int, int, int]) -> list[int]:
    """A box in the pixels of `image` as read, in those of the image as sent (read_image may have
    shrunk it)."""
    width, height = image.info.get(SOURCE_SIZE, image.size)
    scale = np.array([width, height, width, height]) / np.array([*image.size, *image.size])
    return np.rint(np.array(box) * scale).astype(int).tolist()


def symbol_reading(symbol: Symbol, probabilities: np.ndarray, model: LineModel, top: int) -> dict:
    """One symbol as the classifier's readings are reported (reading.reading): its digit (a
    symbol that is not a digit gives its likeliest digit and "not_a_digit"), confidence, whether
    it is sure, and the likeliest digits at its peak frame."""
    row = probabilities[symbol.peak]
    not_a_digit = symbol.symbol == NOT_A_DIGIT_SYMBOL
    not_sure = not_a_digit or (model.threshold is not None and symbol.confidence < model.threshold)
    likeliest = likeliest_digits(row, max(top, 2) if not_sure else top)
    return {
        "digit": likeliest[0]["digit"] if not_a_digit else symbol.symbol,
        "confidence": symbol.confidence,
        "not_sure": not_sure,
        "not_a_digit": not_a_digit,
        "top": likeliest,
    }
