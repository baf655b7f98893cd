import base64
import io
import json
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from local_server import running_server
from model import ModelConfig, build_model
from serve import MAX_UPLOAD_BYTES, create_app, parse_args

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
    with TestClient(create_app(trained_run.model)) as client:
        yield client


def truncated_png():
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()[:2000]


def png_of(digit_uint8, size=140):
    buffer = io.BytesIO()
    Image.fromarray(255 - digit_uint8).resize((size, size)).save(buffer, format="PNG")
    return buffer.getvalue()


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
        ({"files": {"other": ("a.txt", b"hi", "text/plain")}}, 400, "field `file`"),
        (
            {"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data; boundary=x"}},
            400,
            "field `file`",
        ),
        ({"content": b"\0" * (MAX_UPLOAD_BYTES + 1)}, 413, "limit is 1,000,000"),
    ],
    ids=["empty", "truncated-png", "text", "form-without-file", "malformed-multipart", "oversized"],
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


@pytest.mark.parametrize(
    "activation, says, never_says",
    [("sigmoid", "10 sigmoid units", "is that softmax"), ("softmax", "is that softmax", "sigmoid")],
)
def test_probabilities_note_is_true_for_the_model_served(activation, says, never_says):
    network = build_model(ModelConfig(hidden=(8,), output_activation=activation))
    with TestClient(create_app(network)) as client:
        note = client.get("/api/model").json()["probabilities"]
        description = client.get("/openapi.json").json()["paths"]["/api/predict"]["post"]["description"]
    assert says in note and never_says not in note and note in description


def test_server_binds_loopback_unless_told_otherwise():
    assert parse_args([]).host == "127.0.0.1"


@pytest.fixture(scope="module")
def live_server(trained_run):
    with running_server(trained_run.folder / "model.keras") as url:
        yield url


def test_drawing_in_a_real_browser_shows_what_the_api_returns(live_server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 900, "height": 640})
        page.goto(live_server)
        box = page.locator("#pad").bounding_box()
        x, y = box["x"], box["y"]
        page.mouse.move(x + 70, y + 60)  # a 7: the bar, then the diagonal
        page.mouse.down()
        for step in range(1, 21):
            page.mouse.move(x + 70 + 7 * step, y + 60)
        for step in range(1, 31):
            page.mouse.move(x + 210 - 3.5 * step, y + 60 + 6.5 * step)
        page.mouse.up()
        page.wait_for_function("document.body.dataset.state === 'ready'")
        shown_digit = int(page.locator("#digit").text_content())
        shown = [
            float(value)
            for value in page.locator("#bars li").evaluate_all(
                "rows => rows.map(row => row.dataset.probability)"
            )
        ]
        canvas_png = base64.b64decode(page.evaluate("pad.toDataURL('image/png')").split(",", 1)[1])
        note = page.locator("#note").text_content()
        page.screenshot(path=str(tmp_path / "web_page.png"))
        browser.close()
    request = urllib.request.Request(
        live_server + "/api/predict", data=canvas_png, headers={"Content-Type": "image/png"}
    )
    answer = json.load(urllib.request.urlopen(request))
    assert shown_digit == answer["digit"]
    assert shown == pytest.approx(answer["probabilities"], abs=1e-6)
    assert note == json.load(urllib.request.urlopen(live_server + "/api/model"))["probabilities"]
    assert (tmp_path / "web_page.png").stat().st_size > 10_000
