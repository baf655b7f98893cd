"""Measure a trained model on the 10,000 MNIST test digits and show where it fails.

    python evaluate.py                               # artifacts/model.keras
    python evaluate.py --model artifacts/softmax/model.keras --out artifacts/softmax

Prints test accuracy and loss, a per-digit report and the most confused pairs; writes
confusion_matrix.png, confusion_matrix_normalized.png, misclassified.png and metrics.json beside
the model (or into --out).
"""

from __future__ import annotations

from ground.quiet_tensorflow import import_tensorflow_quietly

import_tensorflow_quietly()

import argparse
import functools
from pathlib import Path

import keras
import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay, classification_report, confusion_matrix

from data import NUM_CLASSES, DataError, Mnist, load_mnist, normalize_images
from ground.outputs import (
    HelpFormatter,
    OutputError,
    add_folder_flags,
    check_writable,
    folder_lock,
    save_figure,
    write_json,
)
from ground.saved_network import ModelError, load_trained_model
from model import probabilities_function

DIGITS = list(range(NUM_CLASSES))
ERROR_SHARE_SHOWN = 0.05  # %: smaller shares of a digit's errors (under 1 in 1,000 images) are left blank


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument(
        "--model", type=Path, default=Path("artifacts/model.keras"), help="the .keras file train.py saved"
    )
    add_folder_flags(parser, "the model's folder")
    parser.add_argument("--top-pairs", type=int, default=5, help="confused pairs to list")
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def most_confused_pairs(matrix: np.ndarray, count: int) -> list[dict]:
    """The digit pairs (a < b) mistaken for each other most often, both directions added."""
    pairs = [
        {
            "digits": [a, b],
            "errors": int(matrix[a, b] + matrix[b, a]),
            f"{a}_as_{b}": int(matrix[a, b]),
            f"{b}_as_{a}": int(matrix[b, a]),
        }
        for a in DIGITS
        for b in DIGITS
        if a < b
    ]
    pairs.sort(key=lambda pair: -pair["errors"])
    return [pair for pair in pairs[:count] if pair["errors"]]


def plot_confusion(y_true: np.ndarray, y_pred: np.ndarray, path: Path) -> None:
    """The confusion matrix of counts, as a PNG."""
    figure = Figure(figsize=(7.5, 6.5), layout="constrained")
    ax = figure.subplots()
    ConfusionMatrixDisplay.from_predictions(
        y_true, y_pred, labels=DIGITS, ax=ax, cmap="Blues", values_format="d", colorbar=True
    )
    ax.set_title(f"MNIST test confusion matrix (counts); accuracy {np.mean(y_true == y_pred):.2%}")
    save_figure(figure, path)


def error_shares_figure(matrix: np.ndarray) -> Figure:
    """Where the errors are: each true digit's misreadings as a share of that digit, on a colour
    scale of their own, with the share read right (the diagonal) set apart in grey. On one scale
    with the diagonal's 99%, every error would be the same pale 0.00."""
    shares = 100 * matrix / matrix.sum(axis=1, keepdims=True)
    diagonal = np.eye(len(DIGITS), dtype=bool)
    errors = np.ma.masked_array(shares, mask=diagonal)
    figure = Figure(figsize=(7.5, 6.5), layout="constrained")
    ax = figure.subplots()
    ax.imshow(np.where(diagonal, 1.0, np.nan), cmap="Greys", vmin=0, vmax=6)  # the diagonal, light grey
    shown = ax.imshow(errors, cmap="Reds", vmin=0, vmax=max(float(errors.max()), ERROR_SHARE_SHOWN))
    figure.colorbar(shown, ax=ax, label="% of the true digit read as this digit")
    for (true, read), share in np.ndenumerate(shares):
        if true == read:
            ax.text(read, true, f"{share:.1f}", ha="center", va="center", fontsize=8, color="#444")
        elif share >= ERROR_SHARE_SHOWN:
            dark = share > 0.6 * errors.max()
            ax.text(
                read,
                true,
                f"{share:.1f}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if dark else "black",
            )
    ax.set(xticks=DIGITS, yticks=DIGITS, xlabel="read as", ylabel="true digit")
    ax.set_title(
        "Where the errors are: % of each true digit read as another\n(diagonal, in grey: % read right)"
    )
    return figure


