"""Images that are not one digit, for the network to learn to say so (outlier exposure).

    x_more, y_more = not_digits(x_fit, y_fit, count, rng)   # float (n, 28, 28), their targets

A network trained on digits alone has never been shown anything else, so its confidence says
nothing about a letter, a scribble, half a digit or two digits run together: it answers them as
surely as a digit. Outlier exposure (Hendrycks, Mazeika and Dietterich, ICLR 2019) trains on such
images too, with the uniform distribution over the ten digits as their target. Cross-entropy to it
is the mean of -log p over the ten, least when no digit stands out; the reader's rule (softmax over
the logits, a calibrated threshold on the top probability) then flags them.

What is made here, each in MNIST's form (data.mnist_style), from the training split only:
- letters and symbols in the fonts matplotlib and Pillow ship (the same files on every machine, so
  a run is reproducible), thickened, thinned and bent like a pen's; bench/ measures on the
  system's DejaVu Sans fonts, never trained on. Shapes that are a digit in handwriting (O, o, I,
  l, |, /, \\, parentheses) are left out, as is anything made here that is one upright stroke: a 0
  or a 1 pushed towards "none" would be read less well;
- pen strokes wandering at random (bench/ draws its scribbles as straight segments);
- two training digits side by side, apart, touching or overlapping;
- a piece of a training digit: the left part of one cut at a column, its top or bottom part, where
  that part is no digit itself, or the stretch between the middles of two touching digits, as a
  number's wrong division gives;
- smudges;
- and, with their labels, printed digits in the same fonts, so that a printed shape is not
  learned as "not a digit".
"""

from __future__ import annotations

import functools
import math
import string
from collections.abc import Callable
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.ft2font import FT2Font
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from data import INK_THRESHOLD, NUM_CLASSES, cropped_to_ink, mnist_style

# matplotlib's own copies, not the system's; none is a DejaVu Sans, which bench/number_reading.py
# measures on.
FONTS = (
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
    "cmr10.ttf",
    "cmb10.ttf",
    "cmss10.ttf",
    "cmti10.ttf",
    "cmtt10.ttf",
)
DIGIT_SHAPES = set("OoIl|/\\()")  # a 0 or a 1 in handwriting, whose 1s lean and curve either way
LETTERS = [c for c in string.ascii_letters if c not in DIGIT_SHAPES] + list(
    "αβγδεζηθλμξπρσφψωΓΔΘΛΞΠΣΦΨΩбгджилфцчшщэюяБГДЖИЛФЦЧШЩЭЮЯ"
)
SYMBOLS = [c for c in string.punctuation if c not in DIGIT_SHAPES] + list("×÷±°µ¶€£¥©®§¿¡«»†‡•√∞≠≤≥∑∫")
CANVAS = 56  # px: strokes are drawn at twice MNIST's 28 px and then brought to its form
NOT_A_DIGIT = np.full(NUM_CLASSES, 1 / NUM_CLASSES, np.float32)  # the target: no digit stands out
CORNERS = 0.06  # the chance of a sharp turn at each step of a stroke
FLAT_LINES = 0.15  # of the strokes: a straight line within FLATTEST_ONE of the horizontal
# 1s lean at most about 31 degrees from the vertical in training (a rotation of 14 degrees and a
# shear of 0.3, recipe/augmentation.py): a straight line within 35 degrees of the horizontal is none.
FLATTEST_ONE = np.radians(35)
# Digits whose left part (a column cut) is no digit: a 4's is an L, a 5's or 7's an S or a 5, a 9's a
# C; every right part is a 1, a 3, a 7 or a 9. Digits whose top and bottom (a row cut) are none: a 0,
# 6, 8 or 9 halved is a 0, a 4 or a 7 still itself.
LEFT_PARTS = (0, 2, 3, 6, 8)
HALVES = (2, 3, 5)
ONE_LIKE = 0.3  # anything narrower than this share of its height is a stroke, as a 1 is
PILLOW_FONT = "Aileron"  # the sans-serif Pillow carries (ImageFont.load_default)
# Computer Modern's character maps follow TeX's encoding, not Unicode, but for letters and digits.
TEX_ENCODED = ("cm",)
PLAIN = frozenset(map(ord, string.ascii_letters + string.digits))


