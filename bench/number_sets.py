"""The numbers bench/number_reading.py reads: MNIST digits written on a line as a person writes
them (spacing, touching, pen lifts, a wobbling baseline), numbers printed in Debian's DejaVu
fonts, and marks that are not digits; each set the same for every reader given the same seed.
"""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_FOLDER = Path("/usr/share/fonts/truetype/dejavu")  # Debian's fonts-dejavu
MEASURED_FONTS = (  # Sans and its variants: recipe/not_digits.py draws in none of them
    "DejaVuMathTeXGyre.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSans-ExtraLight.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans.ttf",
    "DejaVuSansCondensed-Bold.ttf",
    "DejaVuSansCondensed-BoldOblique.ttf",
    "DejaVuSansCondensed-Oblique.ttf",
    "DejaVuSansCondensed.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
)


def written_number(digits: list[np.ndarray], rng: np.random.Generator) -> Image.Image:
    """Digits (white on black, 28x28) written side by side in dark ink: each cropped to its ink,
    sized 0.85-1.15x, its baseline wobbling, the gaps random and now and then touching."""
    height = 100
    pieces = []
    for digit in digits:
        rows, columns = np.nonzero(digit > 30)
        crop = digit[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
        scale = height / 20 * rng.uniform(0.85, 1.15)
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        pieces.append(np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.BICUBIC)))
    gaps = [
        height * (rng.uniform(-0.08, 0.02) if rng.random() < 0.15 else rng.uniform(0.1, 0.4)) for _ in pieces
    ]
    width = int(sum(piece.shape[1] for piece in pieces) + sum(max(gap, 0) for gap in gaps) + 2 * height)
    page = np.zeros((3 * height, width), np.uint8)
    left = height
    for piece, gap in zip(pieces, gaps, strict=True):
        top = int(height + rng.uniform(-0.1, 0.1) * height + (height * 1.15 - piece.shape[0]) / 2)
        region = page[top : top + piece.shape[0], int(left) : int(left) + piece.shape[1]]
        np.maximum(region, piece[: region.shape[0], : region.shape[1]], out=region)
        left += piece.shape[1] + gap
    return Image.fromarray(255 - page)


def non_digits(rng: np.random.Generator, digits: np.ndarray) -> dict[str, list[Image.Image]]:
    """Inputs that are not one digit, dark on light."""
    fonts = measured_fonts()
    symbols = list("+-=×÷#@%&?!*$€§/\\<>()[]")
    kinds: dict[str, list[Image.Image]] = {"letters": [], "symbols": [], "scribbles": [], "two digits": []}
    for font_path in fonts:
        for text, kind in [(c, "letters") for c in string.ascii_letters] + [(c, "symbols") for c in symbols]:
            page = Image.new("L", (160, 160), 255)
            font = ImageFont.truetype(str(font_path), int(rng.integers(70, 120)))
            ImageDraw.Draw(page).text((80, 80), text, fill=0, font=font, anchor="mm")
            kinds[kind].append(page)
    for _ in range(500):
        page = Image.new("L", (160, 160), 255)
        points = [tuple(rng.uniform(20, 140, 2)) for _ in range(int(rng.integers(3, 8)))]
        ImageDraw.Draw(page).line(points, fill=0, width=int(rng.integers(6, 14)), joint="curve")
        kinds["scribbles"].append(page)
    for _ in range(500):
        pair = np.hstack([digits[i] for i in rng.choice(len(digits), 2, replace=False)])
        kinds["two digits"].append(Image.fromarray(255 - pair).resize((224, 112), Image.Resampling.BICUBIC))
    return kinds


def printed_digits(rng: np.random.Generator) -> tuple[list[Image.Image], np.ndarray]:
    """The ten digits in the fonts the non-digits are measured in: read as digits, or the network
    has learnt "printed" for "not a digit"."""
    images, labels = [], []
    for font_path in measured_fonts():
        for digit in range(10):
            page = Image.new("L", (160, 160), 255)
            font = ImageFont.truetype(str(font_path), int(rng.integers(70, 120)))
            ImageDraw.Draw(page).text((80, 80), str(digit), fill=0, font=font, anchor="mm")
            images.append(page)
            labels.append(digit)
    return images, np.array(labels)


