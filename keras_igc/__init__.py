"""keras-igc: interleaved group convolutions (IGC) for Keras 3."""

from keras_igc import applications, complexity, ops
from keras_igc.layers import IMPLEMENTATIONS, ChannelShuffle, GroupConv2D, IGCConv2D

__version__ = "0.1.0"

__all__ = [
    "IMPLEMENTATIONS",
    "ChannelShuffle",
    "GroupConv2D",
    "IGCConv2D",
    "applications",
    "complexity",
    "ops",
]
