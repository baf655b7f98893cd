"""recipe/fit.py: the recipe every script trains through."""

import keras
import numpy as np
import pytest

from model import ModelConfig, probabilities_function, probability_model
from recipe import callbacks, not_digits
from recipe.augmentation import RandomAffine
from recipe.callbacks import BACKUP_FILES, PREVIOUS, RunProgress, completed_epochs
from recipe.config import TrainConfig, TrainingError, training_split
from recipe.devices import training_precision
from recipe.fit import (
    DigitAccuracy,
    build_for_training,
    fit,
    network_of,
    train,
    training_images,
    training_model,
)

SMALL = ModelConfig(hidden=(16,), dropout=0.0)


def test_augmentation_acts_only_while_training_and_stays_out_of_the_network(mnist):
    keras.utils.set_random_seed(0)
    model = training_model(SMALL, augment=True)
    network = network_of(model, SMALL)
    images = mnist.x_test[:64].astype("float32") / 255
    assert [type(layer).__name__ for layer in network.layers if "Random" in type(layer).__name__] == []
    at_inference = np.asarray(model(images, training=False))
    np.testing.assert_allclose(np.asarray(network(images)), at_inference, atol=1e-6)
    assert not np.allclose(np.asarray(model(images, training=True)), at_inference, atol=1e-3)


def test_without_augmentation_training_sees_the_images_unchanged(mnist):
    model = training_model(SMALL, augment=False)
    images = mnist.x_test[:16].astype("float32") / 255
    np.testing.assert_allclose(np.asarray(model(images, training=True)), np.asarray(model(images)), atol=1e-6)


def test_the_pose_setting_sets_the_training_models_pose_ranges():
    model = build_for_training(SMALL, TrainConfig(pose=0.5), train_images=100)
    assert [layer.scale for layer in model.layers if isinstance(layer, RandomAffine)] == [0.5]


def test_training_split_is_normalized_one_hot_and_seeded(mnist):
    config = TrainConfig(limit=1000, val_split=0.2, seed=3)
    x_fit, y_fit, x_val, y_val = training_split(mnist, config)
    assert x_fit.shape == (800, 28, 28) and x_val.shape == (200, 28, 28) and x_fit.dtype == np.float32
    assert y_fit.shape == (800, 10) and np.all(y_fit.sum(axis=1) == 1)
    assert (
        np.bincount(np.concatenate([y_fit, y_val]).argmax(1), minlength=10).tolist()
        == np.bincount(mnist.y_train[:1000], minlength=10).tolist()
    )
    again = training_split(mnist, config)
    assert np.array_equal(again[2], x_val)
    assert not np.array_equal(training_split(mnist, TrainConfig(limit=1000, val_split=0.2, seed=4))[2], x_val)


def test_a_loss_that_becomes_nan_stops_the_fit_before_it_is_backed_up(mnist, tmp_path):
    config = TrainConfig(epochs=2, batch_size=64, augment=False)
    x, y = mnist.x_train[:256].astype("float32") / 255, np.eye(10, dtype="float32")[mnist.y_train[:256]]
    y[0, 0] = np.nan  # the first batch's loss is NaN
    model = build_for_training(SMALL, config, len(x))
    with pytest.raises(TrainingError, match="training diverged: .* lower --lr"):
        fit(model, config, x, y, None, backup=tmp_path / "backup")
    assert completed_epochs(tmp_path / "backup") == 0


@pytest.mark.parametrize(
    "values, message",
    [
        ({"epochs": 0}, "epochs must be an integer from 1 to 10,000"),
        (
            {"epochs": 10**400},
            r"epochs must be an integer from 1 to 10,000, got 10{29}\.\.\. \(401 characters\)",
        ),
        ({"limit": 0}, "limit must be an integer from 1 to 60,000"),
        ({"limit": 60_001}, "limit must be an integer from 1 to 60,000"),
        ({"lr": float("nan")}, "lr must be a number above 0"),
        ({"lr": -1.0}, "lr must be a number above 0"),
        ({"val_split": float("nan")}, r"val_split must be in \[0, 1\)"),
        ({"precision": "float16"}, "precision must be one of auto, float32, bfloat16"),
        ({"not_digits": 1.5}, "not_digits must be from 0 to 1"),
        ({"pose": -0.5}, "pose must be from 0 to 2, got -0.5"),
        ({"pose": float("nan")}, "pose must be from 0 to 2, got nan"),
        ({"not_digits": float("nan")}, "not_digits must be from 0 to 1"),
    ],
)
def test_train_config_refuses_bad_values(values, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**values)


