"""Benchmark: our configurations beside the peers, on the same data, each in its own clean process.

    python bench/benchmark.py                 # full run, about 15 minutes on 2 cores
    python bench/benchmark.py --quick         # smoke run: 2,000 images, one epoch each
    python bench/benchmark.py --seeds 0,1,2   # each contender once per seed: mean and spread

Reports test accuracy, training seconds, training seconds until test accuracy first reaches 98% and
99% (checked at epoch ends, with the clock stopped while checking), samples/s, achieved GFLOP/s as
a share of a matmul ceiling measured in the same run in the dtype the contender trains in, and
evaluate.py's wall time; whether each of ours is on the accuracy-for-time front (no peer both
faster and at least as accurate), ours at several run lengths. Writes bench/results.json,
bench/results.md and bench/front.png, accuracy against training time (or --out DIR).
Hyperparameters are never chosen here: these test-set figures are measurements of settings chosen
on the validation split.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from bench.contenders import CONTENDERS
from bench.report import front_figure, markdown, over_seeds
from data import NUM_CLASSES, load_mnist, normalize_images
from ground.outputs import library_versions
from ground.quiet_tensorflow import import_tensorflow_quietly, usable_cores
from model import ModelConfig, probabilities_function
from recipe import settings
from recipe.config import training_split
from recipe.devices import training_precision
from recipe.fit import network_of, not_digit_count, train

import_tensorflow_quietly()
PROJECT_ROOT = Path(__file__).resolve().parent.parent
QUICK = {"training": {"limit": 2000, "epochs": 1}}
CEILING_DTYPES = ("float32", "bfloat16")  # the peers train in float32


class TestAccuracyClock(keras.callbacks.Callback):
    """Training seconds per epoch end, the clock stopped while test accuracy is measured, by the
    scores `reader` makes of the training model: images -> (n, 10) (by default its predict)."""

    def __init__(self, x_test: np.ndarray, y_test: np.ndarray, reader=None):
        super().__init__()
        self.x_test, self.y_test = x_test, y_test
        self.reader = reader or (
            lambda model: lambda images: model.predict(images, batch_size=1000, verbose=0)
        )
        self.points: list[tuple[float, float]] = []  # (training seconds, test accuracy)
        self.started: float | None = None

    def start(self) -> None:
        self.started, self.paused = time.perf_counter(), 0.0

    def on_train_begin(self, logs=None):
        if self.started is None:  # else started before `fit`, by training that prepares its images
            self.start()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        scores = self.reader(self.model)(self.x_test)
        self.points.append(
            (now - self.started - self.paused, float(np.mean(scores.argmax(1) == self.y_test)))
        )
        self.paused += time.perf_counter() - now


def flops_per_sample(model: keras.Model) -> float:
    """Forward + backward multiply-adds x2 of Dense and Conv2D layers (backward ~ 2x forward)."""
    forward = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            forward += 2 * layer.kernel.shape[0] * layer.units
        elif isinstance(layer, keras.layers.Conv2D):
            height, width = layer.output.shape[1:3]
            forward += 2 * height * width * int(np.prod(layer.kernel.shape))
    return 3.0 * forward


def seconds_to(points: list[tuple[float, float]], accuracy: float) -> float | None:
    return next((seconds for seconds, reached in points if reached >= accuracy), None)


def keras_result(
    model: keras.Model, clock: TestAccuracyClock, samples: int, epochs: int, precision: str = "float32"
) -> dict:
    seconds, accuracy = clock.points[-1]
    return {
        "precision": precision,
        "test_accuracy": accuracy,
        "train_seconds": seconds,
        "epochs": epochs,
        "seconds_to_98": seconds_to(clock.points, 0.98),
        "seconds_to_99": seconds_to(clock.points, 0.99),
        "samples_per_second": samples * epochs / seconds,
        "flops_per_sample": flops_per_sample(model),
        "curve": clock.points,
    }


def as_saved(model_config: ModelConfig):
    """A reader of our training models as predict.py and evaluate.py read the saved network: its
    float32 copy (a bfloat16 run's), softmax over the logits. Its sigmoid outputs would not do: they
    round to 1.0 for more than one digit of a confident reading, and a tie's argmax is the lower."""
    return lambda model: probabilities_function(network_of(model, model_config))


def run_ours(name: str, quick: bool, seed: int, data: dict, workdir: Path) -> dict:
    run = settings.resolve(
        settings.merged(CONTENDERS[name].settings, QUICK if quick else {}, {"training": {"seed": seed}})
    )
    x_fit, y_fit, x_val, y_val = data["split"](run.training)
    clock = TestAccuracyClock(data["x_test"], data["y_test"], as_saved(run.model))
    clock.start()  # making the images that are not digits is part of our training time
    model, _ = train(run.model, run.training, (x_fit, y_fit), (x_val, y_val), callbacks=[clock])
    samples = len(x_fit) + not_digit_count(len(x_fit), run.training)
    result = keras_result(model, clock, samples, run.training.epochs, training_precision(run.training))
    if name == "ours-mlp":
        probabilities = probabilities_function(model)  # as predict.py, serve.py and evaluate.py read
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            probabilities(data["x_test"])
            timings.append(time.perf_counter() - started)
        result["predict_10k_seconds"] = min(timings)
        model.save(workdir / "model.keras")
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "evaluate.py", "--model", str(workdir / "model.keras")],
            cwd=PROJECT_ROOT,
            check=True,
            capture_output=True,
        )
        result["evaluate_seconds"] = time.perf_counter() - started
    return result


