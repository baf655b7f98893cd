"""The benchmark's report: its results over seeds, the markdown tables (bench/results.md), which of
ours stand on the accuracy-for-time front, and the front's figure (bench/front.png).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from bench.contenders import CONTENDERS
from ground.outputs import save_figure

# Each of our networks at several run lengths, shortest first: a line each on the front's figure.
RUN_LENGTHS = {
    "our MLP": ("ours-mlp-5-epochs", "ours-mlp-10-epochs", "ours-mlp"),
    "our CNN": (
        "ours-cnn-1-epoch",
        "ours-cnn-2-epochs",
        "ours-cnn-5-epochs",
        "ours-cnn-10-epochs",
        "ours-cnn",
    ),
}
TARGETS = [  # (what, contender, field, comparison, bound): the CNN frontier's, and reading speeds
    ("default CNN test accuracy >= 99.6%", "ours-cnn", "test_accuracy", ">=", 0.996),
    ("default CNN training <= 600 s", "ours-cnn", "train_seconds", "<=", 600),
    ("default MLP test accuracy >= 99.05%", "ours-mlp", "test_accuracy", ">=", 0.9905),
    ("default MLP training <= 95 s", "ours-mlp", "train_seconds", "<=", 95),
    ("evaluate.py start to PNGs <= 6.1 s (unchanged)", "ours-mlp", "evaluate_seconds", "<=", 6.1),
    ("predicting 10,000 test images <= 0.19 s (unchanged)", "ours-mlp", "predict_10k_seconds", "<=", 0.19),
]


def fmt(value, pattern: str) -> str:
    return "—" if value is None else format(value, pattern)


def over_seeds(runs: list[dict]) -> dict:
    """One contender's runs, one per seed, as one result: the mean of each figure (None where any
    run never got there), the test accuracy's range, and the runs themselves."""
    combined = {}
    for key, value in runs[0].items():
        values = [run[key] for run in runs]
        if None in values:
            combined[key] = None
        elif isinstance(value, int) and len(set(values)) == 1:  # epochs: the same for every seed
            combined[key] = value
        elif isinstance(value, (int, float)):
            combined[key] = float(np.mean(values))
        elif isinstance(value, str):  # precision: the same for every seed
            combined[key] = value
    accuracies = [run["test_accuracy"] for run in runs]
    return {**combined, "test_accuracy_range": [min(accuracies), max(accuracies)], "runs": runs}


