"""keras-igc: interleaved group convolutions (IGC) and learned grouped
convolutions (MSGC) for Keras 3."""

from keras_igc import applications, complexity, ops
from keras_igc.layers import (
    IMPLEMENTATIONS,
    ChannelShuffle,
    GhostBatchNormalization,
    GroupConv2D,
    GumbelSigmoidGate,
    IGCConv2D,
    MACRegularizer,
    MaskGenerator,
    MSGCConv2D,
)

__version__ = "0.1.0"

__all__ = [
    "IMPLEMENTATIONS",
    "ChannelShuffle",
    "GhostBatchNormalization",
    "GroupConv2D",
    "GumbelSigmoidGate",
    "IGCConv2D",
    "MACRegularizer",
    "MSGCConv2D",
    "MaskGenerator",
    "applications",
    "complexity",
    "ops",
]
