"""The page export.py writes into DIR/web/: the folder itself, and the page in headless Chromium
served by `python -m http.server` alone, reading digits (and numbers, exported with a line model)
in the browser, offline, and as the Python reader reads them (the parity tests)."""

import base64
import contextlib
import json
import shutil

import keras
import pytest
from PIL import Image

import data
import export
from conftest import chromium, draw, oversized_photo, shown_for
from ground import outputs
from ground.saved_network import threshold_of
from harness.chromium import DESKTOP, PHONE
from harness.local_server import static_server
from harness.page_corpus import (
    READ_IN_BROWSER,
    READ_NUMBER_IN_BROWSER,
    answers_in,
    disagreements,
    number_corpus,
    number_disagreements,
    number_flag,
    parity_corpus,
    python_number,
    python_reading,
    refused_lines,
    said,
)
from model import LOGITS_LAYER
from reader import browser
from reader.classifier import load_classifier, load_line_model

MAX_FOLDER_BYTES = 25_000_000  # the bound on the folder a phone downloads once
CORPUS_SHARE = 0.25  # of each kind of the bench's corpora (bench/offline_page.py reads them whole)
SEVEN = [(0.25, 0.2), (0.75, 0.2), (0.4, 0.9)]  # the bar, then the diagonal
CROSS = ([(0.2, 0.2), (0.8, 0.8)], [(0.8, 0.2), (0.2, 0.8)])


@pytest.fixture(scope="module")
def web_folder(exported):
    record, folder = exported
    if "web" in record["failed"]:
        pytest.skip(f"export.py wrote no web folder here: {record['failed']['web']}")
    return folder / "web"


def test_the_web_folder_holds_the_page_the_plain_wasm_runtime_and_the_model_and_lists_them(
    web_folder, exported
):
    config = json.loads((web_folder / "config.json").read_text())
    on_disk = {str(path.relative_to(web_folder)) for path in web_folder.rglob("*") if path.is_file()}
    runtime = {path.name for path in (web_folder / browser.RUNTIME_FOLDER).iterdir()}
    size = sum((web_folder / name).stat().st_size for name in on_disk)
    assert on_disk == set(config["files"])  # the service worker caches every file, and only those
    assert set(browser.PAGE_FILES) <= on_disk and runtime == set(browser.RUNTIME_FILES)
    assert (web_folder / "model.onnx").read_bytes() == (exported[1] / "model.onnx").read_bytes()
    assert size <= MAX_FOLDER_BYTES, f"{size:,} bytes"


def test_the_page_config_holds_the_python_readers_constants_and_the_calibrated_threshold(
    web_folder, exported
):
    record, _ = exported
    config = json.loads((web_folder / "config.json").read_text())
    assert config["reader"] == browser.reader_constants()
    assert config["reader"]["digit_box"] == 20 and config["reader"]["work_side"] == 1024
    assert config["digit_model"]["threshold"] == threshold_of(record["source"]["run"]) is not None
    assert config["api"] is False and config["offline"] is True


def test_an_export_without_a_line_model_names_none_and_tells_how_to_add_one(web_folder, trained_run):
    config = json.loads((web_folder / "config.json").read_text())
    model, out = trained_run.folder / "model.keras", web_folder.parent
    assert config["line_model"] is None and not (web_folder / browser.LINE_MODEL).exists()
    assert config["messages"]["no_line_model"] == export.WITHOUT_LINE.format(model=model, out=out)
    assert (
        f"`python export.py --model {model} --out {out} --line-model " in config["messages"]["no_line_model"]
    )


def test_where_npm_is_missing_the_web_folder_is_reported_in_one_line_and_not_written(
    monkeypatch, tmp_path, capsys
):
    monkeypatch.setattr(browser, "RUNTIME_DIST", tmp_path / "not-installed")
    monkeypatch.setattr(browser.shutil, "which", lambda name: None)
    problem = export.web_folder(tmp_path, browser.PageModel(tmp_path / "model.onnx", 0.9, "tiny"))
    said = capsys.readouterr().err
    assert problem.startswith("npm is not installed") and "npm ci" in problem
    assert said == f"error: web: {problem}; not written\n" and not (tmp_path / "web").exists()


@pytest.fixture(scope="module")
def static_page(web_folder):
    with static_server(web_folder) as url:
        yield url


