"""How well trained models read digits that do not look like MNIST's.

    python bench/handwriting.py artifacts/model.keras artifacts/cnn/model.keras
    python bench/handwriting.py artifacts/model.keras --per-condition 300     # quicker

Two measurements, each image read the way predict.py reads a user's file (the reader, then the
model):
- a development set: MNIST *validation* digits (seed 0's split, never the test set) rendered the
  way real inputs arrive, one condition at a time (thick and thin pens, low-resolution scans,
  blur, JPEG, a photo with uneven light and a shadow, ruled and squared paper, slant, 1s with a
  flag and 7s with a crossbar), each seeded, so every model sees the same images;
- real handwriting of other writers: scikit-learn's digits (1,797 digits by 43 writers, scanned
  at 8x8), the images as they are.

Prints and writes bench/handwriting.md and .json (or --out DIR): accuracy per condition, its drop
against the clean rendering, the weakest digit of each condition, and the same for the real set.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from ground.quiet_tensorflow import import_tensorflow_quietly

import_tensorflow_quietly()

from data import IMAGE_SIZE, load_mnist, normalize_images
from ground.outputs import save_figure
from ground.saved_network import ModelError, load_trained_model
from model import probability_model
from reader.page import ImageError, mnist_style_digit
from recipe.config import validation_digits

PROJECT_ROOT = Path(__file__).resolve().parent.parent

Ink = np.ndarray  # float32 (h, w) in [0, 1]: how much ink each pixel holds, at any resolution


def disk(radius: float) -> np.ndarray:
    span = np.arange(-int(radius), int(radius) + 1)
    return span[:, None] ** 2 + span[None, :] ** 2 <= radius**2


def scanned(digit_uint8: np.ndarray, scale: float) -> Ink:
    """An MNIST digit as a smooth high-resolution ink image, `scale` pixels per MNIST pixel."""
    size = round(IMAGE_SIZE * scale)
    image = Image.fromarray(digit_uint8.astype(np.float32) / 255, mode="F")
    return np.clip(np.asarray(image.resize((size, size), Image.Resampling.BICUBIC)), 0, 1)


def stroke_width(ink: Ink) -> float:
    """Mean width of the strokes in pixels: four times the mean distance of ink to paper."""
    solid = ink > 0.5
    return 4 * float(ndimage.distance_transform_edt(solid)[solid].mean()) if solid.any() else 1.0


def on_paper(ink: Ink, paper: float = 1.0, pen: float = 0.0) -> np.ndarray:
    """Ink laid on paper as an 8-bit greyscale page: dark pen on light paper."""
    return np.clip(255 * (paper - ink * (paper - pen)), 0, 255).astype(np.uint8)


# ---- The conditions: (digit uint8 28x28, label, rng) -> the image a user would send -----------------


def clean(digit, label, rng):
    return Image.fromarray(on_paper(scanned(digit, rng.uniform(4, 7))))


def thick_pen(digit, label, rng):
    """A felt-tip: strokes two to three times MNIST's width."""
    scale = rng.uniform(4, 7)
    ink = scanned(digit, scale)
    grown = ndimage.grey_dilation(ink, footprint=disk(scale * rng.uniform(1.0, 2.0)))
    return Image.fromarray(on_paper(grown))


def thin_pen(digit, label, rng):
    """A fine pen: only the core of each stroke, about half MNIST's width."""
    ink = scanned(digit, rng.uniform(4, 7))
    cut = rng.uniform(0.55, 0.75)
    return Image.fromarray(on_paper(np.clip((ink - cut) / (1 - cut), 0, 1)))


def low_resolution(digit, label, rng):
    """A small digit on a coarse scan: 8 to 16 pixels tall, then enlarged for viewing."""
    rows, columns = np.nonzero(digit)
    crop = Image.fromarray(255 - digit[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1])
    longer = int(rng.integers(8, 17))
    factor = longer / max(crop.size)
    small = crop.resize((max(1, round(crop.width * factor)), max(1, round(crop.height * factor))), Image.BOX)
    small = Image.fromarray(np.pad(np.asarray(small), 3, constant_values=255))
    zoom = rng.uniform(6, 12)
    size = (round(small.width * zoom), round(small.height * zoom))
    return small.resize(size, Image.Resampling.BILINEAR if rng.random() < 0.5 else Image.Resampling.NEAREST)