def markdown(results: dict, ceilings: dict, info: dict, quick: bool) -> str:
    seeds = len(next(iter(results.values()))["runs"])
    lines = [
        f"Benchmark{' (quick smoke run)' if quick else ''}, {time.strftime('%Y-%m-%d')}: {info['cpu']}, "
        f"{info['cores']} cores; TensorFlow {info['tensorflow']}, Keras {info['keras']}, "
        f"scikit-learn {info['scikit-learn']}, Python {info['python']}. "
        f"Matmul ceiling: {ceilings['float32']:.0f} GFLOP/s in float32, {ceilings['bfloat16']:.0f} in "
        "bfloat16; each contender's share is of the ceiling of the dtype it trains in."
        + (
            f" Each figure is the mean over {seeds} seeds, test accuracy with their range; — where "
            "any seed never got there."
            if seeds > 1
            else ""
        ),
        "",
        "| contender | dtype | test acc. | train s | s to 98% | s to 99% | samples/s | GFLOP/s "
        "| of ceiling |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        gflops = result["gflops"]
        low, high = result["test_accuracy_range"]
        spread = f" ({low:.2%}-{high:.2%})" if seeds > 1 else ""
        lines.append(
            f"| {name} | {result['precision']} | {result['test_accuracy']:.2%}{spread} | "
            f"{result['train_seconds']:.1f} | "
            f"{fmt(result['seconds_to_98'], '.1f')} | {fmt(result['seconds_to_99'], '.1f')} | "
            f"{result['samples_per_second']:,.0f} | {gflops:.1f} | {result['ceiling_fraction']:.2f} |"
        )
    lines += ["", "| ours vs peer | accuracy gain | training time ratio |", "|---|---|---|"]
    for name, contender in CONTENDERS.items():
        ours = contender.compared_with
        if ours and name in results and ours in results:
            gain = results[ours]["test_accuracy"] - results[name]["test_accuracy"]
            ratio = results[ours]["train_seconds"] / results[name]["train_seconds"]
            lines.append(f"| {ours} vs {name} | {gain * 100:+.2f} points | {ratio:.2f}x |")
    lines += ["", "| ours | on the front: no peer faster and at least as accurate |", "|---|---|"]
    for name, ahead in peers_ahead(results).items():
        lines.append(f"| {name} | {'yes' if not ahead else '**no**: ' + ', '.join(ahead)} |")
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for what, name, field, comparison, bound in TARGETS:
        if name not in results:
            lines.append(f"| {what} | not run | — |")
            continue
        value = results[name].get(field)
        met = value is not None and (value >= bound if comparison == ">=" else value <= bound)
        shown = fmt(value, ".2%") if field == "test_accuracy" else fmt(value, ".2f")
        lines.append(f"| {what} | {shown} | {'yes' if met else '**no**'} |")
    return "\n".join(lines) + "\n"


def peers_ahead(results: dict) -> dict[str, list[str]]:
    """For each of our contenders, the peers that trained in less time to at least its accuracy:
    none where it is on the accuracy-for-time front."""
    peers = [name for name in results if not name.startswith("ours")]
    return {
        name: [
            peer
            for peer in peers
            if results[peer]["train_seconds"] < result["train_seconds"]
            and results[peer]["test_accuracy"] >= result["test_accuracy"]
        ]
        for name, result in results.items()
        if name.startswith("ours")
    }


def front_figure(results: dict, path: Path) -> None:
    """Test accuracy against training seconds for every contender, ours as a line through their run
    lengths, and the front: the best accuracy reached in at most so many seconds."""
    figure = Figure(figsize=(9, 5.5), layout="constrained")
    ax = figure.subplots()
    for label, names in RUN_LENGTHS.items():
        shown = [name for name in names if name in results]
        seconds = [results[name]["train_seconds"] for name in shown]
        accuracies = [100 * results[name]["test_accuracy"] for name in shown]
        ax.plot(seconds, accuracies, marker="o", label=f"{label}, its epochs marked")
        for name, point in zip(shown, zip(seconds, accuracies, strict=True), strict=True):
            ax.annotate(
                str(results[name]["epochs"]), point, fontsize=8, xytext=(-4, 6), textcoords="offset points"
            )
    on_lines = {name for names in RUN_LENGTHS.values() for name in names}
    for name, result in results.items():
        ours = name.startswith("ours")
        ax.scatter(result["train_seconds"], 100 * result["test_accuracy"], color="black" if ours else "grey")
        if not ours or name not in on_lines:  # to the left: the lines' epoch marks are above
            ax.annotate(
                name,
                (result["train_seconds"], 100 * result["test_accuracy"]),
                fontsize=8,
                xytext=(-6, -10),
                textcoords="offset points",
                ha="right",
            )
    ordered = sorted(results.values(), key=lambda result: result["train_seconds"])
    best = np.maximum.accumulate([100 * result["test_accuracy"] for result in ordered])
    ax.step(
        [result["train_seconds"] for result in ordered],
        best,
        where="post",
        color="grey",
        linestyle="--",
        label="the front: best accuracy in at most that time",
    )
    ax.set(
        xscale="log",
        xlabel="training seconds (log scale)",
        ylabel="test accuracy (%)",
        title="Accuracy for training time, each contender once (bench/results.md)",
    )
    ax.set_xlim(left=ordered[0]["train_seconds"] / 4)  # room for the fastest one's name
    ax.set_ylim(max(96.5, min(100 * result["test_accuracy"] for result in ordered) - 0.2), None)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right")
    save_figure(figure, path)