def measured_fonts() -> list[Path]:
    """The system's fonts the letters and symbols are drawn in (training never sees these)."""
    missing = [name for name in MEASURED_FONTS if not (FONT_FOLDER / name).exists()]
    if missing:
        raise SystemExit(f"error: {FONT_FOLDER} lacks {', '.join(missing)}: apt-get install fonts-dejavu")
    return [FONT_FOLDER / name for name in MEASURED_FONTS]


def handwritten_number(digits: list[np.ndarray], rng: np.random.Generator, kind: str) -> Image.Image:
    """MNIST digits written dark on light as a person writes a number: each 60-90 px tall, the
    baseline wobbling; gaps of 2-30 px, or (kind "touching") touching and overlapping by up to a
    sixth of a digit; with kind "pen lift", half the digits have a 3 px gap cut across a stroke."""
    pieces = []
    for digit in digits:
        rows, columns = np.nonzero(digit > 30)
        crop = digit[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
        scale = rng.uniform(60, 90) / crop.shape[0]
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        piece = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.BICUBIC)).copy()
        if kind == "pen lift" and rng.random() < 0.5:
            at = int(rng.uniform(0.3, 0.7) * piece.shape[rng.integers(2)])
            if rng.random() < 0.5:
                piece[at : at + 3] = 0
            else:
                piece[:, at : at + 3] = 0
        pieces.append(piece)
    if kind == "touching":
        gaps = [
            -rng.uniform(0, 1 / 6) * min(a.shape[1], b.shape[1])
            for a, b in zip(pieces[:-1], pieces[1:], strict=True)
        ]
    else:
        gaps = [rng.uniform(2, 30) for _ in pieces[1:]]
    width = int(sum(piece.shape[1] for piece in pieces) + sum(max(gap, 0) for gap in gaps) + 80)
    page = np.zeros((160, width), np.uint8)
    left = 40.0
    for index, piece in enumerate(pieces):
        top = int(np.clip(120 - piece.shape[0] + rng.uniform(-8, 8), 0, 160 - piece.shape[0]))
        region = page[top : top + piece.shape[0], int(left) : int(left) + piece.shape[1]]
        np.maximum(region, piece[: region.shape[0], : region.shape[1]], out=region)
        left += piece.shape[1] + (gaps[index] if index < len(gaps) else 0)
    return Image.fromarray(255 - page)


def font_number(rng: np.random.Generator) -> tuple[Image.Image, str]:
    """Five random digits printed in one of the DejaVu Sans fonts (training draws in none)."""
    text = "".join(str(d) for d in rng.integers(0, 10, 5))
    fonts = measured_fonts()
    font = ImageFont.truetype(str(fonts[rng.integers(len(fonts))]), int(rng.integers(60, 90)))
    page = Image.new("L", (600, 160), 255)
    ImageDraw.Draw(page).text((300, 80), text, fill=0, font=font, anchor="mm")
    return page, text


NUMBER_SETS = {
    "5 digits": (5, "plain"),
    "pen lift": (5, "pen lift"),
    "touching": (5, "touching"),
    "10 digits": (10, "plain"),
    "font": (5, "font"),
}


def number_set(
    name: str, digits: np.ndarray, labels: np.ndarray, count: int
) -> list[tuple[Image.Image, str]]:
    """`count` numbers of one of NUMBER_SETS with their true digits, the same for every reader."""
    length, kind = NUMBER_SETS[name]
    rng = np.random.default_rng(list(NUMBER_SETS).index(name))
    if kind == "font":
        return [font_number(rng) for _ in range(count)]
    numbers = []
    for _ in range(count):
        chosen = rng.choice(len(digits), length, replace=False)
        truth = "".join(str(labels[i]) for i in chosen)
        numbers.append((handwritten_number([digits[i] for i in chosen], rng, kind), truth))
    return numbers
