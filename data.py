"""MNIST: loading it, checking that it is MNIST, and turning its images into model input.

    from data import load_mnist, normalize_images
    mnist = load_mnist()                      # datasets/mnist.npz, checked against its checksums
    x_train = normalize_images(mnist.x_train) # float32 in [0, 1], shape (60000, 28, 28)

`normalize_images` is the only preprocessing step between a uint8 digit and the network; training,
evaluation and prediction on a user's own images all go through it. `mnist_style` gives any ink map
of one digit MNIST's form (cropped, fitted into 20x20, centred by mass in 28x28): the reader brings
a user's digits to it, and training's augmentation its own new strokes.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SIZE = 28
NUM_CLASSES = 10
DIGIT_BOX = 20  # MNIST fits each digit's longer side to 20 px, leaving a 4 px margin
# The form a line model reads a number in (line_style): a fixed height, any width. 32 px leaves a
# digit's ink 24 px tall, a little more than MNIST's 20, and four halvings of the height.
LINE_HEIGHT = 32
LINE_INK_HEIGHT = 24
LINE_MARGIN = 4  # px of paper above, below and on either side of the ink
# What a line model reads in a line: the ten digits, a mark that is not a digit, and CTC's blank
# ("no new symbol here"), one set of probabilities per FRAME_WIDTH px of the line.
NOT_A_DIGIT_SYMBOL = NUM_CLASSES
BLANK = NUM_CLASSES + 1
LINE_CLASSES = NUM_CLASSES + 2
FRAME_WIDTH = 4  # px: the line model's convolutions halve the width twice
MAX_LINE_SYMBOLS = 12  # in one line: the reader's longest number
INK_THRESHOLD = 0.25  # share of full ink that counts towards the bounding box, above paper noise
DEFAULT_DATA_PATH = Path(__file__).resolve().parent / "datasets" / "mnist.npz"
REBUILD_HINT = "restore it with `git checkout datasets/mnist.npz` or `python -m datasets.build_mnist`"

EXPECTED_SHAPES = {
    "x_train": (60000, IMAGE_SIZE, IMAGE_SIZE),
    "y_train": (60000,),
    "x_test": (10000, IMAGE_SIZE, IMAGE_SIZE),
    "y_test": (10000,),
}
# sha256 of each uint8 array's bytes. Whatever the source (the shipped file, a user's npz or IDX
# copy, Keras's download), the arrays must be exactly these, so results are comparable and a
# damaged or different dataset is caught before a minute of training is spent on it.
MNIST_SHA256 = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
# The four files of the original distribution, as an `--data FOLDER` holds them (optionally .gz).
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


class DataError(Exception):
    """A dataset that is missing, unreadable or not MNIST; the message says how to fix it."""


@dataclass(frozen=True)
class Mnist:
    """The 60,000 training and 10,000 test digits as uint8 images (n, 28, 28) and labels (n,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


def load_mnist(path: str | Path | None = None) -> Mnist:
    """Load MNIST from a Keras-style .npz or an IDX folder (default: the shipped file), checked."""
    if path is None and not DEFAULT_DATA_PATH.exists():
        arrays, source, hint = _download_with_keras(), "keras.datasets.mnist", REBUILD_HINT
    else:
        path = Path(path) if path is not None else DEFAULT_DATA_PATH
        hint = REBUILD_HINT if path == DEFAULT_DATA_PATH else "check the file or pass another --data"
        if not path.exists():
            raise DataError(f"no dataset at {path}: {hint}")
        arrays = _read_idx_folder(path) if path.is_dir() else _read_npz(path, hint)
        source = str(path)
    check_mnist(arrays, source, hint)
    return Mnist(**arrays, source=source)


def check_mnist(arrays: dict[str, np.ndarray], source: str, hint: str) -> None:
    """Raise DataError unless `arrays` hold exactly MNIST's four uint8 arrays."""
    for name, shape in EXPECTED_SHAPES.items():
        array = arrays[name]
        if array.dtype != np.uint8 or array.shape != shape:
            raise DataError(
                f"{source}: {name} is {array.dtype} {array.shape}, expected uint8 {shape}: {hint}"
            )
    for name in ("y_train", "y_test"):
        if arrays[name].max() >= NUM_CLASSES:
            raise DataError(f"{source}: {name} has labels outside 0-9: {hint}")
    for name, digest in array_checksums(arrays).items():
        if digest != MNIST_SHA256[name]:
            raise DataError(f"{source}: {name} does not match MNIST's checksum: {hint}")


def array_checksums(arrays: dict[str, np.ndarray]) -> dict[str, str]:
    """sha256 of each named array's bytes, the figures saved beside every model."""
    return {name: hashlib.sha256(arrays[name].tobytes()).hexdigest() for name in EXPECTED_SHAPES}


def normalize_images(images_uint8: np.ndarray) -> np.ndarray:
    """uint8 images (..., 28, 28) in 0-255 -> float32 in [0, 1], same shape."""
    images_uint8 = np.asarray(images_uint8)
    if images_uint8.dtype != np.uint8 or images_uint8.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"expected uint8 images of 28x28, got {images_uint8.dtype} {images_uint8.shape}")
    return images_uint8.astype(np.float32) / 255.0


