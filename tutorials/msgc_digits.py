"""
Title: Learned grouped convolutions (MSGC): halve a CNN's MACs on digits
Author: keras-igc developers
Date created: 2026/11/23
Last modified: 2026/11/23
Description: Convert a dense CNN to MSGC, fine-tune to a MAC target, plot its groups.
Accelerator: None
"""

"""
## Introduction

IGC fixes which channels each group of a grouped convolution reads. MSGC ("middle
spectrum grouped convolution") learns it: every head of a grouped convolution reads
the input through its own per-sample binary channel mask, made by a small generator
network, and a loss term pushes the network's expected multiply-accumulates (MACs)
down to a target. The published recipe starts from a trained dense network, so this
tutorial trains a small dense CNN on scikit-learn's digits, converts it with
`keras_igc.msgc.convert`, fine-tunes it to half the dense MACs, and draws which
channels each head learned to read.
"""

"""
## Setup
"""

import os
import tempfile

import keras
import numpy as np

from keras_igc import msgc, quick, training

EPOCHS = quick.epochs(4)  # KERAS_IGC_QUICK=1 (the tests) shortens it
train_data, eval_data, steps = training.fit_data("digits", 64, seed=0)

"""
## A dense CNN

Four 3x3 convolutions with BatchNorm and ReLU, global pooling and a classifier,
trained with plain Nesterov SGD (BatchNorm momentum 0.9: a short run needs its
moving statistics to settle quickly).
"""


def dense_cnn():
    inputs = keras.Input((32, 32, 1))
    x = inputs
    for i, (filters, strides) in enumerate([(32, 1), (64, 2), (64, 1), (128, 2)]):
        x = keras.layers.Conv2D(
            filters, 3, strides=strides, padding="same", use_bias=False,
            name=f"conv{i}",
        )(x)  # fmt: skip
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="dense_cnn")


keras.utils.set_random_seed(0)
dense = dense_cnn()
dense.compile(
    optimizer=keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    loss="sparse_categorical_crossentropy",
    metrics=["accuracy"],
)
dense.fit(
    train_data, epochs=EPOCHS, steps_per_epoch=steps, validation_data=eval_data,
    shuffle=False, verbose=2,
)  # fmt: skip
dense_accuracy = dense.evaluate(eval_data, verbose=0, return_dict=True)["accuracy"]

"""
## Conversion

`convert` takes a rule that picks the convolutions to replace. Every convolution but
the stem becomes a 4-head `MSGCConv2D` that starts from the dense kernel (it has the
dense shape); the mask generators start with their gates open, so the converted
network computes what the dense one does. A `MACRegularizer` at the output reports
the expected MACs (`macs`, in millions, and `mac_ratio`) in the training logs and
adds the MAC loss.
"""


def rules(layer):
    if isinstance(layer, keras.layers.Conv2D) and layer.name != "conv0":
        return {"heads": 4}
    return None


model = msgc.convert(dense, rules)
x = next(iter(eval_data))[0]
print("same outputs as the dense CNN:", np.allclose(model(x), dense(x), atol=1e-4))

"""
## Fine-tuning to half the MACs

The MSGC recipe: label smoothing 0.1, a cosine rate set once per epoch, a higher
learning rate for the mask generators than for the pretrained weights, and coupled
weight decay on everything but the mask generators and BatchNorm.
`MACTargetScheduler` moves the loss's threshold tau from 1 to the target
over the first half of training.
"""

msgc.compile_for_msgc(
    model, steps, EPOCHS, mask_learning_rate=0.05, backbone_learning_rate=0.01
)
model.fit(
    train_data, epochs=EPOCHS, steps_per_epoch=steps, validation_data=eval_data,
    shuffle=False, callbacks=[msgc.MACTargetScheduler(target=0.5)], verbose=2,
)  # fmt: skip
result = model.evaluate(eval_data, verbose=0, return_dict=True)
print(
    f"dense: accuracy {dense_accuracy:.3f}; MSGC: accuracy {result['accuracy']:.3f} "
    f"at {result['mac_ratio']:.3f} of the dense MACs ({result['macs']:.2f} M)"
)

"""
## The learned group topology

For each MSGC layer, one row per head and one column per input channel; the colour
is the fraction of test images for which the head reads that channel. Heads read
different, overlapping subsets, and some channels are read by no head at all.
"""

path = msgc.plot_topology(
    msgc.head_masks(model, x), os.path.join(tempfile.mkdtemp(), "topology.png")
)
print("topology plot:", path)
