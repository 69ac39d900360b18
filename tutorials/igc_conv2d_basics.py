"""
Title: Interleaved group convolutions in Keras
Author: keras-igc developers
Date created: 2026/11/23
Last modified: 2026/11/23
Description: Build a model with IGCConv2D, look inside the block, count its weights.
Accelerator: None
"""

"""
## Introduction

An interleaved group convolution (IGC, Zhang et al., ICCV 2017) replaces one
dense convolution over `G` channels by two sparse ones:

- the **primary** group convolution splits the channels into `L` partitions of
  `M` channels and runs a spatial (3x3) convolution inside each;
- a fixed **permutation** regroups the channels so that secondary partition `m`
  holds channel `m` of every primary partition;
- the **secondary** group convolution runs a 1x1 convolution inside each of the
  `M` partitions of `L` channels, and the inverse permutation restores the order.

The pair is linear, so it equals one dense convolution, but it has far fewer
weights. This tutorial builds a small model with `keras_igc.IGCConv2D`,
inspects the permutation and the dense-equivalent kernel, and counts parameters
against regular convolutions.
"""

"""
## Setup
"""

import keras
import numpy as np

import keras_igc
from keras_igc import complexity

"""
## A small IGC model

Each IGC block is followed by BatchNormalization and ReLU, as in the paper;
there is nothing between the primary and the secondary convolution. Here
`L = 24` and `M = 2`, the paper's best CIFAR configuration, so `G = 48`.
"""

model = keras.Sequential(
    [
        keras.Input((32, 32, 3)),
        keras.layers.Conv2D(48, 3, padding="same", use_bias=False),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras_igc.IGCConv2D(24, 2, 3, padding="same", use_bias=False),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10, activation="softmax"),
    ]
)
model.summary()

"""
The block is made of real Keras layers: a grouped `Conv2D`, a `ChannelShuffle`,
a 1x1 grouped `Conv2D` and the inverse `ChannelShuffle`. `implementation="auto"`
chose how to compute it on this backend and device; every choice gives the same
output from the same weights.
"""

block = model.layers[3]
for sublayer in (
    block.primary,
    block.permutation,
    block.secondary,
    block.inverse_permutation,
):
    print(f"{sublayer.name:20s} {type(sublayer).__name__}")
print("computed with:", block.active_implementation)

"""
## The permutation

With `L = 4` primary partitions of `M = 3` channels, the permutation sends
channel `m` of every primary partition to secondary partition `m`.
"""

small = keras_igc.IGCConv2D(4, 3)
small.build((None, 8, 8, 12))
print("permutation P:        ", small.permutation.permutation)
print("inverse permutation:  ", small.inverse_permutation.permutation)
channels = np.arange(12)
print(
    "P then P^-1 gives back:",
    channels[small.permutation.permutation][small.inverse_permutation.permutation],
)

"""
## The dense-equivalent kernel

`dense_equivalent_kernel()` returns `W = P W^d P^T W^p`, the kernel of the
single dense convolution the block equals. Each input channel reaches each
output channel through exactly one primary/secondary pair, so `W` is dense even
though both factors are block-sparse.
"""

x = np.random.default_rng(0).normal(size=(2, 8, 8, 12)).astype("float32")
kernel = small.dense_equivalent_kernel()
dense_output = keras.ops.conv(x, kernel) + small.dense_equivalent_bias()
difference = np.abs(keras.ops.convert_to_numpy(dense_output - small(x))).max()
print("kernel shape:", tuple(kernel.shape))
print("non-zero entries:", int(np.count_nonzero(keras.ops.convert_to_numpy(kernel))))
print(f"max |IGC - dense conv with W| = {difference:.2e}")

"""
## Counting parameters

An IGC block with a `G`-channel input has `L*M*M*S + M*L*L` weights (`S` is the
kernel area); a regular convolution of width `C` has `S*C*C`.
"""

igc = block.count_params()
print("IGC L=24 M=2, width 48:        ", igc)
print("regular conv of equal width 48: ", complexity.regular_conv_params(48))
equal_budget_width = int((igc / 9) ** 0.5)
print(
    f"regular conv of equal budget:   width {equal_budget_width}, "
    f"{complexity.regular_conv_params(equal_budget_width)} weights"
)

"""
At the per-layer budget of a regular 3x3 convolution of width 16 (2304
weights), the widest IGC block for each `M` is:
"""

budget = complexity.regular_conv_params(16)
for M in (1, 2, 3, 4, 8):
    L, _ = complexity.widest_igc_partitions(budget, M)
    print(
        f"M={M:2d}: L={L:2d}, width G={L * M:2d}, {complexity.igc_params(L, M)} weights"
    )

"""
`M = 2` or `3` gives the widest block: more than three times the width of the
regular convolution for the same weights, which is what the paper exploits.
With `M = 16` even `L = 1` needs 2320 weights, so `widest_igc_partitions`
raises a `ValueError` that says so.
"""