def run_peer(name: str, quick: bool, seed: int, data: dict) -> dict:
    """One peer's recipe, trained on our split and timed as ours are."""
    x_fit, y_fit, _, _ = data["split"](
        settings.resolve(settings.merged(QUICK if quick else {}, {"training": {"seed": seed}})).training
    )
    if name == "sklearn-mlp":
        return run_sklearn_mlp(x_fit, y_fit, quick, seed, data)
    keras.utils.set_random_seed(seed)
    model, batch_size, epochs, optimizer = CONTENDERS[name].peer(len(x_fit))
    epochs = 1 if quick else epochs
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
    clock = TestAccuracyClock(data["x_test"], data["y_test"])
    model.fit(x_fit, y_fit, batch_size=batch_size, epochs=epochs, callbacks=[clock], verbose=2)
    return keras_result(model, clock, len(x_fit), epochs)


def run_sklearn_mlp(x_fit: np.ndarray, y_fit: np.ndarray, quick: bool, seed: int, data: dict) -> dict:
    """scikit-learn's MLPClassifier (128 hidden units), one partial_fit per epoch."""
    from sklearn.neural_network import MLPClassifier

    classifier = MLPClassifier(hidden_layer_sizes=(128,), random_state=seed)
    x_flat, labels = x_fit.reshape(len(x_fit), -1), y_fit.argmax(1)
    test_flat = data["x_test"].reshape(len(data["x_test"]), -1)
    points, trained = [], 0.0
    epochs = 1 if quick else 10
    for _ in range(epochs):  # partial_fit is one pass over the data
        started = time.perf_counter()
        classifier.partial_fit(x_flat, labels, classes=np.arange(NUM_CLASSES))
        trained += time.perf_counter() - started
        points.append((trained, float(np.mean(classifier.predict(test_flat) == data["y_test"]))))
    return {
        "precision": "float32",
        "test_accuracy": points[-1][1],
        "train_seconds": trained,
        "epochs": epochs,
        "seconds_to_98": seconds_to(points, 0.98),
        "seconds_to_99": seconds_to(points, 0.99),
        "samples_per_second": len(x_fit) * epochs / trained,
        "flops_per_sample": 3.0 * 2 * (784 * 128 + 128 * 10),
        "curve": points,
    }


def matmul_ceiling(size: int, dtype: str) -> float:
    """GFLOP/s of a size x size matrix multiply in `dtype` in TensorFlow, best of 5."""
    import tensorflow as tf

    a = tf.cast(tf.random.normal((size, size)), dtype)
    tf.matmul(a, a).numpy()
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        tf.matmul(a, a).numpy()
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def worker(name: str, quick: bool, seed: int, result_path: Path) -> None:
    """Run one contender with `seed` in this (fresh) process and write its result as JSON."""
    if name == "matmul-ceiling":
        result = {dtype: matmul_ceiling(1024 if quick else 4096, dtype) for dtype in CEILING_DTYPES}
    else:
        mnist = load_mnist()
        data = {
            "x_test": normalize_images(mnist.x_test),
            "y_test": mnist.y_test,
            "split": lambda config: training_split(mnist, config),
        }
        with tempfile.TemporaryDirectory() as workdir:
            if CONTENDERS[name].settings is not None:
                result = run_ours(name, quick, seed, data, Path(workdir))
            else:
                result = run_peer(name, quick, seed, data)
    result_path.write_text(json.dumps(result))


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": usable_cores(), "os": platform.platform(), **library_versions()}


def seed_list(text: str) -> list[int]:
    """--seeds: "0,1,2" -> [0, 1, 2]."""
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give seeds as whole numbers, e.g. 0,1,2") from None
    if any(seed < 0 for seed in seeds) or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r}: give distinct seeds of 0 or more")
    return seeds


def run_workers(runs: list[tuple[str, int]], quick: bool) -> dict[str, list[dict]]:
    """Each (contender, seed) run in a process of its own, in turn; their results by contender."""
    outputs = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, seed in runs:
            result_path = Path(folder) / f"{name}-{seed}.json"
            print(f"running {name}, seed {seed} ...", flush=True)
            command = [
                sys.executable,
                __file__,
                "--worker",
                name,
                "--seeds",
                str(seed),
                "--result",
                str(result_path),
            ]
            # Its epoch lines show progress; TensorFlow's log only on failure.
            worker_run = subprocess.run(
                command + (["--quick"] if quick else []), stderr=subprocess.PIPE, text=True
            )
            if worker_run.returncode:
                raise SystemExit(f"error: {name} failed:\n{worker_run.stderr[-3000:]}")
            outputs.setdefault(name, []).append(json.loads(result_path.read_text()))
    return outputs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 images, one epoch: a smoke run")
    parser.add_argument("--only", nargs="+", choices=CONTENDERS, help="run these contenders only")
    parser.add_argument(
        "--seeds",
        type=seed_list,
        default=[0],
        help="comma-separated seeds, e.g. 0,1,2: each contender once per seed",
    )
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench", help="folder for results.*")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.quick, args.seeds[0], args.result)

    runs = [("matmul-ceiling", 0)] + [(name, seed) for name in args.only or CONTENDERS for seed in args.seeds]
    outputs = run_workers(runs, args.quick)
    ceilings = outputs.pop("matmul-ceiling")[0]
    results = {name: over_seeds(runs) for name, runs in outputs.items()}
    for result in results.values():
        result["gflops"] = result["samples_per_second"] * result["flops_per_sample"] / 1e9
        result["ceiling_fraction"] = result["gflops"] / ceilings[result["precision"]]
    info = machine()
    table = markdown(results, ceilings, info, args.quick)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if args.quick else ""
    (args.out / f"results{suffix}.md").write_text(table)
    front_figure(results, args.out / f"front{suffix}.png")
    report = {
        "machine": info,
        "matmul_ceiling_gflops": ceilings,
        "quick": args.quick,
        "seeds": args.seeds,
        "results": results,
    }
    (args.out / f"results{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