@pytest.mark.parametrize(
    "flags, gpus, expected",
    [
        ({"avx512f", "avx512_bf16"}, 0, "bfloat16"),
        ({"avx2", "amx_bf16"}, 0, "bfloat16"),
        ({"avx512f", "avx2"}, 0, "float32"),  # emulated bfloat16 is slower than float32
        ({"avx512_bf16"}, 1, "float32"),  # a GPU trains, not the CPU
    ],
)
def test_auto_precision_is_bfloat16_only_where_the_cpu_that_trains_has_it(flags, gpus, expected):
    assert training_precision(TrainConfig(precision="auto"), flags, gpus) == expected
    assert training_precision(TrainConfig(precision="float32"), flags, gpus) == "float32"
    assert training_precision(TrainConfig(precision="bfloat16"), flags, gpus) == "bfloat16"


def test_a_network_trained_in_bfloat16_is_saved_in_float32_and_reads_like_itself(mnist, tmp_path):
    config = TrainConfig(epochs=2, batch_size=32, limit=2000, precision="bfloat16", augment=False)
    x_fit, y_fit, _, _ = training_split(mnist, config)
    model = build_for_training(SMALL, config, len(x_fit))
    history = fit(model, config, x_fit, y_fit, None, verbose=0)
    assert history["loss"][1] < history["loss"][0]
    trained = model.layers[-1]
    # The loss is the cross-entropy of the softmax of the float32 logits, as in float32 training
    # (the sigmoid output's own values, normalized, would give another).
    images, labels = x_fit[:512], y_fit[:512]
    expected = -np.mean(np.log(np.sum(labels * np.asarray(probability_model(trained)(images)), axis=1)))
    assert model.evaluate(images, labels, verbose=0, return_dict=True)["loss"] == pytest.approx(
        expected, rel=1e-3
    )
    assert {layer.compute_dtype for layer in trained.layers if isinstance(layer, keras.layers.Dense)} == {
        "bfloat16",
        "float32",  # the logits
    }
    network = network_of(model, SMALL)
    assert {layer.dtype_policy.name for layer in network.layers} == {"float32"}
    network.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    images = mnist.x_test[:1000].astype("float32") / 255
    read = np.asarray(reloaded(images))
    np.testing.assert_array_equal(read, np.asarray(network(images)))
    as_trained = np.asarray(trained(images), dtype=np.float32)
    assert np.mean(read.argmax(1) == as_trained.argmax(1)) >= 0.99
    np.testing.assert_allclose(read, as_trained, atol=0.05)
    assert np.mean(read.argmax(1) == mnist.y_test[:1000]) > 0.5  # it learned: chance is 0.1


def test_the_pinned_keras_backs_up_into_the_files_a_resume_reads(tmp_path):
    # completed_epochs and CheckedBackupAndRestore name BackupAndRestore's own files: if a Keras
    # upgrade renames them, this fails before resuming silently starts over.
    class StopAfterSecondEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    backup = keras.callbacks.BackupAndRestore(str(tmp_path), double_checkpoint=True)
    with pytest.raises(KeyboardInterrupt):
        model.fit(
            np.zeros((8, 2)), np.zeros(8), epochs=5, callbacks=[backup, StopAfterSecondEpoch()], verbose=0
        )
    assert {*BACKUP_FILES, *(name + PREVIOUS for name in BACKUP_FILES)} <= {
        path.name for path in tmp_path.iterdir()
    }
    assert completed_epochs(tmp_path) == 2


