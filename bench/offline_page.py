"""The page export.py writes, measured in headless Chromium: milliseconds per reading in the
browser (digits, and numbers where it has a line model), time to the first reading after the page
is opened, the folder's size, and its parity with the Python reader on the corpora of
harness/page_corpus.py.

    python export.py --line-model artifacts/line/model.keras    # artifacts/model.keras -> artifacts/export
    python bench/offline_page.py --web artifacts/export/web     # prints its tables

The folder is served by `python -m http.server` on 127.0.0.1; Chromium is Debian's (harness/chromium.py's
flags). "First reading" runs from the page's navigation start (a fresh browser, no cache) to the
end of its first reading of a scan: it includes loading the runtime's WebAssembly and the model.
Numbers are read by the page's own numberOf, and by reader.sequence.read_line with the same line
model and the threshold the page's config gives it; the large photos, which each reader shrinks
with its own filter first, are counted apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

from data import load_mnist
from harness.local_server import static_server
from harness.page_corpus import (
    READ_IN_BROWSER,
    READ_NUMBER_IN_BROWSER,
    answers_in,
    disagreements,
    large_number_corpus,
    number_corpus,
    number_disagreements,
    number_flag,
    parity_corpus,
    python_number,
    python_reading,
    said,
)
from reader.browser import LINE_MODEL
from reader.classifier import load_classifier, load_line_model


def browser_answers(url: str, files: dict[str, bytes], numbers: dict[str, bytes]) -> tuple[float, dict, dict]:
    """The first reading's time since navigation start (ms), each file's answer in the page, and
    each number's."""
    from playwright.sync_api import sync_playwright

    from harness.chromium import CHROMIUM, CHROMIUM_FLAGS

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = chromium.new_page()
        page.goto(url)
        first_file = dict(list(files.items())[:1])
        first = answers_in(page, READ_IN_BROWSER, first_file)[next(iter(files))]["at"]  # since navigation
        answers = answers_in(page, READ_IN_BROWSER, files)
        number_answers = answers_in(page, READ_NUMBER_IN_BROWSER, numbers) if numbers else {}
        chromium.close()
    return first, answers, number_answers


def times_table(answers: dict[str, dict], noun: str) -> list[str]:
    """Markdown rows: per kind of file, how many and the milliseconds per reading."""
    rows = [f"| kind | {noun} | ms per reading (median) | ms (90th percentile) |", "|---|---|---|---|"]
    for kind in dict.fromkeys(name.split("-")[0] for name in answers):
        times = sorted(answers[name]["ms"] for name in answers if name.startswith(kind + "-"))
        rows.append(
            f"| {kind} | {len(times)} | {statistics.median(times):.1f} | {times[int(0.9 * len(times))]:.1f} |"
        )
    return rows


def number_parity(python: dict, answers: dict, names: list[str], label: str) -> list[str]:
    """Lines saying how many of `names` read the same number and flag, and which differ."""
    strings, flags = number_disagreements({name: python[name] for name in names}, answers)
    lines = [
        f"number parity, {label}, on {len(names)} files: same number {len(names) - len(strings)}, "
        f"same flag {len(names) - len(flags)}"
    ]
    for name in dict.fromkeys(strings + flags):
        lines.append(
            f"  differs: {name}: python {said(python[name])} ({number_flag(python[name])}); "
            f"browser {said(answers[name])} ({number_flag(answers[name])})"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--web", type=Path, default=Path("artifacts/export/web"), help="export.py's web folder"
    )
    args = parser.parse_args(argv)
    if not (args.web / "config.json").is_file():
        raise SystemExit(f"error: no page at {args.web}: run `python export.py` first")
    config = json.loads((args.web / "config.json").read_text())
    mnist = load_mnist()
    files = parity_corpus(mnist)
    classifier = load_classifier(args.web.parent / "model.onnx")
    python = {name: python_reading(raw, classifier) for name, raw in files.items()}
    numbers, large, python_numbers = {}, {}, {}
    if config["line_model"]:
        numbers, large = number_corpus(mnist), large_number_corpus(mnist)
        line = load_line_model(args.web / LINE_MODEL)
        line = dataclasses.replace(line, threshold=config["line_model"]["threshold"])  # the page's
        python_numbers = {name: python_number(raw, line) for name, raw in (numbers | large).items()}
    with static_server(args.web) as url:
        first, answers, number_answers = browser_answers(url, files, numbers | large)
    size = sum(path.stat().st_size for path in args.web.rglob("*") if path.is_file())
    digits, flags = disagreements(python, answers)
    print(f"folder: {size / 1e6:.1f} MB; first reading after opening the page: {first:.0f} ms")
    print(
        f"parity on {len(files)} files: same digit {len(files) - len(digits)}, "
        f"same flag {len(files) - len(flags)}"
    )
    for name in dict.fromkeys(digits + flags):
        print(f"  differs: {name}: python {python[name]}; browser {answers[name]}")
    print("\n".join(times_table(answers, "files")))
    if not numbers:
        print("no line model in this page: numbers not measured")
        return
    print("\n".join(number_parity(python_numbers, number_answers, list(numbers), "within the work side")))
    print("\n".join(number_parity(python_numbers, number_answers, list(large), "large photos")))
    print("\n".join(times_table(number_answers, "numbers")))


if __name__ == "__main__":
    main()
