"""Load test of the prediction API: many requests at a fixed concurrency, on this machine only.

    python bench/load_test.py                        # 5,000 requests, 16 at a time
    python bench/load_test.py --requests 200 --concurrency 4 --model artifacts/model.keras
    python bench/load_test.py --model artifacts/export/model.onnx --workers 2

Starts serve.py on a free 127.0.0.1 port, sends real MNIST test digits as PNGs, and reports
throughput, p50/p99 latency, errors and 5xx answers. Bounded in count and in time (--timeout), and
it never targets anything but the server it started.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import io
import json
import sys
import time
import urllib.parse
from pathlib import Path

import numpy as np
from PIL import Image

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))  # bench/ imports the project; nothing imports bench/
sys.path.insert(0, str(PROJECT_ROOT / "tests"))  # and the harness that starts serve.py, as the tests do

from data import load_mnist  # noqa: E402
from local_server import running_server  # noqa: E402


def digit_pngs(count: int) -> list[tuple[bytes, int]]:
    """The first `count` MNIST test digits as dark-on-light 140x140 PNGs, with their labels."""
    mnist = load_mnist()
    pngs = []
    for image, label in zip(mnist.x_test[:count], mnist.y_test[:count], strict=True):
        buffer = io.BytesIO()
        Image.fromarray(255 - image).resize((140, 140)).save(buffer, format="PNG")
        pngs.append((buffer.getvalue(), int(label)))
    return pngs


def client(port: int, jobs: list[tuple[bytes, int]], deadline: float) -> list[tuple[float, int, bool]]:
    """Send `jobs` over one keep-alive connection: (seconds, status, digit correct) per request."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    results = []
    for png, label in jobs:
        if time.monotonic() > deadline:
            break
        started = time.perf_counter()
        try:
            connection.request("POST", "/api/predict", body=png, headers={"Content-Type": "image/png"})
            response = connection.getresponse()
            body = response.read()
            status = response.status
        except OSError:
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            status, body = 0, b"{}"
        correct = status == 200 and json.loads(body)["digit"] == label
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
    args = parser.parse_args(argv)

    pngs = digit_pngs(200)
    jobs = [pngs[i % len(pngs)] for i in range(args.requests)]
    shares = [jobs[i :: args.concurrency] for i in range(args.concurrency)]
    try:
        with running_server(args.model, workers=args.workers) as url:
            port = urllib.parse.urlsplit(url).port
            deadline = time.monotonic() + args.timeout
            started = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
                outcomes = [
                    r for share in pool.map(lambda s: client(port, s, deadline), shares) for r in share
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
        "workers": args.workers,
        "seconds": round(elapsed, 2),
        "requests_per_second": round(len(outcomes) / elapsed, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "p99_ms": round(float(np.percentile(latencies, 99)), 1),
        "errors": sum(status != 200 for status in statuses),
        "server_errors_5xx": sum(status >= 500 for status in statuses),
        "digits_correct": round(float(np.mean([correct for _, _, correct in outcomes])), 4),
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
