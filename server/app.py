"""The web app: the JSON API's routes and the drawing page, for the classifier (and line model)
serve.py loads, behind the guards (server/guards.py).

    from server.app import create_app
    app = create_app(load_classifier("artifacts/model.keras"))   # an ASGI app, e.g. for uvicorn

The routes are FastAPI's, at module level; the models they read with are the app's
(`app.state.classifier`, `app.state.line_model`).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import io
import secrets
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import anyio
import numpy as np
from fastapi import APIRouter, Depends, File, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from PIL import Image
from uvicorn.main import STARTUP_FAILURE

from data import normalize_images
from ground.saved_network import ModelError, ModelRunError
from reader.browser import (
    DIGIT_MODEL,
    RUNTIME_DIST,
    RUNTIME_FOLDER,
    WEB_DIR,
    page_config,
    runtime_installed,
)
from reader.classifier import (
    Classifier,
    LineModel,
    load_classifier,
    load_line_model,
)
from reader.deadline import READING_SECONDS, Deadline, ReadingTimeout
from reader.division import MAX_DIGITS
from reader.page import FORMAT_NAMES, ImageError, mnist_style_digit, read_image
from reader.reading import read_number, reading
from server.guards import (
    MAX_UPLOAD_BYTES,
    UPLOAD_SECONDS,
    GuardedRequests,
)

DECODES_AT_ONCE = 2  # images read at once (one per core); each may take up to ~150 MB while it is read
RETRY_SECONDS = "5"  # Retry-After of a reading past its deadline
DISCONNECT_POLL_SECONDS = 0.1  # how often a reading's client is looked for while it is read
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")  # FastAPI parses these
UPLOAD_LIMIT = f"{MAX_UPLOAD_BYTES / 1e6:g} MB"  # as the API's description says it
OUTPUT_LAYERS = {
    "sigmoid": "This model's output layer is 10 sigmoid units, whose own scores are independent and "
    "do not sum to 1, so they are not shown raw.",
    "softmax": "This model's output layer is that softmax.",
}
UPLOAD = {  # the OpenAPI description of both image routes
    "responses": {
        400: {"description": "not an image, or no digit in it"},
        408: {"description": f"the upload took over {UPLOAD_SECONDS:g} s"},
        411: {"description": "no Content-Length"},
        413: {"description": f"upload over {UPLOAD_LIMIT}"},
        500: {"description": "the model failed on the image, or answered it with no probabilities"},
        503: {
            "description": f"the reading took over {READING_SECONDS:g} s, "
            "or the server is at its connection limit"
        },
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
IMAGE_ROUTES = ("/api/predict", "/api/number")
SENT = f"Send a {FORMAT_NAMES} image (at most {UPLOAD_LIMIT}) as multipart field `file` or as the raw body. "
router = APIRouter()


def probabilities_note(model: Classifier) -> str:
    """What the probabilities shown for `model` are, true for its own output layer."""
    return (
        "Probabilities are the softmax of the network's output logits, the distribution that its "
        "training loss (categorical cross-entropy) optimised. "
        + OUTPUT_LAYERS.get(model.output_activation, "")
    ).strip()


def classifier(request: Request) -> Classifier:
    """The model this app reads with (a dependency of the routes)."""
    return request.app.state.classifier


Model = Annotated[Classifier, Depends(classifier)]


def png_data_url(digit: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(digit).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def read_one_digit(model: Classifier, raw: bytes, deadline: Deadline) -> dict:
    """/api/predict's answer for an image's bytes."""
    image = read_image(raw)
    deadline.check()
    digit = mnist_style_digit(image)
    row = model.probabilities_of(normalize_images(digit[None]))[0]
    return {
        **reading(row, model.threshold),
        "probabilities": [round(float(p), 6) for p in row],
        "preprocessed": png_data_url(digit),
    }


def read_whole_number(
    model: Classifier, raw: bytes, deadline: Deadline, line: LineModel | None = None
) -> dict:
    """/api/number's answer for an image's bytes: read by the `line` model if there is one, else
    by dividing it into digits for the classifier `model`."""
    image = read_image(raw)
    number, digits = read_number(model.probabilities_of, image, model.threshold, deadline=deadline, line=line)
    for item, digit in zip(number["digits"], digits, strict=True):
        item["preprocessed"] = png_data_url(digit)
    return number


Read = Callable[[Classifier, bytes, Deadline], dict]  # an image's bytes -> a route's answer


def within(read: Read, model: Classifier, raw: bytes, seconds: float, abandoned: threading.Event) -> dict:
    """`read` with a deadline `seconds` from now (from when a reading slot is taken), stopping
    early once `abandoned` is set."""
    return read(model, raw, Deadline.after(seconds, abandoned))


async def mark_when_gone(request: Request, abandoned: threading.Event) -> None:
    """Set `abandoned` once the client of `request` has gone: its reading stops at its next check."""
    while not await request.is_disconnected():
        await asyncio.sleep(DISCONNECT_POLL_SECONDS)
    abandoned.set()


async def answer(read: Read, model: Classifier, request: Request, file: UploadFile | None) -> dict:
    """`read` of the uploaded image's bytes, in a thread, DECODES_AT_ONCE images at most at once,
    each within the app's reading deadline, and stopped once its client has gone."""
    if file is not None:
        raw = await file.read()
    elif request.headers.get("content-type", "").startswith(FORM_TYPES):
        raise HTTPException(status_code=400, detail="a form upload needs its image in field `file`")
    else:
        raw = await request.body()
    seconds, slots = request.app.state.reading_seconds, request.app.state.decodes
    abandoned = threading.Event()
    watcher = asyncio.create_task(mark_when_gone(request, abandoned))
    try:
        return await anyio.to_thread.run_sync(within, read, model, raw, seconds, abandoned, limiter=slots)
    finally:
        watcher.cancel()


