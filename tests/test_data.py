import gzip
import io
import zipfile

import numpy as np
import pytest

from data import (
    DEFAULT_DATA_PATH,
    IDX_FILES,
    MNIST_SHA256,
    DataError,
    array_checksums,
    load_mnist,
    normalize_images,
    split_validation,
)


def arrays_of(mnist):
    return {name: getattr(mnist, name) for name in MNIST_SHA256}


def test_shipped_mnist_has_the_published_shapes_and_class_counts(mnist):
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_test.shape == (10000, 28, 28)
    assert mnist.x_train.dtype == mnist.y_train.dtype == np.uint8
    assert np.bincount(mnist.y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(mnist.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert mnist.x_train.mean() == pytest.approx(33.3184, abs=1e-4)


def test_shipped_file_holds_the_arrays_whose_checksums_data_py_records():
    # Read directly, not through load_mnist (which checks the same figures and would raise first).
    with np.load(DEFAULT_DATA_PATH, allow_pickle=False) as shipped:
        assert array_checksums({name: shipped[name] for name in MNIST_SHA256}) == MNIST_SHA256


def test_normalize_images_maps_bytes_to_unit_float32(mnist):
    images = normalize_images(mnist.x_test[:100])
    assert images.dtype == np.float32 and images.shape == (100, 28, 28)
    assert images.min() == 0.0 and images.max() == 1.0
    np.testing.assert_allclose(images * 255, mnist.x_test[:100])


def test_normalize_images_rejects_floats_and_wrong_sizes():
    with pytest.raises(ValueError, match="uint8"):
        normalize_images(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError, match="28x28"):
        normalize_images(np.zeros((2, 32, 32), np.uint8))


def test_validation_split_is_seeded_disjoint_and_sized():
    x = np.arange(1000)
    x_fit, y_fit, x_val, y_val = split_validation(x, x, 0.1, seed=3)
    assert len(x_val) == 100 and len(x_fit) == 900
    assert not set(x_val) & set(x_fit)
    assert np.array_equal(split_validation(x, x, 0.1, seed=3)[2], x_val)
    assert not np.array_equal(split_validation(x, x, 0.1, seed=4)[2], x_val)


def test_corrupt_npz_names_the_file(tmp_path):
    path = tmp_path / "mnist.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match=str(path)):
        load_mnist(path)


def test_truncated_npz_is_a_data_error(tmp_path, mnist):
    path = tmp_path / "mnist.npz"
    np.savez_compressed(path, **arrays_of(mnist))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="not a readable"):
        load_mnist(path)


def test_altered_pixel_fails_the_checksum(tmp_path, mnist):
    arrays = {name: array.copy() for name, array in arrays_of(mnist).items()}
    arrays["x_test"][0, 0, 0] ^= 1
    path = tmp_path / "mnist.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match="x_test does not match MNIST's checksum"):
        load_mnist(path)


def test_wrong_shape_and_missing_arrays_are_named(tmp_path, mnist):
    arrays = arrays_of(mnist)
    path = tmp_path / "mnist.npz"
    np.savez(path, **{**arrays, "x_test": arrays["x_test"][:10]})
    with pytest.raises(DataError, match=r"x_test is uint8 \(10, 28, 28\)"):
        load_mnist(path)
    np.savez(path, x_train=arrays["x_train"])
    with pytest.raises(DataError, match="lacks x_test, y_test, y_train"):
        load_mnist(path)


def write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as stream:
        stream.write(header + array.tobytes())


def test_idx_folder_loads_to_the_same_arrays(tmp_path, mnist):
    for index, (name, stem) in enumerate(IDX_FILES.items()):
        write_idx(tmp_path / (stem + (".gz" if index % 2 else "")), getattr(mnist, name))
    loaded = load_mnist(tmp_path)
    for name in IDX_FILES:
        assert np.array_equal(getattr(loaded, name), getattr(mnist, name))


def test_idx_folder_errors_name_the_missing_or_broken_file(tmp_path, mnist):
    for name, stem in IDX_FILES.items():
        write_idx(tmp_path / stem, getattr(mnist, name))
    labels = tmp_path / IDX_FILES["y_test"]
    labels.write_bytes(labels.read_bytes()[:-5])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte is truncated"):
        load_mnist(tmp_path)
    labels.unlink()
    with pytest.raises(DataError, match="has no t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path)


def idx_folder_with(tmp_path, mnist, name, header_shape, body):
    """The four IDX files, `name`'s replaced by a header claiming `header_shape` and `body`."""
    for other, stem in IDX_FILES.items():
        write_idx(tmp_path / stem, getattr(mnist, other))
    path = tmp_path / IDX_FILES[name]
    path.unlink()
    with gzip.open(path.with_suffix(".gz"), "wb") as stream:
        stream.write(
            bytes([0, 0, 8, len(header_shape)]) + b"".join(n.to_bytes(4, "big") for n in header_shape)
        )
        stream.write(body)
    return tmp_path


def test_idx_sizes_are_checked_exactly_before_the_body_is_read(tmp_path, mnist):
    # 2**32-1 cubed overflows 64-bit integers: wrapped, it once looked like an empty array.
    folder = idx_folder_with(tmp_path, mnist, "x_test", (2**32 - 1,) * 3, b"")
    with pytest.raises(DataError, match=r"holds an array of \(4294967295, 4294967295, 4294967295\)"):
        load_mnist(folder)


def test_an_idx_file_with_data_past_its_array_is_refused(tmp_path, mnist):
    folder = idx_folder_with(tmp_path, mnist, "y_test", (10000,), mnist.y_test.tobytes() + bytes(50_000_000))
    with pytest.raises(DataError, match="truncated or padded"):
        load_mnist(folder)


def test_an_npz_member_declaring_a_huge_shape_is_refused_before_it_is_allocated(tmp_path, mnist):
    path = tmp_path / "mnist.npz"
    np.savez(path, **{name: array for name, array in arrays_of(mnist).items() if name != "y_test"})
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (2**40,)})
    with zipfile.ZipFile(path, "a") as archive:  # a few bytes claiming a terabyte
        archive.writestr("y_test.npy", header.getvalue())
    with pytest.raises(DataError, match=r"y_test is uint8 \(1099511627776,\), expected uint8 \(10000,\)"):
        load_mnist(path)


def test_missing_path_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no dataset at"):
        load_mnist(tmp_path / "absent.npz")


def test_labels_out_of_range_are_named(tmp_path, mnist):
    arrays = arrays_of(mnist)
    path = tmp_path / "mnist.npz"
    np.savez(path, **{**arrays, "y_train": np.full_like(arrays["y_train"], 10)})
    with pytest.raises(DataError, match="y_train has labels outside 0-9"):
        load_mnist(path)
