import json

from conftest import run_script


def test_quick_benchmark_writes_a_table_and_json_for_each_contender(tmp_path):
    result = run_script("bench/benchmark.py", "--quick", "--only", "ours-mlp", "seed-mlp", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "results-quick.json").read_text())
    assert set(report["results"]) == {"ours-mlp", "seed-mlp"}
    assert report["matmul_ceiling_gflops"] > 0 and report["machine"]["cores"] >= 1
    ours = report["results"]["ours-mlp"]
    assert 0.1 < ours["test_accuracy"] <= 1 and ours["train_seconds"] > 0
    assert ours["flops_per_sample"] == 3 * 2 * (784 * 1024 + 1024 * 512 + 512 * 10)
    assert ours["evaluate_seconds"] > 0 and ours["predict_10k_seconds"] > 0
    table = (tmp_path / "results-quick.md").read_text()
    assert "| ours-mlp |" in table and "| ours-mlp vs seed-mlp |" in table
    assert "| default MLP test accuracy >= 98.7% |" in table
