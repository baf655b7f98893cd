"""The page that reads in the browser: its config (every constant of the reader's steps, from the
modules that own them), its runtime (ONNX Runtime Web, from npm) and the folder export.py writes.

    from reader.browser import PageModel, write_web_folder
    digits = PageModel(Path("artifacts/export/model.onnx"), 0.656, "mlp")
    line = PageModel(Path("artifacts/export/line/model.onnx"), 0.99, "line")   # or None: digits only
    write_web_folder(Path("artifacts/export/web"), digits, line, without_line="how to add one")

web/ holds the page; web/reader.js ports reader.page's, data.mnist_style's, data.line_style's,
ground.ctc's and reader.sequence's steps to JavaScript and takes each number from the config written
here, so that no number is typed twice. The runtime's files come from runtime/package-lock.json
(`npm ci` there installs them).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from data import (
    BLANK,
    DIGIT_BOX,
    FRAME_WIDTH,
    IMAGE_SIZE,
    INK_THRESHOLD,
    LINE_CLASSES,
    LINE_HEIGHT,
    LINE_INK_HEIGHT,
    LINE_MARGIN,
    NOT_A_DIGIT_SYMBOL,
    NUM_CLASSES,
)
from reader import division, page, sequence
from reader.classifier import load_line_model

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WEB_DIR = PROJECT_ROOT / "web"
RUNTIME_DIR = PROJECT_ROOT / "runtime"  # package.json and package-lock.json: the pinned runtime
RUNTIME_DIST = RUNTIME_DIR / "node_modules" / "onnxruntime-web" / "dist"
RUNTIME_FOLDER = "ort"  # where the page finds the runtime, beside index.html
# The plain WebAssembly build (no WebGPU, WebGL or JSEP): its entry loads the .mjs and .wasm beside
# it. Its only wasm is the threaded one, which runs on one thread where the page is not
# cross-origin isolated, as on any static host.
RUNTIME_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
PAGE_FILES = (
    "index.html",
    "app.js",
    "reader.js",
    "style.css",
    "favicon.svg",
    "manifest.webmanifest",
    "sw.js",
)
CONFIG = "config.json"
DIGIT_MODEL = "model.onnx"
LINE_MODEL = "line_model.onnx"
NPM_SECONDS = 300


class RuntimeMissing(Exception):
    """ONNX Runtime Web's files are not installed and cannot be; the message says how to fix it."""


@dataclass(frozen=True)
class PageModel:
    """A model the page reads with in the browser: its .onnx file, its calibrated "not sure"
    threshold (None: never calibrated) and its name."""

    path: Path
    threshold: float | None
    name: str


def line_page_model(path: Path) -> PageModel:
    """The line model saved at `path` (train.py --arch line's .keras file, or its export's .onnx)
    as the page names it, with the threshold calibrated in its own record; a ModelError where it
    is not a line model."""
    line = load_line_model(path)
    return PageModel(path, line.threshold, line.name)


def reader_constants() -> dict:
    """Every number the browser's reader uses, from the Python modules that own it."""
    return {
        "image_size": IMAGE_SIZE,
        "num_classes": NUM_CLASSES,
        "digit_box": DIGIT_BOX,
        "ink_threshold": INK_THRESHOLD,
        "work_side": page.WORK_SIDE,
        "max_pixels": page.MAX_PIXELS,
        "min_contrast": page.MIN_CONTRAST,
        "speck_share": page.SPECK_SHARE,
        "shadow_peak": page.SHADOW_PEAK,
        "uneven_paper": page.UNEVEN_PAPER,
        "min_page_side": page.MIN_PAGE_SIDE,
        "background_side": page.BACKGROUND_SIDE,
        "line_ink": page.LINE_INK,
        "line_span": page.LINE_SPAN,
        "line_thinness": page.LINE_THINNESS,
        "line_max_share": page.LINE_MAX_SHARE,
        # a number's line, read by a line model (data.line_style, ground/ctc.py, reader/sequence.py)
        "line_height": LINE_HEIGHT,
        "line_ink_height": LINE_INK_HEIGHT,
        "line_margin": LINE_MARGIN,
        "frame_width": FRAME_WIDTH,
        "line_classes": LINE_CLASSES,
        "blank": BLANK,
        "not_a_digit_symbol": NOT_A_DIGIT_SYMBOL,
        "not_a_digit_mark": sequence.NOT_A_DIGIT_MARK,
        "max_digits": division.MAX_DIGITS,
        "min_number_height": division.MIN_NUMBER_HEIGHT,
        "max_line_aspect": sequence.MAX_LINE_ASPECT,
    }


