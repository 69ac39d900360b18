from keras_igc.layers.channel_shuffle import ChannelShuffle
from keras_igc.layers.group_conv2d import GroupConv2D
from keras_igc.layers.igc_conv2d import IMPLEMENTATIONS, IGCConv2D

__all__ = ["ChannelShuffle", "GroupConv2D", "IGCConv2D", "IMPLEMENTATIONS"]
