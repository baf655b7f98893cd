"""A web page to draw digits on and see what the model reads, plus the JSON API behind it.

    python serve.py                          # http://127.0.0.1:8000, artifacts/model.keras
    python serve.py --port 8080 --model artifacts/softmax/model.keras

POST /api/predict takes one image (multipart field `file`, or the raw image as the body) and returns
the digit, whether the model is sure of it, the probabilities and the 28x28 image the model saw;
POST /api/number reads a number of up to 12 digits on one line. Interactive API docs are at /docs.
Uploads stay in memory and are never written to disk.
"""

from __future__ import annotations

from startup import import_tensorflow_quietly

import_tensorflow_quietly()

import argparse
import base64
import io
from pathlib import Path

import keras
import numpy as np
import uvicorn
from fastapi import FastAPI, File, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.concurrency import run_in_threadpool

from data import normalize_images
from model import ModelError, load_trained_model, probabilities_function
from outputs import record_of
from preprocess import FORMAT_NAMES, ImageError, mnist_style_digit, read_image
from reading import read_number, reading

WEB_DIR = Path(__file__).resolve().parent / "web"
MAX_UPLOAD_BYTES = 1_000_000
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")  # FastAPI parses these
OUTPUT_LAYERS = {
    "sigmoid": "This model's output layer is 10 sigmoid units, whose own scores are independent and "
    "do not sum to 1, so they are not shown raw.",
    "softmax": "This model's output layer is that softmax.",
}


def probabilities_note(model: keras.Model) -> str:
    """What the probabilities shown for `model` are, true for its own output layer."""
    activation = model.get_layer("digit").activation.__name__
    return (
        "Probabilities are the softmax of the network's output logits, the distribution that its "
        "training loss (categorical cross-entropy) optimised. " + OUTPUT_LAYERS.get(activation, "")
    ).strip()


def png_data_url(digit: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(digit).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def create_app(model: keras.Model, threshold: float | None = None) -> FastAPI:
    """The FastAPI app serving `model` (loaded once by the caller) and the drawing page; readings
    less confident than `threshold` are "not sure"."""
    probabilities_of = probabilities_function(model)
    note = probabilities_note(model)
    app = FastAPI(
        title="MNIST digit recognizer",
        description="Draw or upload a handwritten digit or number; get what the model reads. " + note,
    )

    @app.middleware("http")
    async def refuse_large_bodies(request: Request, call_next):
        # Checked before the body is read, so an oversized upload costs nothing.
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is None or not length.isdigit():
                return JSONResponse({"detail": "send a Content-Length header"}, status_code=411)
            if int(length) > MAX_UPLOAD_BYTES:
                return JSONResponse(
                    {"detail": f"upload is {int(length):,} bytes; the limit is {MAX_UPLOAD_BYTES:,}"},
                    status_code=413,
                )
        return await call_next(request)

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

    async def uploaded(request: Request, file: UploadFile | None) -> bytes:
        if file is not None:
            return await file.read()
        if request.headers.get("content-type", "").startswith(FORM_TYPES):
            raise HTTPException(status_code=400, detail="a form upload needs its image in field `file`")
        return await request.body()

    @app.post(
        "/api/predict",
        summary="Read the digit in one image",
        description=sent + "Below the model's calibrated confidence, `not_sure` is true; `top` "
        "lists the likeliest digits. " + note,
        **upload,
    )
    async def predict(request: Request, file: UploadFile | None = File(None)) -> dict:
        return await run_in_threadpool(read_one_digit, await uploaded(request, file))

    @app.post(
        "/api/number",
        summary="Read a number of up to 12 digits written on one line",
        description=sent + "Returns `number` (the digits as a string) and each digit's box, reading "
        "and 28x28 image, left to right; `not_sure` is true if any digit is. " + note,
        **upload,
    )
    async def number(request: Request, file: UploadFile | None = File(None)) -> dict:
        return await run_in_threadpool(read_whole_number, await uploaded(request, file))

    @app.get("/healthz", summary="Liveness check")
    def healthz() -> dict:
        return {"status": "ok", "model": model.name}

    @app.get("/api/model", summary="The model served, what its probabilities are, when it is not sure")
    def model_info() -> dict:
        return {"name": model.name, "probabilities": note, "not_sure_below": threshold}

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 exposes it)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", type=Path, default=Path("artifacts/model.keras"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        model = load_trained_model(args.model)
    except ModelError as exc:
        raise SystemExit(f"error: {exc}") from None
    threshold = record_of(args.model).get("calibration", {}).get("threshold")
    print(f"serving {args.model} on http://{args.host}:{args.port}  (API docs at /docs)")
    uvicorn.run(create_app(model, threshold), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