def image_route(path: str, summary: str, returns: str):
    """`router.post` for a route that reads an uploaded image, described as both are."""
    return router.post(path, summary=summary, description=SENT + returns, **UPLOAD)


@image_route(
    "/api/predict",
    "Read the digit in one image",
    "Below the model's calibrated confidence, `not_sure` is true, and `not_a_digit` too where even "
    "the two likeliest digits together fall below it; `top` lists the likeliest digits.",
)
async def predict(request: Request, model: Model, file: UploadFile | None = File(None)) -> dict:
    return await answer(read_one_digit, model, request, file)


@image_route(
    "/api/number",
    f"Read a number of up to {MAX_DIGITS} digits written on one line",
    "Returns `number` (the digits as a string, ✕ for a mark that is not a digit) and each digit's "
    "box, reading and image as the model saw it, left to right; `not_sure` is true if any digit is, "
    "and a part that is `not_a_digit` says so. `reader` says what read it: `line` (the line model, "
    "serve.py --line-model) or `division` (the classifier, digit by digit).",
)
async def number(request: Request, model: Model, file: UploadFile | None = File(None)) -> dict:
    read = functools.partial(read_whole_number, line=request.app.state.line_model)
    return await answer(read, model, request, file)


@router.get("/healthz", summary="Liveness check, and which server process answered")
def healthz(request: Request, model: Model) -> dict:
    return {"status": "ok", "model": model.name, "process": request.app.state.process}


@router.get("/readyz", summary="Readiness: 503 while every reading slot is taken and as many readings wait")
def readyz(request: Request) -> JSONResponse:
    slots = request.app.state.decodes.statistics()
    free, waiting = int(slots.total_tokens - slots.borrowed_tokens), slots.tasks_waiting
    # Both slots taken is this server at work; a full round waiting behind them is more than it keeps up with.
    ready = free > 0 or waiting < DECODES_AT_ONCE
    status = {"status": "ready" if ready else "busy", "free_slots": free, "waiting": waiting}
    return JSONResponse(status, status_code=200 if ready else 503)


@router.get("/api/model", summary="The model served, what its probabilities are, when it is not sure")
def model_info(request: Request, model: Model) -> dict:
    line = request.app.state.line_model
    return {
        "name": model.name,
        "probabilities": probabilities_note(model),
        "not_sure_below": model.threshold,
        "line_model": None if line is None else {"name": line.name, "not_sure_below": line.threshold},
    }


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html")


@router.get("/config.json", include_in_schema=False)
def config(request: Request) -> dict:
    """The page's config: whether it reads digits in the browser, and with what (reader/browser.py)."""
    return request.app.state.page_config