def split_validation(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle with `seed` and hold out `fraction` of (x, y): returns x_fit, y_fit, x_val, y_val."""
    order = np.random.default_rng(seed).permutation(len(x))
    val_count = int(round(len(x) * fraction))
    fit, val = order[val_count:], order[:val_count]
    return x[fit], y[fit], x[val], y[val]


def cropped_to_ink(ink: np.ndarray) -> np.ndarray:
    """The box of an ink map (0-255) that holds its ink (INK_THRESHOLD of full and more), a view."""
    rows = np.flatnonzero((ink >= INK_THRESHOLD * 255).any(axis=1))
    columns = np.flatnonzero((ink >= INK_THRESHOLD * 255).any(axis=0))
    if not len(rows):
        raise ValueError("the ink map holds no stroke: nothing to put in MNIST's form")
    return ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]


def mnist_style(ink: np.ndarray) -> np.ndarray:
    """An ink map holding one digit -> uint8 (28, 28): cropped to its ink, its longer side scaled
    to 20 px, placed by its center of mass in a 28x28 field, as MNIST's digits were."""
    crop = cropped_to_ink(ink).copy()
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


def line_style(ink: np.ndarray) -> np.ndarray:
    """An ink map holding one line of writing -> uint8 (LINE_HEIGHT, w): cropped to its ink, scaled
    so that the ink is LINE_INK_HEIGHT px tall, with LINE_MARGIN px of paper around it. Training's
    composed lines and the reader's real ones both pass through here, so both look alike."""
    crop = cropped_to_ink(ink).astype(np.float32)
    crop[crop < INK_THRESHOLD * 255 / 2] = 0  # faint paper texture inside the box
    scale = LINE_INK_HEIGHT / crop.shape[0]
    size = (max(1, round(crop.shape[1] * scale)), LINE_INK_HEIGHT)
    resized = Image.fromarray(crop, mode="F").resize(size, Image.Resampling.BILINEAR)
    line = np.clip(np.asarray(resized), 0, None)
    line = line * (255.0 / max(float(line.max()), 1e-6))
    return np.rint(np.pad(line, LINE_MARGIN)).astype(np.uint8)


def _read_npz(path: Path, hint: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = set(EXPECTED_SHAPES) - set(npz.files)
            if missing:
                raise DataError(f"{path} lacks {', '.join(sorted(missing))}: {hint}")
            for name, expected in EXPECTED_SHAPES.items():  # each header, before NumPy allocates its shape
                with npz.zip.open(f"{name}.npy") as member:
                    version = np.lib.format.read_magic(member)
                    read_header = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read_header(member)
                if dtype != np.uint8 or shape != expected:
                    raise DataError(f"{path}: {name} is {dtype} {shape}, expected uint8 {expected}: {hint}")
            return {name: npz[name] for name in EXPECTED_SHAPES}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path} is not a readable .npz ({exc}): {hint}") from None


def _read_idx_folder(folder: Path) -> dict[str, np.ndarray]:
    arrays = {}
    for name, stem in IDX_FILES.items():
        candidates = [folder / stem, folder / f"{stem}.gz"]
        found = next((path for path in candidates if path.exists()), None)
        if found is None:
            raise DataError(f"{folder} has no {stem}[.gz]: put the four MNIST IDX files there")
        arrays[name] = _read_idx(found, EXPECTED_SHAPES[name])
    return arrays


def _read_idx(path: Path, expected: tuple[int, ...]) -> np.ndarray:
    """Parse one IDX file of unsigned bytes (magic 0x0000 08 ndim, big-endian sizes, data) holding
    an array of the `expected` shape; the header is checked before the body is read."""
    broken = f"{path} is not an IDX file of unsigned bytes: replace it with an intact copy"
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as stream:
            magic = stream.read(4)
            if len(magic) < 4 or magic[:3] != b"\x00\x00\x08" or magic[3] not in (1, 3):
                raise DataError(broken)
            sizes = stream.read(4 * magic[3])
            if len(sizes) < 4 * magic[3]:
                raise DataError(broken)
            shape = tuple(int.from_bytes(sizes[i : i + 4], "big") for i in range(0, len(sizes), 4))
            if shape != expected:
                raise DataError(f"{path} holds an array of {shape}, MNIST's is {expected}: replace it")
            body = stream.read(math.prod(shape))
            padded = stream.read(1) != b""
    except (OSError, EOFError) as exc:
        raise DataError(f"{path} is unreadable ({exc}): replace it with an intact copy") from None
    if len(body) != math.prod(shape) or padded:
        raise DataError(f"{path} is truncated or padded: replace it with an intact copy")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def _download_with_keras() -> dict[str, np.ndarray]:
    import keras  # only this fallback needs it; loading the shipped file stays TensorFlow-free

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as exc:  # get_file raises bare Exception for any network failure
        raise DataError(
            f"{DEFAULT_DATA_PATH} is missing and downloading MNIST failed ({exc}): {REBUILD_HINT}"
        ) from None
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
