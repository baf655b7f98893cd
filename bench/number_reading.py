"""How well trained models read whole numbers, and when they say they are not sure.

    python bench/number_reading.py artifacts/model.keras artifacts/cnn/model.keras            # the report
    python bench/number_reading.py artifacts/model.keras --split validation --count 100      # developing
    python bench/number_reading.py artifacts/model.keras --line-model artifacts/line/model.keras

Numbers: 2, 5 and 10 MNIST digits (--split: the test set for the report, the validation split
while developing) written on one line with random spacing (some touching), sizes and a wobbling
baseline, read as `predict.py --number` reads them. Whole-number accuracy stands beside the share
of numbers whose digits are all read right one by one: what perfect splitting would give.

"Not sure": the share of inputs each model flags with its calibrated threshold (run.json), for
MNIST validation digits (should be small) and for things that are not one digit: letters and
symbols in 12 of Debian's DejaVu fonts (fonts-dejavu; training draws in others), random
scribbles, and two digits in single-digit mode; in
brackets, the share said to be "not a digit". And the share of printed digits in those fonts read
right: a network that had learnt "printed" for "not a digit" would fail them.

With --line-model, the line reader (docs/line-reader.md) and division with the first model are
compared side by side instead, on numbers written as a person writes them (digits 60-90 px tall,
a wobbling baseline): 5 digits with 2-30 px gaps; 5 digits some with a pen lift (a small gap cut
across a stroke); 5 digits that touch or overlap; 10 digits; and 5 digits printed in the DejaVu
Sans fonts. For each: read right, read wrong without a flag, seconds per number
(bench/line_vs_division.md and .json).
"""

from __future__ import annotations

import argparse
import json
import string
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from data import load_mnist
from ground.saved_network import ModelError
from reader.classifier import load_classifier, load_line_model
from reader.page import ImageError, mnist_style_digit
from reader.reading import read_digits, read_number
from recipe.config import validation_digits

PROJECT_ROOT = Path(__file__).resolve().parent.parent

LENGTHS = (2, 5, 10)
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


def digits_of(split: str) -> tuple[np.ndarray, np.ndarray]:
    mnist = load_mnist()
    if split == "test":
        return mnist.x_test, mnist.y_test
    return validation_digits(mnist)


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


def number_scores(read, digits: np.ndarray, labels: np.ndarray, count: int) -> dict:
    """For each length: whole-number accuracy and the share whose digits are all right alone."""
    rng = np.random.default_rng(0)
    alone = np.array(
        [
            item["digit"]
            for item in read_digits(read, [mnist_style_digit(Image.fromarray(255 - d)) for d in digits], None)
        ]
    )
    right_alone = alone == labels
    scores = {}
    for length in LENGTHS:
        whole = split_right = 0
        for _ in range(count):
            chosen = rng.choice(len(digits), length, replace=False)
            image = written_number([digits[i] for i in chosen], rng)
            try:
                number, _ = read_number(read, image, None)
                whole += number["number"] == "".join(str(labels[i]) for i in chosen)
                split_right += len(number["digits"]) == length
            except ImageError:
                pass
        scores[length] = {
            "accuracy": whole / count,
            "digits_right_alone": float(
                np.mean(
                    [
                        np.all(right_alone[rng.choice(len(digits), length, replace=False)])
                        for _ in range(count * 10)
                    ]
                )
            ),
            "split_into_the_right_count": split_right / count,
        }
    return scores


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


def flagged_shares(read, images: list[Image.Image], threshold: float) -> dict[str, float]:
    """The shares of `images` read as "not sure" (of which "not a digit" is a part)."""
    seen = []
    for image in images:
        try:
            seen.append(mnist_style_digit(image))
        except ImageError:
            continue
    readings = read_digits(read, seen, threshold)
    return {
        answer: float(np.mean([item[answer] for item in readings])) for answer in ("not_sure", "not_a_digit")
    }


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


def scored(read, numbers: list[tuple[Image.Image, str]]) -> dict:
    """Read right, read wrong without a flag ("not sure"), and seconds per number. A number the
    reader refuses (an ImageError) is neither: it is flagged."""
    right = wrong_unflagged = 0
    started = time.perf_counter()
    for image, truth in numbers:
        try:
            number, _ = read(image)
        except ImageError:
            continue
        right += number["number"] == truth
        wrong_unflagged += number["number"] != truth and not number["not_sure"]
    return {
        "read_right": right / len(numbers),
        "wrong_unflagged": wrong_unflagged / len(numbers),
        "seconds_per_number": (time.perf_counter() - started) / len(numbers),
    }


def side_by_side(classifier_path: Path, line_path: Path, split: str, count: int) -> dict:
    """Division (with the classifier at `classifier_path`) and the line model at `line_path` on
    each of NUMBER_SETS: {set: {reader: scores}}."""
    try:
        classifier, line = load_classifier(classifier_path), load_line_model(line_path)
    except ModelError as exc:
        raise SystemExit(f"error: {exc}") from None
    readers = {
        "division": lambda image: read_number(classifier.probabilities_of, image, classifier.threshold),
        "line": lambda image: read_number(None, image, None, line=line),
    }
    digits, labels = digits_of(split)
    results = {}
    for name in NUMBER_SETS:
        numbers = number_set(name, digits, labels, count)
        results[name] = {reader: scored(read, numbers) for reader, read in readers.items()}
        print(name, results[name], flush=True)
    return results


