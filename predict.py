"""Read the digit in your own images: photos, scans or drawings, any size, dark or light ink.

    python predict.py my_seven.png photo_of_a_3.jpg
    python predict.py scans/ --json
    python predict.py drawing.png --save-preprocessed artifacts/seen   # what the model saw

Each image is brought to MNIST's form by preprocess.py (ink found, cropped, fitted into 20x20,
centred by mass in 28x28). Files that cannot be read are reported and the rest still predicted;
the exit code is 1 if any failed.
"""

from __future__ import annotations

from startup import import_tensorflow_quietly

import_tensorflow_quietly()

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from data import normalize_images
from model import ModelError, load_trained_model, probability_model
from outputs import atomic_path
from preprocess import FORMAT_NAMES, IMAGE_SUFFIXES, ImageError, mnist_style_digit, read_image


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("images", nargs="+", type=Path, help="image files or folders of images")
    parser.add_argument("--model", type=Path, default=Path("artifacts/model.keras"))
    parser.add_argument("--top", type=int, default=3, help="how many likeliest digits to list")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument("--save-preprocessed", type=Path, metavar="DIR", help="write the 28x28 inputs here")
    return parser.parse_args(argv)


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


def prepare(path: Path) -> np.ndarray:
    """One file -> uint8 (28, 28) MNIST-style digit, or ImageError."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read it ({exc.strerror})") from None
    return mnist_style_digit(read_image(raw))


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    try:
        model = probability_model(load_trained_model(args.model))
    except ModelError as exc:
        raise SystemExit(f"error: {exc}") from None
    files, failures = image_paths(args.images)
    digits, readable = [], []
    for path in files:
        try:
            digits.append(prepare(path))
            readable.append(path)
        except ImageError as exc:
            failures.append({"file": str(path), "error": str(exc)})

    results = []
    if digits:
        probabilities = model.predict(normalize_images(np.stack(digits)), verbose=0)
        for path, digit, row in zip(readable, digits, probabilities, strict=True):
            ranked = np.argsort(-row)[: args.top]
            results.append(
                {
                    "file": str(path),
                    "digit": int(ranked[0]),
                    "confidence": float(row[ranked[0]]),
                    "top": [{"digit": int(d), "probability": float(row[d])} for d in ranked],
                }
            )
            if args.save_preprocessed:
                with atomic_path(args.save_preprocessed / f"{path.stem}.png") as temporary:
                    Image.fromarray(digit).save(temporary)

    if args.json:
        print(json.dumps({"predictions": results, "errors": failures}, indent=2))
    else:
        for result in results:
            top = ", ".join(f"{item['digit']} {item['probability']:.1%}" for item in result["top"])
            print(f"{result['file']}: {result['digit']} ({result['confidence']:.1%}; top: {top})")
    for failure in failures:
        print(f"error: {failure['file']}: {failure['error']}", file=sys.stderr)
    if failures:
        raise SystemExit(1)
    return results


if __name__ == "__main__":
    main()
