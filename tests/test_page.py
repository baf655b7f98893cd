import io
import json
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image, ImageDraw
from scipy import ndimage

from conftest import PROJECT_ROOT, encoded
from data import DIGIT_BOX
from hostile_files import OTHER_FORMATS, progressive_jpeg_bomb
from reader.page import MAX_JPEG_SCANS, MAX_PIXELS, ImageError, long_runs, mnist_style_digit, read_image


def drawn_one(size=(300, 200), box=(40, 30, 70, 170), ink=0, paper=255, mode="L", width=8):
    """A vertical stroke with a foot, off-centre, on a page of the given colours."""
    image = Image.new(mode, size, paper)
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = box
    draw.line([(right, top), (right, bottom)], fill=ink, width=width)
    draw.line([(left, bottom), (right + 20, bottom)], fill=ink, width=width)
    return image


def center_of_mass(digit):
    total = digit.sum()
    rows, cols = np.indices(digit.shape)
    return (rows * digit).sum() / total, (cols * digit).sum() / total


def bounding_box(digit):
    rows = np.flatnonzero(digit.max(axis=1) > 0)
    cols = np.flatnonzero(digit.max(axis=0) > 0)
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def assert_mnist_style(digit):
    assert digit.dtype == np.uint8 and digit.shape == (28, 28)
    assert digit.max() == 255 and digit[0].max() == digit[-1].max() == 0  # white ink, black border
    assert max(bounding_box(digit)) in (DIGIT_BOX, DIGIT_BOX + 1)  # Lanczos may bleed one pixel
    cy, cx = center_of_mass(digit.astype(float))
    assert abs(cy - 14) <= 0.6 and abs(cx - 14) <= 0.6  # where MNIST puts it


@pytest.mark.parametrize(
    "image",
    [
        drawn_one(),  # dark ink on light paper, off-centre
        drawn_one(size=(1000, 1000), box=(700, 700, 720, 760), width=3),  # small, in a corner
        drawn_one(width=40),  # thick
        drawn_one(ink=255, paper=0),  # light on dark
        drawn_one(mode="RGB", ink=(20, 20, 120), paper=(250, 245, 230)),  # blue pen on cream
    ],
    ids=["off-centre", "small-in-corner", "thick", "inverted", "rgb"],
)
def test_digit_comes_out_centred_by_mass_in_a_20_pixel_box(image):
    assert_mnist_style(mnist_style_digit(read_image(encoded(image))))


def test_transparent_background_is_paper_for_dark_and_light_ink():
    for ink in ((0, 0, 0, 255), (255, 255, 255, 255)):
        image = drawn_one(mode="RGBA", ink=ink, paper=(0, 0, 0, 0))
        assert_mnist_style(mnist_style_digit(read_image(encoded(image))))


def test_jpeg_bmp_and_gif_decode_to_the_same_digit():
    image = drawn_one()
    reference = mnist_style_digit(read_image(encoded(image)))
    for format in ("JPEG", "BMP", "GIF"):
        digit = mnist_style_digit(
            read_image(encoded(image.convert("RGB") if format == "JPEG" else image, format))
        )
        assert np.abs(digit.astype(int) - reference).mean() < 3, format


def test_mnist_digit_survives_inversion_and_enlargement(mnist):
    original = mnist.x_test[0]
    enlarged = Image.fromarray(255 - original).resize((200, 200), Image.Resampling.BICUBIC)
    digit = mnist_style_digit(read_image(encoded(enlarged)))
    assert np.abs(digit.astype(int) - original).mean() < 12


def test_blank_page_is_an_error():
    with pytest.raises(ImageError, match="no digit found"):
        mnist_style_digit(read_image(encoded(Image.new("L", (100, 100), 250))))


def test_empty_and_non_image_bytes_are_errors():
    with pytest.raises(ImageError, match="empty"):
        read_image(b"")
    with pytest.raises(ImageError, match="not an image"):
        read_image(b"this is a text file")


