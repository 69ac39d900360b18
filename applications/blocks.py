"""The two building blocks of the paper's networks.

Every convolution, whatever its family, is followed by BatchNorm and then
ReLU; residual blocks add the shortcut after the second BatchNorm and apply
ReLU after the addition (post-activation, as in the authors' release).
"""

import keras

from keras_igc.applications.conventions import batch_norm


def plain_unit(x, convs, width, strides, momentum, name):
    """convolution -> BatchNorm -> ReLU."""
    x = convs.conv(x, width, strides, f"{name}_conv")
    x = batch_norm(x, momentum, f"{name}_bn")
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def residual_block(x, convs, width, strides, momentum, name):
    """Two units with an identity shortcut, or a 1x1 projection + BN where the
    width or the resolution changes."""
    shortcut = x
    if strides != 1 or x.shape[-1] != width:
        shortcut = convs.projection(x, width, strides, f"{name}_proj")
        shortcut = batch_norm(shortcut, momentum, f"{name}_proj_bn")
    y = plain_unit(x, convs, width, strides, momentum, f"{name}_1")
    y = convs.conv(y, width, 1, f"{name}_2_conv")
    y = batch_norm(y, momentum, f"{name}_2_bn")
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(y)
