"""A web page to draw digits on and see what the model reads, plus the JSON API behind it.

    python serve.py                          # http://127.0.0.1:8000, artifacts/model.keras
    python serve.py --port 8080 --model artifacts/softmax/model.keras

POST /api/predict takes one image (multipart field `file`, or the raw image as the body) and returns
the digit, the probabilities and the 28x28 image the model saw. Interactive API docs are at /docs.
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
from model import ModelError, load_trained_model, probability_model
from preprocess import FORMAT_NAMES, ImageError, mnist_style_digit, read_image

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


def create_app(model: keras.Model) -> FastAPI:
    """The FastAPI app serving `model` (loaded once by the caller) and the drawing page."""
    probabilities_of = probability_model(model)
    note = probabilities_note(model)
    app = FastAPI(
        title="MNIST digit recognizer",
        description="Draw or upload one handwritten digit; get the digit the model reads. " + note,
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

    def predict_digit(raw: bytes) -> dict:
        try:
            digit = mnist_style_digit(read_image(raw))
        except ImageError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        row = np.asarray(probabilities_of([normalize_images(digit[None])], training=False))[0]
        return {
            "digit": int(row.argmax()),
            "confidence": float(row.max()),
            "probabilities": [round(float(p), 6) for p in row],
            "preprocessed": png_data_url(digit),
        }

    @app.post(
        "/api/predict",
        summary="Read the digit in one image",
        description=f"Send a {FORMAT_NAMES} image of one digit (at most 1 MB) as multipart field `file` "
        "or as the raw request body. " + note,
        responses={
            400: {"description": "not an image, or no digit in it"},
            413: {"description": "upload over 1 MB"},
        },
        openapi_extra={
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
    )
    async def predict(request: Request, file: UploadFile | None = File(None)) -> dict:
        if file is not None:
            raw = await file.read()
        elif request.headers.get("content-type", "").startswith(FORM_TYPES):
            raise HTTPException(status_code=400, detail="a form upload needs its image in field `file`")
        else:
            raw = await request.body()
        return await run_in_threadpool(predict_digit, raw)

    @app.get("/healthz", summary="Liveness check")
    def healthz() -> dict:
        return {"status": "ok", "model": model.name}

    @app.get("/api/model", summary="The model served and what its probabilities are")
    def model_info() -> dict:
        return {"name": model.name, "probabilities": note}

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
    print(f"serving {args.model} on http://{args.host}:{args.port}  (API docs at /docs)")
    uvicorn.run(create_app(model), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
