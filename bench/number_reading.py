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
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.number_sets import NUMBER_SETS, non_digits, number_set, printed_digits, written_number
from data import load_mnist
from ground.saved_network import ModelError
from reader.classifier import load_classifier, load_line_model
from reader.page import ImageError, mnist_style_digit
from reader.reading import read_digits, read_number
from recipe.config import validation_digits

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LENGTHS = (2, 5, 10)


def digits_of(split: str) -> tuple[np.ndarray, np.ndarray]:
    mnist = load_mnist()
    if split == "test":
        return mnist.x_test, mnist.y_test
    return validation_digits(mnist)


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
