"""Training on several workers at once (MultiWorkerMirroredStrategy) with a custom training loop.

    network, history = multiworker.train(model_config, config, (x_fit, y_fit), validation, strategy, stopper)

A workaround, kept apart so it can go: Keras 3.15's `Model.fit` fails under
MultiWorkerMirroredStrategy (it reduces per-replica input batches and scalar logs along an axis
they lack). Delete this module, and call `training.train` for every strategy, once
tests/test_distributed.py passes with `fit`. Until then it trains what `training.train` would:
the same training model, loss, optimizer and input pipeline; each step's gradients are summed
across workers, so every worker ends with the same weights. It has no backup: an interrupted
multi-worker run starts over.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from model import ModelConfig
from recipe.callbacks import RunProgress, StopOnSignal, progress_mode
from recipe.config import TrainConfig, steps_per_epoch
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
    config: TrainConfig,
    training: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray] | None,
    strategy: tf.distribute.MultiWorkerMirroredStrategy,
    stopper: StopOnSignal,
    callbacks: list[keras.callbacks.Callback] = (),
) -> tuple[keras.Model, dict[str, list[float]]]:
    """`training.train` for several workers; `batch_size` is per replica. `callbacks` are told of
    the training's start and end and of each epoch's start and end, with its logs (e.g.
    TensorBoard)."""
    x_fit, y_fit = training
    model = build_for_training(model_config, config, len(x_fit), strategy)
    batch_size = config.batch_size * strategy.num_replicas_in_sync
    with strategy.scope():
        model.optimizer.build(model.trainable_variables)
    steps = Steps(model, strategy, batch_size)
    images, targets = training_images(x_fit, y_fit, config)
    batches = iter(
        strategy.experimental_distribute_dataset(training_batches(images, targets, batch_size, config.seed))
    )
    metrics = ["loss", "accuracy"] + (["val_loss", "val_accuracy"] if validation else [])
    history = {name: [] for name in metrics}
    told = keras.callbacks.CallbackList([*callbacks, RunProgress(config.epochs)], model=model)
    told.on_train_begin()
    for epoch in range(config.epochs):
        told.on_epoch_begin(epoch)
        print(f"Epoch {epoch + 1}/{config.epochs}")  # as Model.fit shows it
        logs = steps.epoch(batches, steps_per_epoch(len(images), batch_size), validation, stopper, metrics)
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

    def epoch(self, batches, steps: int, validation, stopper: StopOnSignal, metrics: list[str]) -> dict:
        """One epoch of `steps` steps, shown as Keras shows it; its logs, validation included."""
        progress = keras.utils.Progbar(steps, verbose=progress_mode(), stateful_metrics=metrics)
        loss_sum = correct = digits = 0.0
        for step in range(1, steps + 1):
            step_loss, step_correct, step_digits = self.train_step(batches)
            loss_sum, correct = loss_sum + float(step_loss), correct + float(step_correct)
            digits += float(step_digits)
            if stopper.requested:
                raise KeyboardInterrupt
            seen = step * self.batch_size
            logs = {"loss": loss_sum / seen, "accuracy": correct / max(digits, 1.0)}
            if step == steps and validation:
                batches_of_validation = tf.data.Dataset.from_tensor_slices(validation).batch(1000)
                sums = np.sum([self.validation_sums(x, y) for x, y in batches_of_validation], axis=0)
                logs.update(val_loss=sums[0] / len(validation[0]), val_accuracy=sums[1] / len(validation[0]))
            progress.update(step, list(logs.items()))
        return logs
