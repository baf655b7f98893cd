"""Turn a photo, scan or drawing of one digit into the 28x28 input the network was trained on.

    from preprocess import read_image, mnist_style_digit
    digit = mnist_style_digit(read_image(Path("seven.jpg").read_bytes()))  # uint8 (28, 28)
    layouts = number_layouts(page_ink(image))  # a number's possible divisions, for reading.py

MNIST digits are white ink on black, scaled so their bounding box fits 20x20 (aspect ratio kept,
anti-aliased) and placed in a 28x28 field with their center of mass at the center. A user's image
goes through the same steps here, or accuracy collapses; data.normalize_images then does the rest.
Used by predict.py, serve.py and the tests.
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass
from itertools import islice, product
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy import ndimage

from data import IMAGE_SIZE

DIGIT_BOX = 20  # MNIST fits each digit's longer side to 20 px, leaving a 4 px margin
# Refuse larger images before decoding them (decompression bombs): 16 megapixels (a phone's photo
# is 12) decode into at most 64 MB. JPEGs are decoded at a reduced scale first, so larger ones pass.
MAX_PIXELS = 16_000_000
MAX_FILE_BYTES = 4 * MAX_PIXELS + 1_000_000  # read from one file: MAX_PIXELS even as 32-bit raw pixels
WORK_SIDE = 1024  # px: larger images are shrunk to this before any arithmetic (a digit ends 20 px)
SOURCE_SIZE = "source_size"  # in a shrunk image's info: the (width, height) it was decoded at
MIN_CONTRAST = 40  # of 255: less difference between ink and paper than this is a blank page
INK_THRESHOLD = 0.25  # share of full ink that counts towards the bounding box, above paper noise
SPECK_SHARE = 0.05  # a separate piece with under this share of the largest piece's ink is a speck
SHADOW_PEAK = 0.6  # a piece at the image's edge never darker than this share of the ink is shadow
UNEVEN_PAPER = 25  # of 255: paper varying this much along the page's edge is uneven (photos)
MIN_PAGE_SIDE = 32  # px: smaller images are tiny scans of one digit, with no room for lines or shadows
BACKGROUND_SIDE = 96  # px: the paper's brightness is estimated on a copy this small (it is smooth)
LINE_INK = 0.15  # share of full ink from which faint printed lines count as marks
LINE_SPAN = 0.85  # a printed line runs across nearly all of the page
LINE_THINNESS = 0.5  # and is thinner than this share of the pen's mean stroke width
LINE_MAX_SHARE = 0.03  # and than this share of the page across it
EIGHT_NEIGHBOURS = np.ones((3, 3))  # pixels touching at a corner belong to the same stroke
MAX_DIGITS = 12  # in one written number
OVERLAP = 0.5  # pieces overlapping by this share of the narrower one's width are tried as one digit
# Touching ink is tried as up to one digit per this share of the number's height of its width: a
# little under MNIST's narrowest usual digits but for 1s (2s and 0s average 0.9, 9s 0.7).
MIN_DIGIT_WIDTH = 0.35
MIN_DIGIT_HEIGHT = 0.5  # of the number's height: a shorter part is a piece of a digit, not a digit
# Every division of a group's pieces is tried up to this many pieces (2^5 = 32 divisions); a group
# of more, rare outside scribbles, is tried as one run of touching ink.
MAX_GROUP_PIECES = 6
MAX_LAYOUTS = 256  # tried per group, the simplest first: bounds the reading of a scribble
# The formats the project names and predict.py looks for in a folder (Pillow reads a few more).
IMAGE_FORMATS = {
    "PNG": (".png",),
    "JPEG": (".jpg", ".jpeg"),
    "BMP": (".bmp",),
    "GIF": (".gif",),
    "WebP": (".webp",),
    "TIFF": (".tif", ".tiff"),
}
IMAGE_SUFFIXES = {suffix for suffixes in IMAGE_FORMATS.values() for suffix in suffixes}
FORMAT_NAMES = ", ".join(list(IMAGE_FORMATS)[:-1]) + " or " + list(IMAGE_FORMATS)[-1]


class ImageError(Exception):
    """An image that cannot be read as a digit; the message says what is wrong with it."""


def read_image_file(path: Path) -> Image.Image:
    """`read_image` of a file's bytes: a regular file of at most MAX_FILE_BYTES, or ImageError."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO or a device would be read for ever
            raise ImageError("not a regular file: name an image file")
        with open(path, "rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ImageError(f"cannot read it ({exc.strerror})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ImageError(f"the file is over {MAX_FILE_BYTES:,} bytes: send a smaller image")
    return read_image(raw)


def read_image(raw: bytes) -> Image.Image:
    """Decode image bytes (any of IMAGE_FORMATS) into a PIL image of one grey channel (and its
    transparency, if any) at most WORK_SIDE pixels across, refusing oversized ones."""
    if not raw:
        raise ImageError("the file is empty")
    # Pillow's decoders raise many exception types on malformed bytes (OSError, SyntaxError,
    # struct.error, ...); from untrusted input each one means "not a readable image".
    try:
        image = Image.open(io.BytesIO(raw))  # reads the header only
    except UnidentifiedImageError:
        raise ImageError(f"not an image ({FORMAT_NAMES} expected)") from None
    except Image.DecompressionBombError:  # Pillow's own check of the header's size
        raise ImageError(f"too large; send at most {MAX_PIXELS:,} pixels") from None
    except Exception as exc:
        raise ImageError(f"the image header is damaged ({exc})") from None
    image.draft(image.mode, (WORK_SIDE, WORK_SIDE))  # JPEG: decode at 1/2, 1/4 or 1/8 scale
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageError(f"{width}x{height} pixels is too large; send at most {MAX_PIXELS:,} pixels")
    try:
        image.load()  # first frame only, for animated GIFs
        image = one_channel(image)
    except Exception as exc:
        raise ImageError(f"the image data is damaged ({exc})") from None
    size = image.size
    image.thumbnail((WORK_SIDE, WORK_SIDE))  # keeps the aspect ratio
    image.info[SOURCE_SIZE] = size  # boxes found on the copy are given in the source's pixels
    return image


def one_channel(image: Image.Image) -> Image.Image:
    """`image` as grey levels: "L", or "LA" where it has transparency, or "I"/"F" for 16-bit and
    float images; a LAB image by its lightness."""
    if image.mode in ("L", "LA", "I", "F"):
        return image
    if image.mode == "LAB":  # its "A" is a colour axis, not alpha
        return image.getchannel("L")
    if image.mode.startswith("I;16"):
        return image.convert("I")
    if image.has_transparency_data:
        return (image if image.mode == "RGBA" else image.convert("RGBA")).convert("LA")
    return (image if image.mode == "RGB" else image.convert("RGB")).convert("L")


def ink_intensity(image: Image.Image) -> np.ndarray:
    """float32 (h, w) in [0, 255]: how much ink each pixel holds, whatever the mode or colours."""
    image = one_channel(image)
    gray = np.asarray(image.getchannel("L") if image.mode == "LA" else image, dtype=np.float32)
    if not np.isfinite(gray).all():
        raise ImageError("some pixels are not numbers (NaN or infinite): save the image as PNG or JPEG")
    if image.mode in ("I", "F"):  # 16-bit and float greyscale
        gray = gray * (255.0 / max(float(gray.max()), 255.0))
    alpha = np.asarray(image.getchannel("A"), dtype=np.float32) / 255 if image.mode == "LA" else None
    if alpha is not None and alpha.min() < 1:
        # Transparent pixels are paper: give them the colour that contrasts with the opaque ink.
        opaque = gray[alpha > 0.5]
        paper = 255.0 if opaque.size == 0 or opaque.mean() < 128 else 0.0
        gray = gray * alpha + paper * (1 - alpha)
    if min(gray.shape) < MIN_PAGE_SIDE:  # a tiny scan of one digit: no room for lines or shadows
        return even_paper_ink(gray)
    return without_ruled_lines(ink_on_uneven_paper(gray) if uneven_paper(gray) else even_paper_ink(gray))


def border_segments(gray: np.ndarray) -> list[np.ndarray]:
    """The page's edge in eight pieces: each side's two halves."""
    sides = [gray[0], gray[-1], gray[:, 0], gray[:, -1]]
    return [half for side in sides for half in np.array_split(side, 2)]


def even_paper_ink(gray: np.ndarray) -> np.ndarray:
    """Ink of a page of one paper colour, whatever most of its edge is: the ink is on the side
    (darker or lighter) that differs from the paper the most."""
    paper = float(np.median(np.concatenate(border_segments(gray))))
    darkest, lightest = np.percentile(gray, [0.5, 99.5])
    return np.clip(paper - gray if paper - darkest >= lightest - paper else gray - paper, 0, None)


def uneven_paper(gray: np.ndarray) -> bool:
    """Whether the paper's own brightness differs along the page's edge (light falling off, a
    shadow), judged by the paper side of each piece of the edge, so ink touching it does not count."""
    segments = border_segments(gray)
    edge = np.concatenate(segments)
    darkest, lightest = np.percentile(gray, [0.5, 99.5])
    paper_side = 90 if np.median(edge) - darkest >= lightest - np.median(edge) else 10
    levels = [np.percentile(segment, paper_side) for segment in segments]
    return max(levels) - min(levels) > UNEVEN_PAPER


def ink_on_uneven_paper(gray: np.ndarray) -> np.ndarray:
    """Ink of a page whose paper brightness varies (a photo: light falling off, a shadow).

    The paper is what remains where all marks narrower than a quarter of the page are closed over
    (grey closing for dark ink, opening for light ink, on a small copy: the paper is smooth).
    Ink is how much a pixel differs from its own paper, relative to it: shadowed ink counts fully.
    """
    height, width = gray.shape
    factor = min(1.0, BACKGROUND_SIDE / min(height, width))
    small_size = (max(1, round(width * factor)), max(1, round(height * factor)))
    small = np.asarray(Image.fromarray(gray, mode="F").resize(small_size, Image.Resampling.BOX))
    window = (max(3, round(min(small.shape) / 4)),) * 2
    # Against its blurred surroundings, ink stands out more than the paper inside a loop does.
    detail = small - ndimage.gaussian_filter(small, window[0] / 2)
    dark_ink = -np.percentile(detail, 0.5) >= np.percentile(detail, 99.5)
    paper = (ndimage.grey_closing if dark_ink else ndimage.grey_opening)(small, size=window)
    paper = Image.fromarray(paper, mode="F")
    paper = np.asarray(paper.resize((width, height), Image.Resampling.BILINEAR))
    if dark_ink:
        ink = (paper - gray) * (255.0 / np.maximum(paper, 1.0))
    else:
        ink = (gray - paper) * (255.0 / np.maximum(255.0 - paper, 1.0))
    return np.clip(ink, 0, None)


def without_ruled_lines(ink: np.ndarray) -> np.ndarray:
    """`ink` less the printed lines of ruled or squared paper.

    A printed line runs across nearly all of the page, is thin for the page (a few pixels of
    hundreds) and thinner than the pen's strokes; a digit's own bar (a 7's, a 5's) is as thick as
    its other strokes, and stays. Where a stroke crosses a line, the stroke is closed over it.
    """
    marks = ink > LINE_INK * ink.max()
    if not marks.any():
        return ink
    cleaned = ink
    for axis in (1, 0):  # lines along the rows, then along the columns
        length, across = ink.shape[axis], ink.shape[1 - axis]
        span = max(3, round(LINE_SPAN * length))
        run = long_runs(marks, span) if axis == 1 else long_runs(marks.T, span).T
        if not run.any():  # nothing runs that far: no line (most pages)
            continue
        pen = stroke_width(marks & ~run)
        labels, _ = ndimage.label(run)
        lines, thickest = np.zeros_like(marks), 0.0
        for index, found in enumerate(ndimage.find_objects(labels), start=1):
            component = labels[found] == index
            thickness = np.count_nonzero(component) / (found[axis].stop - found[axis].start)
            if thickness < min(pen * LINE_THINNESS, across * LINE_MAX_SHARE):
                lines[found] |= component
                thickest = max(thickest, thickness)
        if lines.any():
            cleaned = np.where(lines, 0.0, cleaned)
            bridge = 2 * int(np.ceil(thickest)) + 1  # across the line: ink on both sides is a stroke
            closed = ndimage.grey_closing(cleaned, size=(bridge, 1) if axis == 1 else (1, bridge))
            cleaned = np.where(lines, closed, cleaned)
    return cleaned


def long_runs(marks: np.ndarray, span: int) -> np.ndarray:
    """The pixels of a boolean mask in runs along its rows at least `span` long: its binary opening
    by a `span`-long line, in time linear in the pixels (scipy's opening takes time x span)."""
    height, width = marks.shape
    edges = np.diff(np.pad(marks, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    rows, starts = np.nonzero(edges == 1)  # row-major order, so each run's start pairs with its end
    _, ends = np.nonzero(edges == -1)
    long = ends - starts >= span
    change = np.zeros((height, width + 1), np.int32)
    change[rows[long], starts[long]] += 1  # no two runs start (or end) at the same pixel
    change[rows[long], ends[long]] -= 1
    return np.cumsum(change, axis=1)[:, :width] > 0


def stroke_width(marks: np.ndarray) -> float:
    """Mean width of the strokes in a boolean ink mask, in pixels: 4 x the mean distance to paper."""
    return 4 * float(ndimage.distance_transform_edt(marks)[marks].mean()) if marks.any() else 0.0


def mnist_style_digit(image: Image.Image) -> np.ndarray:
    """One digit in any image -> uint8 (28, 28), white on black, MNIST-centred."""
    return mnist_style(page_ink(image))


def page_ink(image: Image.Image) -> np.ndarray:
    """float32 (h, w): the image's ink scaled so the strongest is 255, without specks; or
    ImageError when there is no ink to speak of."""
    ink = ink_intensity(image)
    strongest = float(ink.max())
    if strongest < MIN_CONTRAST:
        raise ImageError("no digit found: the image is blank or has too little contrast")
    return without_specks(ink * (255.0 / strongest))


def without_specks(ink: np.ndarray) -> np.ndarray:
    """`ink` less isolated specks (dust, noise, the corner of a shadow) that would stretch the
    digit's box: pieces holding under SPECK_SHARE of the largest piece's ink, and faint pieces at
    the image's edge (where a shadow's edge meets the border, a wedge of shadow is darker than
    the paper around it, but never as dark as the pen)."""
    labels, count = ndimage.label(ink >= INK_THRESHOLD * 255, structure=EIGHT_NEIGHBOURS)
    if count <= 1:
        return ink
    pieces = np.arange(1, count + 1)
    mass = ndimage.sum(ink, labels, pieces)
    # Each piece's strongest ink: ndimage.maximum sorts the whole image, 40x slower on a page.
    peaks = np.zeros(count + 1)
    np.maximum.at(peaks, labels.ravel(), ink.ravel())
    faint = peaks[1:] < SHADOW_PEAK * 255
    at_edge = np.isin(pieces, np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    specks = np.isin(labels, pieces[(mass < SPECK_SHARE * mass.max()) | (faint & at_edge)])
    return np.where(ndimage.binary_dilation(specks, iterations=2), 0.0, ink)


def mnist_style(ink: np.ndarray) -> np.ndarray:
    """An ink map holding one digit -> uint8 (28, 28): cropped to its ink, its longer side scaled
    to 20 px, placed by its center of mass in a 28x28 field, as MNIST's digits were."""
    rows = np.flatnonzero((ink >= INK_THRESHOLD * 255).any(axis=1))
    columns = np.flatnonzero((ink >= INK_THRESHOLD * 255).any(axis=0))
    if not len(rows):
        raise ImageError("no digit found: no stroke stands out from the paper")
    crop = ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1].copy()
    crop[crop < INK_THRESHOLD * 255 / 2] = 0  # faint paper texture inside the box

    height, width = crop.shape
    scale = DIGIT_BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(crop.astype(np.float32), mode="F").resize(size, Image.Resampling.LANCZOS)
    digit = np.clip(np.asarray(resized), 0, None)
    digit = digit * (255.0 / digit.max())  # a thin stroke shrunk below a pixel still reads as full ink

    field = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    total = digit.sum()
    center_y = (digit.sum(axis=1) @ np.arange(digit.shape[0])) / total
    center_x = (digit.sum(axis=0) @ np.arange(digit.shape[1])) / total
    # MNIST puts the center of mass on pixel (14, 14) (its digits average 13.98, 14.01 there).
    top = int(np.clip(round(IMAGE_SIZE / 2 - center_y), 0, IMAGE_SIZE - digit.shape[0]))
    left = int(np.clip(round(IMAGE_SIZE / 2 - center_x), 0, IMAGE_SIZE - digit.shape[1]))
    field[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    return np.rint(field).astype(np.uint8)


@dataclass(frozen=True)
class Part:
    """A stretch of a written number that may be one digit: some of its pieces of ink (their labels
    in `NumberLayouts.owners`), within the columns left to right."""

    pieces: frozenset[int]
    left: int
    right: int


@dataclass
class NumberLayouts:
    """The ways a number written on one line may divide into digits, for a reader to choose from.

    `owners` gives every pixel the label of the piece of ink nearest to it, so a part holds its
    pieces' anti-aliased edges too. `groups` are the pieces that overlap horizontally (a 5's cap, a
    broken 4, digits written into each other) left to right, each with its candidate layouts: lists
    of parts left to right.
    """

    ink: np.ndarray
    owners: np.ndarray
    groups: list[list[list[Part]]]

    def digit(self, part: Part) -> np.ndarray:
        """The ink of one part alone, in its columns (the page's full height)."""
        columns = slice(part.left, part.right)
        mine = np.isin(self.owners[:, columns], list(part.pieces))
        return np.where(mine, self.ink[:, columns], 0.0)

    def box(self, part: Part) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the part's ink; top == bottom if it holds none (a cut
        through empty columns, which `number_layouts` drops)."""
        rows = np.flatnonzero((self.digit(part) >= INK_THRESHOLD * 255).any(axis=1))
        if not len(rows):
            return part.left, 0, part.right, 0
        return part.left, int(rows[0]), part.right, int(rows[-1]) + 1


def number_layouts(ink: np.ndarray) -> NumberLayouts:
    """Every plausible way of dividing the number in `ink` into digits: within each group of
    overlapping pieces, its pieces split between digits where they follow each other, and any run of
    them wide enough for several digits cut at the columns holding least ink (digits that touch).
    A part that is not half as tall as the number's pieces (a 5's cap, a 1's flag) is no digit."""
    marks = ink >= INK_THRESHOLD * 255
    labels, count = ndimage.label(marks, structure=EIGHT_NEIGHBOURS)
    if not count:
        raise ImageError("no digit found: no stroke stands out from the paper")
    spans = sorted(
        (found[1].start, found[1].stop, label)
        for label, found in enumerate(ndimage.find_objects(labels), start=1)
    )
    groups: list[list[tuple[int, int, int]]] = []
    for left, right, label in spans:
        last = groups[-1] if groups else None
        reach = max(span[1] for span in last) if last else 0
        width = min(right - left, reach - min(span[0] for span in last)) if last else 0
        if last and left < reach - OVERLAP * width:
            last.append((left, right, label))
        else:
            groups.append([(left, right, label)])
    if len(groups) > MAX_DIGITS:
        raise too_many(f"{len(groups)} separate marks")
    rows = [found[0] for found in ndimage.find_objects(labels)]
    height = float(
        np.median(
            [
                max(rows[label - 1].stop for *_, label in group)
                - min(rows[label - 1].start for *_, label in group)
                for group in groups
            ]
        )
    )
    _, (nearest_rows, nearest_columns) = ndimage.distance_transform_edt(~marks, return_indices=True)
    layouts = NumberLayouts(ink, labels[nearest_rows, nearest_columns], [])
    run_options: dict[tuple, list[list[Part]]] = {}  # a run recurs in many divisions of its group

    def options_of(run: list[tuple[int, int, int]]) -> list[list[Part]]:
        if tuple(run) not in run_options:
            run_options[tuple(run)] = run_layouts(layouts, run, height)
        return run_options[tuple(run)]

    for group in groups:
        options = (
            [part for parts in layout for part in parts]
            for runs in contiguous_runs(group)
            for layout in product(*map(options_of, runs))
        )
        whole = [[Part(frozenset(label for *_, label in group), group[0][0], max(span[1] for span in group))]]
        layouts.groups.append(list(islice(options, MAX_LAYOUTS)) or whole)
    return layouts


def too_many(found: str) -> ImageError:
    return ImageError(f"found {found}; a number of at most {MAX_DIGITS} digits expected")


def contiguous_runs(group: list[tuple[int, int, int]]) -> list[list[list[tuple[int, int, int]]]]:
    """The ways to divide a group's pieces (left, right, label), in order, into runs of neighbours:
    all together and all apart first, then by how many runs."""
    if len(group) > MAX_GROUP_PIECES:  # too many to try each division: the group as one run
        return [[group]]
    divisions = []
    for cuts in product((False, True), repeat=len(group) - 1):
        runs, run = [], [group[0]]
        for piece, cut in zip(group[1:], cuts, strict=True):
            if cut:
                runs.append(run)
                run = []
            run.append(piece)
        divisions.append([*runs, run])
    return sorted(divisions, key=lambda runs: (1 < len(runs) < len(group), len(runs)))


def run_layouts(layouts: NumberLayouts, run: list[tuple[int, int, int]], height: float) -> list[list[Part]]:
    """A run of pieces as one digit or as several touching ones cut at their thinnest columns: those
    whose every part is a digit's height, if any."""
    pieces = frozenset(label for _, _, label in run)
    left, right = min(piece[0] for piece in run), max(piece[1] for piece in run)
    width = right - left
    whole = Part(pieces, left, right)
    column_ink = layouts.digit(whole).sum(axis=0)
    options = []
    for count in range(1, max(1, min(MAX_DIGITS, int(width / (MIN_DIGIT_WIDTH * height)))) + 1):
        cuts = []
        for index in range(1, count):  # near each expected boundary, the thinnest column
            expected = index * width / count
            low, high = int(expected - width / (3 * count)), int(expected + width / (3 * count))
            cuts.append(low + int(np.argmin(column_ink[low : max(high, low + 1)])))
        edges = [0, *cuts, width]
        parts = [
            Part(pieces, left + start, left + end) for start, end in zip(edges[:-1], edges[1:], strict=True)
        ]
        if all(bottom - top >= MIN_DIGIT_HEIGHT * height for _, top, _, bottom in map(layouts.box, parts)):
            options.append(parts)
    return options
