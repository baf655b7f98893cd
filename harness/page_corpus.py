"""The corpora the page's reader in the browser is held to the Python reader's answers on (the
parity test, and bench/offline_page.py): image files as a user's, each named by its kind.

    files = parity_corpus(mnist)   # {"scan-000": b"\\x89PNG...", "photo-012": b"\\xff\\xd8...", ...}
    answers = page.evaluate(READ_IN_BROWSER, [base64 of each file])   # on the page export.py wrote
    numbers = number_corpus(mnist)   # {"line-000": ..., "pad-004": ...}: READ_NUMBER_IN_BROWSER's
    shrunk = large_number_corpus(mnist)   # {"bigphoto-000": ..., ...}: the bench's, not the test's

Digits:

- scans: MNIST test digits, dark on white, enlarged to 200 px (as a scanner gives them);
- strokes: polylines drawn as a finger or mouse would, with pens from thin to thick (many are no
  digit at all, so "not sure" and "not a digit" are exercised);
- photos: MNIST test digits on grey paper that darkens across the page, with a camera's noise,
  half of them JPEGs;
- pens: MNIST test digits written with a thicker or thinner pen (grey dilation or erosion).

Numbers (recipe.lines.LineComposer's lines of 1-12 MNIST test digits, as a line model trains on: sizes,
slants, gaps, touching neighbours, pen lifts, now and then a mark that is not a digit):
- lines: dark on white, enlarged 2.5 times, as scanned;
- number photos: on grey paper darkening across the page, with noise, half of them JPEGs;
- pads: numbers of 1-6 marks drawn as polylines with the page's pen on its 840 x 280 number pad;
- specks, and lines the reader refuses, each with its message (blank, too wide, too thin).
Every file of both is within the readers' work side (1,024 px), as the port is what they measure.
Larger ones are shrunk by the browser's own filter and by Pillow's: large_number_corpus's photos
(1,600 x 1,200 px, as the big photos of a phone's camera are shrunk) measure what that changes.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from data import normalize_images
from reader.page import ImageError, mnist_style_digit, read_image
from reader.reading import reading
from reader.sequence import read_line


def in_browser(read: str) -> str:
    """A function for page.evaluate reading each file (base64) by the page's own steps: the photo
    upright on a canvas (photoCanvas), then `read` of its `pixels` (and `source`, its own size).
    Its answers: the reading or the message the page would show, and the milliseconds it took."""
    return """async (files) => {
    const answers = [];
    for (const encoded of files) {
        const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
        const start = performance.now();
        let answer;
        try {
            const { picture, source } = await photoCanvas(new Blob([bytes]));
            const pixels = picture.getContext("2d").getImageData(0, 0, picture.width, picture.height);
            answer = await READ;
        } catch (failure) {
            answer = { error: failure.message };
        }
        answers.push({ ...answer, ms: performance.now() - start, at: performance.now() });
    }
    return answers;
}""".replace("READ", read)


# A digit: reader.js's steps, the model and reading() (without the page's pictures of it).
READ_IN_BROWSER = in_browser(
    "(async () => inkReader.reading(await probabilitiesOf("
    "inkReader.mnistStyleDigit(pixels.data, pixels.width, pixels.height)), config.digit_model.threshold))()"
)
# A number: the page's own numberOf, as number mode reads one (with its digits' pictures).
READ_NUMBER_IN_BROWSER = in_browser("numberOf(pixels, source)")
SCANS, STROKES, PHOTOS, PENS = 300, 100, 150, 100  # 650 images
LINES, NUMBER_PHOTOS, PADS = 200, 80, 100  # and specks, and 3 refused: 384 numbers
BIG_PHOTOS = 20


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
    top, left = (int(v) for v in rng.integers(20, 100, 2))
    return photographed(ink, (240, 320), (top, left), rng, jpeg)


def photographed(
    ink: np.ndarray, size: tuple[int, int], at: tuple[int, int], rng: np.random.Generator, jpeg: bool
) -> bytes:
    """The ink map `ink` (0-1) on a page of `size` (height, width) at `at` (top, left): grey paper
    darkening across the page, a camera's noise, warm light."""
    page = np.zeros(size, np.float32)
    top, left = at
    page[top : top + ink.shape[0], left : left + ink.shape[1]] = ink
    rows, columns = np.mgrid[0 : size[0], 0 : size[1]]
    scale = 320 / size[1]  # the paper darkens as much across a larger page
    paper = rng.uniform(150, 220) - rng.uniform(0, 0.3) * scale * columns - rng.uniform(0, 0.2) * scale * rows
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


