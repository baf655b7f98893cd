import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

import predict
from conftest import run_script
from data import normalize_images
from model import probability_model


@pytest.fixture(scope="module")
def rerendered(tmp_path_factory, mnist):
    """200 real MNIST test digits saved as dark-on-light 200x200 PNGs, as a user's scans would be."""
    folder = tmp_path_factory.mktemp("scans")
    for index in range(200):
        image = Image.fromarray(255 - mnist.x_test[index]).resize((200, 200), Image.Resampling.BICUBIC)
        image.save(folder / f"{index:03d}.png")
    return folder


def test_rerendered_mnist_digits_keep_their_labels(trained_run, rerendered, mnist, capsys):
    results = predict.main([str(rerendered), "--model", str(trained_run.folder / "model.keras"), "--json"])
    assert len(results) == 200
    predicted = np.array([result["digit"] for result in results])
    truth = mnist.y_test[:200]
    original = probability_model(trained_run.model).predict(normalize_images(mnist.x_test[:200]), verbose=0)
    # Re-rendering must not cost more than a few digits compared with the model's own test accuracy.
    assert np.mean(predicted == truth) >= np.mean(original.argmax(axis=1) == truth) - 0.04
    printed = json.loads(capsys.readouterr().out)
    assert printed["errors"] == [] and printed["predictions"][0]["file"].endswith("000.png")
    top = printed["predictions"][0]["top"]
    assert len(top) == 3 and top[0]["probability"] >= top[1]["probability"] >= top[2]["probability"]


def model_with_threshold(trained_run, folder, threshold):
    """A copy of the trained model whose run.json says it is not sure below `threshold`."""
    shutil.copy(trained_run.folder / "model.keras", folder / "model.keras")
    calibration = {**trained_run.record["calibration"], "threshold": threshold}
    (folder / "run.json").write_text(json.dumps({**trained_run.record, "calibration": calibration}))
    return folder / "model.keras"


def test_text_output_and_preprocessed_images(trained_run, rerendered, tmp_path, capsys):
    seen = tmp_path / "seen"
    image = rerendered / "000.png"
    model = model_with_threshold(trained_run, tmp_path, 0.0)  # sure of everything
    predict.main([str(image), "--model", str(model), "--save-preprocessed", str(seen)])
    line = capsys.readouterr().out.strip()
    percent = r"\d+\.\d%"
    assert re.fullmatch(rf"{image}: \d \({percent}; top: \d {percent}, \d {percent}, \d {percent}\)", line)
    assert np.asarray(Image.open(seen / "000.png")).shape == (28, 28)


def test_bad_files_are_reported_and_the_rest_still_predicted(trained_run, rerendered, tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("not an image")
    Image.new("L", (64, 64), 255).save(tmp_path / "blank.png")
    result = run_script(
        "predict.py",
        str(rerendered / "001.png"),
        str(tmp_path / "empty.png"),
        str(tmp_path / "notes.png"),
        str(tmp_path / "blank.png"),
        str(tmp_path / "missing.png"),
        "--model",
        str(trained_run.folder / "model.keras"),
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stdout.startswith(f"{rerendered / '001.png'}: ")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert [line.split(": ")[1] for line in errors] == [
        str(tmp_path / name) for name in ("empty.png", "notes.png", "blank.png", "missing.png")
    ]


def test_folder_without_images_is_an_error(trained_run, tmp_path):
    result = run_script("predict.py", str(tmp_path), "--model", str(trained_run.folder / "model.keras"))
    assert result.returncode == 1
    assert "folder holds no PNG, JPEG, BMP, GIF, WebP or TIFF files" in result.stderr


def test_missing_model_says_to_train_first(tmp_path):
    result = run_script("predict.py", "digit.png", "--model", str(tmp_path / "model.keras"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "run `python train.py` first" in result.stderr


@pytest.fixture(scope="module")
def written_number(tmp_path_factory, mnist):
    """MNIST test digits 7, 2, 1 (its first three) side by side, dark on light, as a scanned number."""
    row = np.hstack([np.pad(digit, ((6, 6), (4, 4))) for digit in mnist.x_test[:3]])
    path = tmp_path_factory.mktemp("number") / "721.png"
    Image.fromarray(255 - row).resize((row.shape[1] * 5, row.shape[0] * 5), Image.Resampling.BICUBIC).save(
        path
    )
    return path


def test_number_is_read_digit_by_digit_left_to_right(trained_run, written_number, mnist, capsys):
    model = str(trained_run.folder / "model.keras")
    results = predict.main([str(written_number), "--number", "--json", "--model", model])
    (result,) = results
    singles = probability_model(trained_run.model).predict(normalize_images(mnist.x_test[:3]), verbose=0)
    assert len(result["digits"]) == 3
    assert result["number"] == "".join(str(digit) for digit in singles.argmax(axis=1))
    lefts = [item["box"][0] for item in result["digits"]]
    assert lefts == sorted(lefts) and all(item["box"][2] > item["box"][0] for item in result["digits"])
    printed = json.loads(capsys.readouterr().out)["predictions"][0]
    assert printed["file"] == str(written_number) and printed["number"] == result["number"]


def test_below_the_calibrated_confidence_a_reading_is_not_sure(trained_run, rerendered, tmp_path):
    model = model_with_threshold(trained_run, tmp_path, 1.0)  # nothing is that sure
    result = run_script("predict.py", str(rerendered / "000.png"), "--top", "1", "--model", str(model))
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.fullmatch(r".*000\.png: not sure: \d \d+\.\d% or \d \d+\.\d%\n", result.stdout)


def test_a_trained_model_is_sure_of_most_digits(trained_run, rerendered):
    results = predict.main([str(rerendered), "--model", str(trained_run.folder / "model.keras")])
    flagged = np.mean([result["not_sure"] for result in results])
    assert 0 < trained_run.record["calibration"]["threshold"] < 1
    assert flagged < 0.9  # a 2-epoch model on 3,000 digits; the full model flags a few percent