def blur(digit, label, rng):
    scale = rng.uniform(4, 7)
    return Image.fromarray(on_paper(scanned(digit, scale))).filter(
        ImageFilter.GaussianBlur(scale * rng.uniform(0.8, 1.6))
    )


def jpeg(digit, label, rng):
    """A heavily compressed image, as messaging apps send them."""
    page = Image.fromarray(on_paper(scanned(digit, rng.uniform(2, 4))))
    buffer = io.BytesIO()
    page.save(buffer, format="JPEG", quality=int(rng.integers(5, 16)))
    return Image.open(io.BytesIO(buffer.getvalue()))


def photo(digit, label, rng):
    """A phone photo: grey paper, a grey pen, light falling off across the page, a shadow, noise."""
    ink = np.pad(scanned(digit, rng.uniform(4, 7)), 30)
    height, width = ink.shape
    page = on_paper(ink, paper=rng.uniform(0.7, 0.9), pen=rng.uniform(0.05, 0.3)).astype(np.float32)
    rows, columns = np.mgrid[0:height, 0:width] / max(height, width)
    angle = rng.uniform(0, 2 * np.pi)
    along = np.cos(angle) * columns + np.sin(angle) * rows
    light = 1 - rng.uniform(0.25, 0.45) * (along - along.min()) / np.ptp(along)
    edge_angle = rng.uniform(0, 2 * np.pi)
    side = np.cos(edge_angle) * (columns - rng.uniform(0.3, 0.7)) + np.sin(edge_angle) * (rows - 0.5)
    shadow = 1 - rng.uniform(0.25, 0.45) * ndimage.gaussian_filter((side > 0).astype(np.float32), 4)
    page = page * light * shadow + rng.normal(0, rng.uniform(2, 6), page.shape)
    tint = np.array([1.0, rng.uniform(0.95, 1.0), rng.uniform(0.85, 0.97)])  # warm indoor light
    rgb = np.clip(page[..., None] * tint, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=int(rng.integers(70, 91)))
    return Image.open(io.BytesIO(buffer.getvalue()))


def ruled_lines(shape: tuple[int, int], spacing: float, rng, vertical: bool) -> np.ndarray:
    """Printed lines of a notebook page: faint, 1-3 px, every `spacing` pixels."""
    lines = np.zeros(shape, np.float32)
    thickness, strength = int(rng.integers(1, 4)), rng.uniform(0.25, 0.5)
    for start in np.arange(rng.uniform(0, spacing), shape[0], spacing).astype(int):
        lines[start : start + thickness, :] = strength
    if vertical:
        for start in np.arange(rng.uniform(0, spacing), shape[1], spacing).astype(int):
            lines[:, start : start + thickness] = strength
    return lines


def on_lined_paper(digit, rng, vertical):
    scale = rng.uniform(4, 7)
    ink = np.pad(scanned(digit, scale), int(4 * scale))
    lines = ruled_lines(ink.shape, scale * rng.uniform(6, 10), rng, vertical)
    rgb = np.stack([on_paper(np.maximum(ink, lines * weight)) for weight in (1.0, 0.6, 0.25)], axis=-1)
    return Image.fromarray(rgb)  # blue-grey lines, black ink


def ruled_paper(digit, label, rng):
    return on_lined_paper(digit, rng, vertical=False)


def squared_paper(digit, label, rng):
    return on_lined_paper(digit, rng, vertical=True)


def slant(digit, label, rng):
    """Writing leaning 15-25 degrees either way."""
    shear = rng.uniform(0.27, 0.47) * rng.choice([-1, 1])
    ink = Image.fromarray(np.pad(scanned(digit, rng.uniform(4, 7)), 40), mode="F")
    width, height = ink.size
    sheared = ink.transform(
        (width, height), Image.Transform.AFFINE, (1, shear, -shear * height / 2, 0, 1, 0), Image.BILINEAR
    )
    return Image.fromarray(on_paper(np.clip(np.asarray(sheared), 0, 1)))