def parity_corpus(mnist, share: float = 1.0) -> dict[str, bytes]:
    """The corpus's files by name (kind-index), from MNIST's test digits and seed 0: `share` of
    each kind (the tests read a part, the bench all of it)."""
    rng = np.random.default_rng(0)
    digits = iter(mnist.x_test)
    scans, strokes_, photos, pens = (round(count * share) for count in (SCANS, STROKES, PHOTOS, PENS))
    files = {f"scan-{i:03d}": scan(next(digits)) for i in range(scans)}
    files |= {f"strokes-{i:03d}": strokes(rng) for i in range(strokes_)}
    files |= {f"photo-{i:03d}": photo(next(digits), rng, jpeg=i % 2 == 1) for i in range(photos)}
    files |= {f"pen-{i:03d}": pen(next(digits), i % 2 == 0, 3 + 2 * (i % 3)) for i in range(pens)}
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


def line_scan(line: np.ndarray) -> bytes:
    """A composed line (uint8 (32, w), white on black) dark on white, enlarged, as scanned."""
    height, width = (round(2.5 * side) for side in line.shape)
    enlarged = Image.fromarray(255 - line).resize((width, height), Image.Resampling.BICUBIC)
    page = Image.new("L", (width + 40, height + 40), 255)
    page.paste(enlarged, (20, 20))
    return saved(page)


def number_photo(line: np.ndarray, rng: np.random.Generator, jpeg: bool, big: bool) -> bytes:
    """A composed line photographed: twice its size on a page 120 px wider, or as large as a
    1,600 x 1,200 px page holds it (`big`)."""
    scale = min(6.0, 1400 / line.shape[1]) if big else 2.0
    width, height = round(line.shape[1] * scale), round(line.shape[0] * scale)
    ink = np.asarray(Image.fromarray(line).resize((width, height), Image.Resampling.BICUBIC)) / 255.0
    size = (1200, 1600) if big else (height + 100, width + 120)
    at = (int(rng.integers(20, size[0] - height - 20)), int(rng.integers(20, size[1] - width - 20)))
    return photographed(ink, size, at, rng, jpeg)


PAD = (840, 280)  # web/app.js's number pad
PAGE_PEN = 18  # web/app.js's pen, px


def drawn_number(rng: np.random.Generator) -> bytes:
    """1-6 marks side by side on the number pad, each one or two polylines in its own cell."""
    page = Image.new("L", PAD, 255)
    draw = ImageDraw.Draw(page)
    marks = int(rng.integers(1, 7))
    cell = PAD[0] // marks
    for index in range(marks):
        left = index * cell + 20
        for _ in range(int(rng.integers(1, 3))):
            points = [
                (int(rng.integers(left, left + cell - 40)), int(rng.integers(40, PAD[1] - 40)))
                for _ in range(int(rng.integers(2, 6)))
            ]
            draw.line(points, fill=0, width=PAGE_PEN, joint="curve")
    return saved(page)


def specks() -> bytes:
    """A page of 40 faint specks alike (none is smaller than the rest: the reader keeps them all)."""
    page = Image.new("L", (600, 200), 255)
    for index in range(40):
        page.putpixel(((index * 53) % 590 + 5, (index * 97) % 190 + 5), 200)
    return saved(page)