def test_training_adds_images_that_are_not_digits_with_uniform_targets(mnist):
    x_fit, y_fit, _, _ = training_split(mnist, TrainConfig(limit=1000, val_split=0))
    x, y = training_images(x_fit, y_fit, TrainConfig(augment=False, not_digits=0.2))
    assert x.shape == (1200, 28, 28) and y.shape == (1200, 10)
    assert np.array_equal(x[:1000], x_fit) and np.array_equal(y[:1000], y_fit)
    assert np.mean(np.all(y[1000:] == 0.1, axis=1)) > 0.85  # the rest printed digits, labelled
    alone = training_images(x_fit, y_fit, TrainConfig(augment=False, not_digits=0))
    assert alone[0] is x_fit and alone[1] is y_fit


def test_the_learning_rate_decays_over_the_steps_the_added_images_make():
    config = TrainConfig(epochs=3, batch_size=100, not_digits=0.5)
    model = build_for_training(SMALL, config, 1000)
    schedule = model.optimizer.get_config()["learning_rate"]["config"]
    assert schedule["decay_steps"] == 3 * 15  # 1,500 images a pass


def test_accuracy_counts_the_digits_only():
    accuracy = DigitAccuracy()
    targets = np.array([[0, 1] + [0] * 8, [1] + [0] * 9, [0.1] * 10], np.float32)
    scores = np.array([[0, 0.9] + [0] * 8, [0, 0.9] + [0] * 8, [0.9] + [0] * 9], np.float32)
    accuracy.update_state(targets, scores)  # the third, not a digit, is "read" as 0: no matter
    assert float(accuracy.result()) == 0.5


@pytest.mark.slow
def test_a_network_trained_with_images_that_are_not_digits_is_unsure_of_new_ones(mnist):
    x_fit, y_fit, x_val, y_val = training_split(mnist, TrainConfig(limit=12000, val_split=0.25))
    unseen, targets = not_digits.not_digits(x_val, y_val, 500, np.random.default_rng(99))  # other digits
    unseen = unseen[targets.max(axis=1) < 1]  # printed digits are digits
    confidence, accuracy = {}, {}
    for share in (0, 0.3):
        config = TrainConfig(epochs=5, augment=False, not_digits=share)
        network, _ = train(ModelConfig(hidden=(256,)), config, (x_fit, y_fit), None)
        read = probabilities_function(network)
        confidence[share] = float(np.median(read(unseen).max(axis=1)))
        accuracy[share] = float(np.mean(read(x_val).argmax(axis=1) == y_val.argmax(axis=1)))
    # Half of them at least as sure as a digit, without; with, half near "none stands out" (0.1).
    assert confidence[0] > 0.5 and confidence[0.3] < 0.35, confidence
    assert accuracy[0.3] > accuracy[0] - 0.01, accuracy  # at little cost to reading digits


def test_before_each_epoch_the_run_says_how_long_it_has_left(monkeypatch, capsys):
    ends = iter([0.0, 10.0, 14.0, 18.0])  # the fit starts; its epochs end, the first slowed by tracing
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: next(ends))
    progress = RunProgress(epochs=10)
    progress.on_train_begin()
    progress.on_epoch_begin(0)
    for epoch in range(3):
        progress.on_epoch_end(epoch)
        progress.on_epoch_begin(epoch + 1)
    assert capsys.readouterr().out.splitlines() == [
        "1 of 10 epochs done, about 1 min 30 s left",  # only the first to go by
        "2 of 10 epochs done, about 32 s left",  # the epochs after the first
        "3 of 10 epochs done, about 28 s left",
    ]


@pytest.mark.parametrize("verbose", [2, 0])
def test_a_fit_shows_the_runs_time_left_when_it_shows_progress(mnist, capsys, verbose):
    config = TrainConfig(epochs=3, batch_size=64, augment=False, not_digits=0)
    x, y = mnist.x_train[:256].astype("float32") / 255, np.eye(10, dtype="float32")[mnist.y_train[:256]]
    fit(build_for_training(SMALL, config, len(x)), config, x, y, None, verbose=verbose)
    said = [line for line in capsys.readouterr().out.splitlines() if "epochs done" in line]
    assert [line.split(",")[0] for line in said] == (
        ["1 of 3 epochs done", "2 of 3 epochs done"] if verbose else []
    )
