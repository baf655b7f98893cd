"""Files made to test the guards: model files rewritten or built by hand (ONNX graphs that answer
evenly, NaN or not at all), and images built to cost a decoder far more than their size says."""

from __future__ import annotations

import io
import json
import re
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def with_config(saved, path, change):
    """A copy of the .keras file `saved` at `path`, its config.json text rewritten by `change`."""
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(path, "w") as copy:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "config.json":
                data = change(json.loads(data)).encode()
            copy.writestr(item, data)
    return path


DIGIT_MODEL_SHAPES = (["n", 28, 28], ["n", 10])  # images in, 10 probabilities each out
LINE_MODEL_SHAPES = (["n", 32, "w"], ["n", "frames", 12])  # lines in, 12 per frame out


def onnx_digit_model(
    path: Path, nodes: list, initializers: dict[str, np.ndarray], shapes=DIGIT_MODEL_SHAPES
) -> Path:
    """An ONNX file declaring what export.py's do (float "images" of shapes[0] in, "probabilities"
    of shapes[1] out; LINE_MODEL_SHAPES for a line model) whose graph is `nodes`: a hand-made model,
    hostile or broken as a test needs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    entry, exit_ = shapes
    graph = helper.make_graph(
        nodes,
        "digits",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, entry)],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, exit_)],
        initializer=[numpy_helper.from_array(array, name) for name, array in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def nan_past_ink(path: Path, most_ink: float) -> Path:
    """An ONNX digit model answering ten 0.1s for an image holding at most `most_ink` (the sum of
    its pixels in [0, 1]), and NaN for one holding more."""
    from onnx.helper import make_node

    nodes = [
        make_node("ReduceSum", ["images", "pixels"], ["ink"], keepdims=0),  # (n,)
        make_node("Unsqueeze", ["ink", "last"], ["ink_column"]),  # (n, 1)
        make_node("Sub", ["most_ink", "ink_column"], ["left"]),
        make_node("Sqrt", ["left"], ["root"]),  # NaN past most_ink
        make_node("Mul", ["root", "zeros"], ["logits"]),  # (n, 10): 0, or NaN
        make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    constants = {
        "pixels": np.array([1, 2], np.int64),
        "last": np.array([1], np.int64),
        "most_ink": np.array([[most_ink]], np.float32),
        "zeros": np.zeros((1, 10), np.float32),
    }
    return onnx_digit_model(path, nodes, constants)


def even_odds(path: Path) -> Path:
    """An ONNX digit model answering ten 0.1s for any image (none holds more than 28x28 of ink):
    for tests of how an .onnx file is found, checked and read, not of export.py's answers."""
    return nan_past_ink(path, most_ink=28 * 28)


def jpeg_scans(raw: bytes) -> tuple[list[tuple[int, int]], int, int]:
    """Where a JPEG's scans lie (each scan's start and end: its header and coded data), where its
    frame header's height and width are, and where its end-of-image marker is."""
    markers = re.compile(rb"\xff+([^\x00\xff])")
    data_end = re.compile(rb"\xff+[^\x00\xd0-\xd7\xff]")
    position, scans, frame = 2, [], 0
    while True:
        marker = markers.match(raw, position)
        position = marker.end()
        if marker[1] == b"\xd9":
            return scans, frame, marker.start()
        length = int.from_bytes(raw[position : position + 2], "big")
        if marker[1] in (b"\xc0", b"\xc2"):
            frame = position + 3  # after the length and the sample precision
        if marker[1] == b"\xda":
            end = data_end.search(raw, position + length).start()
            scans.append((marker.start(), end))
            position = end
        else:
            position += length


def progressive_jpeg_bomb(side: int, repeats: int) -> bytes:
    """A real progressive JPEG of grey noise whose header says it is `side` pixels square and whose
    last scan (a refinement) is repeated `repeats` times: libjpeg walks the whole picture once per
    scan (the review's bomb: 13000 px, 1,329 scans, 999 KB)."""
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "JPEG", progressive=True, quality=90)
    raw = buffer.getvalue()
    scans, frame, end = jpeg_scans(raw)
    last_scan = raw[scans[-1][0] : scans[-1][1]]
    bomb = bytearray(raw[:end] + last_scan * repeats + raw[end:])
    bomb[frame : frame + 4] = side.to_bytes(2, "big") * 2  # height, width
    return bytes(bomb)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_of_many_chunks(kind: bytes, count: int, side: int = 1000) -> bytes:
    """A blank grey PNG, `side` px square, holding `count` empty chunks of `kind` before its
    image data (b"IDAT": its image data split into that many pieces)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    rows = zlib.compress(bytes((side + 1) * side))  # each row: a filter byte, then its pixels
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(kind, b"") * count
        + png_chunk(b"IDAT", rows)
        + png_chunk(b"IEND", b"")
    )


def png_inflating_past_its_pixels(side: int, extra_megabytes: int) -> bytes:
    """A blank grey PNG, `side` px square, whose compressed image data goes on to inflate to
    `extra_megabytes` more than its pixels hold."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    # Run-length matching finds the zeros' runs as deflate's longest matches at level 9's ratio
    # (over 1000:1), in a fraction of the time of its general search.
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS, 9, zlib.Z_RLE)
    rows = compressor.compress(bytes((side + 1) * side))
    megabyte = bytes(2**20)
    rows += b"".join(compressor.compress(megabyte) for _ in range(extra_megabytes)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b"")
    )


# Formats Pillow opens and writes beyond the six the reader reads (PNG, JPEG, BMP, GIF, WebP, TIFF).
OTHER_FORMATS = ["AVIF", "DDS", "ICO", "PCX", "PPM", "QOI", "SGI", "SPIDER", "TGA"]
