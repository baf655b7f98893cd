import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import predict
from conftest import PROJECT_ROOT, run_script
from data import normalize_images
from hostile_files import even_odds, nan_past_ink
from model import probability_model
from reader.page import MAX_FILE_BYTES, mnist_style_digit


@pytest.mark.slow
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


def model_with_threshold(run, folder, threshold):
    """A copy of `run`'s model whose run.json says it is not sure below `threshold`."""
    shutil.copy(run.folder / "model.keras", folder / "model.keras")
    calibration = {**run.record["calibration"], "threshold": threshold}
    (folder / "run.json").write_text(json.dumps({**run.record, "calibration": calibration}))
    return folder / "model.keras"


def test_text_output_and_preprocessed_images(untrained_run, rerendered, tmp_path, capsys):
    seen = tmp_path / "seen"
    image = rerendered / "000.png"
    model = model_with_threshold(untrained_run, tmp_path, 0.0)  # sure of everything
    predict.main([str(image), "--model", str(model), "--save-preprocessed", str(seen)])
    line = capsys.readouterr().out.strip()
    percent = r"\d+\.\d%"
    assert re.fullmatch(rf"{image}: \d \({percent}; top: \d {percent}, \d {percent}, \d {percent}\)", line)
    assert np.asarray(Image.open(seen / "000.png")).shape == (28, 28)


def test_bad_files_are_reported_and_the_rest_still_predicted(untrained_run, rerendered, tmp_path, capsys):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("not an image")
    Image.new("L", (64, 64), 255).save(tmp_path / "blank.png")
    files = [rerendered / "001.png", *(tmp_path / name for name in ("empty.png", "notes.png", "blank.png"))]
    with pytest.raises(SystemExit) as exit:
        predict.main(
            [
                *map(str, files),
                str(tmp_path / "missing.png"),
                "--model",
                str(untrained_run.folder / "model.keras"),
            ]
        )
    said = capsys.readouterr()
    assert exit.value.code == 1 and said.out.startswith(f"{rerendered / '001.png'}: ")
    errors = [line for line in said.err.splitlines() if line.startswith("error: ")]
    assert [line.split(": ")[1] for line in errors] == [
        str(tmp_path / name) for name in ("empty.png", "notes.png", "blank.png", "missing.png")
    ]


def test_a_file_failing_in_any_way_is_only_that_files_error_in_the_json(
    untrained_run, rerendered, tmp_path, capsys
):
    pixels = np.full((100, 100), 255.0, dtype=np.float32)
    pixels[50, 50] = np.nan
    Image.fromarray(pixels, mode="F").save(tmp_path / "nan.tif")
    (tmp_path / "fifo.png").unlink(missing_ok=True)
    os.mkfifo(tmp_path / "fifo.png")  # would be read for ever
    with open(tmp_path / "huge.png", "wb") as huge:  # starts like a PNG; sparse, so it costs no disk
        huge.write(b"\x89PNG\r\n\x1a\n")
        huge.truncate(MAX_FILE_BYTES + 1)
    names = ("nan.tif", "fifo.png", "huge.png")
    with pytest.raises(SystemExit) as exit:
        predict.main(
            [str(rerendered / "001.png"), *(str(tmp_path / name) for name in names), "--json"]
            + ["--model", str(untrained_run.folder / "model.keras")]
        )
    assert exit.value.code == 1
    printed = json.loads(capsys.readouterr().out)
    assert [entry["file"] for entry in printed["predictions"]] == [str(rerendered / "001.png")]
    errors = {Path(entry["file"]).name: entry["error"] for entry in printed["errors"]}
    assert list(errors) == list(names)
    assert "not numbers" in errors["nan.tif"] and "not a regular file" in errors["fifo.png"]
    assert f"over {MAX_FILE_BYTES:,} bytes" in errors["huge.png"]


