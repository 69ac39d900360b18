"""The optimizer and learning-rate schedules of the IGC and MSGC releases."""

from keras_igc.optimizers.coupled_sgd import CoupledSGD
from keras_igc.optimizers.schedules import EpochCosineDecay, StepDecay

__all__ = ["CoupledSGD", "EpochCosineDecay", "StepDecay"]
