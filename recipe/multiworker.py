"""Training on several workers at once (MultiWorkerMirroredStrategy) with a custom training loop.

    network, history = multiworker.train(model_config, train_config, (x_fit, y_fit), validation_data,
                                         [StopOnSignal()], strategy=strategy)

A workaround, kept apart so it can go: Keras 3.15's `Model.fit` fails under
MultiWorkerMirroredStrategy (it reduces per-replica input batches and scalar logs along an axis
they lack). Delete this module, and call `recipe.fit.train` (whose arguments are these) for every
strategy, once tests/test_distributed.py passes with `fit`. Until then it trains what it would:
the same training model, loss, optimizer and input pipeline; each step's gradients are summed
across workers, so every worker ends with the same weights. It has no backup: an interrupted
multi-worker run starts over.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from model import ModelConfig
from recipe.callbacks import RunProgress, progress_mode
from recipe.config import TrainConfig, TrainingError, steps_per_epoch
from recipe.fit import (
    LOSS,
    build_for_training,
    digits_read_right,
    network_of,
    training_batches,
    training_images,
)


def train(
    model_config: ModelConfig,
    train_config: TrainConfig,
    train_data: tuple[np.ndarray, np.ndarray],
    validation_data: tuple[np.ndarray, np.ndarray] | None,
    callbacks: list[keras.callbacks.Callback] = (),
    backup: Path | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> tuple[keras.Model, dict[str, list[float]]]:
    """recipe.fit.train for several workers (`strategy`: a MultiWorkerMirroredStrategy);
    `batch_size` is per replica. `callbacks` are told of the training's start and end, of each
    epoch's start and end with its logs (e.g. TensorBoard), and of each step's end (a StopOnSignal
    among them stops it). A multi-worker run keeps no backup: one given is a TrainingError."""
    if backup is not None:
        raise TrainingError("a multi-worker run cannot resume: it keeps no backup")
    strategy = strategy or tf.distribute.get_strategy()
    x_fit, y_fit = train_data
    model = build_for_training(model_config, train_config, len(x_fit), strategy)
    batch_size = train_config.batch_size * strategy.num_replicas_in_sync
    with strategy.scope():
        model.optimizer.build(model.trainable_variables)
    steps = Steps(model, strategy, batch_size)
    images, targets = training_images(x_fit, y_fit, train_config)
    batches = training_batches(images, targets, batch_size, train_config.seed)
    batches = iter(strategy.experimental_distribute_dataset(batches))
    metrics = ["loss", "accuracy"] + (["val_loss", "val_accuracy"] if validation_data else [])
    history = {name: [] for name in metrics}
    told = keras.callbacks.CallbackList([*callbacks, RunProgress(train_config.epochs)], model=model)
    told.on_train_begin()
    for epoch in range(train_config.epochs):
        told.on_epoch_begin(epoch)
        print(f"Epoch {epoch + 1}/{train_config.epochs}")  # as Model.fit shows it
        epoch_steps = steps_per_epoch(len(images), batch_size)
        logs = steps.epoch(batches, epoch_steps, validation_data, told, metrics)
        for name in metrics:
            history[name].append(float(logs[name]))
        told.on_epoch_end(epoch, {name: float(value) for name, value in logs.items()})
    told.on_train_end()
    return network_of(model, model_config), history


class Steps:
    """The compiled steps of a multi-worker fit: a training step whose gradients are summed across
    workers, and the sums of a validation batch."""

    def __init__(self, model: keras.Model, strategy: tf.distribute.Strategy, batch_size: int):
        self.model, self.strategy, self.batch_size = model, strategy, batch_size
        self.loss_of = keras.losses.get(LOSS)
        self.train_step = tf.function(self.train_step)
        self.validation_sums = tf.function(self.validation_sums)

    def loss_and_correct(self, x, y, training):
        # Sums over the batch; the scores keep the logits that the loss is computed from. Accuracy
        # counts the digits only (training.DigitAccuracy).
        scores = self.model(x, training=training)
        losses = self.loss_of(y, scores)
        correct, digit = digits_read_right(y, scores)
        return losses, tf.reduce_sum(correct), tf.reduce_sum(digit)

    def replica_step(self, x, y):
        model = self.model
        with tf.GradientTape() as tape:
            losses, correct, digits = self.loss_and_correct(x, y, training=True)
            loss = tf.nn.compute_average_loss(losses, global_batch_size=self.batch_size)
        gradients = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return tf.reduce_sum(losses), correct, digits

    def train_step(self, batches):
        sums = self.strategy.run(self.replica_step, args=next(batches))
        return [self.strategy.reduce("SUM", value, axis=None) for value in sums]

    def validation_sums(self, x, y):
        losses, correct, _ = self.loss_and_correct(x, y, training=False)
        return tf.reduce_sum(losses), correct

    def epoch(
        self, batches, steps: int, validation, told: keras.callbacks.CallbackList, metrics: list[str]
    ) -> dict:
        """One epoch of `steps` steps, shown as Keras shows it, each step's end `told`; its logs,
        validation included."""
        progress = keras.utils.Progbar(steps, verbose=progress_mode(), stateful_metrics=metrics)
        loss_sum = correct = digits = 0.0
        for step in range(1, steps + 1):
            step_loss, step_correct, step_digits = self.train_step(batches)
            loss_sum, correct = loss_sum + float(step_loss), correct + float(step_correct)
            digits += float(step_digits)
            told.on_train_batch_end(step)  # where a StopOnSignal raises KeyboardInterrupt
            seen = step * self.batch_size
            logs = {"loss": loss_sum / seen, "accuracy": correct / max(digits, 1.0)}
            if step == steps and validation:
                batches_of_validation = tf.data.Dataset.from_tensor_slices(validation).batch(1000)
                sums = np.sum([self.validation_sums(x, y) for x, y in batches_of_validation], axis=0)
                logs.update(val_loss=sums[0] / len(validation[0]), val_accuracy=sums[1] / len(validation[0]))
            progress.update(step, list(logs.items()))
        return logs