def continental(digit, label, rng):
    """1s written with a long upstroke flag, 7s with a crossbar; other digits as they are."""
    scale = rng.uniform(4, 7)
    ink = scanned(digit, scale)
    if label in (1, 7):
        solid = ink > 0.5
        rows = np.flatnonzero(solid.any(axis=1))
        top, bottom = rows[0], rows[-1]
        height = bottom - top
        canvas = Image.fromarray(np.zeros_like(ink), mode="F")
        pen = ImageDraw.Draw(canvas)
        width = max(2, round(stroke_width(ink)))
        if label == 1:  # from the top of the stem, down and to the left; flatter or longer, it is a 7
            x_top = float(np.flatnonzero(solid[top : top + max(2, height // 10)].any(axis=0)).mean())
            length, angle = height * rng.uniform(0.25, 0.45), np.radians(rng.uniform(35, 60))
            end = (x_top - length * np.cos(angle), top + length * np.sin(angle))
            pen.line([(x_top, top), end], fill=1.0, width=width, joint="curve")
        else:  # across the middle of the down stroke
            middle = top + int(height * rng.uniform(0.45, 0.6))
            x_middle = (
                float(np.flatnonzero(solid[middle]).mean()) if solid[middle].any() else ink.shape[1] / 2
            )
            half = height * rng.uniform(0.18, 0.28)
            pen.line([(x_middle - half, middle), (x_middle + half, middle)], fill=1.0, width=width)
        marks = ndimage.gaussian_filter(np.asarray(canvas), scale / 3)
        ink = np.maximum(ink, np.clip(marks / max(marks.max(), 1e-6), 0, 1))
    return Image.fromarray(on_paper(ink))


CONDITIONS: dict[str, Callable] = {
    "clean": clean,
    "thick pen": thick_pen,
    "thin pen": thin_pen,
    "low resolution": low_resolution,
    "blur": blur,
    "JPEG": jpeg,
    "photo": photo,
    "ruled paper": ruled_paper,
    "squared paper": squared_paper,
    "slant": slant,
    "1s with a flag, 7s with a crossbar": continental,
}


def development_set(count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` MNIST validation digits of seed 0's split (uint8 images, labels)."""
    x_val, y_val = validation_digits(load_mnist())
    return x_val[:count], y_val[:count]


def real_handwriting() -> tuple[list[Image.Image], np.ndarray]:
    """scikit-learn's digits, 8x8 at 16 grey levels, as dark-on-light images."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = [Image.fromarray((255 - image * (255 / 16)).astype(np.uint8)) for image in digits.images]
    return images, digits.target


def read(models: dict, images: list[Image.Image]) -> dict[str, np.ndarray]:
    """Each model's predicted digit for each image, read as predict.py reads a file."""
    inputs = []
    for image in images:
        try:
            inputs.append(mnist_style_digit(image))
        except ImageError:  # nothing readable: counts as wrong
            inputs.append(np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8))
    x = normalize_images(np.stack(inputs))
    return {
        name: model.predict(x, batch_size=1000, verbose=0).argmax(axis=1) for name, model in models.items()
    }


def scores(predicted: np.ndarray, labels: np.ndarray) -> dict:
    per_class = [float(np.mean(predicted[labels == digit] == digit)) for digit in range(10)]
    weakest = int(np.argmin(per_class))
    confused = np.bincount(predicted[(labels == weakest) & (predicted != weakest)], minlength=10)
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "per_class": per_class,
        "weakest": weakest,
        "weakest_read_as": int(confused.argmax()) if confused.any() else None,
    }


def markdown(results: dict, count: int) -> str:
    names = list(results["models"])
    lines = [
        f"Handwriting benchmark, {time.strftime('%Y-%m-%d')}: {count} MNIST validation digits per condition, "
        "read as predict.py reads them; accuracy, and in brackets the weakest digit (what it was read as "
        "most).",
        "",
        "| condition | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]

    def cell(score: dict, clean_accuracy: float | None) -> str:
        drop = "" if clean_accuracy is None else f" ({(score['accuracy'] - clean_accuracy) * 100:+.1f})"
        weakest = score["weakest"], score["per_class"][score["weakest"]], score["weakest_read_as"]
        return f"{score['accuracy']:.1%}{drop}; {weakest[0]}: {weakest[1]:.0%} as {weakest[2]}"

    for condition in CONDITIONS:
        row = [cell(results["models"][name]["conditions"][condition], None) for name in names]
        if condition != "clean":
            row = [
                cell(
                    results["models"][name]["conditions"][condition],
                    results["models"][name]["conditions"]["clean"]["accuracy"],
                )
                for name in names
            ]
        lines.append(f"| {condition} | " + " | ".join(row) + " |")
    summary = []
    for name in names:
        conditions = results["models"][name]["conditions"]
        drops = [
            conditions["clean"]["accuracy"] - conditions[c]["accuracy"] for c in CONDITIONS if c != "clean"
        ]
        lowest = min(min(conditions[c]["per_class"]) for c in CONDITIONS)
        summary.append(
            f"mean drop {np.mean(drops) * 100:.1f}, worst {max(drops) * 100:.1f}, lowest class {lowest:.0%}"
        )
    lines.append("| **over the conditions** | " + " | ".join(summary) + " |")
    lines.append(
        "| **real handwriting** (scikit-learn digits, 1,797) | "
        + " | ".join(cell(results["models"][name]["real"], None) for name in names)
        + " |"
    )
    return "\n".join(lines) + "\n"


def sample_sheet(digits: np.ndarray, labels: np.ndarray, path: Path) -> None:
    """One digit of each class under each condition: as sent (left) and as the model sees it."""
    picks = [int(np.flatnonzero(labels == digit)[0]) for digit in range(10)]
    rows = []
    for index, render in enumerate(CONDITIONS.values()):
        rng = np.random.default_rng(index)
        sent = [render(digits[i], int(labels[i]), rng) for i in picks]
        seen = [255 - mnist_style_digit(image) for image in sent]
        tiles = [np.asarray(image.convert("L").resize((56, 56))) for image in sent]
        tiles += [
            np.asarray(Image.fromarray(image).resize((56, 56), Image.Resampling.NEAREST)) for image in seen
        ]
        rows.append(np.hstack([np.pad(tile, 2, constant_values=255) for tile in tiles]))
    figure = Figure(figsize=(rows[0].shape[1] / 50 + 2.6, len(rows) * 1.25), layout="constrained")
    axes = figure.subplots(len(rows), 1)
    for ax, row, name in zip(axes, rows, CONDITIONS, strict=True):
        ax.imshow(row, cmap="gray", vmin=0, vmax=255)
        ax.set_yticks([])
        ax.set_xticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    axes[0].set_title(
        "each condition: ten MNIST validation digits as sent (left) and as the model sees them (right)"
    )
    save_figure(figure, path)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path, help="model.keras files to compare")
    parser.add_argument("--per-condition", type=int, default=2000, help="validation digits per condition")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench", help="folder for handwriting.*")
    parser.add_argument(
        "--samples", type=Path, help="also draw one digit of each class per condition as a PNG"
    )
    args = parser.parse_args(argv)
    try:
        models = {str(path): probability_model(load_trained_model(path)) for path in args.models}
    except ModelError as exc:
        raise SystemExit(f"error: {exc}") from None

    digits, labels = development_set(args.per_condition)
    if args.samples:
        sample_sheet(digits, labels, args.samples)
    results = {"models": {name: {"conditions": {}} for name in models}}
    for index, (condition, render) in enumerate(CONDITIONS.items()):
        rng = np.random.default_rng(index)
        started = time.perf_counter()
        images = [render(digit, int(label), rng) for digit, label in zip(digits, labels, strict=True)]
        for name, predicted in read(models, images).items():
            results["models"][name]["conditions"][condition] = scores(predicted, labels)
        print(f"{condition}: rendered and read in {time.perf_counter() - started:.0f} s", flush=True)
    images, real_labels = real_handwriting()
    for name, predicted in read(models, images).items():
        results["models"][name]["real"] = scores(predicted, real_labels)
    table = markdown(results, args.per_condition)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "handwriting.md").write_text(table)
    (args.out / "handwriting.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
