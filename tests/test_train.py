import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import matplotlib.image
import numpy as np
import pytest
import tensorflow as tf

import train
from conftest import PROJECT_ROOT, TINY_TRAINING, assert_tensorboard_logs, run_script
from data import MNIST_SHA256, normalize_images
from ground import outputs
from ground.quiet_tensorflow import intra_op_threads
from ground.saved_network import load_trained_model
from recipe.callbacks import completed_epochs


@pytest.mark.slow
def test_training_lowers_loss_on_a_real_slice(trained_run):
    history = json.loads((trained_run.folder / "history.json").read_text())
    assert len(history["loss"]) == 2
    assert history["loss"][-1] < history["loss"][0]
    assert history["val_accuracy"][-1] > 0.8  # chance is 0.1


@pytest.mark.slow
def test_saved_model_reloads_and_predicts_the_same(trained_run, mnist):
    images = normalize_images(mnist.x_test[:200])
    reloaded = load_trained_model(trained_run.folder / "model.keras")
    expected = trained_run.model.predict(images, verbose=0)
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), expected, atol=1e-6)


@pytest.mark.slow
def test_run_record_holds_settings_seed_checksums_and_versions(trained_run):
    saved = json.loads((trained_run.folder / "run.json").read_text())
    assert saved == json.loads(json.dumps(trained_run.record))
    assert saved["model"]["hidden"] == [64] and saved["model"]["output_activation"] == "sigmoid"
    assert saved["training"]["seed"] == 0 and saved["training"]["limit"] == 3000
    assert saved["training"]["augment"] is False
    assert saved["distribution"] == {"strategy": "default", "replicas": 1}
    calibration = saved["calibration"]  # "not sure" below this confidence, from the validation split
    assert 0 < calibration["threshold"] < 1 and calibration["precision"] >= 0.995
    assert 0 < calibration["flagged_share"] < 1 and "99.5% precision" in calibration["rule"]
    assert saved["data"]["sha256"] == MNIST_SHA256
    assert saved["data"]["train_images"] == 2700 and saved["data"]["validation_images"] == 300
    assert {"tensorflow", "keras", "numpy", "scikit-learn"} <= set(saved["versions"])
    assert saved["epochs_run"] == 2


@pytest.mark.slow
def test_training_curves_are_a_png(trained_run):
    image = matplotlib.image.imread(trained_run.folder / "training_curves.png")
    assert image.shape[0] > 200 and image.shape[1] > 500


# Augmentation on (the default), so the random shifts and rotations are part of what must repeat.
AUGMENTED = ["--limit", "1000", "--epochs", "1", "--hidden", "32", "--val-split", "0.2"]


@pytest.fixture(scope="module")
def augmented_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("augmented")
    return train.main(AUGMENTED + ["--out", str(folder)])[1], folder


@pytest.mark.slow
def test_run_json_as_config_reproduces_the_weights(augmented_run, tmp_path):
    record, folder = augmented_run
    _, again = train.main(["--config", str(folder / "run.json"), "--out", str(tmp_path)])
    assert again["model"] == record["model"] and again["training"] == record["training"]
    assert again["weights_sha256"] == record["weights_sha256"]


@pytest.mark.slow
def test_another_seed_gives_other_weights(augmented_run, tmp_path):
    record, folder = augmented_run
    _, other = train.main(["--config", str(folder / "run.json"), "--seed", "1", "--out", str(tmp_path)])
    assert other["weights_sha256"] != record["weights_sha256"]