@router.get(f"/{DIGIT_MODEL}", include_in_schema=False)
def digit_model(request: Request) -> FileResponse:
    """The .onnx model served, for the page to read with in the browser (404 for a .keras one)."""
    if request.app.state.browser_model is None:
        raise HTTPException(status_code=404, detail="this server reads with a .keras model: no ONNX file")
    return FileResponse(request.app.state.browser_model, media_type="application/octet-stream")


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> RedirectResponse:
    """The page names its icon; other clients ask for this one."""
    return RedirectResponse("/static/favicon.svg", status_code=308)


async def bad_image(request: Request, exc: ImageError) -> JSONResponse:
    """An image the reader cannot read: 400, with what is wrong with it."""
    return JSONResponse({"detail": str(exc)}, status_code=400)


async def too_long(request: Request, exc: ReadingTimeout) -> JSONResponse:
    """A reading past its deadline: 503, and when to try again; its slot is free."""
    return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": RETRY_SECONDS})


async def model_failed(request: Request, exc: ModelRunError) -> JSONResponse:
    """A model that failed on a reading or answered it with no probabilities: the server's fault."""
    return JSONResponse({"detail": str(exc)}, status_code=500)


def note_probabilities(app: FastAPIOffline, note: str) -> None:
    """Have the image routes of `app`'s OpenAPI schema say what the probabilities of the model
    served are (`note`): the routes are shared by every app, the model is this app's. FastAPI
    caches the schema it makes, so the note is added to it once, here."""
    schema = app.openapi()
    for path in IMAGE_ROUTES:
        schema["paths"][path]["post"]["description"] += " " + note


def create_app(
    model: Classifier,
    upload_seconds: float = UPLOAD_SECONDS,
    reading_seconds: float = READING_SECONDS,
    onnx_file: Path | None = None,
    line_model: LineModel | None = None,
) -> FastAPIOffline:
    """The FastAPI app serving `model` (loaded once by the caller) and the drawing page, and the
    `line_model`, if any, for numbers; readings less confident than its threshold are "not sure",
    and readings past `reading_seconds` a 503. With `onnx_file` (the model's own .onnx file) and
    the runtime installed, the page reads one digit in the browser with it."""
    note = probabilities_note(model)
    app = FastAPIOffline(  # FastAPI with its docs pages' scripts served from here, not a CDN
        title="MNIST digit recognizer",
        description="Draw or upload a handwritten digit or number; get what the model reads. " + note,
        exception_handlers={ImageError: bad_image, ReadingTimeout: too_long, ModelRunError: model_failed},
    )
    app.state.classifier = model
    app.state.line_model = line_model
    app.state.decodes = anyio.CapacityLimiter(DECODES_AT_ONCE)
    app.state.reading_seconds = reading_seconds
    browser = onnx_file is not None and runtime_installed()
    app.state.browser_model = onnx_file if browser else None
    app.state.page_config = page_config(
        model.threshold, DIGIT_MODEL if browser else None, api=True, offline=False, name=model.name
    )
    app.state.process = secrets.token_hex(4)  # which of --workers' processes answers: each has its app
    app.add_middleware(GuardedRequests, upload_seconds=upload_seconds)
    app.include_router(router)
    note_probabilities(app, note)
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    if browser:
        app.mount(f"/{RUNTIME_FOLDER}", StaticFiles(directory=RUNTIME_DIST), name="runtime")
    app.mount("/", StaticFiles(directory=WEB_DIR), name="page")  # the page's files, by relative paths
    return app


def onnx_file_of(path: Path) -> Path | None:
    """`path` if it is an .onnx file, which the page can read with in the browser."""
    return path if path.suffix.lower() == ".onnx" else None


def app_of(model_path: Path, line_model_path: Path | None = None) -> FastAPIOffline:
    """The app for the model at `model_path` (and the line model at `line_model_path`): what each
    worker process builds for itself. A model that fails to load here (changed since the parent
    loaded it) stops the workers, not retried."""
    try:
        line = load_line_model(line_model_path) if line_model_path else None
        return create_app(load_classifier(model_path), onnx_file=onnx_file_of(model_path), line_model=line)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(STARTUP_FAILURE) from None