@contextlib.contextmanager
def exported_page(url, device=DESKTOP, init_script=None):
    """Chromium on the exported page at `url`, once it has chosen its reader: yields the page, its
    context, every URL requested, and every uncaught exception or console error."""
    with chromium() as browser:
        context = browser.new_context(**device)
        requested, problems = [], []
        context.on("request", lambda request: requested.append(request.url))
        page = context.new_page()
        page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        if init_script:
            page.add_init_script(init_script)
        page.goto(url)
        page.wait_for_selector("body[data-reader]", state="attached")
        yield page, context, requested, problems


def python_reading_of_the_pad(page, classifier) -> dict:
    """The Python reader's answer for the pad as drawn (its PNG, as the server page sends it)."""
    return python_reading(
        base64.b64decode(page.evaluate("pad.toDataURL('image/png')").split(",", 1)[1]), classifier
    )


@pytest.mark.browser
def test_the_exported_page_goes_offline_reloads_from_its_own_cache_and_reads_a_drawn_digit(
    static_page, web_folder
):
    classifier = load_classifier(web_folder.parent / "model.onnx")
    with exported_page(static_page) as (page, context, requested, problems):
        page.wait_for_function("navigator.serviceWorker.controller !== null")
        draw(page, SEVEN)
        online = page.locator("#digit").text_content()
        context.set_offline(True)
        page.reload()  # with no cache of its own, this fails: there is no network
        page.wait_for_selector("body[data-reader='browser']", state="attached")
        draw(page, SEVEN)
        offline, error = page.locator("#digit").text_content(), page.locator("#error").text_content()
        expected = shown_for(python_reading_of_the_pad(page, classifier))
        number_mode = page.locator("input[value=number]").is_disabled()
        note = page.locator("#note").text_content()
    assert error == "" and offline == online == expected
    assert number_mode and "--line-model" in note  # no line model in this export: digit mode only
    strangers = [url for url in requested if not url.startswith(static_page)]
    assert not strangers and not problems, (strangers, problems)