@functools.cache
def fonts() -> list[tuple[str, frozenset[int]]]:
    """The fonts by name, each with the characters it is drawn in: what its character map holds,
    or letters and digits alone where the map cannot be trusted (and ASCII for Pillow's own)."""
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    held = [
        (
            name,
            PLAIN if name.startswith(TEX_ENCODED) else frozenset(FT2Font(str(folder / name)).get_charmap()),
        )
        for name in FONTS
    ]
    return [*held, (PILLOW_FONT, PLAIN | frozenset(map(ord, string.punctuation)))]


@functools.cache
def font_of(name: str, size: int) -> ImageFont.FreeTypeFont:
    if name == PILLOW_FONT:
        return ImageFont.load_default(size)
    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), size)


def least_loss(share: float) -> float:
    """The least training loss a fit with `share` images that are not digits can reach, on
    average: each whose target is uniform costs ln 10 at best, a digit 0."""
    return share * (1 - KINDS["printed digit"][0]) * math.log(NUM_CLASSES) / (1 + share)


def not_digits(
    x_fit: np.ndarray, y_fit: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`count` images float32 (n, 28, 28) in [0, 1] made from the training images `x_fit` (float,
    labels one-hot `y_fit`), and their targets (n, 10): uniform, one-hot for printed digits."""
    digits, labels = np.rint(x_fit * 255), y_fit.argmax(axis=1)
    images, targets = [], []
    kinds = rng.choice(list(KINDS), size=count, p=[share for share, _ in KINDS.values()])
    while len(images) < count:
        ink, label = KINDS[kinds[len(images)]][1](rng, digits, labels)
        if not has_ink(ink) or (label is None and one_like(cropped_to_ink(ink))):
            continue  # no ink (a glyph the font lacks, a cut through nothing), or a 1: draw another
        images.append(mnist_style(ink).astype(np.float32) / 255)
        targets.append(NOT_A_DIGIT if label is None else np.eye(NUM_CLASSES, dtype=np.float32)[label])
    return np.stack(images), np.stack(targets)


def pen_like(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ink (h, w) made thicker or thinner, and bent a little, as a pen would write it."""
    pen = rng.integers(-1, 2)  # a pixel thinner, the same or a pixel thicker: more fills bold loops
    if pen:
        ink = (ndimage.grey_dilation if pen > 0 else ndimage.grey_erosion)(ink, size=(2, 2))
    # A smooth random displacement: random shifts at 5x5 points across the image, interpolated.
    coarse = rng.normal(0, rng.uniform(0.5, 2), (2, 5, 5)).astype(np.float32)
    size = ink.shape[::-1]
    flow = [
        np.asarray(Image.fromarray(shifts, "F").resize(size, Image.Resampling.BICUBIC)) for shifts in coarse
    ]
    rows, columns = np.indices(ink.shape)
    return ndimage.map_coordinates(ink, [rows + flow[0], columns + flow[1]], order=1)


def glyph(text: str, rng: np.random.Generator) -> np.ndarray:
    """`text` in one of the fonts that hold it, as white ink (CANVAS, CANVAS)."""
    held = [name for name, characters in fonts() if ord(text) in characters]
    page = Image.new("L", (CANVAS, CANVAS), 0)
    font = font_of(held[rng.integers(len(held))], int(rng.integers(25, 40)))
    ImageDraw.Draw(page).text((CANVAS / 2, CANVAS / 2), text, fill=255, font=font, anchor="mm")
    return pen_like(np.asarray(page, np.float32), rng)


def letter(rng, digits, labels):
    return glyph(LETTERS[rng.integers(len(LETTERS))], rng), None


def symbol(rng, digits, labels):
    return glyph(SYMBOLS[rng.integers(len(SYMBOLS))], rng), None


def printed_digit(rng, digits, labels):
    label = int(rng.integers(NUM_CLASSES))
    return glyph(str(label), rng), label


def stroke(rng, digits, labels):
    """One to three strokes of a pen wandering: its heading turns at a rate that drifts, and now
    and then sharply, at a corner; or a line lying too flat for a 1."""
    page = Image.new("L", (CANVAS, CANVAS), 0)
    pen = ImageDraw.Draw(page)
    width = int(rng.integers(2, 6))
    if rng.random() < FLAT_LINES:
        angle = rng.uniform(-FLATTEST_ONE, FLATTEST_ONE) + np.pi * (rng.random() < 0.5)
        half = rng.uniform(10, 25) * np.array([np.cos(angle), np.sin(angle)])
        pen.line([tuple(CANVAS / 2 - half), tuple(CANVAS / 2 + half)], fill=255, width=width)
        return np.asarray(page, np.float32), None
    for _ in range(int(rng.integers(1, 4))):
        point, heading, turning = rng.uniform(12, 44, 2), rng.uniform(0, 2 * np.pi), 0.0
        points = [tuple(point)]
        for _ in range(int(rng.integers(15, 60))):
            turning = np.clip(turning + rng.normal(0, 0.08), -0.35, 0.35)
            heading += turning + (rng.choice([-1, 1]) * rng.uniform(1, 2.6) if rng.random() < CORNERS else 0)
            point = np.clip(point + 1.5 * np.array([np.cos(heading), np.sin(heading)]), 2, CANVAS - 2)
            points.append(tuple(point))
        pen.line(points, fill=255, width=width, joint="curve")
    return np.asarray(page, np.float32), None


def has_ink(image: np.ndarray) -> bool:
    return bool((image >= INK_THRESHOLD * 255).any())


def one_like(ink: np.ndarray) -> bool:
    """Whether cropped ink is a single upright stroke, as a 1 is."""
    return ink.shape[1] < ONE_LIKE * ink.shape[0]


def side_by_side(first: np.ndarray, second: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Two digits' ink on one line: apart, touching or overlapping by up to a third of a digit,
    the second a little higher or lower."""
    first, second = cropped_to_ink(first), cropped_to_ink(second)
    gap = round(rng.uniform(-0.35, 0.3) * (first.shape[1] + second.shape[1]) / 2)
    shift = round(rng.uniform(-0.15, 0.15) * first.shape[0])
    height = max(first.shape[0], second.shape[0] + abs(shift)) + abs(shift)
    width = max(first.shape[1] + gap + second.shape[1], first.shape[1])
    page = np.zeros((height, width), np.float32)
    top = abs(shift)
    page[top : top + first.shape[0], : first.shape[1]] = first
    left = max(first.shape[1] + gap, 0)
    region = page[top + shift : top + shift + second.shape[0], left : left + second.shape[1]]
    np.maximum(region, second[: region.shape[0], : region.shape[1]], out=region)
    return page


def two_digits(rng, digits, labels):
    first, second = rng.integers(len(digits), size=2)
    return side_by_side(digits[first], digits[second], rng), None


def piece(rng, digits, labels):
    """Part of a digit that is not a digit: the left part of one cut at a column or the top or
    bottom of one cut at a row, where that part is no digit itself, or the stretch between the
    middles of two touching digits, as a wrong division of a number gives."""
    others = np.flatnonzero(labels != 1)  # a 1 is one stroke already
    index = rng.choice(others)
    ink = cropped_to_ink(digits[index])
    height, width = ink.shape
    keep = rng.uniform(0.3, 0.6)  # of its width or height: more and it may still be the digit
    way = rng.integers(3)
    if way == 0 and labels[index] in LEFT_PARTS:
        return ink[:, : round(keep * width)], None
    if way == 1 and labels[index] in HALVES:
        return (
            ink[: round(keep * height)] if rng.random() < 0.5 else ink[round((1 - keep) * height) :]
        ), None
    pair = side_by_side(ink, digits[rng.choice(others)], rng)
    start = round(rng.uniform(0.3, 0.7) * width)
    return pair[:, start : start + width], None


def speck(rng, digits, labels):
    """A smudge: a few blurred blots close together."""
    page = np.zeros((CANVAS, CANVAS), np.float32)
    for _ in range(int(rng.integers(1, 5))):
        row, column = rng.integers(18, 38, 2)
        page[row, column] = rng.uniform(0.5, 1)
    blurred = ndimage.gaussian_filter(page, rng.uniform(1.5, 4))
    return 255 * np.clip(blurred / blurred.max() * rng.uniform(1.2, 2.5), 0, 1), None


# Each kind of image made: its share, and its maker (rng, digits, labels) -> (ink, label), the label
# None but for printed digits.
KINDS: dict[str, tuple[float, Callable]] = {
    "letter": (0.3, letter),
    "symbol": (0.1, symbol),
    "stroke": (0.15, stroke),
    "two digits": (0.15, two_digits),
    "piece": (0.2, piece),
    "speck": (0.03, speck),
    "printed digit": (0.07, printed_digit),
}