def side_by_side_table(results: dict, args) -> str:
    lines = [
        f"Line reader and division side by side, {time.strftime('%Y-%m-%d')}: {args.count} numbers a set "
        f"from MNIST {args.split} digits (font: printed); division with {args.models[0]}, the line "
        f"reader with {args.line_model}. Read right / read wrong without a flag / seconds per number.",
        "",
        "| numbers | division | line reader |",
        "|---|---|---|",
    ]
    for name, readers in results.items():
        cells = [
            f"{s['read_right']:.1%} / {s['wrong_unflagged']:.1%} / {s['seconds_per_number']:.3f} s"
            for s in (readers["division"], readers["line"])
        ]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "models",
        nargs="+",
        type=Path,
        help="model.keras files with their run.json, or model.onnx with their export.json",
    )
    parser.add_argument(
        "--split", choices=("test", "validation"), default="test", help="digits numbers are made of"
    )
    parser.add_argument("--count", type=int, default=300, help="numbers of each length")
    parser.add_argument(
        "--out", type=Path, default=PROJECT_ROOT / "bench", help="folder for number_reading.*"
    )
    parser.add_argument(
        "--line-model", type=Path, help="compare this line model with division by the first model instead"
    )
    args = parser.parse_args(argv)
    if args.line_model:
        results = side_by_side(args.models[0], args.line_model, args.split, args.count)
        table = side_by_side_table(results, args)
        print(table)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "line_vs_division.md").write_text(table)
        (args.out / "line_vs_division.json").write_text(json.dumps(results, indent=2) + "\n")
        return results
    digits, labels = digits_of(args.split)
    validation, _ = digits_of("validation")
    results = {}
    for path in args.models:
        try:
            model = load_classifier(path)
        except ModelError as exc:
            raise SystemExit(f"error: {exc}") from None
        read, threshold = model.probabilities_of, model.threshold
        started = time.perf_counter()
        result = {"numbers": number_scores(read, digits, labels, args.count)}
        if threshold is not None:
            rng = np.random.default_rng(1)
            inputs = {"MNIST validation digits": [Image.fromarray(255 - d) for d in validation[:2000]]}
            inputs.update(non_digits(rng, validation))
            shares = {kind: flagged_shares(read, images, threshold) for kind, images in inputs.items()}
            printed, printed_labels = printed_digits(rng)
            readings = read_digits(read, [mnist_style_digit(image) for image in printed], threshold)
            result["not_sure"] = {
                "threshold": threshold,
                "flagged": {kind: share["not_sure"] for kind, share in shares.items()},
                "not_a_digit": {kind: share["not_a_digit"] for kind, share in shares.items()},
                "counts": {kind: len(images) for kind, images in inputs.items()},
                "printed_digits_read_right": float(
                    np.mean(
                        [item["digit"] == label for item, label in zip(readings, printed_labels, strict=True)]
                    )
                ),
                "printed_digits": len(printed),
            }
        results[str(path)] = result
        print(f"{path}: {time.perf_counter() - started:.0f} s", flush=True)
    table = markdown(results, args)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "number_reading.md").write_text(table)
    (args.out / "number_reading.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def markdown(results: dict, args) -> str:
    names = list(results)
    lines = [
        f"Numbers benchmark, {time.strftime('%Y-%m-%d')}: {args.count} numbers of each length from MNIST "
        f"{args.split} digits; whole numbers read right, and (in brackets) the share whose digits are all "
        "right read alone.",
        "",
        "| digits | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for length in LENGTHS:
        cells = [results[name]["numbers"][length] for name in names]
        lines.append(
            f"| {length} | "
            + " | ".join(f"{c['accuracy']:.1%} ({c['digits_right_alone']:.1%})" for c in cells)
            + " |"
        )
    unsure = [name for name in names if "not_sure" in results[name]]
    if unsure:
        lines += [
            "",
            '| flagged "not sure" (of them, "not a digit") | ' + " | ".join(unsure) + " |",
            "|---|" + "---|" * len(unsure),
        ]
        lines.append(
            "| threshold (confidence) | "
            + " | ".join(f"{results[n]['not_sure']['threshold']:.1%}" for n in unsure)
            + " |"
        )
        for kind in results[unsure[0]]["not_sure"]["flagged"]:
            count = results[unsure[0]]["not_sure"]["counts"][kind]
            shares = [
                (results[n]["not_sure"]["flagged"][kind], results[n]["not_sure"]["not_a_digit"][kind])
                for n in unsure
            ]
            lines.append(
                f"| {kind} ({count}) | "
                + " | ".join(f"{flagged:.1%} ({said:.1%})" for flagged, said in shares)
                + " |"
            )
        printed = results[unsure[0]]["not_sure"]["printed_digits"]
        lines.append(
            f"| printed digits read right ({printed}) | "
            + " | ".join(f"{results[n]['not_sure']['printed_digits_read_right']:.1%}" for n in unsure)
            + " |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