def test_preprocessed_images_of_files_sharing_a_name_do_not_overwrite_each_other(
    untrained_run, rerendered, mnist, tmp_path, capsys
):
    (tmp_path / "b").mkdir()
    Image.open(rerendered / "000.png").save(tmp_path / "3.png")
    Image.open(rerendered / "001.png").convert("RGB").save(tmp_path / "3.jpg")
    Image.open(rerendered / "002.png").save(tmp_path / "b" / "3.png")
    files = [str(tmp_path / name) for name in ("3.png", "3.jpg", "b/3.png")]
    seen = tmp_path / "seen"
    results = predict.main(
        [*files, "--model", str(untrained_run.folder / "model.keras"), "--save-preprocessed", str(seen)]
    )
    saved = [result["saved_as"][0] for result in results]
    assert len(set(saved)) == 3 and sorted(p.name for p in seen.iterdir()) == ["3-2.png", "3-3.png", "3.png"]
    images = [np.asarray(Image.open(path)) for path in saved]
    assert not np.array_equal(images[0], images[2])  # a/3.png and b/3.png, each its own digit
    assert np.array_equal(images[2], mnist_style_digit(Image.open(rerendered / "002.png")))


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--top", "0"], "between 1 and 10"),
        (["--top", "11"], "between 1 and 10"),
        (["--save-preprocessed", "FILE"], "is a file"),
        (["--save-preprocessed", "FILE/seen"], "cannot write there (Not a directory): name another folder"),
    ],
)
def test_flags_out_of_range_are_usage_errors(tmp_path, capsys, flags, says):
    (tmp_path / "FILE").write_text("keep me")
    flags = [str(tmp_path / flag) if flag.startswith("FILE") else flag for flag in flags]
    with pytest.raises(SystemExit) as exit:
        predict.parse_args(["digit.png", *flags])
    assert exit.value.code == 2 and says in capsys.readouterr().err
    assert (tmp_path / "FILE").read_text() == "keep me"