def plot_misclassified(
    images: np.ndarray, y_true: np.ndarray, probabilities: np.ndarray, path: Path, count: int = 36
) -> None:
    """A grid of the errors the model was most sure of: true label, prediction, confidence."""
    y_pred = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(y_pred != y_true)
    worst = wrong[np.argsort(-probabilities[wrong, y_pred[wrong]])][:count]
    columns = 9
    rows = max(1, -(-len(worst) // columns))
    figure = Figure(figsize=(columns * 1.3, rows * 1.55), layout="constrained")
    figure.suptitle(f"The {len(worst)} most confident of {len(wrong)} errors (true → predicted)")
    for ax in figure.subplots(rows, columns, squeeze=False).flat:
        ax.axis("off")
    for ax, index in zip(figure.axes, worst, strict=False):
        ax.imshow(images[index], cmap="gray_r")
        confidence = probabilities[index, y_pred[index]]
        ax.set_title(f"{y_true[index]} → {y_pred[index]} ({confidence:.0%})", fontsize=9, color="firebrick")
    save_figure(figure, path)


def evaluate(model_path: Path, out: Path | None = None, data: Path | None = None, top_pairs: int = 5) -> dict:
    """Measure the model saved at `model_path` on MNIST's test set (`data`: datasets/mnist.npz by
    default); print the report and write the figures and metrics.json into `out` (the model's
    folder by default). Returns the metrics; raises ModelError, DataError or OutputError."""
    out = out or model_path.parent
    model = load_trained_model(model_path)
    mnist = load_mnist(data)
    check_writable(out)
    # Not beside a run still writing there: its model may change under this evaluation.
    with folder_lock(out):
        return measure(model, mnist, str(model_path), out, top_pairs)


def measure(model: keras.Model, mnist: Mnist, name: str, out: Path, top_pairs: int) -> dict:
    """Measure `model` (saved as `name`) on the test set; print the report, write the figures and
    metrics.json into `out`."""
    images = normalize_images(mnist.x_test)
    probabilities = probabilities_function(model)(images)
    y_true, y_pred = mnist.y_test.astype(int), probabilities.argmax(axis=1)
    accuracy = float(np.mean(y_pred == y_true))
    # The training loss, categorical cross-entropy, which Keras computes from the same logits.
    loss = float(-np.mean(np.log(np.maximum(probabilities[np.arange(len(y_true)), y_true], 1e-7))))
    matrix = confusion_matrix(y_true, y_pred, labels=DIGITS)
    # A digit never read has no precision: it is reported as 0, not warned about by scikit-learn.
    report_of = functools.partial(
        classification_report, y_true, y_pred, labels=DIGITS, digits=4, zero_division=0
    )
    report = report_of(output_dict=True)
    pairs = most_confused_pairs(matrix, top_pairs)

    print(report_of())
    print(
        "most confused pairs: "
        + ", ".join(
            f"{a}/{b} {pair['errors']} ({pair[f'{a}_as_{b}']}+{pair[f'{b}_as_{a}']})"
            for pair in pairs
            for a, b in [pair["digits"]]
        )
    )
    plot_confusion(y_true, y_pred, out / "confusion_matrix.png")
    save_figure(error_shares_figure(matrix), out / "confusion_matrix_normalized.png")
    plot_misclassified(mnist.x_test, y_true, probabilities, out / "misclassified.png")
    metrics = {
        "model": name,
        "test_images": len(y_true),
        "accuracy": accuracy,
        "loss": loss,
        "per_class": {str(digit): report[str(digit)] for digit in DIGITS},
        "most_confused_pairs": pairs,
        "confusion_matrix": matrix.tolist(),
    }
    write_json(out / "metrics.json", metrics)
    correct = int(np.sum(y_pred == y_true))
    print(f"test accuracy {accuracy:.4f} ({correct}/{len(y_true)}), loss {loss:.4f}; plots in {out}")
    return metrics


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    try:
        return evaluate(args.model, args.out, args.data, args.top_pairs)
    except (ModelError, DataError, OutputError) as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
