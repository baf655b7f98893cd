import json
import runpy
import sys

import numpy as np
import pytest

from conftest import PROJECT_ROOT, run_script
from model import LOGITS_LAYER, ModelConfig
from recipe.fit import network_of, training_model

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def quick_benchmark(tmp_path_factory):
    """One quick run of ours and a peer, two seeds each: every contender in a process of its own."""
    folder = tmp_path_factory.mktemp("bench")
    result = run_script(
        "bench/benchmark.py",
        "--quick",
        "--only",
        "ours-mlp",
        "seed-mlp",
        "--seeds",
        "0,1",
        "--out",
        str(folder),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (folder / "front-quick.png").stat().st_size > 10_000  # the accuracy-for-time figure
    return json.loads((folder / "results-quick.json").read_text()), (folder / "results-quick.md").read_text()


def test_quick_benchmark_measures_each_contender_from_its_own_curve(quick_benchmark):
    report, _ = quick_benchmark
    assert set(report["results"]) == {"ours-mlp", "seed-mlp"}
    ceilings = report["matmul_ceiling_gflops"]
    for name, result in report["results"].items():
        for run in result["runs"]:
            ((seconds, accuracy),) = run["curve"]  # one epoch, one point
            assert run["epochs"] == 1 and run["train_seconds"] == seconds and run["test_accuracy"] == accuracy
            # 2,000 images less 10% held out, and ours add a fifth as many that are not digits
            images = 1800 if name == "seed-mlp" else 2160
            assert run["samples_per_second"] == pytest.approx(images / seconds)
            assert run["seconds_to_98"] == (seconds if accuracy >= 0.98 else None), name
        assert result["gflops"] == pytest.approx(
            result["samples_per_second"] * result["flops_per_sample"] / 1e9
        )
        assert result["precision"] == "float32"  # the MLP's default, on any CPU
        assert result["ceiling_fraction"] == pytest.approx(result["gflops"] / ceilings["float32"])
    ours = report["results"]["ours-mlp"]
    assert ours["test_accuracy"] > 0.5  # one epoch on 1,800 images; chance is 0.1
    assert ours["flops_per_sample"] == 3 * 2 * (784 * 1024 + 1024 * 512 + 512 * 10)
    assert ours["evaluate_seconds"] > ours["predict_10k_seconds"] > 0


def test_several_seeds_give_each_figure_as_their_mean_and_the_accuracys_range(quick_benchmark):
    report, table = quick_benchmark
    assert report["seeds"] == [0, 1]
    for name, combined in report["results"].items():
        accuracies = [run["test_accuracy"] for run in combined["runs"]]
        low, high = min(accuracies), max(accuracies)
        assert len(accuracies) == 2 and low != high  # the seed reaches the weights and the split
        assert combined["test_accuracy"] == pytest.approx(sum(accuracies) / 2)
        seconds = [run["train_seconds"] for run in combined["runs"]]
        assert combined["train_seconds"] == pytest.approx(sum(seconds) / 2)
        assert combined["test_accuracy_range"] == [low, high]
        row = f"| {name} | float32 | {combined['test_accuracy']:.2%} ({low:.2%}-{high:.2%})"
        assert f"{row} | {combined['train_seconds']:.1f} |" in table


def seed_run(accuracy: float, seconds: float, to_98: float | None) -> dict:
    """One seed's result as a benchmark worker reports it (the fields over_seeds combines)."""
    return {
        "epochs": 1,
        "precision": "float32",
        "test_accuracy": accuracy,
        "train_seconds": seconds,
        "seconds_to_98": to_98,
        "seconds_to_99": None,
        "samples_per_second": 1800 / seconds,
    }


def test_a_contenders_seeds_combine_into_means_none_where_any_never_got_there():
    from bench.report import over_seeds

    runs = [seed_run(0.99, 10.0, 4.0), seed_run(0.97, 20.0, None)]
    combined = over_seeds(runs)
    assert combined["epochs"] == 1 and isinstance(combined["epochs"], int)
    assert combined["test_accuracy"] == pytest.approx(0.98) and combined["train_seconds"] == 15.0
    assert combined["samples_per_second"] == pytest.approx((180 + 90) / 2)
    assert combined["seconds_to_98"] is None and combined["precision"] == "float32"
    assert combined["test_accuracy_range"] == [0.97, 0.99] and combined["runs"] == runs


def test_with_one_seed_the_table_gives_each_figure_without_a_range():
    from bench.report import markdown, over_seeds

    result = {**over_seeds([seed_run(0.99, 10.0, 4.0)]), "gflops": 1.5, "ceiling_fraction": 0.01}
    machine = {
        "cpu": "a CPU",
        "cores": 2,
        "tensorflow": "2",
        "keras": "3",
        "scikit-learn": "1",
        "python": "3.11",
    }
    table = markdown({"ours-mlp": result}, {"float32": 150.0, "bfloat16": 300.0}, machine, quick=True)
    assert "| ours-mlp | float32 | 99.00% | 10.0 | 4.0 | — | 180 | 1.5 | 0.01 |" in table
    assert "mean over" not in table


def test_an_ours_is_on_the_front_unless_a_peer_is_faster_and_at_least_as_accurate():
    from bench import report

    def run(seconds, accuracy):
        return {"train_seconds": seconds, "test_accuracy": accuracy}

    results = {
        "ours-a": run(10, 0.99),
        "ours-b": run(50, 0.995),
        "ours-c": run(20, 0.985),
        "peer-x": run(5, 0.99),  # faster than ours-a and as accurate
        "peer-y": run(30, 0.994),  # as accurate as neither ours-b (faster) nor slower than ours-c
    }
    assert report.peers_ahead(results) == {"ours-a": ["peer-x"], "ours-b": [], "ours-c": ["peer-x"]}


def test_quick_benchmark_table_compares_ours_with_its_peer_and_the_target(quick_benchmark):
    report, table = quick_benchmark
    ours, peer = report["results"]["ours-mlp"], report["results"]["seed-mlp"]
    gain = (ours["test_accuracy"] - peer["test_accuracy"]) * 100
    assert f"| ours-mlp vs seed-mlp | {gain:+.2f} points |" in table
    on_the_front = not (
        peer["train_seconds"] < ours["train_seconds"] and peer["test_accuracy"] >= ours["test_accuracy"]
    )
    assert f"| ours-mlp | {'yes' if on_the_front else '**no**: seed-mlp'} |" in table
    met = "yes" if ours["test_accuracy"] >= 0.9905 else "**no**"
    assert f"| default MLP test accuracy >= 99.05% | {ours['test_accuracy']:.2%} | {met} |" in table


def test_our_test_accuracy_is_read_as_predict_py_reads_it_not_from_the_sigmoid_outputs():
    from bench import benchmark

    model_config = ModelConfig()  # the default: 10 sigmoid outputs
    model = training_model(model_config, augment=False)
    logits = network_of(model, model_config).get_layer(LOGITS_LAYER)
    kernel, bias = logits.get_weights()
    bias[:] = 0.0
    bias[3], bias[7] = 30.0, 40.0  # sure of 7; both sigmoids round to 1.0 in float32
    logits.set_weights([np.zeros_like(kernel), bias])
    images, labels = np.zeros((5, 28, 28), np.float32), np.full(5, 7)
    assert network_of(model, model_config).predict(images, verbose=0).argmax(axis=1).tolist() == [3] * 5

    clock = benchmark.TestAccuracyClock(images, labels, benchmark.as_saved(model_config))
    clock.set_model(model)
    clock.on_train_begin()
    clock.on_epoch_end(0)
    assert clock.points[-1][1] == 1.0


BENCH_SCRIPTS = [
    path.name for path in (PROJECT_ROOT / "bench").glob("*.py") if "__main__" in path.read_text()
]


@pytest.mark.parametrize("script", sorted(BENCH_SCRIPTS))
def test_every_bench_script_starts_and_explains_itself(script, monkeypatch, capsys):
    # Run as `python bench/SCRIPT --help` runs it, in this process, where TensorFlow is imported once.
    monkeypatch.setattr(sys, "argv", [f"bench/{script}", "--help"])
    with pytest.raises(SystemExit) as exit:
        runpy.run_path(str(PROJECT_ROOT / "bench" / script), run_name="__main__")
    assert exit.value.code == 0 and "usage:" in capsys.readouterr().out


def test_number_sets_hold_the_digits_they_claim_in_the_way_they_claim(mnist):
    from bench import number_sets

    digits, labels = mnist.x_test[:200], mnist.y_test[:200]
    for name, (length, _) in number_sets.NUMBER_SETS.items():
        numbers = number_sets.number_set(name, digits, labels, 5)
        assert len(numbers) == 5 and all(len(truth) == length and truth.isdigit() for _, truth in numbers)
        assert numbers == number_sets.number_set(name, digits, labels, 5)  # the same for every reader
    # Touching digits leave no column of paper between some of them; apart, nearly all have paper around.
    for name, apart in (("touching", False), ("5 digits", True)):
        for image, _ in number_sets.number_set(name, digits, labels, 5):
            columns = np.flatnonzero(((255 - np.asarray(image)) > 60).any(axis=0))
            runs = 1 + np.count_nonzero(np.diff(columns) > 1)
            assert runs >= 4 if apart else runs < 5


def test_the_line_reader_and_division_are_compared_on_every_set(trained_run, line_model_file, tmp_path):
    classifier = str(trained_run.folder / "model.keras")
    result = run_script(
        "bench/number_reading.py",
        classifier,
        "--line-model",
        str(line_model_file),
        "--count",
        "3",
        "--split",
        "validation",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads((tmp_path / "line_vs_division.json").read_text())
    assert set(results) == {"5 digits", "pen lift", "touching", "10 digits", "font"}
    for readers in results.values():
        assert set(readers) == {"division", "line"}
        assert all(0 <= scores["read_right"] + scores["wrong_unflagged"] <= 1 for scores in readers.values())
    assert "| touching |" in (tmp_path / "line_vs_division.md").read_text()