def test_truncated_image_is_an_error():
    data = encoded(drawn_one())
    with pytest.raises(ImageError, match="damaged"):
        read_image(data[: len(data) // 2])


def test_cmyk_jpeg_16_bit_png_and_animated_gif_are_read():
    reference = reference_one()
    cmyk = encoded(drawn_one(mode="RGB", ink=(0, 0, 0), paper=(255, 255, 255)).convert("CMYK"), "JPEG")
    sixteen_bit = Image.fromarray(np.asarray(drawn_one(), dtype=np.uint16) * 257)
    assert sixteen_bit.mode.startswith("I")
    frames = [drawn_one(), Image.new("L", (300, 200), 255)]
    animated = io.BytesIO()
    frames[0].save(animated, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    for data in (cmyk, encoded(sixteen_bit), animated.getvalue()):
        digit = mnist_style_digit(read_image(data))
        assert np.abs(digit.astype(int) - reference).mean() < 3


def test_huge_dimensions_are_refused_before_decoding():
    # A 20000x20000 PNG of one colour compresses to a few hundred kB but would take 400 MB.
    bomb = encoded(Image.new("1", (20000, 20000), 1))
    assert len(bomb) < 1_000_000
    with pytest.raises(ImageError, match="too large"):
        read_image(bomb)


def test_a_lab_image_is_read_by_its_lightness():
    # LAB's "A" is a colour axis. Read as transparency, a grey page of CIELab TIFF (a and b stored
    # signed, so neutral is 0) was all transparent: "no digit found".
    lightness = drawn_one()
    neutral = Image.new("L", lightness.size, 0)
    lab = Image.merge("LAB", (lightness, neutral, neutral))
    assert (
        np.abs(mnist_style_digit(read_image(encoded(lab, "TIFF"))).astype(int) - reference_one()).mean() < 3
    )


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_float_image_with_a_pixel_that_is_not_a_number_is_an_error(bad):
    pixels = np.asarray(drawn_one(), dtype=np.float32)
    pixels[5, 5] = bad
    with pytest.raises(ImageError, match="not numbers"):
        mnist_style_digit(read_image(encoded(Image.fromarray(pixels, mode="F"), "TIFF")))


def test_a_float_tiff_in_zero_to_one_reads_as_the_same_digit_in_bytes(mnist):
    # Scientific tools save a float image's grey levels in [0, 1], not [0, 255].
    seven = mnist.x_test[0]
    as_float = Image.fromarray(seven.astype(np.float32) / 255, mode="F")
    digit = mnist_style_digit(read_image(encoded(as_float, "TIFF")))
    reference = mnist_style_digit(read_image(encoded(Image.fromarray(seven))))
    assert np.abs(digit.astype(int) - reference).mean() < 3


def reference_one():
    return mnist_style_digit(read_image(encoded(drawn_one())))


def test_a_phone_sized_photo_reads_as_the_same_picture_smaller(mnist):
    # Shrunk before any arithmetic, a 12-megapixel photo gives the digit its 1,000-pixel copy gives.
    page = np.full((3024, 4032), 235.0) * (1 - 0.3 * np.linspace(0, 1, 4032))  # light falling off
    photo = on_page(mnist.x_test[2], page)
    small = photo.resize((1008, 756), Image.Resampling.BOX)
    assert difference(read_image(encoded(photo, "JPEG")), small) < 4


def test_a_hard_shadow_meeting_the_page_edges_is_not_ink(mnist):
    # A shadow's edge across the page leaves a dark wedge in two corners: darker than the paper
    # around it, narrower than a quarter of the page, but never as dark as the pen.
    rows, columns = np.mgrid[0:756, 0:1008]
    shadowed = 235 * (1 - 0.3 * columns / 1008) * np.where(rows / 756 + columns / 1008 > 1.2, 0.65, 1.0)
    even = np.full((756, 1008), 235.0)
    assert difference(on_page(mnist.x_test[2], shadowed), on_page(mnist.x_test[2], even)) < 4


def test_a_large_jpeg_is_decoded_at_a_reduced_scale():
    jpeg = encoded(drawn_one(size=(6000, 4000), box=(2000, 1000, 2400, 3000), width=120), "JPEG")
    assert 6000 * 4000 > MAX_PIXELS
    assert_mnist_style(mnist_style_digit(read_image(jpeg)))


def test_a_progressive_jpeg_repeating_its_scans_is_refused_before_decoding():
    bomb = progressive_jpeg_bomb(side=4000, repeats=1300)  # 16 megapixels, within the limit
    assert len(bomb) < 1_000_000  # a server takes it
    with pytest.raises(ImageError, match=f"the JPEG holds over {MAX_JPEG_SCANS} scans"):
        read_image(bomb)


def test_a_progressive_jpeg_over_the_pixel_limit_is_refused_before_decoding():
    bomb = progressive_jpeg_bomb(side=13000, repeats=0)  # its own 6 scans
    with pytest.raises(ImageError, match="a progressive JPEG of 13000x13000 pixels is too large"):
        read_image(bomb)  # and no warning of Pillow's of its own: the reader's error says it all


def test_progressive_and_two_picture_jpegs_are_read():
    progressive, two_pictures = io.BytesIO(), io.BytesIO()
    drawn_one().save(progressive, "JPEG", progressive=True)
    # MPO: a phone's JPEG holding a second picture (a preview, a depth map)
    drawn_one().save(two_pictures, "MPO", save_all=True, append_images=[Image.new("L", (300, 200))])
    for raw in (progressive.getvalue(), two_pictures.getvalue()):
        assert np.abs(mnist_style_digit(read_image(raw)).astype(int) - reference_one()).mean() < 3


@pytest.mark.parametrize("format", OTHER_FORMATS)
def test_formats_beyond_the_six_named_are_refused_undecoded(format):
    with pytest.raises(ImageError, match="not an image"):
        read_image(encoded(drawn_one(mode="RGB"), format))


PEAK_SCRIPT = """
import json, sys
from reader.page import ImageError, mnist_style_digit, read_image
def status(field):
    return int(open("/proc/self/status").read().split(field + ":")[1].split()[0]) * 1024
raw = open(sys.argv[1], "rb").read()
open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) starts again from here
before = status("VmRSS")
try:
    mnist_style_digit(read_image(raw))
except ImageError:
    pass
print(json.dumps(status("VmHWM") - before))
"""


def largest_square() -> Image.Image:
    """The largest square image accepted, in RGBA: a stroke with a foot on white."""
    side = math.isqrt(MAX_PIXELS)
    corners = (side // 4, side // 4, side // 3, side * 3 // 4)
    white, black = (255, 255, 255, 255), (0, 0, 0, 255)
    return drawn_one((side, side), corners, ink=black, paper=white, mode="RGBA", width=side // 40)


def largest_strip() -> Image.Image:
    """The widest image accepted, one row of white RGBA."""
    return Image.new("RGBA", (MAX_PIXELS, 1), (255, 255, 255, 255))


@pytest.mark.parametrize(
    "made, format",
    [(largest_square, "PNG"), (largest_square, "WEBP"), (largest_strip, "PNG")],
    ids=["rgba-png", "webp", "strip"],
)
def test_the_largest_images_accepted_cost_at_most_300_mb_to_read(made, format, tmp_path):
    image = made()  # 64 MB each: made when the test runs, not whenever the tests are collected
    path = tmp_path / f"large.{format.lower()}"
    image.save(path, format=format)
    assert path.stat().st_size < 1_000_000 and image.width * image.height <= MAX_PIXELS  # a server takes it
    result = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, str(path)], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) < 300_000_000, f"{json.loads(result.stdout) / 1e6:.0f} MB"


def difference(image, reference):
    """Mean absolute difference, in grey levels, of two images as the model would see them."""
    return np.abs(mnist_style_digit(image).astype(int) - mnist_style_digit(reference)).mean()


def on_page(mnist_digit, page):
    """An MNIST digit (white on black) drawn in dark ink on `page`, a float array of paper levels."""
    ink = np.asarray(Image.fromarray(mnist_digit).resize(page.shape[::-1], Image.Resampling.BICUBIC)) / 255
    return Image.fromarray(np.clip(page * (1 - ink), 0, 255).astype(np.uint8))


def test_printed_lines_of_ruled_and_squared_paper_are_not_ink(mnist):
    plain = on_page(mnist.x_test[0], np.full((200, 200), 250.0))
    for step in ((40, None), (40, 40)):  # ruled, squared
        page = np.full((200, 200), 250.0)
        page[5 :: step[0], :] = 150
        if step[1]:
            page[:, 5 :: step[1]] = 150
        assert difference(on_page(mnist.x_test[0], page), plain) < 6


def test_a_digits_own_bar_across_the_whole_image_is_kept():
    seven = Image.new("L", (120, 160), 255)
    draw = ImageDraw.Draw(seven)
    draw.line([(0, 10), (119, 10)], fill=0, width=14)  # the bar, edge to edge, as thick as the stem
    draw.line([(110, 10), (50, 159)], fill=0, width=14)
    digit = mnist_style_digit(seven)
    top = np.flatnonzero(digit.max(axis=1) > 128)[0]
    assert np.count_nonzero(digit[top : top + 2] > 128) >= 20  # the bar: 15 px a row


def test_uneven_light_and_a_shadow_are_not_ink(mnist):
    rows, columns = np.mgrid[0:240, 0:240] / 240
    page = 230 * (1 - 0.4 * columns) * np.where(rows + columns > 1.1, 0.6, 1.0)  # falling light, a shadow
    plain = on_page(mnist.x_test[1], np.full((240, 240), 230.0))
    assert difference(on_page(mnist.x_test[1], page), plain) < 8


def test_a_speck_far_from_the_digit_does_not_shrink_it():
    page = drawn_one()
    ImageDraw.Draw(page).ellipse([280, 180, 286, 186], fill=0)  # dust in a corner
    assert_mnist_style(mnist_style_digit(page))
    assert difference(page, drawn_one()) < 3


@given(
    arrays(bool, st.tuples(st.integers(1, 30), st.integers(1, 30))),
    st.integers(1, 32),
)
def test_long_runs_are_the_opening_by_a_line_of_that_span(marks, span):
    opened = ndimage.binary_opening(marks, structure=np.ones((1, span)))
    np.testing.assert_array_equal(long_runs(marks, span), opened)


# How a phone stores a picture for each EXIF Orientation: the turn that the tag's reader undoes.
STORED_AS = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def phone_jpeg(upright: Image.Image, orientation: int) -> bytes:
    """`upright` as a phone saves it: turned as `orientation` says, with that EXIF tag."""
    turn = STORED_AS.get(orientation)
    stored = upright.transpose(turn) if turn is not None else upright
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", exif=exif.tobytes())
    return buffer.getvalue()


def test_a_photo_stored_on_its_side_is_read_upright_for_every_exif_orientation(mnist):
    upright = on_page(mnist.x_test[0], np.full((400, 300), 235.0))  # a 7, taller than wide
    for orientation in STORED_AS:
        read = read_image(phone_jpeg(upright, orientation))
        assert read.size == upright.size, orientation
        assert difference(read, upright) < 4, orientation


def test_a_damaged_exif_block_or_an_unknown_orientation_reads_the_image_as_stored(mnist):
    upright = on_page(mnist.x_test[0], np.full((400, 300), 235.0))
    damaged = encoded(upright, "JPEG").replace(
        b"\xff\xd8", b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00MM\x00*\x00\x00", 1
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and says nothing on stderr
        for raw in (phone_jpeg(upright, 9), phone_jpeg(upright, 65535), damaged):
            assert difference(read_image(raw), upright) < 4
