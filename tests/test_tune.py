"""tune.py: a real KerasTuner search on a slice of MNIST, what it writes, and train.py --config."""

import csv
import json
import os
import signal
import time

import keras_tuner
import matplotlib.image
import pytest

import evaluate
import train
import tune
from conftest import run_script, start_script
from ground.outputs import folder_lock
from model import build_model
from recipe.callbacks import StopOnSignal
from recipe.settings import ARCH_DEFAULTS, resolve

# Hyperband with 3 epochs at most runs 6 trials of 1 to 3 epochs: seconds on 1,500 images.
SMALL_SEARCH = ["--limit", "1500", "--max-epochs", "3"]


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tuning")
    return tune.main(SMALL_SEARCH + ["--out", str(folder)]), folder


def read_trials(folder):
    with open(folder / "trials.csv", newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.mark.slow
def test_search_writes_its_best_trial_as_a_train_config(search):
    best, folder = search
    assert json.loads((folder / "best_config.json").read_text()) == best
    assert resolve(best).as_dict() == best  # complete settings, in run.json's shape
    assert best["model"]["output_activation"] == "sigmoid" and best["training"]["epochs"] == 3
    assert best["training"]["limit"] == 1500 and best["training"]["seed"] == 0
    rows = read_trials(folder)
    assert len(rows) == 6 and {row["status"] for row in rows} == {"COMPLETED"}
    top_score = max(float(row["val_accuracy"]) for row in rows)
    assert top_score > 0.5  # chance is 0.1
    assert any(
        float(row["val_accuracy"]) == top_score
        and row["hidden"] == ",".join(map(str, best["model"]["hidden"]))
        and float(row["lr"]) == best["training"]["lr"]
        and int(row["batch_size"]) == best["training"]["batch_size"]
        for row in rows
    )


@pytest.mark.slow
def test_search_writes_a_markdown_table_and_a_plot(search):
    _, folder = search
    table = (folder / "trials.md").read_text().splitlines()
    assert table[0].startswith("# hyperband search over the mlp: 6 trials on 1,350 images")
    assert len([line for line in table if line.startswith("| 0")]) == 6
    image = matplotlib.image.imread(folder / "trials.png")
    assert image.shape[0] > 300 and image.shape[1] > 600


@pytest.mark.slow
def test_train_takes_the_best_config_and_flags_override_it(search, tmp_path, capsys):
    best, folder = search
    _, record = train.main(
        [
            "--config",
            str(folder / "best_config.json"),
            "--epochs",
            "1",
            "--limit",
            "1000",
            "--out",
            str(tmp_path),
        ]
    )
    assert record["model"] == best["model"]
    assert record["training"] == {**best["training"], "epochs": 1, "limit": 1000}
    assert record["epochs_run"] == 1  # the flag, not the config's 3
    evaluate.main(["--model", str(tmp_path / "model.keras")])  # in this process: TensorFlow is up
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.slow
def test_other_search_settings_are_refused_in_the_same_folder(search):
    _, folder = search
    with pytest.raises(SystemExit, match="holds work done with other settings.*--fresh"):
        tune.main(["--limit", "1500", "--max-epochs", "4", "--out", str(folder)])


def trial_status(path):
    """A trial's status from KerasTuner's trial.json, None while it is missing or half-written."""
    try:
        return json.loads(path.read_text())["status"]
    except (FileNotFoundError, json.JSONDecodeError):
        return None


@pytest.mark.slow
def test_interrupted_search_resumes_where_it_stopped(tmp_path, capsys):
    argv = [
        "tune.py",
        "--tuner",
        "bayesian",
        "--trials",
        "3",
        "--max-epochs",
        "2",
        "--limit",
        "1000",
        "--out",
        str(tmp_path),
    ]
    process = start_script(*argv)
    first_trial = tmp_path / "search" / "trial_0" / "trial.json"
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if trial_status(first_trial) == "COMPLETED":
            break
        time.sleep(0.05)
    assert process.poll() is None, "the search ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "run the same command again to resume it" in stderr.splitlines()[-1]
    assert not (tmp_path / "best_config.json").exists()

    tune.main(argv[1:])  # resumed in this process, as the stop was tested in its own
    assert "Reloading Tuner" in capsys.readouterr().out
    rows = read_trials(tmp_path)
    assert [row["trial"] for row in rows] == ["0", "1", "2"]
    assert {row["status"] for row in rows} == {"COMPLETED"}


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_default_point_of_the_search_space_is_train_pys_default(arch):
    base = tune.parse_args(["--arch", arch]).search.base
    assert base == ARCH_DEFAULTS[arch]
    hypermodel = tune.DigitHyperModel(base, 1000, StopOnSignal())
    hp = keras_tuner.HyperParameters()
    assert hypermodel.settings(hp) == ARCH_DEFAULTS[arch]
    assert hypermodel.build(hp).count_params() == build_model(ARCH_DEFAULTS[arch].model).count_params()


def test_fixed_settings_are_flags_and_searched_ones_are_not(capsys):
    base = tune.parse_args(["--no-augment", "--seed", "3", "--max-epochs", "4"]).search.base
    assert base.training.augment is False and base.training.seed == 3 and base.training.epochs == 4
    with pytest.raises(SystemExit):
        tune.parse_args(["--lr", "0.1"])
    assert "unrecognized arguments: --lr" in capsys.readouterr().err


@pytest.mark.slow
def test_each_trial_writes_its_own_tensorboard_logs(search):
    _, folder = search
    trials = [row["trial"] for row in read_trials(folder)]
    logged = {
        path.relative_to(folder / "logs").parts[0] for path in (folder / "logs").rglob("train/events.*")
    }
    assert set(trials) <= logged, (trials, logged)


@pytest.mark.slow
def test_a_second_search_on_the_same_folder_says_it_is_in_use_and_touches_nothing(tmp_path):
    with folder_lock(tmp_path):  # as a search (or train.py) holds its --out while it runs
        result = run_script("tune.py", "--out", str(tmp_path), "--fresh")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"is in use by another run (process {os.getpid()})" in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == [".lock"]
