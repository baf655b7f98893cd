"""A photo, scan or drawing of a digit, read into the ink on its page and the 28x28 digit the
network was trained on.

    from reader.page import read_image_file, mnist_style_digit
    digit = mnist_style_digit(read_image_file(Path("seven.jpg")))  # uint8 (28, 28)
    ink = page_ink(image)  # float32 (h, w): ink without paper, printed lines or specks (a number's)

A user's page is not MNIST's white-on-black field: its paper may be grey, uneven (a photo's light
and shadows) or ruled, its ink dark or light, and it may hold specks. Here the ink is taken off the
page; data.mnist_style then gives it MNIST's form, and data.normalize_images does the rest.
"""

from __future__ import annotations

import io
import os
import re
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

from data import INK_THRESHOLD, mnist_style

# Refuse larger images before decoding them (decompression bombs): 16 megapixels (a phone's photo
# is 12) decode into at most 64 MB. Baseline JPEGs are decoded at a reduced scale first, so larger
# ones pass; progressive ones are decoded whole, so they do not (jpeg_problem).
MAX_PIXELS = 16_000_000
MAX_FILE_BYTES = 4 * MAX_PIXELS + 1_000_000  # read from one file: MAX_PIXELS even as 32-bit raw pixels
WORK_SIDE = 1024  # px: larger images are shrunk to this before any arithmetic (a digit ends 20 px)
SOURCE_SIZE = "source_size"  # in a shrunk image's info: the (width, height) it was decoded at
MIN_CONTRAST = 40  # of 255: less difference between ink and paper than this is a blank page
SPECK_SHARE = 0.05  # a separate piece with under this share of the largest piece's ink is a speck
SHADOW_PEAK = 0.6  # a piece at the image's edge never darker than this share of the ink is shadow
UNEVEN_PAPER = 25  # of 255: paper varying this much along the page's edge is uneven (photos)
MIN_PAGE_SIDE = 32  # px: smaller images are tiny scans of one digit, with no room for lines or shadows
BACKGROUND_SIDE = 96  # px: the paper's brightness is estimated on a copy this small (it is smooth)
LINE_INK = 0.15  # share of full ink from which faint printed lines count as marks
LINE_SPAN = 0.85  # a printed line runs across nearly all of the page
LINE_THINNESS = 0.5  # and is thinner than this share of the pen's mean stroke width
LINE_MAX_SHARE = 0.03  # and than this share of the page across it
# A JPEG's scans: libjpeg's progressive script has 10, mozjpeg's optimised ones a few more; each
# walks the whole picture (jpeg_problem). A real JPEG holds tens of markers, scans' included.
MAX_JPEG_SCANS = 64
MAX_JPEG_MARKERS = 1_000
JPEG_MARKER = re.compile(rb"\xff+([^\x00\xff])")  # a marker's code, after any fill bytes
JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # markers without a segment after them
# The end of a scan's coded data: the first marker that is neither a stuffed 0xFF nor a restart.
JPEG_DATA_END = re.compile(rb"\xff+[^\x00\xd0-\xd7\xff]")
# What a page without a digit is told (the browser's page says the same: reader/browser.py).
BLANK_PAGE = "no digit found: the image is blank or has too little contrast"
NO_STROKE = "no digit found: no stroke stands out from the paper"
EIGHT_NEIGHBOURS = np.ones((3, 3))  # pixels touching at a corner belong to the same stroke
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
    transparency, if any), upright, at most WORK_SIDE pixels across, refusing oversized ones."""
    if not raw:
        raise ImageError("the file is empty")
    with warnings.catch_warnings():
        # Pillow warns of a damaged EXIF block, then reads past it: the image is still read.
        warnings.simplefilter("ignore")
        image = decoded(raw)
    size = image.size
    image.thumbnail((WORK_SIDE, WORK_SIDE))  # keeps the aspect ratio
    image.info[SOURCE_SIZE] = size  # boxes found on the copy are given in the source's pixels
    return image


def decoded(raw: bytes) -> Image.Image:
    """The image in `raw` as one grey channel, turned as its EXIF Orientation tag says (phones
    store a portrait photo on its side with the tag; a tag outside 1-8 leaves it as stored)."""
    # Pillow's decoders raise many exception types on malformed bytes (OSError, SyntaxError,
    # struct.error, ...); from untrusted input each one means "not a readable image".
    try:
        # The header only, and only of the six formats: Pillow's other decoders (AVIF, PSD, DDS,
        # TGA...) are more of the code a hostile file can reach, for no photo or scan anyone sends.
        image = Image.open(io.BytesIO(raw), formats=[name.upper() for name in IMAGE_FORMATS])
    except UnidentifiedImageError:
        raise ImageError(f"not an image ({FORMAT_NAMES} expected)") from None
    except Image.DecompressionBombError:  # Pillow's own check of the header's size
        raise ImageError(f"too large; send at most {MAX_PIXELS:,} pixels") from None
    except Exception as exc:
        raise ImageError(f"the image header is damaged ({exc})") from None
    problem = jpeg_problem(raw, image.size) if image.format in ("JPEG", "MPO") else None
    if problem:
        raise ImageError(problem)
    image.draft(image.mode, (WORK_SIDE, WORK_SIDE))  # JPEG: decode at 1/2, 1/4 or 1/8 scale
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageError(f"{width}x{height} pixels is too large; send at most {MAX_PIXELS:,} pixels")
    try:
        image.load()  # first frame only, for animated GIFs
        return ImageOps.exif_transpose(one_channel(image))
    except Exception as exc:
        raise ImageError(f"the image data is damaged ({exc})") from None


def jpeg_problem(raw: bytes, size: tuple[int, int]) -> str | None:
    """Why a JPEG (its bytes, and its size from its header) is not decoded (None: it is).

    A JPEG of more than one scan (progressive ones) is decoded through a buffer of the whole
    picture's coefficients, whatever the reduced scale it is drafted at, and libjpeg walks that
    buffer once per scan: a 800 KB file repeating one scan 1,300 times over 13000x13000 pixels
    takes a core 30 s. So its scans are counted from its markers first, and its full size checked.
    """
    scans, position = 0, 2  # after the start-of-image marker
    for _ in range(MAX_JPEG_MARKERS):
        marker = JPEG_MARKER.match(raw, position)
        if marker is None or marker[1] == b"\xd9":  # damaged (decoding says so) or the picture's end
            break
        position = marker.end()
        if marker[1][0] in JPEG_STANDALONE:
            continue
        position += int.from_bytes(raw[position : position + 2], "big")  # the segment's length
        if marker[1] == b"\xda":  # a scan: its header, then its coded data up to the next marker
            scans += 1
            data_end = JPEG_DATA_END.search(raw, position)
            if scans > MAX_JPEG_SCANS or data_end is None:
                break
            position = data_end.start()
    else:
        return f"the JPEG holds over {MAX_JPEG_MARKERS:,} markers: save it again as a plain JPEG or PNG"
    if scans > MAX_JPEG_SCANS:
        return f"the JPEG holds over {MAX_JPEG_SCANS} scans: save it again as a plain JPEG or PNG"
    width, height = size
    if scans > 1 and width * height > MAX_PIXELS:
        return (
            f"a progressive JPEG of {width}x{height} pixels is too large; send at most "
            f"{MAX_PIXELS:,} pixels, or save it as a baseline JPEG"
        )
    return None


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
    if image.mode == "F" and gray.min() >= 0 and gray.max() <= 1:  # float grey levels in [0, 1]
        gray = gray * 255.0
    elif image.mode in ("I", "F"):  # 16-bit and other float greyscale
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
        raise ImageError(BLANK_PAGE)
    ink = without_specks(ink * (255.0 / strongest))
    if not (ink >= INK_THRESHOLD * 255).any():  # all of it specks or shadow
        raise ImageError(NO_STROKE)
    return ink


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
    # Each piece's strongest ink, over the pixels of pieces only (a few percent of a page):
    # ndimage.maximum sorts the whole image, and ufunc.at is slow per element.
    inked = labels > 0
    peaks = np.zeros(count + 1)
    np.maximum.at(peaks, labels[inked], ink[inked])
    faint = peaks[1:] < SHADOW_PEAK * 255
    at_edge = np.isin(pieces, np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    specks = np.isin(labels, pieces[(mass < SPECK_SHARE * mass.max()) | (faint & at_edge)])
    return np.where(ndimage.binary_dilation(specks, iterations=2), 0.0, ink)