def test_folder_without_images_is_an_error(untrained_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        predict.main([str(tmp_path), "--model", str(untrained_run.folder / "model.keras")])
    assert exit.value.code == 1
    assert "folder holds no PNG, JPEG, BMP, GIF, WebP or TIFF files" in capsys.readouterr().err


def test_missing_model_says_to_train_first(tmp_path):
    with pytest.raises(SystemExit) as exit:
        predict.main(["digit.png", "--model", str(tmp_path / "model.keras")])
    assert "run `python train.py` first" in exit.value.code and "\n" not in exit.value.code


@pytest.mark.slow
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


def test_below_the_calibrated_confidence_a_reading_is_not_sure_or_not_a_digit(
    untrained_run, rerendered, tmp_path, capsys
):
    image = str(rerendered / "000.png")
    [reading] = predict.main([image, "--top", "2", "--model", str(untrained_run.folder / "model.keras")])
    first, second = (item["probability"] for item in reading["top"])
    between = first + second / 2  # above the likeliest digit, below it and the next together
    said = {}
    capsys.readouterr()  # the line of that first reading
    for threshold in (between, 1.0):  # 1.0: nothing is that sure, and no two digits either
        model = model_with_threshold(untrained_run, tmp_path, threshold)
        predict.main([image, "--top", "1", "--model", str(model)])
        said[threshold] = capsys.readouterr().out
    two = r"\d \d+\.\d%"
    assert re.fullmatch(rf".*000\.png: not sure: {two} or {two}\n", said[between])
    assert re.fullmatch(rf".*000\.png: not a digit; likeliest {two}, then {two}\n", said[1.0])
    predict.main([image, "--json", "--model", str(model)])
    as_json = json.loads(capsys.readouterr().out)
    assert as_json["predictions"][0]["not_sure"] and as_json["predictions"][0]["not_a_digit"]


def test_a_model_trained_without_a_validation_split_reads_and_says_it_is_never_unsure(
    untrained_run, rerendered, tmp_path, capsys
):
    shutil.copy(untrained_run.folder / "model.keras", tmp_path / "model.keras")
    # train.py --val-split 0 records no calibration: there was nothing to calibrate on.
    (tmp_path / "run.json").write_text(json.dumps({**untrained_run.record, "calibration": None}))
    predict.main([str(rerendered / "000.png"), "--model", str(tmp_path / "model.keras")])
    printed = capsys.readouterr()
    assert "no calibrated threshold (its run.json), so no reading is reported as not sure" in printed.err
    assert "not sure" not in printed.out


@pytest.mark.slow
def test_what_the_model_is_sure_of_it_reads_right_as_calibrated(trained_run, rerendered, mnist):
    results = predict.main([str(rerendered), "--model", str(trained_run.folder / "model.keras")])
    sure = [result for result in results if not result["not_sure"]]
    right = [result["digit"] == mnist.y_test[int(Path(result["file"]).stem)] for result in sure]
    calibration = trained_run.record["calibration"]
    # Calibrated to keep 99.5% precision on 300 validation digits; these 200 test digits are
    # rescanned (enlarged, dark on light), so more of them are flagged: this tiny model, trained
    # also on what is not a digit, is unsure of most digits (60-65% of the validation split).
    assert len(sure) >= 10 and np.mean(right) >= 0.97, (len(sure), np.mean(right))
    assert abs(1 - len(sure) / len(results) - calibration["flagged_share"]) < 0.25, calibration


def test_saved_names_never_repeat_whatever_the_files_are_called():
    names = predict.saved_names(["3.png", "3.jpg", "3-2.png", "b/3.png"], [1, 1, 1, 1], number=False)
    assert names == [["3.png"], ["3-2.png"], ["3-2-2.png"], ["3-3.png"]]
    digits = predict.saved_names(["12.png", "12_1.png", "a/12.png"], [2, 1, 2], number=True)
    flat = [name for file in digits for name in file]
    assert len(set(flat)) == len(flat) and digits[0] == ["12_0.png", "12_1.png"]


def test_an_image_that_cannot_be_saved_is_that_files_error_and_every_reading_is_printed(
    untrained_run, rerendered, tmp_path, capsys
):
    seen = tmp_path / "seen"
    (seen / "000.png").mkdir(parents=True)  # where the first file's 28x28 image would go
    files = [str(rerendered / "000.png"), str(rerendered / "001.png")]
    with pytest.raises(SystemExit) as exit_info:
        predict.main(
            [
                *files,
                "--json",
                "--model",
                str(untrained_run.folder / "model.keras"),
                "--save-preprocessed",
                str(seen),
            ]
        )
    printed = json.loads(capsys.readouterr().out)
    assert exit_info.value.code == 1
    assert [entry["file"] for entry in printed["predictions"]] == files  # both read
    assert "saved_as" not in printed["predictions"][0] and printed["predictions"][1]["saved_as"]
    [failure] = printed["errors"]
    assert failure["file"] == files[0] and "its 28x28 image is not saved" in failure["error"]


def test_number_text_gives_each_digits_box_and_reading_and_names_the_unsure(
    untrained_run, written_number, tmp_path, capsys
):
    for threshold, first_line, each in [
        (0.0, r"721\.png: \d{3}", r"\d \d+\.\d%"),  # sure of everything
        (1.0, r"721\.png: \d{3} \(not sure of digit 1, 2, 3 of 3\)", r"not a digit; likeliest .*"),
    ]:
        (tmp_path / str(threshold)).mkdir()
        model = model_with_threshold(untrained_run, tmp_path / str(threshold), threshold)
        [result] = predict.main([str(written_number), "--number", "--model", str(model)])
        lines = capsys.readouterr().out.splitlines()
        assert re.fullmatch(rf".*{first_line}", lines[0]), lines[0]
        assert len(lines) == 4
        for place, (line, digit) in enumerate(zip(lines[1:], result["digits"], strict=True), start=1):
            assert re.fullmatch(rf"  {place}\. {each}  box \(\d+, \d+, \d+, \d+\)", line), line
            assert line.endswith(f"box {tuple(digit['box'])}")


def test_a_wide_image_that_is_not_a_digit_suggests_reading_it_as_a_number(
    untrained_run, written_number, rerendered, tmp_path, capsys
):
    model = str(model_with_threshold(untrained_run, tmp_path, 1.0))  # nothing is a digit at 1.0
    wide, tall = predict.main([str(written_number), str(rerendered / "000.png"), "--model", model])
    assert wide["not_a_digit"] and tall["not_a_digit"]
    assert "--number" in wide["hint"] and "hint" not in tall
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].endswith("(much wider than tall: if it is a number, add --number)")
    assert "--number" not in printed[1]


