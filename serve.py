"""A web page to draw digits on and see what the model reads, plus the JSON API behind it.

    python serve.py                          # http://127.0.0.1:8000, artifacts/model.keras
    python serve.py --port 8080 --model artifacts/softmax/model.keras
    python serve.py --model artifacts/export/model.onnx --workers 2   # no TensorFlow; 2 processes

POST /api/predict takes one image (multipart field `file`, or the raw image as the body) and returns
the digit, whether the model is sure of it, the probabilities and the 28x28 image the model saw;
POST /api/number reads a number of up to 12 digits on one line. Interactive API docs are at /docs.
Uploads stay in memory and are never written to disk.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import io
import json
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import h11
import numpy as np
import uvicorn
from fastapi import File, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from PIL import Image
from uvicorn.main import STARTUP_FAILURE
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.supervisors import Multiprocess

from classifier import MODEL_HELP, Classifier, ModelError, load_classifier, unsure_never
from data import normalize_images
from preprocess import FORMAT_NAMES, ImageError, mnist_style_digit, read_image
from reading import read_number, reading

WEB_DIR = Path(__file__).resolve().parent / "web"
MAX_UPLOAD_BYTES = 1_000_000
UPLOAD_SECONDS = 20.0  # to receive a whole upload: 1 MB at 50 KB/s, a poor mobile link
HEADER_SECONDS = 10.0  # to receive a request's headers, from connecting or from the last answer
KEEP_ALIVE_SECONDS = 5  # an idle connection is closed after this
MAX_CONNECTIONS = 64  # open at once; past it, new requests get 503 at once
DECODES_AT_ONCE = 2  # images read at once (one per core); each may take up to ~150 MB while it is
# Every response: no content sniffing, no framing by other sites, and pages load only files of
# this server. The API docs pages start Swagger UI or ReDoc with an inline script (and ReDoc styles
# itself inline); only they may.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
PAGE_POLICY = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
DOCS_POLICY = (
    PAGE_POLICY + "; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; worker-src blob:"
)
DOCS_PATHS = ("/docs", "/redoc")
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")  # FastAPI parses these
OUTPUT_LAYERS = {
    "sigmoid": "This model's output layer is 10 sigmoid units, whose own scores are independent and "
    "do not sum to 1, so they are not shown raw.",
    "softmax": "This model's output layer is that softmax.",
}


def probabilities_note(model: Classifier) -> str:
    """What the probabilities shown for `model` are, true for its own output layer."""
    return (
        "Probabilities are the softmax of the network's output logits, the distribution that its "
        "training loss (categorical cross-entropy) optimised. "
        + OUTPUT_LAYERS.get(model.output_activation, "")
    ).strip()


async def send_error(send, status: int, detail: str) -> None:
    """Answer `status` with FastAPI's JSON error form, and close the connection: the request's
    unread remainder is not worth reading."""
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def upload_refusal(headers: dict[bytes, bytes]) -> tuple[int, str] | None:
    """Why a POST with these headers is refused before its body is read (None: it is not)."""
    length = headers.get(b"content-length")
    if length is not None and b"transfer-encoding" in headers:
        # Which of the two frames the body is where proxies and servers disagree: refuse both.
        return 400, "send Content-Length or Transfer-Encoding, not both"
    if length is None or not length.isdigit():
        return 411, "send a Content-Length header"
    if int(length) > MAX_UPLOAD_BYTES:
        return 413, f"upload is {int(length):,} bytes; the limit is {MAX_UPLOAD_BYTES:,}"
    return None


class GuardedRequests:
    """ASGI middleware in front of the app. A POST's body is received here, whole, before the app
    sees it: the bytes that arrive are counted (whatever the headers claim) and refused past
    MAX_UPLOAD_BYTES or after `upload_seconds`. Every response carries SECURITY_HEADERS."""

    def __init__(self, app, upload_seconds: float = UPLOAD_SECONDS):
        self.app = app
        self.upload_seconds = upload_seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        policy = DOCS_POLICY if scope["path"] in DOCS_PATHS else PAGE_POLICY
        headers = [*SECURITY_HEADERS, (b"content-security-policy", policy.encode())]

        async def secured_send(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        sent = dict(scope["headers"])
        if scope["method"] != "POST":
            if sent.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in sent:
                # Unread, a body would keep the connection waiting for it, past every time limit.
                return await send_error(secured_send, 400, f"only POST takes a body, not {scope['method']}")
            return await self.app(scope, receive, secured_send)
        refusal = upload_refusal(sent)
        if refusal:
            return await send_error(secured_send, *refusal)
        body = bytearray()
        try:
            async with asyncio.timeout(self.upload_seconds):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return  # the client left: nobody to answer
                    body += message.get("body", b"")
                    if len(body) > MAX_UPLOAD_BYTES:
                        return await send_error(
                            secured_send, 413, f"upload is over the limit of {MAX_UPLOAD_BYTES:,} bytes"
                        )
                    if not message.get("more_body"):
                        break
        except TimeoutError:
            detail = f"the upload took over {self.upload_seconds:g} s; send it again on a faster link"
            return await send_error(secured_send, 408, detail)
        delivered = False

        async def received():
            nonlocal delivered
            if delivered:
                return await receive()  # nothing more but a disconnect
            delivered = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, received, secured_send)


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection whose request headers have not all
    arrived `header_seconds` after it opened or after its last answer (uvicorn has no such limit,
    so a client sending headers a byte at a time could hold a connection for ever)."""

    def __init__(self, *args, header_seconds: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.header_seconds = header_seconds
        self.header_deadline: asyncio.TimerHandle | None = None

    def await_headers(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
        self.header_deadline = self.loop.call_later(self.header_seconds, self.close_if_no_headers)

    def close_if_no_headers(self) -> None:
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport):
        super().connection_made(transport)
        self.await_headers()

    def on_response_complete(self):
        super().on_response_complete()
        self.await_headers()

    def connection_lost(self, exc):
        if self.header_deadline is not None:
            self.header_deadline.cancel()
        super().connection_lost(exc)


def png_data_url(digit: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(digit).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def create_app(model: Classifier, upload_seconds: float = UPLOAD_SECONDS) -> FastAPIOffline:
    """The FastAPI app serving `model` (loaded once by the caller) and the drawing page; readings
    less confident than its threshold are "not sure"."""
    probabilities_of, threshold = model.probabilities_of, model.threshold
    note = probabilities_note(model)
    app = FastAPIOffline(  # FastAPI with its docs pages' scripts served from here, not a CDN
        title="MNIST digit recognizer",
        description="Draw or upload a handwritten digit or number; get what the model reads. " + note,
    )
    app.add_middleware(GuardedRequests, upload_seconds=upload_seconds)
    decodes = anyio.CapacityLimiter(DECODES_AT_ONCE)

    def image_of(raw: bytes) -> Image.Image:
        try:
            return read_image(raw)
        except ImageError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None

    def read_one_digit(raw: bytes) -> dict:
        try:
            digit = mnist_style_digit(image_of(raw))
        except ImageError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        row = probabilities_of(normalize_images(digit[None]))[0]
        return {
            **reading(row, threshold),
            "probabilities": [round(float(p), 6) for p in row],
            "preprocessed": png_data_url(digit),
        }

    def read_whole_number(raw: bytes) -> dict:
        try:
            number, digits = read_number(probabilities_of, image_of(raw), threshold)
        except ImageError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        for item, digit in zip(number["digits"], digits, strict=True):
            item["preprocessed"] = png_data_url(digit)
        return number

    upload = {
        "responses": {
            400: {"description": "not an image, or no digit in it"},
            413: {"description": "upload over 1 MB"},
        },
        "openapi_extra": {
            "requestBody": {
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"file": {"type": "string", "format": "binary"}},
                        }
                    },
                    "image/png": {"schema": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
    sent = f"Send a {FORMAT_NAMES} image (at most 1 MB) as multipart field `file` or as the raw body. "

    async def answer(read: Callable[[bytes], dict], request: Request, file: UploadFile | None) -> dict:
        """`read` of the uploaded image's bytes, in a thread, DECODES_AT_ONCE images at most at once."""
        if file is not None:
            raw = await file.read()
        elif request.headers.get("content-type", "").startswith(FORM_TYPES):
            raise HTTPException(status_code=400, detail="a form upload needs its image in field `file`")
        else:
            raw = await request.body()
        return await anyio.to_thread.run_sync(read, raw, limiter=decodes)

    @app.post(
        "/api/predict",
        summary="Read the digit in one image",
        description=sent + "Below the model's calibrated confidence, `not_sure` is true; `top` "
        "lists the likeliest digits. " + note,
        **upload,
    )
    async def predict(request: Request, file: UploadFile | None = File(None)) -> dict:
        return await answer(read_one_digit, request, file)

    @app.post(
        "/api/number",
        summary="Read a number of up to 12 digits written on one line",
        description=sent + "Returns `number` (the digits as a string) and each digit's box, reading "
        "and 28x28 image, left to right; `not_sure` is true if any digit is. " + note,
        **upload,
    )
    async def number(request: Request, file: UploadFile | None = File(None)) -> dict:
        return await answer(read_whole_number, request, file)

    process = secrets.token_hex(4)  # which of --workers' processes answers: each has its own app

    @app.get("/healthz", summary="Liveness check, and which server process answered")
    def healthz() -> dict:
        return {"status": "ok", "model": model.name, "process": process}

    @app.get("/api/model", summary="The model served, what its probabilities are, when it is not sure")
    def model_info() -> dict:
        return {"name": model.name, "probabilities": note, "not_sure_below": threshold}

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app


def app_of(model_path: Path) -> FastAPIOffline:
    """The app for the model at `model_path`: what each worker process builds for itself. A model
    that fails to load here (changed since the parent loaded it) stops the workers, not retried."""
    try:
        return create_app(load_classifier(model_path))
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(STARTUP_FAILURE) from None


def guarded_config(
    app, host: str, port: int, header_seconds: float = HEADER_SECONDS, **options
) -> uvicorn.Config:
    """uvicorn's settings for `app` with limits on slow and idle clients and on open connections
    (per process); `options` are further uvicorn.Config settings."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=functools.partial(HeaderDeadlineProtocol, header_seconds=header_seconds),
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        limit_concurrency=MAX_CONNECTIONS,
        **options,
    )


def guarded_server(app, host: str, port: int, header_seconds: float = HEADER_SECONDS) -> uvicorn.Server:
    """uvicorn serving `app` in this process, with guarded_config's limits."""
    return uvicorn.Server(guarded_config(app, host, port, header_seconds))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 exposes it)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", type=Path, default=Path("artifacts/model.keras"), help=MODEL_HELP)
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes sharing the port, each with its own model"
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers {args.workers}: run at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        model = load_classifier(args.model)  # in this process too, so a bad file is one clear error
    except ModelError as exc:
        raise SystemExit(f"error: {exc}") from None
    if model.threshold is None:
        print(unsure_never(args.model), file=sys.stderr)
    processes = f", {args.workers} processes" if args.workers > 1 else ""
    print(f"serving {args.model} on http://{args.host}:{args.port}{processes}  (API docs at /docs)")
    if args.workers == 1:
        guarded_server(create_app(model), args.host, args.port).run()
        return
    del model  # each worker loads its own
    config = guarded_config(
        functools.partial(app_of, args.model), args.host, args.port, workers=args.workers, factory=True
    )
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
