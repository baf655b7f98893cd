"""Turn a photo, scan or drawing of one digit into the 28x28 input the network was trained on.

    from preprocess import read_image, mnist_style_digit
    digit = mnist_style_digit(read_image(Path("seven.jpg").read_bytes()))  # uint8 (28, 28)

MNIST digits are white ink on black, scaled so their bounding box fits 20x20 (aspect ratio kept,
anti-aliased) and placed in a 28x28 field with their center of mass at the center. A user's image
goes through the same steps here, or accuracy collapses; data.normalize_images then does the rest.
Used by predict.py, serve.py and the tests.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from data import IMAGE_SIZE

DIGIT_BOX = 20  # MNIST fits each digit's longer side to 20 px, leaving a 4 px margin
MAX_PIXELS = 25_000_000  # refuse larger images before decoding them (decompression bombs)
MIN_CONTRAST = 40  # of 255: less difference between ink and paper than this is a blank page
INK_THRESHOLD = 0.25  # share of full ink that counts towards the bounding box, above paper noise
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


def read_image(raw: bytes) -> Image.Image:
    """Decode image bytes (any of IMAGE_FORMATS) into a PIL image, refusing oversized ones."""
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
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageError(f"{width}x{height} pixels is too large; send at most {MAX_PIXELS:,} pixels")
    try:
        image.load()  # first frame only, for animated GIFs
    except Exception as exc:
        raise ImageError(f"the image data is damaged ({exc})") from None
    return image


def ink_intensity(image: Image.Image) -> np.ndarray:
    """float32 (h, w) in [0, 255]: how much ink each pixel holds, whatever the mode or colours."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit and float greyscale
        gray = np.asarray(image, dtype=np.float32)
        gray = gray * (255.0 / max(float(gray.max()), 255.0))
        alpha = None
    else:
        if image.mode == "P":
            image = image.convert("RGBA")
        if image.mode == "CMYK":
            image = image.convert("RGB")
        alpha = np.asarray(image.getchannel("A"), dtype=np.float32) / 255 if "A" in image.mode else None
        gray = np.asarray(ImageOps.grayscale(image.convert("RGB")), dtype=np.float32)
    if alpha is not None and alpha.min() < 1:
        # Transparent pixels are paper: give them the colour that contrasts with the opaque ink.
        opaque = gray[alpha > 0.5]
        paper = 255.0 if opaque.size == 0 or opaque.mean() < 128 else 0.0
        gray = gray * alpha + paper * (1 - alpha)
    # Paper is whatever most of the border is; light paper means dark ink, so invert.
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    paper = float(np.median(border))
    ink = gray - paper if paper < 128 else paper - gray
    return np.clip(ink, 0, None)


def mnist_style_digit(image: Image.Image) -> np.ndarray:
    """One digit in any image -> uint8 (28, 28), white on black, MNIST-centred."""
    ink = ink_intensity(image)
    strongest = float(ink.max())
    if strongest < MIN_CONTRAST:
        raise ImageError("no digit found: the image is blank or has too little contrast")
    ink = ink * (255.0 / strongest)
    rows = np.flatnonzero((ink >= INK_THRESHOLD * 255).any(axis=1))
    columns = np.flatnonzero((ink >= INK_THRESHOLD * 255).any(axis=0))
    crop = ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
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