@pytest.fixture(scope="module")
def never_sure_page(web_folder, tmp_path_factory):
    """The exported folder with a threshold of 100%: no reading is sure, and none is a digit."""
    folder = tmp_path_factory.mktemp("never_sure") / "web"
    shutil.copytree(web_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    config["digit_model"]["threshold"] = 1.0
    (folder / "config.json").write_text(json.dumps(config))
    with static_server(folder) as url:
        yield url


@pytest.mark.browser
def test_the_exported_page_flags_a_drawn_x_as_not_a_digit(never_sure_page):
    with exported_page(never_sure_page, PHONE) as (page, _, requested, problems):
        draw(page, *CROSS)
        shown, said = page.locator("#digit").text_content(), page.locator("#confidence").text_content()
    assert shown == "\u2715" and said.startswith("not a digit; likeliest")
    assert not problems and all(url.startswith(never_sure_page) for url in requested)


@pytest.mark.browser
def test_where_webassembly_is_missing_the_page_says_so(static_page):
    with exported_page(static_page, init_script="delete window.WebAssembly;") as (page, *_, problems):
        said = page.locator("#error").text_content()
    assert "cannot run WebAssembly" in said and not problems, (said, problems)


def python_message(raw: bytes) -> str:
    """What the server page says of an image: its reader's ImageError, or "" when it reads one."""
    answer = python_reading(raw, None)
    return f"Could not read it: {answer['error']}" if "error" in answer else ""


@pytest.mark.browser
def test_bad_input_gets_the_server_pages_messages_and_no_uncaught_exception(static_page, tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("L", (300, 300), 250).save(blank)
    specks = tmp_path / "specks.png"
    pixels = Image.new("L", (300, 300), 255)
    for index in range(40):
        pixels.putpixel(((index * 53) % 290 + 5, (index * 97) % 290 + 5), 200)
    pixels.save(specks)
    files = [  # what the page must say, and the file
        (
            "cannot open it",
            {"name": "notes.png", "mimeType": "image/png", "buffer": b"shopping: milk, eggs\n"},
        ),
        ("under 30.0 MB", str(oversized_photo(tmp_path))),
        ("cannot open it", {"name": "photo.heic", "mimeType": "image/heic", "buffer": b"\0" * 2_000_000}),
        (python_message(blank.read_bytes()), str(blank)),
        (python_message(specks.read_bytes()), str(specks)),  # "" where the reader reads a digit
    ]
    said = []
    with exported_page(static_page, PHONE) as (page, _, _, problems):
        for expected, file in files:
            page.set_input_files("#upload", file)
            page.wait_for_selector("body[data-state='ready']", state="attached")
            said.append((expected, page.locator("#error").text_content()))
        draw(page, SEVEN)  # and a digit drawn after them all is read
        shown, error = page.locator("#digit").text_content(), page.locator("#error").text_content()
    assert "blank" in python_message(blank.read_bytes())
    for expected, message in said:
        assert message == "" if expected == "" else expected in message, (expected, message)
    assert shown != "–" and error == "" and not problems, problems


@pytest.mark.browser
def test_the_browser_reads_the_corpus_as_the_python_reader_does(static_page, web_folder, mnist):
    files = parity_corpus(mnist, CORPUS_SHARE)
    classifier = load_classifier(web_folder.parent / "model.onnx")
    python = {name: python_reading(raw, classifier) for name, raw in files.items()}
    with exported_page(static_page) as (page, _, _, problems):
        in_browser = answers_in(page, READ_IN_BROWSER, files)
    digits, flags = disagreements(python, in_browser)
    listed = "\n".join(f"{n}: python {python[n]}\n  browser {in_browser[n]}" for n in {*digits, *flags})
    assert len(digits) <= 0.005 * len(files) and len(flags) <= 0.01 * len(files), listed
    assert not problems, problems


# --- Number mode: the page exported with a line model. ---
CALIBRATION_NUMBERS = 50  # of the corpus, to give the untrained line model a threshold
# An untrained line model's probabilities are all near 1/12, below any threshold train.py calibrates
# (threshold_of takes none under 1/10): its logits scaled up spread them as a trained model's are,
# and read the same symbols.
SHARPER = 30


@pytest.fixture(scope="module")
def numbers(mnist):
    return number_corpus(mnist, CORPUS_SHARE)


@pytest.fixture(scope="module")
def calibrated_line_model(line_model_file, numbers, tmp_path_factory):
    """The untrained line model, sharper, beside a run record as train.py writes one, its threshold
    midway between the two middle line confidences of the corpus's first numbers: about half its
    readings are not sure, and none sits on the threshold, where float32's last digits decide."""
    folder = tmp_path_factory.mktemp("calibrated-line")
    network = keras.models.load_model(line_model_file)
    logits = network.get_layer(LOGITS_LAYER)
    logits.set_weights([SHARPER * weights for weights in logits.get_weights()])
    network.save(folder / "model.keras")
    line = load_line_model(folder / "model.keras")
    read = [python_number(raw, line) for raw in list(numbers.values())[:CALIBRATION_NUMBERS]]
    confidences = sorted(answer["confidence"] for answer in read if "confidence" in answer)
    middle = len(confidences) // 2
    threshold = (confidences[middle - 1] + confidences[middle]) / 2
    outputs.write_json(folder / "run.json", {"calibration": {"threshold": threshold}})
    return folder / "model.keras"


@pytest.fixture(scope="module")
def line_web_folder(trained_run, calibrated_line_model, tmp_path_factory):
    """export.py's folder for the tiny digit model with the line model (a .keras file): its web/."""
    out = tmp_path_factory.mktemp("export-with-line")
    model = str(trained_run.folder / "model.keras")
    export.main(["--model", model, "--out", str(out), "--line-model", str(calibrated_line_model)])
    return out / "web"


@pytest.fixture(scope="module")
def line_page(line_web_folder):
    with static_server(line_web_folder) as url:
        yield url


@pytest.mark.slow
def test_an_export_with_a_line_model_holds_its_checked_onnx_and_its_calibrated_threshold(
    line_web_folder, calibrated_line_model
):
    config = json.loads((line_web_folder / "config.json").read_text())
    line_export = line_web_folder.parent / export.LINE_FOLDER
    checks = json.loads((line_export / "export.json").read_text())["formats"]["onnx"]["checks"]
    source = load_line_model(calibrated_line_model)  # its threshold from its run.json
    assert source.threshold == threshold_of(outputs.record_of(calibrated_line_model)) is not None
    assert config["line_model"] == {
        "path": browser.LINE_MODEL,
        "threshold": source.threshold,
        "name": source.name,
    }
    assert (line_web_folder / browser.LINE_MODEL).read_bytes() == (line_export / "model.onnx").read_bytes()
    onnx = line_export / "model.onnx"  # given as --line-model itself, its record is its export.json
    assert browser.line_page_model(onnx) == browser.PageModel(onnx, source.threshold, source.name)
    assert checks["same_reading"] == checks["test_lines"] and browser.LINE_MODEL in config["files"]
    assert "no_line_model" not in config["messages"]
    line_constants = {"line_height": data.LINE_HEIGHT, "frame_width": data.FRAME_WIDTH, "blank": data.BLANK}
    assert line_constants.items() <= config["reader"].items()
    size = sum(path.stat().st_size for path in line_web_folder.rglob("*") if path.is_file())
    assert size <= MAX_FOLDER_BYTES, f"{size:,} bytes"


def python_number_of_the_pad(page, line) -> dict:
    """The Python reader's number for the pad as drawn (its PNG, as the server page sends it)."""
    return python_number(base64.b64decode(page.evaluate("pad.toDataURL('image/png')").split(",", 1)[1]), line)


ONE = [(0.1, 0.2), (0.1, 0.8)]
FOUR = ([(0.3, 0.2), (0.25, 0.6), (0.4, 0.6)], [(0.37, 0.3), (0.37, 0.85)])


@pytest.mark.browser
def test_offline_number_mode_reads_a_drawn_number_in_the_browser_as_the_python_reader_does(
    line_page, line_web_folder
):
    line = load_line_model(line_web_folder.parent / export.LINE_FOLDER / "model.onnx")
    with exported_page(line_page, PHONE) as (page, context, requested, problems):
        page.wait_for_function("navigator.serviceWorker.controller !== null")
        context.set_offline(True)
        page.reload()
        page.wait_for_selector("body[data-reader='browser']", state="attached")
        page.check("input[value=number]")
        draw(page, ONE, *FOUR)
        shown, error = page.locator("#digit").text_content(), page.locator("#error").text_content()
        boxes, pieces = page.locator("#boxes").get_attribute("data-count"), page.locator("#pieces li").count()
        expected = python_number_of_the_pad(page, line)
    if "error" in expected:  # an untrained model may read more symbols than a number holds
        assert error == f"Could not read it: {expected['error']}"
    else:
        assert (shown, error) == (expected["number"], "")
        assert int(boxes) == pieces == len(expected["digits"])  # a box round each, and what it saw
    strangers = [url for url in requested if not url.startswith(line_page)]
    assert not strangers and not problems, (strangers, problems)


@pytest.mark.browser
def test_number_mode_refuses_the_lines_the_python_reader_refuses_with_its_messages(
    line_page, line_web_folder
):
    line = load_line_model(line_web_folder.parent / export.LINE_FOLDER / "model.onnx")
    said = {}
    with exported_page(line_page) as (page, _, _, problems):
        page.check("input[value=number]")
        for name, raw in refused_lines().items():
            page.set_input_files("#upload", {"name": f"{name}.png", "mimeType": "image/png", "buffer": raw})
            page.wait_for_selector("body[data-state='ready']", state="attached")
            said[name] = (page.locator("#error").text_content(), python_number(raw, line).get("error"))
    for name, (message, python) in said.items():
        assert python and message == f"Could not read it: {python}", (name, message, python)
    assert not problems, problems


@pytest.mark.browser
def test_the_browser_reads_the_number_corpus_as_the_python_reader_does(line_page, line_web_folder, numbers):
    line = load_line_model(line_web_folder.parent / export.LINE_FOLDER / "model.onnx")
    python = {name: python_number(raw, line) for name, raw in numbers.items()}
    with exported_page(line_page) as (page, _, _, problems):
        in_browser = answers_in(page, READ_NUMBER_IN_BROWSER, numbers)
    strings, flags = number_disagreements(python, in_browser)
    listed = "\n".join(
        f"{n}: python {said(python[n])} ({number_flag(python[n])}), "
        f"browser {said(in_browser[n])} ({number_flag(in_browser[n])})"
        for n in {*strings, *flags}
    )
    assert len(strings) <= 0.005 * len(numbers) and len(flags) <= 0.01 * len(numbers), listed
    assert not problems, problems
