import asyncio
import base64
import contextlib
import io
import json
import re
import shutil
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from fastapi import Request
from fastapi.testclient import TestClient
from PIL import Image

from conftest import blobs, digit_row, encoded, spelling, wait_until
from local_server import running_server
from model import ModelConfig, build_model
from reader.classifier import LineModel, keras_classifier
from reader.deadline import ReadingAbandoned, ReadingTimeout
from reader.guards import MAX_UPLOAD_BYTES, delivering
from serve import DECODES_AT_ONCE, STARTUP_FAILURE, answer, app_of, create_app, parse_args
from serve import main as serve_main

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def client(trained_run):
    with TestClient(create_app(keras_classifier(trained_run.model))) as client:
        yield client


def truncated_png():
    noise = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    return encoded(Image.fromarray(noise))[:2000]


def nan_tiff():
    pixels = np.full((64, 64), 255.0, dtype=np.float32)
    pixels[10, 10] = np.nan
    return encoded(Image.fromarray(pixels, mode="F"), "TIFF")


def png_of(digit_uint8, size=140):
    """Dark on light, enlarged to `size` square (None: five times, keeping the shape)."""
    height, width = digit_uint8.shape
    return encoded(
        Image.fromarray(255 - digit_uint8).resize((size, size) if size else (width * 5, height * 5))
    )