@pytest.mark.slow
def test_a_phone_photo_stored_on_its_side_reads_as_the_upright_photo(trained_run, mnist, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: turn the stored pixels a quarter clockwise to show them
    for index in range(20):
        upright = Image.fromarray(255 - mnist.x_test[index]).resize((300, 400), Image.Resampling.BICUBIC)
        upright.save(tmp_path / f"{index:02d}-upright.jpg")
        upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / f"{index:02d}-stored.jpg", exif=exif)
    results = predict.main([str(tmp_path), "--json", "--model", str(trained_run.folder / "model.keras")])
    digits = [result["digit"] for result in results]
    assert digits[0::2] == digits[1::2]  # each photo on its side as its upright copy


def test_json_piped_into_a_reader_that_stops_ends_quietly(rerendered, tmp_path):
    model = even_odds(tmp_path / "model.onnx")  # an .onnx file: predict.py starts without TensorFlow
    with subprocess.Popen(
        [sys.executable, "predict.py", str(rerendered), "--json", "--model", str(model)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as reading:
        reading.stdout.close()  # as `| head -0`: the pipe is gone before the first line
        stderr = reading.stderr.read()
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr


def test_from_the_command_line_a_missing_file_is_one_error_line_and_exit_1(tmp_path):
    model = even_odds(tmp_path / "model.onnx")  # an .onnx file: predict.py starts without TensorFlow
    missing = tmp_path / "missing.png"
    result = run_script("predict.py", str(missing), "--model", str(model))
    assert result.returncode == 1 and result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == f"error: {missing}: cannot read it (No such file or directory)"


def test_a_file_name_holding_a_newline_cannot_forge_a_reading_line(
    untrained_run, rerendered, tmp_path, capsys
):
    forged = tmp_path / "x.png\nseven.png: 3 (99.9%)\ny.png"
    shutil.copy(rerendered / "000.png", forged)
    missing = tmp_path / "gone\rerror: none.png"
    with pytest.raises(SystemExit):  # the missing file fails
        predict.main([str(forged), str(missing), "--model", str(untrained_run.folder / "model.keras")])
    printed = capsys.readouterr()
    [line] = printed.out.splitlines()  # one file read, one line
    assert line.startswith(f"$'{tmp_path}/x.png\\nseven.png: 3 (99.9%)\\ny.png': ")
    [error] = printed.err.splitlines()[-1:]
    assert "\r" not in printed.err and error.startswith(f"error: $'{tmp_path}/gone\\rerror: none.png': ")


@pytest.mark.parametrize("threshold", ["1e-400", "-0.0", "0.1"])
def test_a_threshold_that_would_flag_no_reading_gets_the_note_of_a_missing_one(
    untrained_run, rerendered, tmp_path, capsys, threshold
):
    model = model_with_threshold(untrained_run, tmp_path, "THRESHOLD")
    record = tmp_path / "run.json"
    record.write_text(record.read_text().replace('"THRESHOLD"', threshold))  # 1e-400 reads as 0.0
    predict.main([str(rerendered / "000.png"), "--model", str(model)])
    assert "no calibrated threshold (its run.json)" in capsys.readouterr().err


def test_an_onnx_answer_that_is_not_numbers_is_that_files_error_never_a_sure_digit(
    rerendered, tmp_path, capsys
):
    model = nan_past_ink(tmp_path / "model.onnx", most_ink=300.0)  # MNIST's digits hold 40-150
    blob = tmp_path / "blob.png"
    page = np.full((200, 200), 255, np.uint8)
    page[50:150, 50:150] = 0  # a filled square: 400 of ink in 28x28, NaN for this model
    Image.fromarray(page).save(blob)
    for flags in ([], ["--number"]):
        with pytest.raises(SystemExit) as exit_info:
            predict.main([str(rerendered / "000.png"), str(blob), "--model", str(model), "--json", *flags])
        assert exit_info.value.code == 1
        printed = json.loads(capsys.readouterr().out, parse_constant=pytest.fail)  # no NaN in it
        assert [result["file"] for result in printed["predictions"]] == [str(rerendered / "000.png")]
        [error] = printed["errors"]
        assert error["file"] == str(blob) and "its answer is not numbers (NaN or infinite)" in error["error"]