def messages() -> dict:
    """What the reader says of what it cannot read, from the modules that say it; a {name} in one
    is filled in by the page (reader.js's `filled`), as the Python reader fills it."""
    return {
        "blank_page": page.BLANK_PAGE,
        "no_stroke": page.NO_STROKE,
        "too_thin": sequence.TOO_THIN,
        "too_wide": sequence.TOO_WIDE,
        "no_symbol": sequence.NO_SYMBOL,
        "too_many_symbols": sequence.TOO_MANY,
    }


def page_config(
    threshold: float | None,
    digit_model: str | None,
    api: bool,
    offline: bool,
    name: str,
    line: PageModel | None = None,
) -> dict:
    """The page's config: the reader's constants and messages, the digit model (None: read through
    serve.py's API) and the `line` model for numbers (None: numbers through serve.py's API, or not
    at all), whether the page has serve.py's API, whether it works offline."""
    return {
        "reader": reader_constants(),
        "messages": messages(),
        "digit_model": digit_model and {"path": digit_model, "threshold": threshold, "name": name},
        "line_model": line and {"path": LINE_MODEL, "threshold": line.threshold, "name": line.name},
        "runtime": {"folder": f"{RUNTIME_FOLDER}/", "entry": RUNTIME_FILES[0]},
        "api": api,
        "offline": offline,
    }


def runtime_installed() -> bool:
    return all((RUNTIME_DIST / name).is_file() for name in RUNTIME_FILES)


def ensure_runtime() -> None:
    """Install the pinned runtime with `npm ci` unless it is there; RuntimeMissing if it cannot be."""
    if runtime_installed():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeMissing(
            "npm is not installed, so ONNX Runtime Web cannot be fetched: install Node.js (with npm), "
            f"or run `npm ci` in {RUNTIME_DIR} where it is"
        )
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=RUNTIME_DIR,
        capture_output=True,
        text=True,
        timeout=NPM_SECONDS,
    )
    if done.returncode != 0 or not runtime_installed():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeMissing(f"`npm ci` in {RUNTIME_DIR} failed ({last})")


def write_web_folder(
    folder: Path, digits: PageModel, line: PageModel | None = None, without_line: str = ""
) -> None:
    """The static page reading with `digits` (an .onnx digit classifier) and `line` (an .onnx line
    model, for numbers; else `without_line` says how to add one) offline, in `folder`: written
    beside it and moved into place whole (RuntimeMissing: nothing written)."""
    ensure_runtime()
    partial = folder.parent / f".{folder.name}.{uuid.uuid4().hex[:8]}.partial"
    try:
        (partial / RUNTIME_FOLDER).mkdir(parents=True)
        for file_name in PAGE_FILES:
            shutil.copyfile(WEB_DIR / file_name, partial / file_name)
        for file_name in RUNTIME_FILES:
            shutil.copyfile(RUNTIME_DIST / file_name, partial / RUNTIME_FOLDER / file_name)
        shutil.copyfile(digits.path, partial / DIGIT_MODEL)
        config = page_config(
            digits.threshold, DIGIT_MODEL, api=False, offline=True, name=digits.name, line=line
        )
        if line:
            shutil.copyfile(line.path, partial / LINE_MODEL)
        else:
            config["messages"]["no_line_model"] = without_line
        files = sorted(str(path.relative_to(partial)) for path in partial.rglob("*") if path.is_file())
        config["files"] = files + [CONFIG]
        config["version"] = folder_hash(partial, files)  # a new cache for the service worker
        (partial / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(partial, folder)
    finally:
        if partial.exists():
            shutil.rmtree(partial)


def folder_hash(folder: Path, files: list[str]) -> str:
    """A short hash of the files' names and contents: it changes whenever any of them does."""
    digest = hashlib.sha256()
    for file_name in files:
        digest.update(file_name.encode() + b"\0" + (folder / file_name).read_bytes())
    return digest.hexdigest()[:16]
