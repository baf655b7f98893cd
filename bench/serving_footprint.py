"""What reading digits costs to install and to start: the full environment (requirements.txt, with
TensorFlow) reading model.keras against requirements-serve.txt's reading model.onnx.

    python bench/serving_footprint.py              # artifacts/model.keras and artifacts/export/model.onnx
    python bench/serving_footprint.py --keras run/model.keras --onnx run-export/model.onnx --runs 5

Each environment is created afresh in a temporary folder (pip's cache makes that a minute or two,
more on a first download). Reports each one's size on disk, and the median over --runs of the wall
time of `predict.py` reading one digit and of serve.py from its start to its first /healthz answer.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from data import load_mnist
from harness.local_server import running_server

PROJECT_ROOT = Path(__file__).resolve().parent.parent

ENVIRONMENTS = {"requirements.txt": "keras", "requirements-serve.txt": "onnx"}


def environment(folder: Path, requirements: str) -> tuple[str, int]:
    """A new virtual environment in `folder` holding `requirements`: its Python and size in bytes."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    python = str(folder / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "-r", requirements], cwd=PROJECT_ROOT, check=True
    )
    return python, sum(file.stat().st_size for file in folder.rglob("*") if file.is_file())


def seconds(action, runs: int) -> float:
    """The median wall time of `action()` over `runs` runs."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keras", type=Path, default=PROJECT_ROOT / "artifacts" / "model.keras")
    parser.add_argument("--onnx", type=Path, default=PROJECT_ROOT / "artifacts" / "export" / "model.onnx")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    models = {"keras": args.keras.resolve(), "onnx": args.onnx.resolve()}
    for path in models.values():
        if not path.is_file():
            raise SystemExit(f"error: no model at {path}: run `python train.py` and `python export.py` first")

    report = {}
    with tempfile.TemporaryDirectory() as scratch:
        digit = Path(scratch) / "digit.png"
        Image.fromarray(255 - load_mnist().x_test[0]).resize((140, 140)).save(digit)
        for requirements, kind in ENVIRONMENTS.items():
            print(f"installing {requirements} into a new environment...", flush=True)
            python, size = environment(Path(scratch) / kind, requirements)
            model = models[kind]

            def predict(python=python, model=model):
                command = [python, "predict.py", str(digit), "--model", str(model)]
                subprocess.run(command, cwd=PROJECT_ROOT, check=True, capture_output=True)

            def serve(python=python, model=model):
                with running_server(model, python=python):
                    pass

            report[requirements] = {
                "model": model.name,
                "installed_mb": round(size / 1e6),
                "predict_one_digit_seconds": round(seconds(predict, args.runs), 2),
                "serve_until_healthz_seconds": round(seconds(serve, args.runs), 2),
            }
            print(json.dumps({requirements: report[requirements]}), flush=True)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
