"""The corpus the page's reader in the browser is held to the Python reader's answers on (the
parity test, and bench/offline_page.py): image files as a user's, each named by its kind.

    files = parity_corpus(mnist)   # {"scan-000": b"\\x89PNG...", "photo-012": b"\\xff\\xd8...", ...}
    answers = page.evaluate(READ_IN_BROWSER, [base64 of each file])   # on the page export.py wrote

- scans: MNIST test digits, dark on white, enlarged to 200 px (as a scanner gives them);
- strokes: polylines drawn as a finger or mouse would, with pens from thin to thick (many are no
  digit at all, so "not sure" and "not a digit" are exercised);
- photos: MNIST test digits on grey paper that darkens across the page, with a camera's noise,
  half of them JPEGs;
- pens: MNIST test digits written with a thicker or thinner pen (grey dilation or erosion).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from data import normalize_images
from reader.page import ImageError, mnist_style_digit, read_image
from reader.reading import reading

# Each file (base64) read by the page's own steps (photoCanvas, reader.js, the model, reading()):
# the reading or the message the page would show, and the milliseconds it took.
READ_IN_BROWSER = """async (files) => {
    const answers = [];
    for (const encoded of files) {
        const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
        const start = performance.now();
        let answer;
        try {
            const picture = await photoCanvas(new Blob([bytes]));
            const pixels = picture.getContext("2d").getImageData(0, 0, picture.width, picture.height);
            const digit = inkReader.mnistStyleDigit(pixels.data, pixels.width, pixels.height);
            answer = inkReader.reading(await probabilitiesOf(digit), config.digit_model.threshold);
        } catch (failure) {
            answer = { error: failure.message };
        }
        answers.push({ ...answer, ms: performance.now() - start, at: performance.now() });
    }
    return answers;
}"""
SCANS, STROKES, PHOTOS, PENS = 300, 100, 150, 100  # 650 images


def saved(image: Image.Image, format: str = "PNG") -> bytes:
    """`image` as a file's bytes; a JPEG at a phone camera's quality."""
    buffer = io.BytesIO()
    image.save(buffer, format=format, **({"quality": 90} if format == "JPEG" else {}))
    return buffer.getvalue()


def scan(digit: np.ndarray) -> bytes:
    return saved(Image.fromarray(255 - digit).resize((200, 200), Image.Resampling.BICUBIC))


def strokes(rng: np.random.Generator) -> bytes:
    page = Image.new("L", (280, 280), 255)
    draw = ImageDraw.Draw(page)
    width = int(rng.choice([4, 8, 18, 30]))
    for _ in range(int(rng.integers(1, 3))):
        points = [tuple(int(v) for v in rng.integers(30, 250, 2)) for _ in range(int(rng.integers(2, 6)))]
        draw.line(points, fill=0, width=width, joint="curve")
    return saved(page)


def photo(digit: np.ndarray, rng: np.random.Generator, jpeg: bool) -> bytes:
    ink = np.asarray(Image.fromarray(digit).resize((120, 120), Image.Resampling.BICUBIC)) / 255.0
    page = np.zeros((240, 320), np.float32)
    top, left = (int(v) for v in rng.integers(20, 100, 2))
    page[top : top + 120, left : left + 120] = ink
    rows, columns = np.mgrid[0:240, 0:320]
    paper = rng.uniform(150, 220) - rng.uniform(0, 0.3) * columns - rng.uniform(0, 0.2) * rows
    grey = paper * (1 - 0.8 * page) + rng.normal(0, 6, page.shape)
    tint = np.array([1.0, 0.98, 0.93])  # warm light
    pixels = np.clip(grey[..., None] * tint, 0, 255).astype(np.uint8)
    return saved(Image.fromarray(pixels), "JPEG" if jpeg else "PNG")


def pen(digit: np.ndarray, thicker: bool, size: int) -> bytes:
    large = np.asarray(Image.fromarray(digit).resize((140, 140), Image.Resampling.BICUBIC))
    written = (ndimage.grey_dilation if thicker else ndimage.grey_erosion)(large, size=(size, size))
    page = np.full((200, 200), 255, np.uint8)
    page[30:170, 30:170] = 255 - written
    return saved(Image.fromarray(page))


def parity_corpus(mnist) -> dict[str, bytes]:
    """The corpus's files by name (kind-index), from MNIST's test digits and seed 0."""
    rng = np.random.default_rng(0)
    digits = iter(mnist.x_test)
    files = {f"scan-{i:03d}": scan(next(digits)) for i in range(SCANS)}
    files |= {f"strokes-{i:03d}": strokes(rng) for i in range(STROKES)}
    files |= {f"photo-{i:03d}": photo(next(digits), rng, jpeg=i % 2 == 1) for i in range(PHOTOS)}
    files |= {f"pen-{i:03d}": pen(next(digits), i % 2 == 0, 3 + 2 * (i % 3)) for i in range(PENS)}
    return files


def python_reading(raw: bytes, classifier) -> dict:
    """The Python reader's answer for a file: its reading, or {"error": what it says} (with no
    classifier, {} where it would read one)."""
    try:
        digit = mnist_style_digit(read_image(raw))
    except ImageError as exc:
        return {"error": str(exc)}
    if classifier is None:
        return {}
    return reading(classifier.probabilities_of(normalize_images(digit[None]))[0], classifier.threshold)


def flag(answer: dict) -> str:
    """An answer's flag: an error, not a digit, not sure, or sure."""
    if "error" in answer:
        return "error"
    return "not a digit" if answer["not_a_digit"] else "not sure" if answer["not_sure"] else "sure"


def disagreements(python: dict[str, dict], in_browser: dict[str, dict]) -> tuple[list[str], list[str]]:
    """The names whose digit differs (an error counts as no digit), and those whose flag does."""
    digits = [name for name in python if python[name].get("digit") != in_browser[name].get("digit")]
    flags = [name for name in python if flag(python[name]) != flag(in_browser[name])]
    return digits, flags
