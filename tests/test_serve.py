import asyncio
import base64
import io
import re
import time

import numpy as np
import pytest
from fastapi import Request
from fastapi.testclient import TestClient
from PIL import Image
from uvicorn.main import STARTUP_FAILURE

from conftest import blobs, digit_row, encoded, spelling, wait_until
from hostile_files import nan_past_ink
from model import ModelConfig, build_model
from reader.classifier import LineModel, keras_classifier, load_classifier
from reader.deadline import ReadingAbandoned, ReadingTimeout
from serve import main as serve_main
from serve import parse_args
from server.app import DECODES_AT_ONCE, answer, app_of, create_app
from server.guards import MAX_UPLOAD_BYTES, delivering


@pytest.fixture(scope="module")
def client(untrained_run):
    """The API of a model that reads, not one that reads right: for what holds whatever it answers."""
    with TestClient(create_app(keras_classifier(untrained_run.model))) as client:
        yield client


@pytest.fixture(scope="module")
def trained_client(trained_run):
    """The API of the tiny run's model: for answers that only a model that reads right gives."""
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
    assert body["digit"] == int(np.argmax(body["probabilities"]))
    assert sum(body["probabilities"]) == pytest.approx(1, abs=1e-4)
    seen = Image.open(io.BytesIO(base64.b64decode(body["preprocessed"].split(",", 1)[1])))
    assert seen.size == (28, 28)
    assert body["not_sure"] is False and body["top"][0] == {
        "digit": body["digit"],
        "probability": body["confidence"],
    }


@pytest.mark.slow
def test_a_trained_model_reads_a_real_digit_right(trained_client, mnist):
    body = trained_client.post("/api/predict", content=png_of(mnist.x_test[0])).json()
    assert body["digit"] == mnist.y_test[0]


def test_below_the_threshold_the_answer_is_not_sure_with_two_digits(untrained_run, mnist):
    with TestClient(create_app(keras_classifier(untrained_run.model, threshold=1.0))) as unsure:
        body = unsure.post("/api/predict", content=png_of(mnist.x_test[0])).json()
        number = unsure.post("/api/number", content=png_of(digit_row(mnist.x_test[:3]), size=None)).json()
        assert unsure.get("/api/model").json()["not_sure_below"] == 1.0
    assert number["not_sure"] and [item["not_a_digit"] for item in number["digits"]] == [True] * 3
    assert body["not_sure"] is True and len(body["top"]) >= 2 and body["digit"] == body["top"][0]["digit"]
    # Two digits together are never as likely as all ten: below a threshold of 100%, nothing is a digit.
    assert body["not_a_digit"] is True


@pytest.mark.slow  # an untrained model reads every digit alike: the order would go unchecked
def test_a_number_is_read_digit_by_digit(trained_client, mnist):
    row = digit_row(mnist.x_test[:4])
    response = trained_client.post(
        "/api/number", files={"file": ("n.png", png_of(row, size=None), "image/png")}
    )
    assert response.status_code == 200
    body = response.json()
    singles = [
        trained_client.post("/api/predict", content=png_of(digit)).json()["digit"]
        for digit in mnist.x_test[:4]
    ]
    assert body["number"] == "".join(map(str, singles)) and len(body["digits"]) == 4
    assert all(item["preprocessed"].startswith("data:image/png;base64,") for item in body["digits"])
    assert body["reader"] == "division"
    assert trained_client.post("/api/number", content=b"not an image").status_code == 400


def test_with_a_line_model_numbers_are_read_as_whole_lines_by_it(untrained_run):
    line = LineModel("spelling", spelling([4, 0, 2]), 0.5)
    with TestClient(create_app(keras_classifier(untrained_run.model), line_model=line)) as client:
        body = client.post("/api/number", content=encoded(blobs(3)[0])).json()
        assert body["number"] == "402" and body["reader"] == "line" and not body["not_sure"]
        assert all(item["preprocessed"].startswith("data:image/png;base64,") for item in body["digits"])
        assert client.get("/api/model").json()["line_model"] == {"name": "spelling", "not_sure_below": 0.5}