@pytest.mark.slow
def test_saved_network_holds_no_augmentation_and_its_export_answers_the_same_twice(
    augmented_run, mnist, tmp_path
):
    _, folder = augmented_run
    network = load_trained_model(folder / "model.keras")
    assert not [layer.name for layer in network.layers if type(layer).__name__.startswith("Random")]
    network.export(tmp_path / "saved_model", verbose=False)
    exported = tf.saved_model.load(str(tmp_path / "saved_model"))
    images = normalize_images(mnist.x_test[:500])
    first, second = exported.serve(images).numpy(), exported.serve(images).numpy()
    assert np.array_equal(first, second)
    np.testing.assert_allclose(first, network.predict(images, verbose=0), atol=1e-6)


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--epochs", "0", "epochs must be an integer from 1 to 10,000, got 0"),
        ("--epochs", str(10**400), "epochs must be an integer from 1 to 10,000, got 1000000000"),
        ("--batch-size", "-3", "batch_size must be an integer from 1 to 60,000, got -3"),
        ("--batch-size", str(10**15), "batch_size must be an integer from 1 to 60,000, got 1000000000000000"),
        ("--limit", str(10**15), "limit must be an integer from 1 to 60,000, got 1000000000000000"),
        ("--hidden", "128,0", "hidden must be 1 to 16 sizes of 1 to 65,536, got (128, 0)"),
        ("--hidden", str(10**12), "hidden must be 1 to 16 sizes of 1 to 65,536, got (1000000000000,)"),
        (
            "--hidden",
            "65536,65536",
            "mlp with hidden (65536, 65536) makes 4,347,133,962 weights, over 100,000,000",
        ),
        ("--kernel-size", str(10**6), "kernel_size must be 1 to 28, got 1000000"),
        ("--filters", "8,8,8,8,8", "filters must be 1 to 4 sizes of 1 to 65,536, got (8, 8, 8, 8, 8)"),
        ("--hidden", "wide", "expected comma-separated sizes like 512,256, got 'wide'"),
        ("--dropout", "1", "dropout must be in [0, 1), got 1.0"),
        ("--arch", "rnn", "invalid choice: 'rnn'"),
        ("--output-activation", "tanh", "invalid choice: 'tanh'"),
        ("--lr", "0", "lr must be a number above 0 and at most 10, got 0.0"),
        ("--lr", "1e30", "lr must be a number above 0 and at most 10, got 1e+30"),
        ("--lr", "nan", "lr must be a number above 0 and at most 10, got nan"),
        ("--lr", "inf", "lr must be a number above 0 and at most 10, got inf"),
        ("--val-split", "1", "val_split must be in [0, 1), got 1.0"),
        ("--seed", "-1", "seed must be from 0 to 4,294,967,295, got -1"),
        ("--seed", "4294967296", "seed must be from 0 to 4,294,967,295, got 4294967296"),
    ],
)
def test_bad_flags_exit_with_a_usage_error(capsys, flag, value, message):
    with pytest.raises(SystemExit) as exit_info:
        train.main([flag, value])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_config_file_nested_too_deep_is_a_usage_error(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text('{"model": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--config", str(config), "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and "nests too deep to read" in capsys.readouterr().err


def test_bad_config_file_is_a_usage_error_naming_the_setting(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text('{"model": {"arch": "cnn"}, "training": {"lr": NaN}}')
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--config", str(config), "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "lr must be a number above 0 and at most 10, got nan" in capsys.readouterr().err


@pytest.mark.parametrize("arch", [["mlp"], {"name": "mlp"}], ids=["list", "dict"])
def test_a_config_file_with_a_list_or_dict_for_a_word_is_a_one_line_usage_error(tmp_path, capsys, arch):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model": {"arch": arch}}))
    with pytest.raises(SystemExit) as exit_info:  # not a TypeError's traceback
        train.main(["--config", str(config), "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(f"arch must be a string, got {arch!r}")


def test_flags_override_the_config_file(tmp_path):
    config = tmp_path / "config.json"
    config.write_text('{"model": {"hidden": [16]}, "training": {"epochs": 3, "limit": 500}}')
    _, record = train.main(
        ["--config", str(config), "--epochs", "1", "--no-augment", "--out", str(tmp_path / "run")]
    )
    assert record["model"]["hidden"] == [16] and record["training"]["limit"] == 500
    assert record["training"]["epochs"] == 1 == record["epochs_run"]


def test_limit_beyond_the_data_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--limit", "70000", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "limit must be an integer from 1 to 60,000, got 70000" in capsys.readouterr().err


def test_unwritable_output_fails_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit, match="cannot write to .*choose another --out"):
        train.main(TINY_TRAINING + ["--out", str(blocker / "run")])


def test_nearly_full_output_folder_fails_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs, "MIN_FREE_BYTES", 10**18)  # more than any disk has free
    with pytest.raises(SystemExit, match="MB free in .*free some space or choose another --out"):
        train.main(TINY_TRAINING + ["--out", str(tmp_path)])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_bad_dataset_is_one_line_without_traceback(tmp_path):
    broken = tmp_path / "mnist.npz"
    broken.write_bytes(b"garbage")
    result = run_script("train.py", "--data", str(broken), "--out", str(tmp_path / "run"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {broken} is not a readable .npz")


def start_and_stop_after_epochs(argv, stop_signal, epochs=1):
    """Start train.py and send `stop_signal` once its first `epochs` are backed up."""
    process = subprocess.Popen(
        [sys.executable, "train.py", *argv],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metadata = Path(argv[argv.index("--out") + 1]) / ".backup" / "training_metadata.json"
    deadline = time.monotonic() + 120
    while (
        completed_epochs(metadata.parent) < epochs and process.poll() is None and time.monotonic() < deadline
    ):
        time.sleep(0.02)
    assert process.poll() is None, "training ended before it could be stopped"
    process.send_signal(stop_signal)
    stdout, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


RESUMABLE = ["--limit", "3000", "--epochs", "6", "--hidden", "64", "--no-augment", "--batch-size", "32"]


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """What a RESUMABLE run leaves in its folder when it is killed after two epochs: a backup of each
    (the last and the one before). Killed once; each test that resumes it works on a copy."""
    folder = tmp_path_factory.mktemp("killed")
    start_and_stop_after_epochs(RESUMABLE + ["--out", str(folder)], signal.SIGKILL, epochs=2)
    return folder


def resumable_copy(killed_run, folder):
    """`killed_run` copied into `folder`: the flags that resume it there."""
    shutil.copytree(killed_run, folder, dirs_exist_ok=True)
    return RESUMABLE + ["--out", str(folder)]


def assert_resumes_to_the_end(argv: list[str], folder: Path, capsys) -> None:
    """Runs train.py's main on a RESUMABLE run stopped in `folder`: it resumes and ends with all its
    epochs, its backup gone. In this process, as the stop was tested in its own."""
    train.main(argv)
    said = capsys.readouterr().out
    assert "resuming after epoch" in said and "training on " in said
    record = json.loads((folder / "run.json").read_text())
    assert record["epochs_run"] == 6 and 1 <= record["resumed_from_epoch"] < 6
    assert len(json.loads((folder / "history.json").read_text())["loss"]) == 6
    assert not (folder / ".backup").exists()
    load_trained_model(folder / "model.keras")


def refused(argv: list[str]) -> str:
    """The one-line error train.py's main exits with for `argv`."""
    with pytest.raises(SystemExit) as exit_:
        train.main(argv)
    assert isinstance(exit_.value.code, str) and "\n" not in exit_.value.code
    return exit_.value.code


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["term", "ctrl-c"])
@pytest.mark.slow
def test_stopped_training_says_how_to_resume_and_ends_with_all_epochs(tmp_path, stop_signal, capsys):
    argv = RESUMABLE + ["--out", str(tmp_path)]
    stopped = start_and_stop_after_epochs(argv, stop_signal)
    assert not (tmp_path / "model.keras").exists() and stopped.returncode == 130
    assert "run the same command again to resume" in stopped.stderr.splitlines()[-1]
    assert_resumes_to_the_end(argv, tmp_path, capsys)


@pytest.mark.slow
def test_killed_training_resumes_and_ends_with_all_epochs(killed_run, tmp_path, capsys):
    argv = resumable_copy(killed_run, tmp_path)
    assert not (tmp_path / "model.keras").exists()
    assert_resumes_to_the_end(argv, tmp_path, capsys)


@pytest.mark.slow
def test_other_settings_refuse_to_resume_until_fresh(killed_run, tmp_path, capsys):
    argv = resumable_copy(killed_run, tmp_path)
    assert "holds work done with other settings" in refused([*argv, "--lr", "0.01"])
    train.main([*argv, "--epochs", "1", "--fresh"])
    assert "resuming" not in capsys.readouterr().out
    assert json.loads((tmp_path / "run.json").read_text())["resumed_from_epoch"] == 0


@pytest.mark.slow
def test_a_damaged_backup_without_an_earlier_one_says_to_start_afresh(killed_run, tmp_path):
    argv = resumable_copy(killed_run, tmp_path)
    (tmp_path / ".backup" / "training_metadata.json").write_text("")  # as a full disk leaves it
    (tmp_path / ".backup" / "training_metadata.json.bkp").unlink(missing_ok=True)
    damaged = refused(argv)
    assert damaged.startswith("error: the backup in ") and "add --fresh to start over" in damaged
    train.main([*argv, "--fresh"])
    assert json.loads((tmp_path / "run.json").read_text())["resumed_from_epoch"] == 0


@pytest.mark.slow
def test_a_damaged_last_backup_gives_way_to_the_epoch_before(killed_run, tmp_path, capsys):
    argv = resumable_copy(killed_run, tmp_path)
    weights = tmp_path / ".backup" / "latest.weights.h5"
    h5py.File(weights, "w").close()  # the disk filled up before any layer's weights were written
    train.main(argv)
    said = capsys.readouterr().out
    assert "is damaged" in said and "resuming from the one before" in said
    assert "<function" not in said  # the damage's cause is named, not a Python object
    assert json.loads((tmp_path / "run.json").read_text())["epochs_run"] == 6
    load_trained_model(tmp_path / "model.keras")


@pytest.mark.slow
def test_a_second_run_on_the_same_folder_says_it_is_in_use_and_touches_nothing(tmp_path, capsys):
    argv = RESUMABLE + ["--epochs", "30", "--out", str(tmp_path)]
    first = subprocess.Popen([sys.executable, "train.py", *argv], cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while completed_epochs(tmp_path / ".backup") < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        second = refused(argv)
        assert first.poll() is None, "the first run ended before the second started"
    finally:
        first.kill()
        first.wait()
    assert f"is in use by another run (process {first.pid})" in second
    assert "resuming" not in capsys.readouterr().out


@pytest.mark.slow
def test_tensorboard_logs_hold_each_epochs_loss_accuracy_and_learning_rate(trained_run):
    assert_tensorboard_logs(trained_run.folder / "logs", epochs=trained_run.record["epochs_run"])


@pytest.mark.slow
def test_the_devices_trained_on_are_in_the_record(trained_run):
    import tensorflow as tf

    assert len(trained_run.record["devices"]["gpus"]) == len(tf.config.list_physical_devices("GPU"))
    # As TensorFlow runs them: TF_NUM_INTRAOP_THREADS where set (as under pytest-xdist), else a core each.
    assert trained_run.record["devices"]["cpu_threads"] == intra_op_threads()


# A line model small enough to train in seconds on 1,500 digits.
TINY_LINE = ["--arch", "line", "--limit", "1500", "--epochs", "2", "--filters", "8,16", "--hidden", "16"]


@pytest.fixture(scope="module")
def line_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("line")
    model, record = train.main(TINY_LINE + ["--out", str(folder)])
    return model, record, folder


@pytest.mark.slow
def test_a_line_model_trains_with_ctc_and_is_saved_with_its_record(line_run):
    model, record, folder = line_run
    history = json.loads((folder / "history.json").read_text())
    assert history["loss"][-1] < history["loss"][0] and "val_accuracy" in history
    assert record["model"]["arch"] == "line" and record["training"]["not_digits"] == 0.05
    assert record["data"]["sha256"] == MNIST_SHA256 and record["weights_sha256"]
    assert record["calibration"]["rule"].endswith("on the validation lines")
    assert len(model.output_shape) == 3 and (folder / "model.keras").is_file()


@pytest.mark.slow
def test_a_line_runs_json_as_config_reproduces_its_weights(line_run, tmp_path):
    _, record, folder = line_run
    _, again = train.main(["--config", str(folder / "run.json"), "--out", str(tmp_path)])
    assert again["weights_sha256"] == record["weights_sha256"]


@pytest.mark.slow
def test_stopped_line_training_resumes_and_ends_with_all_epochs(tmp_path):
    argv = [*TINY_LINE, "--epochs", "3", "--out", str(tmp_path)]
    start_and_stop_after_epochs(argv, signal.SIGKILL)
    train.main(argv)
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["epochs_run"] == 3 and 1 <= record["resumed_from_epoch"] < 3


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--output-activation", "sigmoid"], "the line model reads with softmax"),
        (["--filters", "16"], "the line model needs 2 to 4 convolution blocks"),
        (["--batch-size", "60000"], "computes"),
    ],
)
def test_line_settings_it_cannot_train_are_usage_errors(capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--arch", "line", *flags])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
