"""The learning-rate schedules of the IGC and MSGC releases, step for step.

Keras calls a schedule with the number of updates already applied (0 for the
first). Both schedules here give the rate the releases use for that update:

- `StepDecay`: MXNet's `MultiFactorScheduler` (IGC) and PyTorch's
  `MultiStepLR` stepped once per batch lower the rate *for the update that
  follows* boundary `b`, i.e. from step `b` on. Keras'
  `PiecewiseConstantDecay` lowers it one step later (from `b + 1`).
- `EpochCosineDecay`: the MSGC release sets the rate once per epoch,
  `0.5 * (1 + cos(pi * epoch / epochs))`; Keras' `CosineDecay` changes it every
  step.
"""

import math

import keras
from keras import ops

from keras_igc.validation import (
    finite_float,
    is_integer,
    non_negative_int,
    positive_int,
)


@keras.saving.register_keras_serializable(package="keras_igc")
class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """`initial_learning_rate * factor ** (number of boundaries <= step)`.

    Args:
        initial_learning_rate: the rate before the first boundary.
        boundaries: update counts after which the rate drops, non-decreasing
            (a repeated boundary drops twice, as in `MultiStepLR`).
        factor: the multiplier at each boundary (the releases: 0.1).

    Example:

    >>> schedule = StepDecay(0.1, [2, 4])
    >>> [round(float(schedule(step)), 6) for step in range(5)]
    [0.1, 0.1, 0.01, 0.01, 0.001]
    """

    def __init__(self, initial_learning_rate, boundaries, factor=0.1, name=None):
        self.initial_learning_rate = finite_float(
            initial_learning_rate, "initial_learning_rate", "StepDecay", positive=True
        )
        self.factor = finite_float(factor, "factor", "StepDecay", positive=True)
        boundaries = [int(b) if is_integer(b) else b for b in boundaries]
        valid = all(is_integer(b) and b >= 1 for b in boundaries)
        if not valid or boundaries != sorted(boundaries):
            raise ValueError(
                f"StepDecay `boundaries` must be non-decreasing positive integers "
                f"(update counts). Received: boundaries={boundaries!r}."
            )
        self.boundaries = boundaries
        self.name = name
        # The rates in double precision, as the releases compute them in Python.
        self._rates = [
            self.initial_learning_rate * self.factor**i
            for i in range(len(boundaries) + 1)
        ]

    def __call__(self, step):
        step = ops.convert_to_tensor(step, "int64")
        drops = sum(
            (ops.cast(ops.greater_equal(step, b), "int32") for b in self.boundaries),
            ops.zeros((), "int32"),
        )
        return ops.take(ops.convert_to_tensor(self._rates, "float32"), drops)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "boundaries": list(self.boundaries),
            "factor": self.factor,
            "name": self.name,
        }


@keras.saving.register_keras_serializable(package="keras_igc")
class EpochCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine decay set once per epoch, with an optional linear warm-up.

    In epoch `e` (counted from 0) the rate is `initial_learning_rate * 0.5 *
    (1 + cos(pi * e / epochs))`, and during the first `warmup_epochs` it is
    `initial_learning_rate * (e + 1) / warmup_epochs` (the MSGC release's
    `adjust_learning_rate`).

    Args:
        initial_learning_rate: the rate of epoch 0.
        epochs: the length of training in epochs.
        steps_per_epoch: updates per epoch.
        warmup_epochs: epochs of linear warm-up (the release's default: 0).

    Example:

    >>> schedule = EpochCosineDecay(1.0, epochs=2, steps_per_epoch=3)
    >>> [round(float(schedule(step)), 6) for step in range(6)]
    [1.0, 1.0, 1.0, 0.5, 0.5, 0.5]
    """

    def __init__(
        self, initial_learning_rate, epochs, steps_per_epoch, warmup_epochs=0, name=None
    ):
        owner = "EpochCosineDecay"
        self.initial_learning_rate = finite_float(
            initial_learning_rate, "initial_learning_rate", owner, positive=True
        )
        self.epochs = positive_int(epochs, "epochs", owner)
        self.steps_per_epoch = positive_int(steps_per_epoch, "steps_per_epoch", owner)
        self.warmup_epochs = non_negative_int(warmup_epochs, "warmup_epochs", owner)
        self.name = name
        # One rate per epoch, computed in double precision; training past
        # `epochs` keeps the last one.
        rates = []
        for epoch in range(self.epochs):
            multiplier = 0.5 * (1 + math.cos(math.pi * epoch / self.epochs))
            if epoch < self.warmup_epochs:
                multiplier = (epoch + 1) / self.warmup_epochs
            rates.append(self.initial_learning_rate * multiplier)
        self._rates = rates

    def __call__(self, step):
        epoch = ops.floor_divide(
            ops.convert_to_tensor(step, "int64"), self.steps_per_epoch
        )
        epoch = ops.minimum(epoch, self.epochs - 1)
        return ops.take(ops.convert_to_tensor(self._rates, "float32"), epoch)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "epochs": self.epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "warmup_epochs": self.warmup_epochs,
            "name": self.name,
        }
