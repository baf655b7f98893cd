"""Reading a whole line with a line model: the reader's JSON, boxes from the alignment, "not
sure", bad lines, and line models and classifiers kept apart."""

import json

import numpy as np
import pytest
from onnx.helper import make_node
from PIL import Image

import predict
from conftest import SURE, blobs, encoded, spelling
from data import FRAME_WIDTH, LINE_CLASSES, NOT_A_DIGIT_SYMBOL
from hostile_files import LINE_MODEL_SHAPES, onnx_digit_model, with_config
from reader import ImageError, ModelError, read_image, read_number
from reader.classifier import LineModel, load_classifier, load_line_model, load_model_file


def test_a_line_read_has_the_numbers_json_and_says_the_line_model_read_it():
    page, _ = blobs(3)
    number, seen = read_number(None, page, None, line=LineModel("spelling", spelling([4, 0, 2]), 0.5))
    assert number["number"] == "402" and number["reader"] == "line" and not number["not_sure"]
    assert len(seen) == len(number["digits"]) == 3
    for item, digit in zip(number["digits"], [4, 0, 2], strict=True):
        assert set(item) == {"box", "digit", "confidence", "not_sure", "not_a_digit", "top"}
        assert item["digit"] == digit and item["top"][0] == {
            "digit": digit,
            "probability": pytest.approx(SURE),
        }
        assert not item["not_sure"] and not item["not_a_digit"]


def test_division_says_it_read_the_number_too(untrained_run, written_number):
    from reader.classifier import keras_classifier
    from reader.page import read_image_file

    classifier = keras_classifier(untrained_run.model)
    number, _ = read_number(classifier.probabilities_of, read_image_file(written_number), None)
    assert number["reader"] == "division"


def test_each_digits_box_is_its_ink_on_the_page():
    page, spans = blobs(3)
    number, _ = read_number(None, page, None, line=LineModel("spelling", spelling([1, 2, 3]), None))
    for item, (left, right) in zip(number["digits"], spans, strict=True):
        box_left, top, box_right, bottom = item["box"]
        assert abs(box_left - left) <= 3 and abs(box_right - right) <= 3
        assert 40 <= top <= 60 and 140 <= bottom <= 160


def test_a_mark_that_is_not_a_digit_reads_as_a_cross_and_is_not_sure():
    page, _ = blobs(3)
    line = LineModel("spelling", spelling([7, NOT_A_DIGIT_SYMBOL, 1]), 0.5)
    number, _ = read_number(None, page, None, line=line)
    assert number["number"] == "7✕1" and number["not_sure"]
    assert [item["not_a_digit"] for item in number["digits"]] == [False, True, False]


def test_a_line_below_the_calibrated_confidence_is_not_sure():
    page, _ = blobs(2)
    number, _ = read_number(None, page, None, line=LineModel("unsure", spelling([5, 6], sure=0.6), 0.9))
    assert number["number"] == "56" and number["not_sure"]
    assert all(len(item["top"]) >= 2 for item in number["digits"])  # names its alternative


@pytest.mark.parametrize(
    "page, symbols, message",
    [
        (blobs(13)[0], list(range(10)) * 2, "found 13 symbols; a number of at most 12 digits expected"),
        (blobs(2)[0], [], "the line model reads no symbol"),
        (Image.new("L", (400, 100), 255), [1], "the image is blank"),
        (blobs(1, width=20_000)[0], [1], "times as wide as tall, more than a number of 12 digits"),
    ],
    ids=["40-like", "nothing", "empty", "20000-wide"],
)
def test_lines_it_cannot_read_are_image_errors_saying_why(page, symbols, message):
    with pytest.raises(ImageError, match=message):
        image = read_image(encoded(page))  # as sent: a page over 1024 px is read shrunk
        read_number(None, image, None, line=LineModel("spelling", spelling(symbols), 0.5))


def test_a_line_model_file_loads_as_one(line_model_file):
    model = load_model_file(line_model_file)
    assert isinstance(model, LineModel) and model.threshold is None
    probabilities = model.probabilities_of(np.zeros((1, 32, 64), np.float32))
    assert probabilities.shape == (1, 16, LINE_CLASSES)


def test_a_line_model_given_as_a_classifier_and_a_classifier_as_a_line_model_are_clear_errors(
    line_model_file, untrained_run
):
    with pytest.raises(ModelError, match="is a line model .* not a digit classifier"):
        load_classifier(line_model_file)
    with pytest.raises(ModelError, match="is a digit classifier, not a line model: train one with"):
        load_line_model(untrained_run.folder / "model.keras")


def bidirectional_layers(config: dict) -> list[dict]:
    """The GRUs a line model's config wraps in its Bidirectional, forward and backward."""
    wrapper = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Bidirectional")
    return [wrapper["config"]["layer"], wrapper["config"]["backward_layer"]]


def wrapping_an_lstm(config: dict) -> str:
    for layer in bidirectional_layers(config):
        layer["class_name"] = "LSTM"
    return json.dumps(config)


def widening_the_grus(config: dict) -> str:
    for layer in bidirectional_layers(config):  # 3 gates x 1000 x (64 inputs + 1000 + 2), both ways
        layer["config"]["units"] = 1000
    return json.dumps(config)


@pytest.mark.parametrize(
    "change, says",
    [
        (wrapping_an_lstm, "a layer of class 'LSTM', which train.py never builds"),
        (widening_the_grus, "layers hold 6,[0-9,]+ weights, more than its [0-9,]+-byte weights file"),
    ],
    ids=["lstm", "wide-gru"],
)
def test_a_line_model_file_wrapping_other_layers_than_its_grus_is_refused_unbuilt(
    line_model_file, tmp_path, change, says
):
    path = with_config(line_model_file, tmp_path / "bad.keras", change)
    with pytest.raises(ModelError, match=f"cannot load .*{says}"):
        load_line_model(path)


def test_an_onnx_line_model_answering_nan_is_refused_when_it_loads(tmp_path):
    nodes = [
        make_node("ReduceMax", ["images"], ["columns"], axes=[1], keepdims=0),  # (n, w)
        make_node("Reshape", ["columns", "frames"], ["framed"]),  # (n, w / 4, 4)
        make_node("MatMul", ["framed", "weights"], ["scores"]),  # (n, w / 4, 12)
        make_node("Sqrt", ["minus_one"], ["nan"]),
        make_node("Add", ["scores", "nan"], ["logits"]),
        make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    constants = {
        "frames": np.array([0, -1, FRAME_WIDTH], np.int64),
        "weights": np.ones((FRAME_WIDTH, LINE_CLASSES), np.float32),
        "minus_one": np.array([-1], np.float32),
    }
    path = onnx_digit_model(tmp_path / "nan.onnx", nodes, constants, LINE_MODEL_SHAPES)
    with pytest.raises(ModelError, match="cannot load .*on 1 real line.*its answer is not numbers"):
        load_line_model(path)


def test_predict_refuses_a_line_model_without_number(line_model_file, written_number):
    with pytest.raises(SystemExit, match="is a line model: it reads numbers, so add --number"):
        predict.main([str(written_number), "--model", str(line_model_file)])


def test_predict_reads_numbers_with_a_line_model_it_is_given(tmp_path):
    page, _ = blobs(2)
    page.save(tmp_path / "two.png")
    results, seen, failures = predict.read_files(
        LineModel("spelling", spelling([9, 3]), 0.5), [tmp_path / "two.png"], number=True, top=3
    )
    assert not failures and results[0]["number"] == "93" and results[0]["reader"] == "line"
    assert len(seen[0]) == 2  # what the model saw of each digit: its columns of the line