def test_real_digit_is_read_from_a_raw_png_body(client, mnist):
    response = client.post(
        "/api/predict", content=png_of(mnist.x_test[0]), headers={"content-type": "image/png"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["digit"] == mnist.y_test[0] == int(np.argmax(body["probabilities"]))
    assert sum(body["probabilities"]) == pytest.approx(1, abs=1e-4)
    seen = Image.open(io.BytesIO(base64.b64decode(body["preprocessed"].split(",", 1)[1])))
    assert seen.size == (28, 28)
    assert body["not_sure"] is False and body["top"][0] == {
        "digit": body["digit"],
        "probability": body["confidence"],
    }


def test_below_the_threshold_the_answer_is_not_sure_with_two_digits(trained_run, mnist):
    with TestClient(create_app(keras_classifier(trained_run.model, threshold=1.0))) as unsure:
        body = unsure.post("/api/predict", content=png_of(mnist.x_test[0])).json()
        number = unsure.post("/api/number", content=png_of(digit_row(mnist.x_test[:3]), size=None)).json()
        assert unsure.get("/api/model").json()["not_sure_below"] == 1.0
    assert number["not_sure"] and [item["not_a_digit"] for item in number["digits"]] == [True] * 3
    assert body["not_sure"] is True and len(body["top"]) >= 2 and body["digit"] == body["top"][0]["digit"]
    # Two digits together are never as likely as all ten: below a threshold of 100%, nothing is a digit.
    assert body["not_a_digit"] is True


def test_a_number_is_read_digit_by_digit(client, mnist):
    row = digit_row(mnist.x_test[:4])
    response = client.post("/api/number", files={"file": ("n.png", png_of(row, size=None), "image/png")})
    assert response.status_code == 200
    body = response.json()
    singles = [
        client.post("/api/predict", content=png_of(digit)).json()["digit"] for digit in mnist.x_test[:4]
    ]
    assert body["number"] == "".join(map(str, singles)) and len(body["digits"]) == 4
    assert all(item["preprocessed"].startswith("data:image/png;base64,") for item in body["digits"])
    assert body["reader"] == "division"
    assert client.post("/api/number", content=b"not an image").status_code == 400


def test_with_a_line_model_numbers_are_read_as_whole_lines_by_it(trained_run):
    line = LineModel("spelling", spelling([4, 0, 2]), 0.5)
    with TestClient(create_app(keras_classifier(trained_run.model), line_model=line)) as client:
        body = client.post("/api/number", content=encoded(blobs(3)[0])).json()
        assert body["number"] == "402" and body["reader"] == "line" and not body["not_sure"]
        assert all(item["preprocessed"].startswith("data:image/png;base64,") for item in body["digits"])
        assert client.get("/api/model").json()["line_model"] == {"name": "spelling", "not_sure_below": 0.5}


def test_a_classifier_given_as_the_line_model_stops_the_server_with_one_line(trained_run):
    classifier = str(trained_run.folder / "model.keras")
    with pytest.raises(SystemExit, match="is a digit classifier, not a line model"):
        serve_main(["--model", classifier, "--line-model", classifier, "--port", "0"])


def test_multipart_upload_gives_the_same_answer(client, mnist):
    png = png_of(mnist.x_test[1])
    raw = client.post("/api/predict", content=png, headers={"content-type": "image/png"}).json()
    form = client.post("/api/predict", files={"file": ("digit.png", png, "image/png")}).json()
    assert form == raw


@pytest.mark.parametrize(
    "request_args, status, detail",
    [
        ({"content": b""}, 400, "empty"),
        ({"content": truncated_png()}, 400, "damaged"),
        ({"content": b"plain text"}, 400, "not an image"),
        ({"content": nan_tiff()}, 400, "not numbers"),
        ({"files": {"other": ("a.txt", b"hi", "text/plain")}}, 400, "field `file`"),
        (
            {"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data; boundary=x"}},
            400,
            "field `file`",
        ),
        ({"content": b"\0" * (MAX_UPLOAD_BYTES + 1)}, 413, "limit is 1,000,000"),
    ],
    ids=[
        "empty",
        "truncated-png",
        "text",
        "nan-pixel",
        "form-without-file",
        "malformed-multipart",
        "oversized",
    ],
)
def test_bad_uploads_get_4xx_with_a_json_reason(client, request_args, status, detail):
    response = client.post("/api/predict", **request_args)
    assert response.status_code == status
    assert detail in response.json()["detail"]
    assert client.get("/healthz").json()["status"] == "ok"


def test_page_static_files_and_api_docs_are_served(client):
    assert "<canvas" in client.get("/").text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/../serve.py").status_code == 404
    schema = client.get("/openapi.json").json()
    assert "softmax" in schema["paths"]["/api/predict"]["post"]["description"]
    for docs in ("/docs", "/redoc"):  # their scripts come from this server, not a CDN
        html = client.get(docs).text
        scripts = re.findall(r'src="([^"]+)"', html)
        assert scripts and all(script.startswith("/") for script in scripts), scripts
        assert all(client.get(script).status_code == 200 for script in scripts)


@pytest.mark.parametrize("route", ["/api/predict", "/api/number"])
def test_a_reading_past_its_deadline_is_a_503_to_retry_and_frees_its_slot(trained_run, mnist, route):
    app = create_app(keras_classifier(trained_run.model), reading_seconds=1e-9)  # past at once
    with TestClient(app) as client:
        response = client.post(route, content=png_of(digit_row(mnist.x_test[:3]), size=None))
        assert response.status_code == 503 and response.headers["retry-after"].isdigit()
        assert "reading it took over" in response.json()["detail"]
        assert client.get("/readyz").json()["free_slots"] == DECODES_AT_ONCE


def test_readiness_says_busy_while_every_slot_is_taken_and_as_many_readings_wait(trained_run):
    app = create_app(keras_classifier(trained_run.model))
    slots = app.state.decodes
    with TestClient(app) as client:
        holders = [object() for _ in range(2 * DECODES_AT_ONCE)]
        for holder in holders[:DECODES_AT_ONCE]:  # on the app's own event loop, as a reading would
            client.portal.call(slots.acquire_on_behalf_of_nowait, holder)
        at_work = client.get("/readyz")
        waiting = [
            client.portal.start_task_soon(slots.acquire_on_behalf_of, holder)
            for holder in holders[DECODES_AT_ONCE:]
        ]
        wait_until(lambda: slots.statistics().tasks_waiting == DECODES_AT_ONCE, 10, "the readings to queue")
        busy = client.get("/readyz")
        for holder, queued in zip(holders, [None] * DECODES_AT_ONCE + waiting, strict=True):
            if queued is not None:
                queued.result(timeout=10)  # it gets a slot once one is released
            client.portal.call(slots.release_on_behalf_of, holder)
        assert at_work.status_code == 200 and at_work.json()["free_slots"] == 0
        assert busy.status_code == 503 and busy.json() == {"status": "busy", "free_slots": 0, "waiting": 2}
        assert client.get("/readyz").json() == {
            "status": "ready",
            "free_slots": DECODES_AT_ONCE,
            "waiting": 0,
        }
        assert client.get("/healthz").status_code == 200  # alive all along


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/healthz", "/docs", "/api/predict"])
def test_every_answer_forbids_sniffing_framing_and_other_sites_scripts(client, path):
    response = client.post(path, content=b"x") if path.startswith("/api") else client.get(path)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert ("unsafe-inline" in policy) == (path == "/docs")


@pytest.mark.parametrize(
    "activation, says, never_says",
    [("sigmoid", "10 sigmoid units", "is that softmax"), ("softmax", "is that softmax", "sigmoid")],
)
def test_probabilities_note_is_true_for_the_model_served(activation, says, never_says):
    network = build_model(ModelConfig(hidden=(8,), output_activation=activation))
    with TestClient(create_app(keras_classifier(network))) as client:
        note = client.get("/api/model").json()["probabilities"]
        description = client.get("/openapi.json").json()["paths"]["/api/predict"]["post"]["description"]
    assert says in note and never_says not in note and note in description


def test_server_binds_loopback_unless_told_otherwise():
    assert parse_args([]).host == "127.0.0.1"


def test_a_worker_that_cannot_load_the_model_stops_the_server_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        app_of(tmp_path / "model.keras")  # deleted after the parent process loaded it
    assert stopped.value.code == STARTUP_FAILURE  # uvicorn then stops every worker, restarting none
    assert capsys.readouterr().err.strip() == (
        f"error: no trained model at {tmp_path / 'model.keras'}: run `python train.py` first"
    )


def test_fewer_than_one_worker_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stopped:
        parse_args(["--workers", "0"])
    assert stopped.value.code == 2 and "--workers 0: run at least 1" in capsys.readouterr().err


@pytest.fixture(scope="module")
def live_server(trained_run):
    with running_server(trained_run.folder / "model.keras") as url:
        yield url


@contextlib.contextmanager
def browser_page(url):
    """Debian's Chromium, headless, on the page at `url` (the test skips where there is none)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 900, "height": 700})
        page.goto(url)
        yield page
        browser.close()


def draw(page, *strokes):
    """Mouse strokes on the pad, each a list of points as fractions of its width and height."""
    box = page.locator("#pad").bounding_box()

    def move(x, y):
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])

    for stroke in strokes:
        move(*stroke[0])
        page.mouse.down()
        for (x0, y0), (x1, y1) in zip(stroke[:-1], stroke[1:], strict=True):
            for step in range(1, 11):  # in small steps, as a hand moves
                move(x0 + (x1 - x0) * step / 10, y0 + (y1 - y0) * step / 10)
        page.mouse.up()
    page.wait_for_selector("body[data-state='ready']", state="attached")


def shown_for(answer: dict) -> str:
    """What the page shows for a digit's reading: the digit, "?" when not sure, a cross when it is
    not a digit."""
    return "\u2715" if answer["not_a_digit"] else "?" if answer["not_sure"] else str(answer["digit"])


def number_shown(answer: dict) -> str:
    """What the page shows for a number's reading: its digits, a cross for each part not a digit."""
    return "".join("\u2715" if item["not_a_digit"] else str(item["digit"]) for item in answer["digits"])


def api_answer(url, endpoint, page):
    canvas_png = base64.b64decode(page.evaluate("pad.toDataURL('image/png')").split(",", 1)[1])
    request = urllib.request.Request(url + endpoint, data=canvas_png, headers={"Content-Type": "image/png"})
    return json.load(urllib.request.urlopen(request))


@pytest.mark.browser
def test_drawing_in_a_real_browser_shows_what_the_api_returns(live_server, tmp_path):
    with browser_page(live_server) as page:
        draw(page, [(0.25, 0.2), (0.75, 0.2), (0.4, 0.9)])  # a 7: the bar, then the diagonal
        shown_digit = page.locator("#digit").text_content()
        shown = [
            float(value)
            for value in page.locator("#bars li").evaluate_all(
                "rows => rows.map(row => row.dataset.probability)"
            )
        ]
        drawn = page.locator("#bars li .bar").evaluate_all(
            "bars => bars.map(bar => bar.firstElementChild.getBoundingClientRect().width"
            " / bar.getBoundingClientRect().width)"
        )
        answer = api_answer(live_server, "/api/predict", page)
        note = page.locator("#note").text_content()
        page.screenshot(path=str(tmp_path / "web_page.png"))
    assert shown_digit == shown_for(answer)
    assert shown == pytest.approx(answer["probabilities"], abs=1e-6)
    assert drawn == pytest.approx(answer["probabilities"], abs=0.02)  # each bar as long as its share
    assert note == json.load(urllib.request.urlopen(live_server + "/api/model"))["probabilities"]
    assert (tmp_path / "web_page.png").stat().st_size > 10_000


@pytest.mark.browser
def test_number_mode_in_a_real_browser_reads_three_digits_side_by_side(live_server, tmp_path):
    with browser_page(live_server) as page:
        page.check("input[value=number]")
        one = [(0.12, 0.15), (0.12, 0.85)]
        seven = [(0.35, 0.15), (0.55, 0.15), (0.42, 0.85)]
        zero = [(0.8, 0.15), (0.72, 0.3), (0.72, 0.7), (0.8, 0.85), (0.88, 0.7), (0.88, 0.3), (0.8, 0.15)]
        draw(page, one, seven, zero)
        shown = page.locator("#digit").text_content()
        pieces = page.locator("#pieces li").count()
        answer = api_answer(live_server, "/api/number", page)
        page.screenshot(path=str(tmp_path / "number_mode.png"))
    assert len(answer["number"]) == 3 and pieces == 3
    assert shown == number_shown(answer)


@pytest.fixture(scope="module")
def never_sure_server(trained_run, tmp_path_factory):
    """The tiny run's model served with a threshold of 100%: no reading is sure, and none is a digit."""
    folder = tmp_path_factory.mktemp("never_sure")
    shutil.copy(trained_run.folder / "model.keras", folder)
    record = json.loads((trained_run.folder / "run.json").read_text())
    record["calibration"]["threshold"] = 1.0
    (folder / "run.json").write_text(json.dumps(record))
    with running_server(folder / "model.keras") as url:
        yield url


@pytest.mark.browser
def test_the_page_says_not_a_digit_plainly_with_the_likeliest_digits(never_sure_server, tmp_path):
    with browser_page(never_sure_server) as page:
        draw(page, [(0.2, 0.2), (0.8, 0.8)], [(0.8, 0.2), (0.2, 0.8)])  # a cross
        shown = page.locator("#digit").text_content()
        said = page.locator("#confidence").text_content()
        answer = api_answer(never_sure_server, "/api/predict", page)
        page.check("input[value=number]")  # a new, empty pad
        draw(page, [(0.1, 0.2), (0.3, 0.8)], [(0.3, 0.2), (0.1, 0.8)])
        pieces = page.locator("#pieces li b").all_text_contents()
        number, number_said = (
            page.locator("#digit").text_content(),
            page.locator("#confidence").text_content(),
        )
        page.screenshot(path=str(tmp_path / "not_a_digit.png"))
    first, second = answer["top"][:2]
    assert answer["not_a_digit"] and shown == "\u2715"
    assert said == (
        f"not a digit (likeliest {first['digit']} ({100 * first['probability']:.0f}%), "
        f"{second['digit']} ({100 * second['probability']:.0f}%))"
    )
    assert pieces and all(piece == "\u2715" for piece in pieces)  # each part of the number too
    assert number == "\u2715" * len(pieces) and number_said.startswith(f"not a digit: {len(pieces)} of")


def photo_of(digits, path):
    """MNIST digits side by side, dark on grey paper, enlarged four times: a photo's PNG at `path`."""
    row = digit_row(digits)
    paper = (200 - row * 0.75).astype(np.uint8)
    Image.fromarray(paper).resize((row.shape[1] * 4, row.shape[0] * 4), Image.Resampling.BICUBIC).save(path)
    return path


@pytest.mark.browser
def test_a_photo_uploaded_in_number_mode_shows_its_number_and_a_box_round_each_digit(
    live_server, mnist, tmp_path
):
    photo = photo_of(mnist.x_test[:4], tmp_path / "photo.png")
    answer = api_answer_for(live_server, "/api/number", photo)
    width, height = Image.open(photo).size
    with browser_page(live_server) as page:
        unread = page.locator("#seen").evaluate("image => getComputedStyle(image).visibility")
        page.check("input[value=number]")
        page.set_input_files("#upload", str(photo))
        page.wait_for_selector("body[data-state='ready']", state="attached")
        shown, boxed = (
            page.locator("#digit").text_content(),
            page.locator("#boxes").get_attribute("data-count"),
        )
        edges = [
            page.evaluate(BOX_EDGE, {"box": item["box"], "width": width, "height": height})
            for item in answer["digits"]
        ]
        page.screenshot(path=str(tmp_path / "photo_number.png"))
    assert unread == "hidden"  # no broken-image mark before the first reading
    assert shown == number_shown(answer) and int(boxed) == len(answer["digits"]) == 4
    assert all(alpha == 255 for *_, alpha in edges)  # a box drawn round each digit as read


# The overlay's pixel on the middle of a box's left edge (the box in the photo's pixels), where the
# page places the photo on the pad: fitted and centred.
BOX_EDGE = """({box, width, height}) => {
    const pad = document.getElementById("pad");
    const scale = Math.min(pad.width / width, pad.height / height);
    const x = (pad.width - width * scale) / 2 + box[0] * scale - 4;
    const y = (pad.height - height * scale) / 2 + (box[1] + box[3]) / 2 * scale;
    const overlay = document.getElementById("boxes").getContext("2d");
    return Array.from(overlay.getImageData(Math.round(x), Math.round(y), 1, 1).data);
}"""


def api_answer_for(url, endpoint, path):
    request = urllib.request.Request(
        url + endpoint, data=path.read_bytes(), headers={"Content-Type": "image/png"}
    )
    return json.load(urllib.request.urlopen(request))


@pytest.mark.browser
def test_a_photo_uploaded_in_digit_mode_is_read_as_the_api_reads_it(live_server, mnist, tmp_path):
    photo = photo_of(mnist.x_test[:1], tmp_path / "seven.png")
    with browser_page(live_server) as page:
        page.set_input_files("#upload", str(photo))
        page.wait_for_selector("body[data-state='ready']", state="attached")
        shown = page.locator("#digit").text_content()
        seen = page.locator("#seen").evaluate("image => getComputedStyle(image).visibility")
    answer = api_answer_for(live_server, "/api/predict", photo)
    assert shown == shown_for(answer) and seen == "visible"


@pytest.mark.browser
def test_api_docs_render_in_a_real_browser_offline_under_the_security_policy(live_server, tmp_path):
    with browser_page(live_server + "/docs") as page:
        refused = []
        page.on("console", lambda message: refused.append(message.text) if message.type == "error" else None)
        page.context.route(
            "**/*",
            lambda route: route.continue_() if route.request.url.startswith(live_server) else route.abort(),
        )
        page.reload()
        page.wait_for_selector("[data-path='/api/predict']", timeout=20_000)
        page.screenshot(path=tmp_path / "docs.png")
    assert not refused, refused


def checking_until_stopped(model, raw, deadline):
    """A reading that would go on until its deadline, checking it as the reader's loops do."""
    while True:
        deadline.check()
        time.sleep(0.01)


@pytest.mark.parametrize("client_stays", [False, True], ids=["client-gone", "client-waiting"])
def test_a_reading_stops_once_its_client_has_gone(trained_run, client_stays):
    app = create_app(keras_classifier(trained_run.model), reading_seconds=1)

    async def receive():  # past the body: the client leaving (unless it stays)
        if client_stays:
            await asyncio.sleep(60)
        return {"type": "http.disconnect"}

    # As GuardedRequests hands a request to the app: its body whole, then the connection's own receive.
    scope = {"type": "http", "method": "POST", "headers": [], "app": app}
    request = Request(scope, delivering(b"an image", receive))
    stopped = ReadingTimeout if client_stays else ReadingAbandoned
    with pytest.raises(ReadingTimeout) as raised:
        asyncio.run(answer(checking_until_stopped, app.state.classifier, request, None))
    assert type(raised.value) is stopped
