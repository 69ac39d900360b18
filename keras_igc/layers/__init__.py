from keras_igc.layers.channel_shuffle import ChannelShuffle
from keras_igc.layers.fused_batch_normalization import FusedBatchNormalization
from keras_igc.layers.ghost_batch_normalization import GhostBatchNormalization
from keras_igc.layers.group_conv2d import GroupConv2D
from keras_igc.layers.gumbel_sigmoid_gate import GumbelSigmoidGate
from keras_igc.layers.igc_conv2d import IGCConv2D
from keras_igc.layers.igcv2_conv2d import IGCV2Conv2D
from keras_igc.layers.mac_regularizer import MACRegularizer
from keras_igc.layers.mask_generator import MaskGenerator
from keras_igc.layers.msgc_conv2d import MSGCConv2D

__all__ = [
    "ChannelShuffle",
    "FusedBatchNormalization",
    "GhostBatchNormalization",
    "GroupConv2D",
    "GumbelSigmoidGate",
    "IGCConv2D",
    "IGCV2Conv2D",
    "MACRegularizer",
    "MSGCConv2D",
    "MaskGenerator",
]
