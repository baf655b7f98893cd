"""Load test of the prediction API: many requests at a fixed concurrency, on this machine only.

    python bench/load_test.py                        # 5,000 requests, 16 at a time
    python bench/load_test.py --requests 200 --concurrency 4 --model artifacts/model.keras
    python bench/load_test.py --model artifacts/export/model.onnx --workers 2
    python bench/load_test.py --route number --model artifacts/export/model.onnx    # 6-digit numbers
    python bench/load_test.py --route number --line-model artifacts/line-export/model.onnx   # line reader
    python bench/load_test.py --route number --serve-from ../other-checkout         # another version

Starts serve.py on a free 127.0.0.1 port, sends real MNIST test digits as PNGs (with --route
number, 1000x200 PNGs of numbers of 6 of them), and reports throughput, p50/p99 latency, errors,
5xx answers and the share read right. Bounded in count and in time (--timeout), and
it never targets anything but the server it started.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import io
import json
import time
import urllib.parse
from pathlib import Path

import numpy as np
from PIL import Image

from data import load_mnist
from harness.local_server import running_server

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def digit_pngs(count: int) -> list[tuple[bytes, int]]:
    """The first `count` MNIST test digits as dark-on-light 140x140 PNGs, with their labels."""
    mnist = load_mnist()
    pngs = []
    for image, label in zip(mnist.x_test[:count], mnist.y_test[:count], strict=True):
        buffer = io.BytesIO()
        Image.fromarray(255 - image).resize((140, 140)).save(buffer, format="PNG")
        pngs.append((buffer.getvalue(), int(label)))
    return pngs


def number_pngs(count: int, digits: int = 6) -> list[tuple[bytes, str]]:
    """Numbers of `digits` MNIST test digits side by side, dark on light, as 1000x200 PNGs, with
    the numbers they are."""
    mnist = load_mnist()
    pngs = []
    for start in range(0, count * digits, digits):
        images, labels = mnist.x_test[start : start + digits], mnist.y_test[start : start + digits]
        row = np.hstack([np.pad(image, ((6, 6), (4, 4))) for image in images])
        buffer = io.BytesIO()
        Image.fromarray(255 - row).resize((1000, 200), Image.Resampling.BICUBIC).save(buffer, format="PNG")
        pngs.append((buffer.getvalue(), "".join(map(str, labels))))
    return pngs


ROUTES = {  # route -> (its images and what each reads as, the field of the answer that says it)
    "predict": (digit_pngs, "digit"),
    "number": (number_pngs, "number"),
}


def client(
    port: int, route: str, jobs: list[tuple[bytes, object]], deadline: float
) -> list[tuple[float, int, bool]]:
    """Send `jobs` to `route` over one keep-alive connection: (seconds, status, read right) each."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    results = []
    for png, label in jobs:
        if time.monotonic() > deadline:
            break
        started = time.perf_counter()
        try:
            connection.request("POST", f"/api/{route}", body=png, headers={"Content-Type": "image/png"})
            response = connection.getresponse()
            body = response.read()
            status = response.status
        except OSError:
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            status, body = 0, b"{}"
        correct = status == 200 and json.loads(body)[ROUTES[route][1]] == label
        results.append((time.perf_counter() - started, status, correct))
    connection.close()
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=600, help="stop sending after this many seconds")
    parser.add_argument("--model", type=Path, default=PROJECT_ROOT / "artifacts" / "model.keras")
    parser.add_argument("--workers", type=int, default=1, help="serve.py's --workers")
    parser.add_argument("--route", choices=ROUTES, default="predict", help="/api/predict or /api/number")
    parser.add_argument("--line-model", type=Path, help="serve.py's --line-model: numbers read as lines")
    parser.add_argument(
        "--serve-from", type=Path, default=PROJECT_ROOT, help="the checkout whose serve.py to start"
    )
    args = parser.parse_args(argv)

    pngs = ROUTES[args.route][0](200)
    jobs = [pngs[i % len(pngs)] for i in range(args.requests)]
    shares = [jobs[i :: args.concurrency] for i in range(args.concurrency)]
    try:
        line_flags = ("--line-model", str(args.line_model)) if args.line_model else ()
        with running_server(args.model, *line_flags, workers=args.workers, project=args.serve_from) as url:
            port = urllib.parse.urlsplit(url).port
            deadline = time.monotonic() + args.timeout
            started = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
                outcomes = [
                    r
                    for share in pool.map(lambda s: client(port, args.route, s, deadline), shares)
                    for r in share
                ]
            elapsed = time.perf_counter() - started
    except RuntimeError as exc:  # the server did not start
        raise SystemExit(f"error: {exc}") from None

    latencies = np.array([seconds for seconds, _, _ in outcomes]) * 1000
    statuses = [status for _, status, _ in outcomes]
    report = {
        "requests": len(outcomes),
        "concurrency": args.concurrency,
        "model": str(args.model),
        "line_model": str(args.line_model) if args.line_model else None,
        "workers": args.workers,
        "route": f"/api/{args.route}",
        "served_from": str(args.serve_from),
        "seconds": round(elapsed, 2),
        "requests_per_second": round(len(outcomes) / elapsed, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "p99_ms": round(float(np.percentile(latencies, 99)), 1),
        "errors": sum(status != 200 for status in statuses),
        "server_errors_5xx": sum(status >= 500 for status in statuses),
        "read_right": round(float(np.mean([correct for _, _, correct in outcomes])), 4),
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
