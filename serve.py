"""A web page to draw digits on and see what the model reads, plus the JSON API behind it.

    python serve.py                          # http://127.0.0.1:8000, artifacts/model.keras
    python serve.py --port 8080 --model artifacts/softmax/model.keras
    python serve.py --model artifacts/export/model.onnx --workers 2   # no TensorFlow; 2 processes
    python serve.py --line-model artifacts/line/model.keras   # numbers read as whole lines

The page (web/, the same one export.py writes for static hosts) reads one digit in the browser
when the model is an export's model.onnx and ONNX Runtime Web is installed (runtime/, `npm ci`):
it fetches /model.onnx and /config.json and sends nothing. With a .keras model it sends each
drawing and photo to the API, as it does for number mode with any model.

POST /api/predict takes one image (multipart field `file`, or the raw image as the body) and returns
the digit, whether the model is sure of it, the probabilities and the 28x28 image the model saw;
POST /api/number reads a number of up to 12 digits on one line (with --line-model, as a whole line
by the line model; else by dividing it into digits). Interactive API docs are at /docs.
Uploads stay in memory and are never written to disk. The routes are FastAPI's, at module level;
the models they read with are the app's (`app.state.classifier`, `app.state.line_model`), and the
limits on uploads and clients are the reader's guards (server/guards.py).
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from ground.outputs import HelpFormatter
from ground.saved_network import ModelError
from reader.browser import (
    RUNTIME_DIR,
    runtime_installed,
)
from reader.classifier import (
    LINE_MODEL_HELP,
    MODEL_HELP,
    load_classifier,
    load_line_model,
    unsure_never,
)
from server.app import app_of, create_app, onnx_file_of
from server.guards import (
    MAX_CLIENT_CONNECTIONS,
    MAX_CONNECTIONS,
    LimitedRestarts,
    guarded_config,
    guarded_server,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 exposes it)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument("--model", type=Path, default=Path("artifacts/model.keras"), help=MODEL_HELP)
    parser.add_argument(
        "--line-model",
        type=Path,
        help=f"{LINE_MODEL_HELP}, to read /api/number's numbers as whole lines [none: by division]",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes sharing the port, each with its own model"
    )
    parser.add_argument(
        "--client-connections",
        type=int,
        default=MAX_CLIENT_CONNECTIONS,
        help="connections one client address may hold open at once, per process (behind a proxy, "
        f"every client has the proxy's address: raise it, up to {MAX_CONNECTIONS})",
    )
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers {args.workers}: run at least 1")
    if not 1 <= args.client_connections <= MAX_CONNECTIONS:
        parser.error(f"--client-connections {args.client_connections}: allow 1 to {MAX_CONNECTIONS}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        model = load_classifier(args.model)  # in this process too, so a bad file is one clear error
        line = load_line_model(args.line_model) if args.line_model else None
    except ModelError as exc:
        raise SystemExit(f"error: {exc}") from None
    for path, loaded in ((args.model, model), (args.line_model, line)):
        if loaded is not None and loaded.threshold is None:
            print(unsure_never(path), file=sys.stderr)
    processes = f", {args.workers} processes" if args.workers > 1 else ""
    served = f"{args.model} and {args.line_model}" if args.line_model else args.model
    print(f"serving {served} on http://{args.host}:{args.port}{processes}  (API docs at /docs)")
    if onnx_file_of(args.model) and not runtime_installed():
        print(f"note: the page reads through the API: `npm ci` in {RUNTIME_DIR} lets it read in the browser")
    if args.workers == 1:
        guarded_server(
            create_app(model, onnx_file=onnx_file_of(args.model), line_model=line),
            args.host,
            args.port,
            client_connections=args.client_connections,
        ).run()
        return
    del model, line  # each worker loads its own
    config = guarded_config(
        functools.partial(app_of, args.model, args.line_model),
        args.host,
        args.port,
        client_connections=args.client_connections,
        workers=args.workers,
        factory=True,
    )
    supervisor = LimitedRestarts(config, sockets=[config.bind_socket()])
    supervisor.run()
    if supervisor.failed:  # each worker said why
        raise SystemExit(1)


if __name__ == "__main__":
    main()