def test_a_classifier_given_as_the_line_model_stops_the_server_with_one_line(untrained_run):
    classifier = str(untrained_run.folder / "model.keras")
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
        (
            {"content": b"\0" * (MAX_UPLOAD_BYTES + 1)},
            413,
            "limit is 1,000,000: shrink a photo to at most 1,600 px",
        ),
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


@pytest.mark.parametrize("route", ["/api/predict", "/api/number"])
def test_an_onnx_answer_that_is_not_numbers_is_a_500_with_its_reason_never_a_sure_digit(
    mnist, tmp_path, route
):
    model = load_classifier(nan_past_ink(tmp_path / "model.onnx", most_ink=300.0))  # digits hold 40-150
    page = np.full((200, 200), 255, np.uint8)
    page[50:150, 50:150] = 0  # a filled square: 400 of ink in 28x28, NaN for this model
    with TestClient(create_app(model), raise_server_exceptions=False) as nan_client:
        assert nan_client.post(route, content=png_of(mnist.x_test[0])).status_code == 200
        response = nan_client.post(route, content=encoded(Image.fromarray(page)))
        assert response.status_code == 500 and "x-frame-options" in response.headers
        assert "its answer is not numbers (NaN or infinite)" in response.json()["detail"]


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
def test_a_reading_past_its_deadline_is_a_503_to_retry_and_frees_its_slot(untrained_run, mnist, route):
    app = create_app(keras_classifier(untrained_run.model), reading_seconds=1e-9)  # past at once
    with TestClient(app) as client:
        response = client.post(route, content=png_of(digit_row(mnist.x_test[:3]), size=None))
        assert response.status_code == 503 and response.headers["retry-after"].isdigit()
        assert "reading it took over" in response.json()["detail"]
        assert client.get("/readyz").json()["free_slots"] == DECODES_AT_ONCE


def test_readiness_says_busy_while_every_slot_is_taken_and_as_many_readings_wait(untrained_run):
    app = create_app(keras_classifier(untrained_run.model))
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


@pytest.mark.parametrize("count", ["0", "65"])
def test_a_client_connection_bound_past_the_servers_is_a_usage_error(capsys, count):
    with pytest.raises(SystemExit) as stopped:
        parse_args(["--client-connections", count])
    assert (
        stopped.value.code == 2 and f"--client-connections {count}: allow 1 to 64" in capsys.readouterr().err
    )


def checking_until_stopped(model, raw, deadline):
    """A reading that would go on until its deadline, checking it as the reader's loops do."""
    while True:
        deadline.check()
        time.sleep(0.01)


@pytest.mark.parametrize("client_stays", [False, True], ids=["client-gone", "client-waiting"])
def test_a_reading_stops_once_its_client_has_gone(untrained_run, client_stays):
    app = create_app(keras_classifier(untrained_run.model), reading_seconds=1)

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


def test_with_a_keras_model_the_page_reads_through_the_api_and_its_files_are_at_the_root(client):
    config = client.get("/config.json").json()
    assert config["digit_model"] is None and config["api"] is True and config["offline"] is False
    assert client.get("/model.onnx").status_code == 404
    assert client.get("/reader.js").status_code == client.get("/manifest.webmanifest").status_code == 200
    assert "'wasm-unsafe-eval'" in client.get("/").headers["content-security-policy"]


@pytest.mark.slow
def test_with_an_onnx_model_the_page_gets_the_model_its_threshold_and_the_runtime(exported):
    from reader.browser import RUNTIME_FILES, reader_constants, runtime_installed

    if not runtime_installed():
        pytest.skip("ONNX Runtime Web is not installed: `npm ci` in runtime/")
    onnx_file = exported[1] / "model.onnx"
    model = load_classifier(onnx_file)
    with TestClient(create_app(model, onnx_file=onnx_file)) as onnx_client:
        config = onnx_client.get("/config.json").json()
        served = onnx_client.get("/model.onnx").content
        runtime = [onnx_client.get(f"/ort/{name}").status_code for name in RUNTIME_FILES]
    assert config["digit_model"] == {"path": "model.onnx", "threshold": model.threshold, "name": model.name}
    assert config["reader"] == reader_constants() and config["api"] is True
    assert served == onnx_file.read_bytes() and runtime == [200] * len(RUNTIME_FILES)
