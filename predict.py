"""Read the digit in your own images: photos, scans or drawings, any size, dark or light ink.

    python predict.py my_seven.png photo_of_a_3.jpg
    python predict.py zip_code.jpg --number           # a number of up to 12 digits on one line
    python predict.py scans/ --json
    python predict.py drawing.png --save-preprocessed artifacts/seen   # what the model saw
    python predict.py my_seven.png --model artifacts/export/model.onnx  # no TensorFlow needed
    python predict.py zip_code.jpg --number --model artifacts/line/model.keras   # read as a line

Each image is brought to MNIST's form by the reader (reader/page.py) (the paper and its printed lines taken
away, the ink cropped, fitted into 20x20, centred by mass in 28x28); with --number it is first
split into its digits, or, given a line model (train.py --arch line), read as a whole line by it
(docs/line-reader.md). A reading less confident than the model's calibrated threshold (in its
run.json, or in the export.json beside an .onnx file) is "not sure", with its two likeliest digits,
or "not a digit" where even those two together are less likely than the threshold.
Files that cannot be read are reported and the rest still read; the exit code is 1 if any failed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

from PIL import Image

from outputs import atomic_path, cannot_write
from reader.classifier import (
    LINE_MODEL_HELP,
    MODEL_HELP,
    Classifier,
    LineModel,
    load_model_file,
    unsure_never,
)
from reader.deadline import READING_SECONDS, Deadline, ReadingTimeout
from reader.page import FORMAT_NAMES, IMAGE_SUFFIXES, ImageError, mnist_style_digit, read_image_file
from reader.reading import read_digits, read_number
from trained import ModelError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("images", nargs="+", type=Path, help="image files or folders of images")
    parser.add_argument(
        "--model",
        type=Path,
        default=Path("artifacts/model.keras"),
        help=f"{MODEL_HELP}; with --number, a line model too ({LINE_MODEL_HELP})",
    )
    parser.add_argument(
        "--number", action="store_true", help="read each image as a number of up to 12 digits"
    )
    parser.add_argument("--top", type=int, default=3, help="how many likeliest digits to list (1-10)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument("--save-preprocessed", type=Path, metavar="DIR", help="write the 28x28 inputs here")
    args = parser.parse_args(argv)
    if not 1 <= args.top <= 10:
        parser.error(f"--top {args.top}: list between 1 and 10 digits")
    if args.save_preprocessed:
        problem = unwritable(args.save_preprocessed)
        if problem:
            parser.error(f"--save-preprocessed {args.save_preprocessed}: {problem}")
    return args


def unwritable(folder: Path) -> str | None:
    """Why the 28x28 images cannot be saved into `folder` (None: they can), found before any image
    is read, so that no reading is lost to it."""
    if folder.exists() and not folder.is_dir():
        return "is a file: name a folder"
    problem = cannot_write(folder)
    return f"cannot write there ({problem}): name another folder" if problem else None


def image_paths(paths: list[Path]) -> tuple[list[Path], list[dict]]:
    """Expand folders into their image files; returns (files, failures)."""
    files, failures = [], []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                failures.append({"file": str(path), "error": f"folder holds no {FORMAT_NAMES} files"})
            files.extend(found)
        else:
            files.append(path)
    return files, failures


def saved_names(files: list[str], counts: list[int], number: bool) -> list[list[str]]:
    """PNG names for each file's `count` 28x28 images: the file's stem (and, for a number, each
    digit's place), with -2, -3... added to the stem where a name is taken (3.png and 3.jpg,
    a/3.png and b/3.png; a number's 3_0.png and a file named 3_0.png)."""
    taken: set[str] = set()
    names = []
    for file, count in zip(files, counts, strict=True):
        stem = Path(file).stem
        for attempt in itertools.count(1):
            base = stem if attempt == 1 else f"{stem}-{attempt}"
            chosen = [f"{base}_{place}.png" if number else f"{base}.png" for place in range(count)]
            if taken.isdisjoint(chosen):
                break
        taken.update(chosen)
        names.append(chosen)
    return names


def described(result: dict) -> str:
    """A reading as a line of text: the digit, or "not sure" or "not a digit" with the two likeliest."""
    if result["not_sure"]:
        first, second = (f"{item['digit']} {item['probability']:.1%}" for item in result["top"][:2])
        if result["not_a_digit"]:
            return f"not a digit (likeliest {first}, {second})"
        return f"not sure: {first} or {second}"
    top = ", ".join(f"{item['digit']} {item['probability']:.1%}" for item in result["top"])
    return f"{result['digit']} ({result['confidence']:.1%}; top: {top})"


def read_files(
    model: Classifier | LineModel, files: list[Path], number: bool, top: int
) -> tuple[list[dict], list[list], list[dict]]:
    """Each file's reading (a digit, or with `number` a number: by a line model, if `model` is
    one), the images the model saw in it (28x28 digits, or a line), and the files that could not
    be read, each with its error."""
    results, seen, failures = [], [], []
    line = model if isinstance(model, LineModel) else None
    for path in files:
        try:
            image = read_image_file(path)
            if number:
                deadline = Deadline.after(READING_SECONDS)
                probabilities_of, threshold = (
                    (None, None) if line else (model.probabilities_of, model.threshold)
                )
                reading, digits = read_number(probabilities_of, image, threshold, top, deadline, line)
                results.append({"file": str(path), **reading})
                seen.append(digits)
            else:
                digit = mnist_style_digit(image)
                results.append({"file": str(path), "image": digit})
                seen.append([digit])
        except (ImageError, ReadingTimeout) as exc:
            failures.append({"file": str(path), "error": str(exc)})
        except Exception as exc:  # a fault of one file's decoding or preprocessing costs only that file
            failures.append({"file": str(path), "error": f"cannot be read ({type(exc).__name__}: {exc})"})
    if not number:  # one batch for all the single digits
        readings = read_digits(
            model.probabilities_of, [r.pop("image") for r in results], model.threshold, top
        )
        results = [{**result, **item} for result, item in zip(results, readings, strict=True)]
    return results, seen, failures


def save_seen(results: list[dict], seen: list[list], folder: Path, number: bool) -> list[dict]:
    """Write the 28x28 digits of each result into `folder`, naming them in its "saved_as"; returns
    the files whose images could not be written, each with its error (its reading still stands)."""
    files = [result["file"] for result in results]
    all_names = saved_names(files, [len(digits) for digits in seen], number)
    failures = []
    for result, digits, names in zip(results, seen, all_names, strict=True):
        saved_as = [str(folder / name) for name in names]
        try:
            for digit, saved in zip(digits, saved_as, strict=True):
                with atomic_path(saved) as temporary:
                    Image.fromarray(digit).save(temporary)
        except OSError as exc:
            failures.append(
                {"file": result["file"], "error": f"its 28x28 image is not saved ({exc.strerror or exc})"}
            )
            continue
        result["saved_as"] = saved_as
    return failures


def number_line(result: dict) -> str:
    """A number's reading as a line of text, naming the digits it is not sure of."""
    doubts = [f"digit {i + 1}: {described(d)}" for i, d in enumerate(result["digits"]) if d["not_sure"]]
    return f"{result['file']}: {result['number']}" + (f" (not sure of {'; '.join(doubts)})" if doubts else "")


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    try:
        model = load_model_file(args.model)
    except ModelError as exc:
        raise SystemExit(f"error: {exc}") from None
    if isinstance(model, LineModel) and not args.number:
        raise SystemExit(f"error: {args.model} is a line model: it reads numbers, so add --number")
    if model.threshold is None:
        print(unsure_never(args.model), file=sys.stderr)
    files, failures = image_paths(args.images)
    results, seen, unread = read_files(model, files, args.number, args.top)
    failures += unread
    if args.save_preprocessed:
        failures += save_seen(results, seen, args.save_preprocessed, args.number)
    if args.json:
        print(json.dumps({"predictions": results, "errors": failures}, indent=2))
    else:
        for result in results:
            print(number_line(result) if args.number else f"{result['file']}: {described(result)}")
    for failure in failures:
        print(f"error: {failure['file']}: {failure['error']}", file=sys.stderr)
    if failures:
        raise SystemExit(1)
    return results


if __name__ == "__main__":
    main()