def refused_lines() -> dict[str, bytes]:
    """Pages the line reader refuses: blank, a zigzag wider than any number, a number too thin to
    read."""
    blank = Image.new("L", (600, 200), 250)
    wide = Image.new("L", (1000, 100), 255)
    ImageDraw.Draw(wide).line([(20 + 10 * i, 40 + 12 * (i % 2)) for i in range(97)], fill=0, width=3)
    thin = Image.new("L", (300, 100), 255)
    ImageDraw.Draw(thin).line([(20, 50), (120, 53), (220, 50)], fill=0, width=2)
    pages = {"blank": blank, "wide": wide, "thin": thin}
    return {f"refused-{name}": saved(page) for name, page in pages.items()}


def number_corpus(mnist, share: float = 1.0) -> dict[str, bytes]:
    """The numbers' files by name (kind-index), from MNIST's test digits and seed 0: `share` of
    the lines, photos and pads, and every refused page."""
    from recipe.lines import LineComposer  # which imports TensorFlow: the digits' corpus does without

    composer = LineComposer.of(mnist.x_test, mnist.y_test, seed=0)
    rng = np.random.default_rng(0)
    lines, photos, pads = (round(count * share) for count in (LINES, NUMBER_PHOTOS, PADS))
    files = {f"line-{i:03d}": line_scan(composer.line(rng).image) for i in range(lines)}
    files |= {
        f"numphoto-{i:03d}": number_photo(composer.line(rng).image, rng, i % 2 == 1, big=False)
        for i in range(photos)
    }
    files |= {f"pad-{i:03d}": drawn_number(rng) for i in range(pads)}
    return files | {"specks-000": specks()} | refused_lines()


def large_number_corpus(mnist) -> dict[str, bytes]:
    """Photos of numbers larger than the work side, which each reader shrinks with its own filter
    (from MNIST's test digits, seed 1)."""
    from recipe.lines import LineComposer

    composer = LineComposer.of(mnist.x_test, mnist.y_test, seed=1)
    rng = np.random.default_rng(1)
    return {
        f"bigphoto-{i:03d}": number_photo(composer.line(rng).image, rng, i % 2 == 1, big=True)
        for i in range(BIG_PHOTOS)
    }


def python_number(raw: bytes, line_model) -> dict:
    """The Python reader's answer for a file holding a number, read by `line_model` (read_line):
    its reading, or {"error": what it says}."""
    try:
        return read_line(line_model, read_image(raw))[0]
    except ImageError as exc:
        return {"error": str(exc)}


def said(answer: dict) -> str:
    """A number's answer as the page shows it: the number, or the message refusing it."""
    return answer["number"] if "number" in answer else f"error: {answer['error']}"


def number_flag(answer: dict) -> str:
    return "error" if "error" in answer else "not sure" if answer["not_sure"] else "sure"


def number_disagreements(python: dict[str, dict], in_browser: dict[str, dict]) -> tuple[list[str], list[str]]:
    """The names whose number differs (an error's message counts as its number), and those whose
    flag does (an error, not sure, or sure)."""
    strings = [name for name in python if said(python[name]) != said(in_browser[name])]
    flags = [name for name in python if number_flag(python[name]) != number_flag(in_browser[name])]
    return strings, flags


BATCH = 50  # files per call into the page


def answers_in(page, script: str, files: dict[str, bytes]) -> dict[str, dict]:
    """Each file's answer from `script` (READ_IN_BROWSER, READ_NUMBER_IN_BROWSER) on the page, once
    it has chosen its reader."""
    page.wait_for_selector("body[data-reader='browser']", state="attached")
    encoded = [base64.b64encode(raw).decode() for raw in files.values()]
    answers = []
    for start in range(0, len(encoded), BATCH):
        answers += page.evaluate(script, encoded[start : start + BATCH])
    return dict(zip(files, answers, strict=True))
