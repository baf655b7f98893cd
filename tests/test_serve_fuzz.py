"""Property tests: nothing a client sends to /api/predict can produce a 5xx or stop the server; and
the decode bombs, each refused with its reason before it holds a reading slot."""

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import encoded
from hostile_files import (
    OTHER_FORMATS,
    png_inflating_past_its_pixels,
    png_of_many_chunks,
    progressive_jpeg_bomb,
)
from reader.classifier import keras_classifier
from server.app import DECODES_AT_ONCE, create_app

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def client(untrained_run):
    with TestClient(
        create_app(keras_classifier(untrained_run.model)), raise_server_exceptions=False
    ) as client:
        yield client


@st.composite
def images(draw):
    """Random pixels of a random size and mode, encoded in a random format."""
    mode = draw(st.sampled_from(["L", "RGB", "RGBA", "P", "1", "CMYK", "I;16"]))
    width, height = draw(st.integers(1, 300)), draw(st.integers(1, 300))
    seed = draw(st.integers(0, 2**32 - 1))
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    image = image.convert("L").convert(mode) if mode == "I;16" else image.convert(mode)
    format = draw(st.sampled_from(["PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP"]))
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=format)
    except (OSError, ValueError, KeyError):  # this mode cannot be written in this format
        image.convert("RGB").save(buffer, format="PNG")
    data = buffer.getvalue()
    cut = draw(st.integers(0, len(data)))  # often a truncated file
    return data[:cut] if draw(st.booleans()) else data


CONTENT_TYPES = st.sampled_from(
    [
        "image/png",
        "image/jpeg",
        "application/octet-stream",
        "text/plain",
        "application/json",
        "multipart/form-data",
        "multipart/form-data; boundary=xyz",
        "application/x-www-form-urlencoded",
        "",
    ]
)


def assert_handled(client, response):
    """A digit (200) or a client error with its reason (4xx), and the server still healthy."""
    body = response.json()
    if response.status_code == 200:
        assert body["digit"] in range(10) and sum(body["probabilities"]) == pytest.approx(1, abs=1e-4)
    else:
        assert 400 <= response.status_code < 500, response.text
        assert body["detail"]
    assert client.get("/healthz").json()["status"] == "ok"


@FUZZ
@given(body=st.binary(max_size=5000) | images(), content_type=CONTENT_TYPES)
def test_any_raw_body_gets_an_answer_not_a_crash(client, body, content_type):
    response = client.post("/api/predict", content=body, headers={"content-type": content_type})
    assert_handled(client, response)


@FUZZ
@given(
    body=st.binary(max_size=5000) | images(),
    field=st.sampled_from(["file", "image", "f"]),
    filename=st.text(max_size=30),
    part_type=CONTENT_TYPES,
)
def test_any_multipart_upload_gets_an_answer_not_a_crash(client, body, field, filename, part_type):
    response = client.post("/api/predict", files={field: (filename, body, part_type or "image/png")})
    assert_handled(client, response)


@FUZZ
@given(
    prefix=st.binary(max_size=200),
    boundary=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20),
)
def test_malformed_multipart_bodies_get_4xx(client, prefix, boundary):
    body = prefix + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"\r\n\r\n'.encode()
    response = client.post(
        "/api/predict", content=body, headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"]
    assert client.get("/healthz").json()["status"] == "ok"


@st.composite
def many_marks(draw):
    """Pages of many tiny marks in rows (the review's 2 KB speck page and its relatives): dashes
    or dots of a few pixels, packed densely, each row shifted, as a PNG."""
    height, width = draw(st.integers(16, 512)), draw(st.integers(32, 1024))
    mark, gap, row_gap = draw(st.integers(1, 4)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    shift = draw(st.integers(0, 3))
    page = np.full((height, width), 255, np.uint8)
    for row in range(1, height - 1, row_gap + 1):
        offset = (row * shift) % (mark + gap)
        for column in range(1 + offset, width - mark, mark + gap):
            page[row : row + min(mark, row_gap), column : column + mark] = 0  # rows stay apart
    buffer = io.BytesIO()
    Image.fromarray(page).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def hurried_client(untrained_run):
    app = create_app(keras_classifier(untrained_run.model), reading_seconds=2.0)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=many_marks())
def test_pages_of_many_tiny_marks_are_read_refused_or_timed_out_and_free_their_slot(hurried_client, body):
    response = hurried_client.post("/api/number", content=body)
    assert response.status_code in (200, 400, 503), response.text
    assert response.json()["number" if response.status_code == 200 else "detail"]
    assert hurried_client.get("/readyz").json()["free_slots"] == DECODES_AT_ONCE  # none kept


DECODE_BOMBS = {  # each under 1 MB, as a server takes it
    "progressive-jpeg-1300-scans": (lambda: progressive_jpeg_bomb(4000, 1300), "over 64 scans"),
    "progressive-jpeg-13000-px": (
        lambda: progressive_jpeg_bomb(13000, 10),
        "13000x13000 pixels is too large",
    ),
    "png-80000-idats": (lambda: png_of_many_chunks(b"IDAT", 80_000), "no digit found"),
    "png-60000-text-chunks": (lambda: png_of_many_chunks(b"tEXt", 60_000), "no digit found"),
    "png-inflating-900-mb-past-its-pixels": (
        lambda: png_inflating_past_its_pixels(4000, 900),
        "no digit found",
    ),
    **{
        f"{format.lower()}-not-one-of-the-six": (
            lambda format=format: encoded(Image.new("RGB", (300, 300), "white"), format),
            "not an image",
        )
        for format in OTHER_FORMATS
    },
}


@pytest.mark.parametrize("bomb", DECODE_BOMBS)
def test_decode_bombs_are_refused_with_their_reason_and_free_their_slot(hurried_client, bomb):
    make, says = DECODE_BOMBS[bomb]
    body = make()
    assert len(body) < 1_000_000
    # Refused (400), not read past the deadline (503): the bound comes before the decoding.
    response = hurried_client.post("/api/predict", content=body)
    assert response.status_code == 400 and says in response.json()["detail"], response.text
    assert hurried_client.get("/readyz").json()["free_slots"] == DECODES_AT_ONCE
