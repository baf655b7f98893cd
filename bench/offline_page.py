"""The page export.py writes, measured in headless Chromium: milliseconds per reading in the
browser, time to the first reading after the page is opened, the folder's size, and its parity
with the Python reader on the corpus of harness/page_corpus.py.

    python export.py --model artifacts/model.keras --out artifacts/export
    python bench/offline_page.py --web artifacts/export/web        # prints one table

The folder is served by `python -m http.server` on 127.0.0.1; Chromium is Debian's (tests/test_web.py's
flags). "First reading" runs from the page's navigation start (a fresh browser, no cache) to the
end of its first reading of a scan: it includes loading the runtime's WebAssembly and the model.
"""

from __future__ import annotations

import argparse
import base64
import statistics
from pathlib import Path

from data import load_mnist
from harness.local_server import static_server
from harness.page_corpus import READ_IN_BROWSER, disagreements, parity_corpus, python_reading
from reader.classifier import load_classifier

PROJECT_ROOT = Path(__file__).resolve().parent.parent

BATCH = 50


def browser_answers(url: str, files: dict[str, bytes]) -> tuple[float, dict[str, dict]]:
    """The first reading's time since navigation start (ms), and each file's answer in the page."""
    from playwright.sync_api import sync_playwright

    from harness.chromium import CHROMIUM, CHROMIUM_FLAGS

    encoded = [base64.b64encode(raw).decode() for raw in files.values()]
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = chromium.new_page()
        page.goto(url)
        page.wait_for_selector("body[data-reader='browser']", state="attached")
        first = page.evaluate(READ_IN_BROWSER, encoded[:1])[0]["at"]  # performance.now(): since navigation
        answers = []
        for start in range(0, len(encoded), BATCH):
            answers += page.evaluate(READ_IN_BROWSER, encoded[start : start + BATCH])
        chromium.close()
    return first, dict(zip(files, answers, strict=True))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--web", type=Path, default=Path("artifacts/export/web"), help="export.py's web folder"
    )
    args = parser.parse_args(argv)
    if not (args.web / "config.json").is_file():
        raise SystemExit(f"error: no page at {args.web}: run `python export.py` first")
    files = parity_corpus(load_mnist())
    classifier = load_classifier(args.web.parent / "model.onnx")
    python = {name: python_reading(raw, classifier) for name, raw in files.items()}
    with static_server(args.web) as url:
        first, answers = browser_answers(url, files)
    size = sum(path.stat().st_size for path in args.web.rglob("*") if path.is_file())
    digits, flags = disagreements(python, answers)
    print(f"folder: {size / 1e6:.1f} MB; first reading after opening the page: {first:.0f} ms")
    print(
        f"parity on {len(files)} files: same digit {len(files) - len(digits)}, "
        f"same flag {len(files) - len(flags)}"
    )
    for name in dict.fromkeys(digits + flags):
        print(f"  differs: {name}: python {python[name]}; browser {answers[name]}")
    print("| kind | files | ms per reading (median) | ms (90th percentile) |")
    print("|---|---|---|---|")
    for kind in dict.fromkeys(name.split("-")[0] for name in files):
        times = sorted(answers[name]["ms"] for name in files if name.startswith(kind + "-"))
        print(
            f"| {kind} | {len(times)} | {statistics.median(times):.1f} | {times[int(0.9 * len(times))]:.1f} |"
        )


if __name__ == "__main__":
    main()
