import json
import os
import shutil
import warnings

import matplotlib.image
import numpy as np
import pytest
from sklearn.exceptions import UndefinedMetricWarning

import evaluate
from conftest import run_script
from ground.outputs import folder_lock
from ground.saved_network import LOGITS_LAYER
from model import ModelConfig, build_model


@pytest.fixture(scope="module")
def evaluation(untrained_run, tmp_path_factory):
    """evaluate.py on a copy of an untrained model: its outputs go beside the model by default."""
    folder = tmp_path_factory.mktemp("evaluated")
    shutil.copy(untrained_run.folder / "model.keras", folder / "model.keras")
    return evaluate.main(["--model", str(folder / "model.keras")]), folder


def test_confusion_matrix_sums_to_test_set_size(evaluation):
    matrix = np.array(evaluation[0]["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 10000
    assert matrix.sum(axis=1).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_metrics_json_agrees_with_its_confusion_matrix(evaluation):
    metrics, folder = evaluation
    assert json.loads((folder / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    matrix = np.array(metrics["confusion_matrix"])
    assert metrics["accuracy"] == pytest.approx(np.trace(matrix) / 10000)
    assert metrics["per_class"]["4"]["recall"] == pytest.approx(matrix[4, 4] / matrix[4].sum())
    assert metrics["loss"] > 0
    top = metrics["most_confused_pairs"][0]
    a, b = top["digits"]
    assert (
        top["errors"]
        == matrix[a, b] + matrix[b, a]
        == max(matrix[i, j] + matrix[j, i] for i in range(10) for j in range(i + 1, 10))
    )


def test_plots_are_png_images(evaluation):
    folder = evaluation[1]
    for name in ("confusion_matrix.png", "confusion_matrix_normalized.png", "misclassified.png"):
        image = matplotlib.image.imread(folder / name)
        assert image.ndim == 3 and min(image.shape[:2]) > 300, name


@pytest.mark.slow
def test_a_trained_models_accuracy_is_printed(trained_run, capsys, tmp_path):
    metrics = evaluate.main(["--model", str(trained_run.folder / "model.keras"), "--out", str(tmp_path)])
    assert 0.8 < metrics["accuracy"] < 1
    out = capsys.readouterr().out
    assert f"test accuracy {metrics['accuracy']:.4f} ({round(metrics['accuracy'] * 10000)}/10000)" in out
    assert "most confused pairs: " in out and "precision" in out


def test_missing_model_prints_one_line_and_exits_nonzero(tmp_path):
    with pytest.raises(SystemExit) as exit:
        evaluate.main(["--model", str(tmp_path / "model.keras")])
    assert (
        exit.value.code
        == f"error: no trained model at {tmp_path / 'model.keras'}: run `python train.py` first"
    )


@pytest.mark.slow
def test_a_folder_a_run_is_writing_into_is_not_evaluated_into(untrained_run, tmp_path):
    shutil.copy(untrained_run.folder / "model.keras", tmp_path / "model.keras")
    with folder_lock(tmp_path):  # as train.py holds its --out while it trains
        result = run_script("evaluate.py", "--model", str(tmp_path / "model.keras"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"is in use by another run (process {os.getpid()})" in result.stderr
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "confusion_matrix.png").exists()


def test_the_error_shares_show_each_error_as_a_share_of_its_digit_with_the_diagonal_apart():
    matrix = np.diag(np.full(10, 998))
    matrix[4, 9], matrix[4, 7], matrix[7, 1] = 1, 1, 2  # 0.1% and 0.2% of a digit read as another
    figure = evaluate.error_shares_figure(matrix)
    [errors, diagonal] = [image.get_array() for image in reversed(figure.axes[0].images)]
    shown = {
        (round(text.get_position()[1]), round(text.get_position()[0])): text.get_text()
        for text in figure.axes[0].texts
    }
    assert shown[4, 9] == shown[4, 7] == "0.1" and shown[7, 1] == "0.2" and shown[0, 0] == "100.0"
    assert (3, 5) not in shown  # no error: nothing written
    assert errors.mask[np.diag_indices(10)].all() and not errors.mask[4, 9]  # errors on a scale of their own
    assert diagonal[4, 4] > 0 and diagonal[4, 9] is np.ma.masked  # the diagonal alone, in grey


def test_a_digit_the_model_never_reads_has_precision_zero_and_raises_no_warning(mnist, tmp_path):
    model = build_model(ModelConfig(hidden=(8,)))
    logits = model.get_layer(LOGITS_LAYER)
    kernel, bias = logits.get_weights()
    bias[:], bias[7] = 0.0, 5.0
    logits.set_weights([np.zeros_like(kernel), bias])  # every image read as 7
    with warnings.catch_warnings():
        warnings.simplefilter("error", UndefinedMetricWarning)
        metrics = evaluate.measure(model, mnist, "sevens", tmp_path, top_pairs=5)
    assert metrics["per_class"]["3"]["precision"] == 0.0 and metrics["per_class"]["7"]["recall"] == 1.0
