from keras_igc.layers.channel_shuffle import ChannelShuffle
from keras_igc.layers.igc_conv2d import IMPLEMENTATIONS, IGCConv2D

__all__ = ["ChannelShuffle", "IGCConv2D", "IMPLEMENTATIONS"]
