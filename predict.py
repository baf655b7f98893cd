"""Read the digit in your own images: photos, scans or drawings, any size, dark or light ink.

    python predict.py my_seven.png photo_of_a_3.jpg
    python predict.py zip_code.jpg --number           # a number of up to 12 digits on one line
    python predict.py scans/ --json
    python predict.py drawing.png --save-preprocessed artifacts/seen   # what the model saw
    python predict.py my_seven.png --model artifacts/export/model.onnx  # no TensorFlow needed
    python predict.py zip_code.jpg --number --model artifacts/line/model.keras   # read as a line

Each image is brought to MNIST's form by the reader (reader/page.py: the paper and its printed
lines taken away, the ink cropped, fitted into 20x20, centred by mass in 28x28); with --number it is first
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
import os
import sys
from pathlib import Path

from PIL import Image

from data import cropped_to_ink, mnist_style
from ground.outputs import HelpFormatter, atomic_path, cannot_write
from ground.saved_network import ModelError, ModelRunError
from reader.classifier import (
    LINE_MODEL_HELP,
    MODEL_HELP,
    Classifier,
    LineModel,
    load_model_file,
    unsure_never,
)
from reader.deadline import READING_SECONDS, Deadline, ReadingTimeout
from reader.division import MAX_DIGITS
from reader.page import FORMAT_NAMES, IMAGE_SUFFIXES, ImageError, page_ink, read_image_file
from reader.reading import read_digits, read_number

WIDE_INK = 2.0  # ink this many times as wide as tall is more like a number than one digit
NUMBER_HINT = "much wider than tall: if it is a number, add --number"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("images", nargs="+", type=Path, help="image files or folders of images")
    parser.add_argument(
        "--model",
        type=Path,
        default=Path("artifacts/model.keras"),
        help=f"{MODEL_HELP}; with --number, a line model too ({LINE_MODEL_HELP})",
    )
    parser.add_argument(
        "--number", action="store_true", help=f"read each image as a number of up to {MAX_DIGITS} digits"
    )
    parser.add_argument("--top", type=int, default=3, help="how many likeliest digits to list (1-10)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument(
        "--save-preprocessed", type=Path, metavar="DIR", help="write the 28x28 inputs here [not written]"
    )
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
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


def described(result: dict, top: bool = True) -> str:
    """A reading as text: the digit (with the `top` likeliest), or "not sure" or "not a digit"
    with the two likeliest."""
    if result["not_sure"]:
        first, second = (f"{item['digit']} {item['probability']:.1%}" for item in result["top"][:2])
        if result["not_a_digit"]:
            return f"not a digit; likeliest {first}, then {second}"
        return f"not sure: {first} or {second}"
    if not top:
        return f"{result['digit']} {result['confidence']:.1%}"
    likeliest = ", ".join(f"{item['digit']} {item['probability']:.1%}" for item in result["top"])
    return f"{result['digit']} ({result['confidence']:.1%}; top: {likeliest})"


def wide(ink) -> bool:
    """Whether the ink is much wider than tall: more like a number than one digit."""
    height, width = cropped_to_ink(ink).shape
    return width >= WIDE_INK * height


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
                ink = page_ink(image)
                digit = mnist_style(ink)
                results.append({"file": str(path), "image": digit, "wide": wide(ink)})
                seen.append([digit])
        except (ImageError, ReadingTimeout, ModelRunError) as exc:
            failures.append({"file": str(path), "error": str(exc)})
        except Exception as exc:  # a fault of one file's decoding or preprocessing costs only that file
            failures.append({"file": str(path), "error": f"cannot be read ({type(exc).__name__}: {exc})"})
    if not number:
        readings = read_single_digits(model, [result.pop("image") for result in results], top)
        failures += [
            {"file": result["file"], "error": str(item)}
            for result, item in zip(results, readings, strict=True)
            if isinstance(item, ModelRunError)
        ]
        kept = [index for index, item in enumerate(readings) if isinstance(item, dict)]
        results, seen = [{**results[i], **readings[i]} for i in kept], [seen[i] for i in kept]
        results = [{**result, **hint(result.pop("wide"), result)} for result in results]
    return results, seen, failures


def hint(wide_ink: bool, reading: dict) -> dict:
    """{"hint": ...} where an image that is not a digit looks like a number; else nothing."""
    return {"hint": NUMBER_HINT} if wide_ink and reading["not_a_digit"] else {}


def read_single_digits(model: Classifier, digits: list, top: int) -> list[dict | ModelRunError]:
    """Each 28x28 digit's reading, in one batch; where the model fails on the batch, one at a
    time, so that its failure is the error of the files it fails on only."""
    try:
        return read_digits(model.probabilities_of, digits, model.threshold, top)
    except ModelRunError:
        readings = []
        for digit in digits:
            try:
                readings += read_digits(model.probabilities_of, [digit], model.threshold, top)
            except ModelRunError as exc:
                readings.append(exc)
        return readings


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


def shown(name: str) -> str:
    """A file name as printed: as it is, or, where it holds characters that are not printable (a
    newline would start a line of its own, a forged reading), quoted as `ls` does, $'a\\nb'."""
    if name.isprintable():
        return name
    escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in name.replace("\\", "\\\\"))
    return "$'" + escaped.replace("'", "\\'") + "'"


def number_lines(result: dict) -> str:
    """A number's reading as text: the number, naming the digits it is not sure of, then a line
    for each digit with its box (left, top, right, bottom) and reading."""
    digits = result["digits"]
    doubts = [str(place) for place, digit in enumerate(digits, start=1) if digit["not_sure"]]
    first = f"{shown(result['file'])}: {result['number']}"
    if doubts:
        first += f" (not sure of digit {', '.join(doubts)} of {len(digits)})"
    lines = [
        f"  {place}. {described(digit, top=False)}  box {tuple(digit['box'])}"
        for place, digit in enumerate(digits, start=1)
    ]
    return "\n".join([first, *lines])


def digit_line(result: dict) -> str:
    """A single digit's reading as a line of text, with the hint where there is one."""
    line = f"{shown(result['file'])}: {described(result)}"
    return f"{line} ({result['hint']})" if "hint" in result else line


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
        # No NaN can be in a reading (the classifier checks its answers): were one, fail, not write it.
        print(json.dumps({"predictions": results, "errors": failures}, indent=2, allow_nan=False))
    else:
        for result in results:
            print(number_lines(result) if args.number else digit_line(result))
    for failure in failures:
        print(f"error: {shown(failure['file'])}: {failure['error']}", file=sys.stderr)
    if failures:
        raise SystemExit(1)
    return results


if __name__ == "__main__":
    try:
        try:
            main()
        finally:
            sys.stdout.flush()  # here, where a closed pipe can be caught, not at the interpreter's exit
    except BrokenPipeError:  # the reader of a pipe (`| head`) has stopped: end quietly, as `cat` does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        raise SystemExit(1) from None
